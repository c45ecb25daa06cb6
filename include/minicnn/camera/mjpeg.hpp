// Motion-JPEG: frames of a UVC camera or of a recorded .mjpeg file (concatenated JPEGs, as
// `ffmpeg -f mjpeg` writes them), decoded and encoded with libjpeg-turbo's TurboJPEG API.
// - UVC cameras usually leave the Huffman tables out of each frame (no DHT segment: the
//   tables are implied by the MJPEG convention). with_huffman_tables() inserts the standard
//   ones (ITU-T T.81 Annex K.3, the tables every MJPEG decoder assumes) before the first scan,
//   so that every decoder (browsers, stb_image, PIL) reads the frame as a plain JPEG.
// - JpegDecoder decodes to RGB at 1/1, 1/2, 1/4 or 1/8 scale (the IDCT does the scaling,
//   which is far cheaper than decoding in full and shrinking). JPEG's YCbCr is full range
//   (JFIF); libjpeg-turbo's accurate integer IDCT and smooth chroma upsampling are used, as
//   in PIL.
// - JpegEncoder encodes RGB (4:2:0) for the browser stream and recorded frames.
#pragma once
#include <turbojpeg.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../data/image.hpp"

namespace minicnn::camera {

namespace mjpeg_detail {
// Annex K.3 tables: for each, the number of codes of length 1..16, then the symbols.
inline constexpr uint8_t kDcLumaBits[16] = {0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0};
inline constexpr uint8_t kDcChromaBits[16] = {0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0};
inline constexpr uint8_t kDcValues[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
inline constexpr uint8_t kAcLumaBits[16] = {0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d};
inline constexpr uint8_t kAcLumaValues[162] = {
    0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61,
    0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52,
    0xd1, 0xf0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25,
    0x26, 0x27, 0x28, 0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45,
    0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64,
    0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83,
    0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
    0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6,
    0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3,
    0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8,
    0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa};
inline constexpr uint8_t kAcChromaBits[16] = {0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77};
inline constexpr uint8_t kAcChromaValues[162] = {
    0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61,
    0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33,
    0x52, 0xf0, 0x15, 0x62, 0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18,
    0x19, 0x1a, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44,
    0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63,
    0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a,
    0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97,
    0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4,
    0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca,
    0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7,
    0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa};

// One DHT segment holding all four tables (class << 4 | id: DC0, AC0, DC1, AC1).
inline std::vector<uint8_t> standard_dht_segment() {
  std::vector<uint8_t> seg = {0xFF, 0xC4, 0, 0};  // marker, then the length (set below)
  auto table = [&](uint8_t class_id, const uint8_t* bits, const uint8_t* values, size_t n) {
    seg.push_back(class_id);
    for (int i = 0; i < 16; ++i) seg.push_back(bits[i]);
    for (size_t i = 0; i < n; ++i) seg.push_back(values[i]);
  };
  table(0x00, kDcLumaBits, kDcValues, 12);
  table(0x10, kAcLumaBits, kAcLumaValues, 162);
  table(0x01, kDcChromaBits, kDcValues, 12);
  table(0x11, kAcChromaBits, kAcChromaValues, 162);
  const size_t len = seg.size() - 2;  // the length field counts itself, not the marker
  seg[2] = static_cast<uint8_t>(len >> 8);
  seg[3] = static_cast<uint8_t>(len & 0xFF);
  return seg;
}

// Where the header segments of a JPEG stand: whether one is a DHT, and the offset of the
// first start-of-scan marker (0 when the data is not a JPEG or ends before its first scan).
struct HeaderScan {
  bool has_dht = false;
  size_t sos = 0;
};
inline HeaderScan scan_header(const uint8_t* p, size_t n) {
  HeaderScan r;
  if (n < 4 || p[0] != 0xFF || p[1] != 0xD8) return r;
  size_t pos = 2;
  while (pos + 4 <= n) {
    if (p[pos] != 0xFF) return r;  // not a marker where one must be
    const uint8_t m = p[pos + 1];
    if (m == 0xFF) {  // fill byte before a marker
      ++pos;
      continue;
    }
    if (m == 0xDA) {
      r.sos = pos;
      return r;
    }
    if (m == 0xD9) return r;
    if ((m >= 0xD0 && m <= 0xD7) || m == 0x01) {  // markers without a length
      pos += 2;
      continue;
    }
    if (m == 0xC4) r.has_dht = true;
    pos += 2 + (size_t(p[pos + 2]) << 8 | p[pos + 3]);
  }
  return r;
}
}  // namespace mjpeg_detail

// True when a DHT segment comes before the first scan.
inline bool jpeg_has_huffman_tables(const uint8_t* data, size_t size) {
  return mjpeg_detail::scan_header(data, size).has_dht;
}

// The frame as a self-contained JPEG: unchanged when it has Huffman tables, else with the
// standard tables inserted right before its first scan. `where` names the frame in errors.
inline std::vector<uint8_t> with_huffman_tables(const uint8_t* data, size_t size,
                                                const std::string& where) {
  const mjpeg_detail::HeaderScan h = mjpeg_detail::scan_header(data, size);
  if (h.sos == 0)
    throw FormatError(where +
                      ": not a JPEG frame (expected FF D8 and marker segments up to a "
                      "start of scan; " +
                      std::to_string(size) + " bytes)");
  if (h.has_dht) return std::vector<uint8_t>(data, data + size);
  static const std::vector<uint8_t> dht = mjpeg_detail::standard_dht_segment();
  std::vector<uint8_t> out;
  out.reserve(size + dht.size());
  out.insert(out.end(), data, data + h.sos);
  out.insert(out.end(), dht.begin(), dht.end());
  out.insert(out.end(), data + h.sos, data + size);
  return out;
}

// The frames of an MJPEG stream (concatenated JPEGs) as (offset, length), each from its
// SOI (FF D8) to its EOI (FF D9) inclusive. Header segments are walked by their lengths (an
// EXIF thumbnail inside APP1 is not a frame); after the first scan the EOI is found by
// search, since entropy-coded data never holds FF D9 (0xFF is stuffed as FF 00). Bytes
// between frames and a cut-off last frame are skipped.
inline std::vector<std::pair<size_t, size_t>> split_mjpeg(const uint8_t* p, size_t n) {
  std::vector<std::pair<size_t, size_t>> frames;
  size_t pos = 0;
  while (pos + 4 <= n) {
    if (!(p[pos] == 0xFF && p[pos + 1] == 0xD8 && p[pos + 2] == 0xFF)) {
      ++pos;
      continue;
    }
    const mjpeg_detail::HeaderScan h = mjpeg_detail::scan_header(p + pos, n - pos);
    if (h.sos == 0) {
      pos += 2;
      continue;
    }
    size_t i = pos + h.sos + 2, end = 0;
    for (; i + 1 < n; ++i)
      if (p[i] == 0xFF && p[i + 1] == 0xD9) {
        end = i + 2;
        break;
      }
    if (!end) break;  // the last frame is cut off
    frames.emplace_back(pos, end - pos);
    pos = end;
  }
  return frames;
}

struct JpegHeader {
  int width = 0, height = 0;
  int subsampling = 0;  // TJSAMP_*
};

// A TurboJPEG decompressor; one per thread (a handle is not shareable between threads).
class JpegDecoder {
 public:
  JpegDecoder() : h_(tjInitDecompress()) {
    if (!h_)
      throw Error(std::string("TurboJPEG: cannot create a decompressor: ") + tjGetErrorStr());
  }
  ~JpegDecoder() { tjDestroy(h_); }
  JpegDecoder(const JpegDecoder&) = delete;
  JpegDecoder& operator=(const JpegDecoder&) = delete;

  JpegHeader header(const uint8_t* data, size_t size, const std::string& where) {
    check_size(size, where);
    JpegHeader hd;
    int colorspace = 0;
    if (tjDecompressHeader3(h_, data, static_cast<unsigned long>(size), &hd.width, &hd.height,
                            &hd.subsampling, &colorspace) < 0)
      fail(where + ": not a decodable JPEG (");
    return hd;
  }

  // Decodes into `out` (RGB) at 1/denom of the full size (denom 1, 2, 4 or 8; sizes round up).
  // A warning (a frame cut short, which webcams send now and then) still yields an image, the
  // missing blocks grey; an error throws FormatError.
  void decode(const uint8_t* data, size_t size, int denom, Image& out, const std::string& where) {
    if (denom != 1 && denom != 2 && denom != 4 && denom != 8)
      throw ConfigError(where + ": JPEG decode scale must be 1/1, 1/2, 1/4 or 1/8, got 1/" +
                        std::to_string(denom));
    const JpegHeader hd = header(data, size, where);
    if (int64_t(hd.width) * hd.height > kMaxImagePixels)
      throw FormatError(where + ": JPEG is " + std::to_string(hd.width) + "x" +
                        std::to_string(hd.height) + ", above the limit of " +
                        std::to_string(kMaxImagePixels) + " pixels");
    // As for decode_image_memory: no JPEG codes 8x8 blocks in under a bit, so a header that
    // claims more pixels than the bytes can carry is crafted, and must not size the buffer.
    if (int64_t(hd.width) * hd.height / image_detail::kMaxJpegPixelsPerByte >=
        static_cast<int64_t>(size))
      throw FormatError(where + ": JPEG claims " + std::to_string(hd.width) + "x" +
                        std::to_string(hd.height) + " pixels in " + std::to_string(size) +
                        " bytes, more than JPEG can code in that size (corrupt or crafted)");
    const tjscalingfactor f{1, denom};
    out.width = TJSCALED(hd.width, f);
    out.height = TJSCALED(hd.height, f);
    out.pixels.resize(static_cast<size_t>(out.width) * out.height * 3);
    // TJFLAG_LIMITSCANS: a progressive frame with more than 500 scans (kMaxJpegScans) is an
    // error; thousands of scans would make one small frame stall capture for seconds.
    if (tjDecompress2(h_, data, static_cast<unsigned long>(size), out.pixels.data(), out.width,
                      out.width * 3, out.height, TJPF_RGB, TJFLAG_LIMITSCANS) < 0 &&
        tjGetErrorCode(h_) != TJERR_WARNING)
      fail(where + ": JPEG decoding failed (");
  }
  Image decode(const uint8_t* data, size_t size, int denom, const std::string& where) {
    Image img;
    decode(data, size, denom, img, where);
    return img;
  }

 private:
  // Throws FormatError with TurboJPEG's message, after replacing the handle: libjpeg-turbo
  // 2.1 leaves a handle whose header parse failed midway ("SOS before SOF") in a state where
  // every later frame fails the same way, so one garbage frame would end a camera stream.
  [[noreturn]] void fail(const std::string& what) {
    const std::string msg = what + tjGetErrorStr2(h_) + ")";
    if (tjhandle fresh = tjInitDecompress()) {
      tjDestroy(h_);
      h_ = fresh;
    }
    throw FormatError(msg);
  }
  static void check_size(size_t size, const std::string& where) {
    if (size == 0) throw FormatError(where + ": empty JPEG frame");
    if (size > (size_t(1) << 31)) throw FormatError(where + ": JPEG frame larger than 2 GB");
  }
  tjhandle h_;
};

// A TurboJPEG compressor (RGB in, 4:2:0 JPEG out); one per thread. The output buffer is
// allocated once for the largest frame seen and reused.
class JpegEncoder {
 public:
  JpegEncoder() : h_(tjInitCompress()) {
    if (!h_) throw Error(std::string("TurboJPEG: cannot create a compressor: ") + tjGetErrorStr());
  }
  ~JpegEncoder() {
    if (buf_) tjFree(buf_);
    tjDestroy(h_);
  }
  JpegEncoder(const JpegEncoder&) = delete;
  JpegEncoder& operator=(const JpegEncoder&) = delete;

  std::vector<uint8_t> encode(const Image& img, int quality = 80) {
    if (img.width < 1 || img.height < 1) throw ShapeError("JPEG encode: the image is empty");
    if (quality < 1 || quality > 100)
      throw ConfigError("JPEG quality must be in 1..100, got " + std::to_string(quality));
    const unsigned long need = tjBufSize(img.width, img.height, TJSAMP_420);
    if (need > cap_) {
      if (buf_) tjFree(buf_);
      buf_ = tjAlloc(static_cast<int>(need));
      if (!buf_)
        throw Error("TurboJPEG: out of memory for a " + std::to_string(need) + "-byte JPEG");
      cap_ = need;
    }
    unsigned long size = cap_;
    if (tjCompress2(h_, img.pixels.data(), img.width, img.width * 3, img.height, TJPF_RGB, &buf_,
                    &size, TJSAMP_420, quality, TJFLAG_NOREALLOC) < 0)
      throw Error(std::string("TurboJPEG: encoding failed: ") + tjGetErrorStr2(h_));
    return std::vector<uint8_t>(buf_, buf_ + size);
  }

 private:
  tjhandle h_;
  unsigned char* buf_ = nullptr;
  unsigned long cap_ = 0;
};

}  // namespace minicnn::camera
