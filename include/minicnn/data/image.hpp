// Images as 8-bit RGB, row-major HWC (the layout decoders produce and NHWC
// tensors use). Decoding through stb_image (JPEG, PNG, BMP, GIF, TGA, PSD, PNM),
// PIL-compatible antialiased bilinear resizing, and the input preprocessing of
// the Keras MobileNetV2 weights.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../io/npy.hpp"
#include "jpeg_entropy.hpp"
#include "stb_image_impl.hpp"

namespace minicnn {

struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> pixels;  // height * width * 3, RGB
  uint8_t* row(int y) { return pixels.data() + static_cast<size_t>(y) * width * 3; }
  const uint8_t* row(int y) const { return pixels.data() + static_cast<size_t>(y) * width * 3; }
};

// Largest image we agree to decode: 100 megapixels (a 30000x30000 image would
// need 2.7 GB before resizing; such a file is almost certainly an attack or an error).
inline constexpr int64_t kMaxImagePixels = 100'000'000;

namespace image_detail {
inline uint32_t le32(const unsigned char* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

// Where a JPEG's start-of-image marker ends, as stb_image finds it: any number of FF bytes,
// then D8. 0 when the data does not start so. The checks below must see such fill bytes as a
// JPEG: fuzz_mjpeg's frames led by them got past the JPEG pixel cap (a 2.9 kB file decoding
// 50240x255 pixels, over 20 s under ASan).
inline size_t jpeg_soi_end(const unsigned char* b, size_t n) {
  size_t pos = 0;
  while (pos < n && b[pos] == 0xFF) ++pos;
  return pos > 0 && pos < n && b[pos] == 0xD8 ? pos + 1 : 0;
}

// stb_image decodes a truncated BMP or JPEG without complaint (missing pixels come out
// black or grey), so a cut-off download would silently train on garbage. PIL refuses
// both ("image file is truncated"); so do we. Empty when complete or not BMP/JPEG.
inline std::string truncation_problem(const unsigned char* b, size_t n) {
  if (n >= 2 && b[0] == 'B' && b[1] == 'M') {
    if (n < 54)
      return "BMP is truncated: its header is cut off (" + std::to_string(n) +
             " bytes, the header needs 54)";
    const uint32_t offset = le32(b + 10), compression = le32(b + 30);
    const int64_t w = static_cast<int32_t>(le32(b + 18)), h = static_cast<int32_t>(le32(b + 22));
    const int64_t bits = int64_t(b[28]) | int64_t(b[29]) << 8;
    // Uncompressed (BI_RGB, BI_BITFIELDS): rows padded to 4 bytes. RLE sizes are not fixed.
    if ((compression == 0 || compression == 3) && w > 0 && bits > 0) {
      // row < 2^50 and rows <= 2^31: their product can pass int64 (found by fuzz_image), so
      // the comparison divides instead of multiplying.
      const int64_t row = (bits * w + 31) / 32 * 4, rows = h < 0 ? -h : h;
      const int64_t after = static_cast<int64_t>(n) - int64_t(offset);
      if (after < 0 || (rows > 0 && after / rows < row))
        return "BMP is truncated: its header promises " +
               (row > (INT64_MAX - int64_t(offset)) / std::max<int64_t>(rows, 1)
                    ? std::string("more than 2^63")
                    : std::to_string(int64_t(offset) + row * rows)) +
               " bytes of pixel data and header, the file has " + std::to_string(n);
    }
    return "";
  }
  if (const size_t soi = jpeg_soi_end(b, n); soi != 0 && soi < n && b[soi] == 0xFF) {
    // Walk the marker segments to the first start-of-scan (an EXIF thumbnail, a whole JPEG
    // of its own, sits inside an APP1 segment and is skipped), then look for end-of-image:
    // entropy-coded data never contains FF D9 (FF is stuffed as FF 00).
    size_t pos = soi;
    while (pos + 4 <= n) {
      if (b[pos] != 0xFF) return "";  // not a marker: leave the verdict to the decoder
      const unsigned char m = b[pos + 1];
      if (m == 0xFF) {
        ++pos;  // fill byte
        continue;
      }
      if (m == 0xDA) break;
      if (m == 0xD9) return "JPEG ends before its image data";
      pos += 2 + (size_t(b[pos + 2]) << 8 | b[pos + 3]);
    }
    for (size_t i = pos; i + 1 < n; ++i)
      if (b[i] == 0xFF && b[i + 1] == 0xD9) return "";
    return "JPEG is truncated: no end-of-image marker after its image data (" + std::to_string(n) +
           " bytes)";
  }
  return "";
}

// JPEG tables stb_image 2.27 mishandles (found by fuzz/fuzz_image.cpp and fuzz_mjpeg.cpp):
//  - a DHT whose 16 code counts add up to more than 256 makes stbi__build_huffman write past
//    its arrays;
//  - a component whose quantisation table no DQT defined (before its scan; in a progressive
//    JPEG, before the end) is dequantised with uninitialised values, and dc * dequant[0]
//    overflows int (UBSan in stbi__jpeg_decode_block, found by both harnesses);
//  - a scan that uses a table no DHT before it defined makes stbi__jpeg_huff_decode read the
//    table from the decoder's uninitialised (malloc'd) memory: indexes out of bounds and
//    negative shifts. Baseline scans use the DC and AC table of each component; progressive
//    ones the DC table in a first DC scan (Ss = 0, Ah = 0) and the AC table in AC scans.
// Codes that over-subscribe the code space (Kraft sum above 1) are refused too: stb_image
// refuses them itself, but only as "Corrupt JPEG".
// Walks a JPEG's marker segments by their lengths (skipping bytes between segments that are
// not markers, as stb_image does), and the entropy-coded data after each scan header to the
// next marker (stuffed FF 00, fill bytes and restart markers are not markers), reading every
// DHT as stb_image would (tables back to back while the segment's length lasts, bytes past
// the end of the file as 0). Empty when every table is sound and defined before use, or the
// data is not a JPEG.
inline std::string jpeg_huffman_problem(const unsigned char* b, size_t n) {
  size_t pos = jpeg_soi_end(b, n);
  if (pos == 0) return "";
  auto at = [&](size_t i) -> unsigned { return i < n ? b[i] : 0; };
  bool defined[2][4] = {};  // [DC, AC][table id], as the DHT segments so far leave them
  bool quant[4] = {};       // quantisation tables the DQT segments so far define
  unsigned char sof = 0;    // stb_image reads the first SOF0/1/2 and fails on any other
  unsigned comps = 0, comp_id[4] = {}, comp_tq[4] = {};  // the frame's components
  // The first component whose quantisation table is undefined, or -1.
  auto undefined_quant = [&](unsigned id_or_all, bool all) -> int {
    for (unsigned c = 0; c < comps; ++c)
      if ((all || comp_id[c] == id_or_all) && comp_tq[c] <= 3 && !quant[comp_tq[c]]) return int(c);
    return -1;
  };
  auto quant_problem = [&](int c, const std::string& when) {
    return "JPEG component " + std::to_string(comp_id[c]) + " uses quantisation table " +
           std::to_string(comp_tq[c]) + ", which no DQT segment " + when + " defines";
  };
  while (pos + 4 <= n) {
    if (b[pos] != 0xFF || b[pos + 1] == 0xFF) {  // stb_image skips junk and fill bytes
      ++pos;
      continue;
    }
    const unsigned char m = b[pos + 1];
    if (m == 0xD9) {  // a progressive JPEG is dequantised at its end
      const int c = sof == 0xC2 ? undefined_quant(0, true) : -1;
      return c < 0 ? "" : quant_problem(c, "in the file");
    }
    if ((m >= 0xD0 && m <= 0xD7) || m == 0x01) {
      pos += 2;
      continue;
    }
    const size_t len = size_t(b[pos + 2]) << 8 | b[pos + 3];
    if (m == 0xC4) {
      int64_t left = int64_t(len) - 2;
      for (size_t p = pos + 4; left > 0;) {
        const unsigned tc = at(p) >> 4, th = at(p) & 15;
        unsigned codes = 0;
        uint64_t next = 0;  // the next free code of the current length, as stb assigns them
        int oversubscribed = 0;
        for (unsigned k = 1; k <= 16; ++k) {
          codes += at(p + k);
          next += at(p + k);
          if (!oversubscribed && next > (uint64_t(1) << k)) oversubscribed = int(k);
          next <<= 1;
        }
        if (codes > 256)
          return "JPEG has a Huffman table of " + std::to_string(codes) + " codes at byte " +
                 std::to_string(p) + " (at most 256 are possible)";
        if (oversubscribed)
          return "JPEG has a Huffman table at byte " + std::to_string(p) +
                 " whose code lengths over-subscribe the code space (more codes of up to " +
                 std::to_string(oversubscribed) + " bits than " + std::to_string(oversubscribed) +
                 " bits can tell apart; the table is corrupt)";
        if (tc <= 1 && th <= 3) defined[tc][th] = true;  // stb_image fails on other ids
        p += 17 + codes;
        left -= 17 + int64_t(codes);
      }
    }
    if (m == 0xDB)  // DQT: tables back to back, 8- or 16-bit values
      for (size_t p = pos + 4, end = pos + 2 + len; p < end;) {
        const unsigned pq = at(p) >> 4, tq = at(p) & 15;
        if (pq > 1 || tq > 3) break;  // stb_image fails on these
        quant[tq] = true;
        p += 1 + 64 * (pq + 1);
      }
    if (sof == 0 && (m == 0xC0 || m == 0xC1 || m == 0xC2)) {
      sof = m;
      comps = std::min(at(pos + 9), 4u);
      for (unsigned c = 0; c < comps; ++c)
        comp_id[c] = at(pos + 10 + 3 * c), comp_tq[c] = at(pos + 12 + 3 * c);
    }
    if (m == 0xDA && sof != 0) {
      const unsigned count = std::min(at(pos + 4), 4u);
      const unsigned ss = at(pos + 5 + 2 * count), ah = at(pos + 7 + 2 * count) >> 4;
      const bool progressive = sof == 0xC2;
      const bool dc = !progressive || (ss == 0 && ah == 0), ac = !progressive || ss != 0;
      for (unsigned i = 0; i < count; ++i) {
        // Uninitialised quantisation values reach dc * dequant[0], which overflows int.
        const int uq = progressive ? -1 : undefined_quant(at(pos + 5 + 2 * i), false);
        if (uq >= 0) return quant_problem(uq, "before its scan at byte " + std::to_string(pos));
        const unsigned sel = at(pos + 6 + 2 * i), td = sel >> 4, ta = sel & 15;
        const bool no_dc = dc && td <= 3 && !defined[0][td],
                   no_ac = ac && ta <= 3 && !defined[1][ta];
        if (no_dc || no_ac)
          return "JPEG scan at byte " + std::to_string(pos) + " uses " +
                 (no_dc ? "DC Huffman table " + std::to_string(td)
                        : "AC Huffman table " + std::to_string(ta)) +
                 ", which no DHT segment before it defines (a Motion-JPEG frame without "
                 "its tables?)";
      }
    }
    pos += 2 + len;
    if (m == 0xDA)  // entropy-coded data follows the scan header
      while (pos + 1 < n && !(b[pos] == 0xFF && b[pos + 1] != 0 && b[pos + 1] != 0xFF &&
                              !(b[pos + 1] >= 0xD0 && b[pos + 1] <= 0xD7)))
        ++pos;
  }
  // The data ended (an EOI in its last 3 bytes is not walked): a progressive JPEG is
  // dequantised at its end.
  const int c = sof == 0xC2 ? undefined_quant(0, true) : -1;
  return c < 0 ? "" : quant_problem(c, "in the file");
}

// Every PNG chunk must fit in the file. stb_image sizes its buffers from a chunk's length
// field before reading the chunk, so a 69-byte PNG declaring a 1.9 GB IDAT had it allocate
// gigabytes (found by fuzz/fuzz_mjpeg.cpp, 19 s per file under ASan). An empty IDAT before
// any image data has stb_image copy 0 bytes to its buffer while it is still a null pointer
// (memcpy(NULL, ...), undefined behaviour, found by fuzz_mjpeg), so that is refused too.
// Empty when the chunks fit or the data is not a PNG.
inline std::string png_chunk_problem(const unsigned char* b, size_t n) {
  static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (n < 8 || std::memcmp(b, sig, 8) != 0) return "";
  bool image_data = false;  // an IDAT chunk with data has come
  for (size_t pos = 8; pos + 8 <= n;) {
    const uint64_t len = uint64_t(b[pos]) << 24 | uint64_t(b[pos + 1]) << 16 |
                         uint64_t(b[pos + 2]) << 8 | b[pos + 3];
    if (len + 12 > n - pos)
      return "PNG is truncated or corrupt: the chunk at byte " + std::to_string(pos) +
             " declares " + std::to_string(len) + " bytes, the file has " +
             std::to_string(n - pos) + " left";
    if (std::memcmp(b + pos + 4, "IEND", 4) == 0) return "";
    if (std::memcmp(b + pos + 4, "IDAT", 4) == 0) {
      if (len == 0 && !image_data)
        return "PNG has an empty IDAT chunk at byte " + std::to_string(pos) +
               " before any image data (expected the first IDAT to hold some; stb_image "
               "cannot read it so)";
      image_data = image_data || len > 0;
    }
    pos += 12 + len;
  }
  return "";
}

// The header of a binary PNM (P5/P6): magic, width, height and maxval with whitespace and
// # comments between them, then one whitespace byte before the pixels. stb_image 2.27 reads
// the numbers into an int without an overflow check (signed overflow, undefined behaviour,
// found by fuzz/fuzz_image.cpp), so every stbi_* call must come after pnm_header has refused
// numbers above the caps. `data_offset` is 0 when the header is malformed or cut off;
// `problem` is empty unless a number is too large.
struct PnmHeader {
  int64_t width = 0, height = 0, maxval = 0;
  size_t data_offset = 0;
  std::string problem;
};
// stb_image refuses larger sizes and maxvals itself, once it has read them.
inline constexpr int64_t kMaxPnmSide = int64_t(1) << 24, kMaxPnmMaxval = 65535;

inline PnmHeader pnm_header(const unsigned char* b, size_t n) {
  PnmHeader h;
  if (n < 2 || b[0] != 'P' || (b[1] != '5' && b[1] != '6')) return h;
  static const char* names[3] = {"width", "height", "maxval"};
  const int64_t caps[3] = {kMaxPnmSide, kMaxPnmSide, kMaxPnmMaxval};
  int64_t* values[3] = {&h.width, &h.height, &h.maxval};
  size_t pos = 2;
  for (int field = 0; field < 3; ++field) {
    for (;;) {
      while (pos < n && (b[pos] == ' ' || (b[pos] >= '\t' && b[pos] <= '\r'))) ++pos;
      if (pos < n && b[pos] == '#') {
        while (pos < n && b[pos] != '\n' && b[pos] != '\r') ++pos;
        continue;
      }
      break;
    }
    if (pos >= n || b[pos] < '0' || b[pos] > '9') return h;
    const size_t start = pos;
    int64_t v = 0;  // saturates above the cap: the digits may go on for ever
    for (; pos < n && b[pos] >= '0' && b[pos] <= '9'; ++pos)
      v = std::min<int64_t>(v * 10 + (b[pos] - '0'), caps[field] + 1);
    *values[field] = v;
    if (v > caps[field]) {
      const size_t digits = pos - start, shown = std::min<size_t>(digits, 24);
      h.problem = "PNM header has a " + std::string(names[field]) + " of " +
                  std::string(reinterpret_cast<const char*>(b + start), shown) +
                  (shown < digits ? "... (" + std::to_string(digits) + " digits)" : "") +
                  " at byte " + std::to_string(start) + ", expected at most " +
                  std::to_string(caps[field]);
      return h;
    }
  }
  h.data_offset = pos < n ? pos + 1 : 0;
  return h;
}

// Every check that must run before stb_image sees the bytes at all (stbi_info included):
// inputs on which stb_image 2.27 itself misbehaves. Empty when there is none.
inline std::string stb_input_problem(const unsigned char* b, size_t n) {
  std::string p = jpeg_huffman_problem(b, n);
  if (p.empty()) p = png_chunk_problem(b, n);
  if (p.empty()) p = pnm_header(b, n).problem;
  return p;
}

// Most pixels a file of each format can hold per byte of file (the best compression the
// format allows, with room to spare): a PNG of a 1-bit image deflates ~1032:1, 8 pixels a
// byte (8256); a GIF's 12-bit LZW code stands for at most 4096 pixels (2731); a progressive
// JPEG needs at least one bit per 8x8 block (512). A file that claims more pixels than that
// is crafted or corrupt, and decoding it would allocate memory its size does not justify.
inline constexpr int64_t kMaxPixelsPerByte = 16384;
inline constexpr int64_t kMaxJpegPixelsPerByte = 1024;
// Run-length formats repeat one pixel at most 128 times per packet of at least 2 bytes
// (TGA types 9-11, PSD PackBits, Radiance HDR runs): 64 pixels a byte, 128 with room.
// Decoding a 178-byte RLE TGA that claimed megapixels took libFuzzer over 20 s.
inline constexpr int64_t kMaxRlePixelsPerByte = 128;

// Whether the file is one of the run-length formats above.
inline bool is_rle_format(const unsigned char* b, size_t n) {
  const bool tga_rle = n >= 18 && (b[2] == 9 || b[2] == 10 || b[2] == 11) && b[1] <= 1;
  const bool psd = n >= 4 && std::memcmp(b, "8BPS", 4) == 0;
  const bool hdr = n >= 2 && b[0] == '#' && b[1] == '?';
  return tga_rle || psd || hdr;
}

// Empty when `n` bytes can hold a w x h image of this format; otherwise why not. Uncompressed
// PNM and TGA must hold every pixel (stb_image would hand back uninitialised memory for the
// missing ones); other formats must stay within the compression limits above.
inline std::string size_problem(const unsigned char* b, size_t n, int w, int h, int comp,
                                bool is16) {
  const int64_t pixels = int64_t(w) * h;
  if (n >= 2 && b[0] == 'P' && (b[1] == '5' || b[1] == '6')) {
    const size_t off = pnm_header(b, n).data_offset;
    const int64_t need = int64_t(off) + pixels * comp * (is16 ? 2 : 1);
    if (off == 0 || static_cast<int64_t>(n) < need)
      return "PNM is truncated: a " + std::to_string(w) + "x" + std::to_string(h) +
             " image needs " + std::to_string(need) + " bytes, the file has " + std::to_string(n);
    return "";
  }
  const bool jpeg = jpeg_soi_end(b, n) != 0;
  // TGA has no magic; stb_image recognises it by its header, types 1-3 are uncompressed.
  if (!jpeg && n >= 18 && (b[2] == 1 || b[2] == 2 || b[2] == 3) && b[1] <= 1 &&
      (b[2] == 1) == (b[1] == 1)) {
    const int64_t cmap = b[1] ? int64_t(b[5] | b[6] << 8) * ((b[7] + 7) / 8) : 0;
    const int64_t need = 18 + int64_t(b[0]) + cmap + pixels * ((b[16] + 7) / 8);
    if (static_cast<int64_t>(n) < need)
      return "TGA is truncated: a " + std::to_string(w) + "x" + std::to_string(h) +
             " image needs " + std::to_string(need) + " bytes, the file has " + std::to_string(n);
    return "";
  }
  const int64_t per_byte = jpeg                  ? kMaxJpegPixelsPerByte
                           : is_rle_format(b, n) ? kMaxRlePixelsPerByte
                                                 : kMaxPixelsPerByte;
  if (pixels / per_byte >= static_cast<int64_t>(n))
    return "claims " + std::to_string(w) + "x" + std::to_string(h) + " pixels in " +
           std::to_string(n) +
           " bytes, more than the format can compress into that size "
           "(the file is corrupt or crafted)";
  return "";
}

// stb_image 2.27 un-mattes a PSD with an alpha channel (4 channels or more), taking its
// composite image to be matted against white: a colour value c with alpha a (1..254) becomes
// 255 + (c - 255) * 255 / a, in float, converted to unsigned char. Where c is below about
// 255 - a that is -1 or less, and the conversion is undefined behaviour (UBSan, found by
// fuzz/fuzz_image.cpp). Photoshop's composites, matted on white, never come below; this
// refuses a pixel that would go under -0.5 (float rounding in stb_image stays far from that).
// Reads channels 0-3 as stb_image does: raw planes of 8 or 16 bits (the high byte counts), or
// PackBits planes after a table of row lengths, bytes past the end of the file as 0. Empty
// when the data is not such a PSD, is one stb_image refuses anyway, or is sound. Run it after
// the size checks: it walks every pixel.
inline std::string psd_matte_problem(const unsigned char* b, size_t n) {
  if (n < 26 || std::memcmp(b, "8BPS", 4) != 0) return "";
  auto at = [&](uint64_t i) -> unsigned { return i < n ? b[i] : 0; };
  auto be = [&](uint64_t i, int bytes) {
    uint64_t v = 0;
    for (int k = 0; k < bytes; ++k) v = v << 8 | at(i + k);
    return v;
  };
  const uint64_t channels = be(12, 2), height = be(14, 4), width = be(18, 4), depth = be(22, 2);
  if (be(4, 2) != 1 || channels < 4 || channels > 16 || be(24, 2) != 3 ||
      (depth != 8 && depth != 16) || height < 1 || width < 1 ||
      height * width > uint64_t(kMaxImagePixels))
    return "";
  const uint64_t pixels = height * width;
  uint64_t pos = 26;
  for (int block = 0; block < 3; ++block) {  // mode data, image resources, reserved data
    const uint64_t len = be(pos, 4);
    pos = len >= (uint64_t(1) << 31) ? n : pos + 4 + len;  // stb_image reads it as an int
  }
  const uint64_t compression = be(pos, 2);
  if (compression > 1) return "";
  pos += 2;
  // One cursor per channel: a raw plane, or a PackBits plane (a literal run or a repeat).
  struct Cursor {
    uint64_t pos = 0, left = 0;
    bool literal = false;
    unsigned value = 0;
  } cur[4];
  auto next_run = [&](Cursor& k) {  // stb_image's PackBits: 128 is a no-op
    for (;;) {
      const unsigned len = at(k.pos++);
      if (len == 128) continue;
      k.literal = len < 128;
      k.left = k.literal ? len + 1 : 257 - len;
      if (!k.literal) k.value = at(k.pos++);
      return;
    }
  };
  const uint64_t step = compression ? 1 : depth / 8;
  if (compression) {
    pos += height * channels * 2;  // the row lengths, which stb_image skips
    for (int c = 0; c < 4; ++c) {  // where each plane starts; a run too long fails stb_image
      cur[c].pos = pos;
      for (uint64_t count = 0; count < pixels;) {
        Cursor k;
        k.pos = pos;
        next_run(k);
        if (k.left > pixels - count) return "";
        count += k.left;
        pos = k.pos + (k.literal ? k.left : 0);
      }
    }
  } else {
    for (int c = 0; c < 4; ++c) cur[c].pos = pos + c * pixels * step;
  }
  for (uint64_t i = 0; i < pixels; ++i) {
    unsigned v[4];
    for (int c = 0; c < 4; ++c) {
      Cursor& k = cur[c];
      if (!compression) {
        v[c] = at(k.pos + i * step);
        continue;
      }
      if (k.left == 0) next_run(k);
      --k.left;
      v[c] = k.literal ? at(k.pos++) : k.value;
    }
    if (v[3] == 0 || v[3] == 255) continue;
    for (int c = 0; c < 3; ++c)
      if (510 * (255 - v[c]) > 511 * v[3])
        return "PSD pixel " + std::to_string(i % width) + "," + std::to_string(i / width) +
               " has alpha " + std::to_string(v[3]) + " and a colour value of " +
               std::to_string(v[c]) + ", expected at least about " + std::to_string(255 - v[3]) +
               " in a composite matted on white, as stb_image takes it (the file is corrupt)";
  }
  return "";
}
}  // namespace image_detail

inline Image decode_image_memory(const std::vector<char>& bytes, const std::string& where) {
  if (bytes.empty()) throw FormatError("image " + where + ": file is empty");
  if (bytes.size() > static_cast<size_t>(INT32_MAX))
    throw FormatError("image " + where + ": file larger than 2 GB");
  auto* buf = reinterpret_cast<const stbi_uc*>(bytes.data());
  int len = static_cast<int>(bytes.size());
  const std::string cut = image_detail::truncation_problem(buf, bytes.size());
  const std::string early = image_detail::stb_input_problem(buf, bytes.size());
  if (!early.empty()) throw FormatError("image " + where + ": " + early);
  int w = 0, h = 0, comp = 0;
  if (!stbi_info_from_memory(buf, len, &w, &h, &comp)) {
    if (!cut.empty()) throw FormatError("image " + where + ": " + cut);
    throw FormatError("image " + where + ": not a decodable image (" + stbi_failure_reason() +
                      "); expected JPEG, PNG, BMP, GIF, TGA, PSD or PNM");
  }
  if (w <= 0 || h <= 0)
    throw FormatError("image " + where + ": has size " + std::to_string(w) + "x" +
                      std::to_string(h) + ", expected at least 1x1");
  if (static_cast<int64_t>(w) * h > kMaxImagePixels)
    throw FormatError("image " + where + ": is " + std::to_string(w) + "x" + std::to_string(h) +
                      " pixels, more than the limit of " + std::to_string(kMaxImagePixels) +
                      " pixels");
  if (!cut.empty()) throw FormatError("image " + where + ": " + cut);
  const bool is16 = stbi_is_16_bit_from_memory(buf, len) != 0;
  // stb_image 2.27 converts a 16-bit PNM's channels as if its samples were 8-bit and then
  // reads twice the buffer it allocated (a heap overflow, found by fuzz/fuzz_image.cpp).
  if (is16 && bytes.size() >= 2 && buf[0] == 'P' && (buf[1] == '5' || buf[1] == '6'))
    throw FormatError("image " + where +
                      ": 16-bit PNM (maxval above 255) is not supported; convert it to 8 bits");
  const std::string big = image_detail::size_problem(buf, bytes.size(), w, h, comp, is16);
  if (!big.empty()) throw FormatError("image " + where + ": " + big);
  const std::string matte = image_detail::psd_matte_problem(buf, bytes.size());
  if (!matte.empty()) throw FormatError("image " + where + ": " + matte);
  // After the size checks, which bound the replay's work and its progressive state.
  const std::string entropy = image_detail::jpeg_entropy_problem(buf, bytes.size());
  if (!entropy.empty()) throw FormatError("image " + where + ": " + entropy);
  int ch = 0;
  stbi_uc* data = stbi_load_from_memory(buf, len, &w, &h, &ch, 3);
  if (!data)
    throw FormatError("image " + where + ": decoding failed (" + stbi_failure_reason() + ")");
  Image img;
  img.width = w;
  img.height = h;
  img.pixels.assign(data, data + static_cast<size_t>(w) * h * 3);
  stbi_image_free(data);
  return img;
}

inline Image decode_image(const std::string& path) {
  return decode_image_memory(read_file_bytes(path), "'" + path + "'");
}

namespace detail {
// Filter weights of one output axis, exactly as PIL's Resample.c computes them for
// the bilinear (triangle) filter, widened by the scale when shrinking (antialiasing),
// and turned into 22-bit fixed point so 8-bit results match PIL bit for bit.
struct ResampleCoeffs {
  std::vector<int> first, count;
  std::vector<int32_t> k;  // count_max per output
  int kmax = 0;
};
inline constexpr int kResamplePrecision = 22;

inline ResampleCoeffs resample_coeffs(int in_size, int out_size) {
  ResampleCoeffs c;
  double scale = static_cast<double>(in_size) / out_size;
  double filterscale = scale < 1.0 ? 1.0 : scale;
  double support = 1.0 * filterscale;
  c.kmax = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.first.resize(out_size);
  c.count.resize(out_size);
  c.k.assign(static_cast<size_t>(out_size) * c.kmax, 0);
  std::vector<double> w(c.kmax);
  for (int xx = 0; xx < out_size; ++xx) {
    double center = (xx + 0.5) * scale;
    double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0;
    for (int x = 0; x < xmax; ++x) {
      double t = (x + xmin - center + 0.5) * ss;
      if (t < 0) t = -t;
      w[x] = t < 1.0 ? 1.0 - t : 0.0;
      ww += w[x];
    }
    for (int x = 0; x < xmax; ++x) {
      double v = ww != 0.0 ? w[x] / ww : 0.0;
      c.k[static_cast<size_t>(xx) * c.kmax + x] = static_cast<int32_t>(
          v < 0 ? -0.5 + v * (1 << kResamplePrecision) : 0.5 + v * (1 << kResamplePrecision));
    }
    c.first[xx] = xmin;
    c.count[xx] = xmax;
  }
  return c;
}
inline uint8_t clip8(int64_t v) {
  if (v >= (int64_t(1) << kResamplePrecision << 8)) return 255;
  if (v <= 0) return 0;
  return static_cast<uint8_t>(v >> kResamplePrecision);
}
}  // namespace detail

// Antialiased bilinear resize, PIL's Image.resize(..., BILINEAR): horizontal pass,
// then vertical pass, 8-bit intermediate. This is what produced the reference inputs.
inline Image resize_bilinear(const Image& in, int out_w, int out_h) {
  if (out_w <= 0 || out_h <= 0)
    throw ConfigError("resize: target size " + std::to_string(out_w) + "x" + std::to_string(out_h) +
                      " must be positive");
  if (in.width <= 0 || in.height <= 0) throw ShapeError("resize: input image is empty");
  Image tmp;
  const Image* src = &in;
  if (out_w != in.width) {
    auto c = detail::resample_coeffs(in.width, out_w);
    tmp.width = out_w;
    tmp.height = in.height;
    tmp.pixels.resize(static_cast<size_t>(out_w) * in.height * 3);
    for (int y = 0; y < in.height; ++y) {
      const uint8_t* r = in.row(y);
      uint8_t* o = tmp.row(y);
      for (int x = 0; x < out_w; ++x) {
        const int32_t* k = &c.k[static_cast<size_t>(x) * c.kmax];
        for (int ch = 0; ch < 3; ++ch) {
          int64_t ss = int64_t(1) << (detail::kResamplePrecision - 1);
          for (int i = 0; i < c.count[x]; ++i) ss += int64_t(r[(c.first[x] + i) * 3 + ch]) * k[i];
          o[x * 3 + ch] = detail::clip8(ss);
        }
      }
    }
    src = &tmp;
  }
  if (out_h == src->height) return src == &tmp ? tmp : in;
  auto c = detail::resample_coeffs(src->height, out_h);
  Image out;
  out.width = src->width;
  out.height = out_h;
  out.pixels.resize(static_cast<size_t>(out.width) * out_h * 3);
  const int rowlen = src->width * 3;
  for (int y = 0; y < out_h; ++y) {
    const int32_t* k = &c.k[static_cast<size_t>(y) * c.kmax];
    uint8_t* o = out.row(y);
    for (int x = 0; x < rowlen; ++x) {
      int64_t ss = int64_t(1) << (detail::kResamplePrecision - 1);
      for (int i = 0; i < c.count[y]; ++i) ss += int64_t(src->row(c.first[y] + i)[x]) * k[i];
      o[x] = detail::clip8(ss);
    }
  }
  return out;
}

// Nearest-neighbour resize exactly as PIL's Image.resize(..., NEAREST) (Keras' default
// interpolation in load_img and flow_from_directory): output pixel x takes source column
// floor((x + 0.5) * in / out), with the position accumulated in double step by step as
// PIL's affine scaler does, so that rounding picks the same pixels.
inline Image resize_nearest(const Image& in, int out_w, int out_h) {
  if (out_w <= 0 || out_h <= 0)
    throw ConfigError("resize: target size " + std::to_string(out_w) + "x" + std::to_string(out_h) +
                      " must be positive");
  if (in.width <= 0 || in.height <= 0) throw ShapeError("resize: input image is empty");
  if (out_w == in.width && out_h == in.height) return in;
  auto table = [](int in_size, int out_size) {
    std::vector<int> idx(out_size);
    const double step = static_cast<double>(in_size) / out_size;
    double pos = step * 0.5;
    for (int i = 0; i < out_size; ++i, pos += step)
      idx[i] = std::min(std::max(static_cast<int>(pos), 0), in_size - 1);
    return idx;
  };
  const std::vector<int> xs = table(in.width, out_w), ys = table(in.height, out_h);
  Image out;
  out.width = out_w;
  out.height = out_h;
  out.pixels.resize(static_cast<size_t>(out_w) * out_h * 3);
  for (int y = 0; y < out_h; ++y) {
    const uint8_t* r = in.row(ys[y]);
    uint8_t* o = out.row(y);
    for (int x = 0; x < out_w; ++x) {
      const uint8_t* s = r + static_cast<size_t>(xs[x]) * 3;
      o[x * 3] = s[0];
      o[x * 3 + 1] = s[1];
      o[x * 3 + 2] = s[2];
    }
  }
  return out;
}

// Which resampling turns a decoded image into the network's input size.
enum class Interpolation {
  Nearest,   // PIL NEAREST: Keras' default (flow_from_directory, load_img), the notebook's
  Bilinear,  // PIL BILINEAR with antialiasing: smoother when shrinking large photos
};
inline Interpolation interpolation_from_string(const std::string& s) {
  if (s == "nearest") return Interpolation::Nearest;
  if (s == "bilinear") return Interpolation::Bilinear;
  throw ConfigError("interpolation must be 'nearest' or 'bilinear', got '" + s + "'");
}
inline std::string to_string(Interpolation i) {
  return i == Interpolation::Nearest ? "nearest" : "bilinear";
}
inline Image resize_image(const Image& in, int out_w, int out_h, Interpolation how) {
  return how == Interpolation::Nearest ? resize_nearest(in, out_w, out_h)
                                       : resize_bilinear(in, out_w, out_h);
}

// How pixel values become network inputs.
enum class Preprocess {
  Tf,    // x / 127.5 - 1: what the Keras/TF MobileNetV2 ImageNet weights were trained with
  Unit,  // x / 255: the original notebook's rescale=1/255 (kept for comparison)
};
inline Preprocess preprocess_from_string(const std::string& s) {
  if (s == "tf") return Preprocess::Tf;
  if (s == "unit") return Preprocess::Unit;
  throw ConfigError("preprocessing must be 'tf' (x/127.5-1) or 'unit' (x/255), got '" + s + "'");
}
inline std::string to_string(Preprocess p) {
  return p == Preprocess::Tf ? "tf" : "unit";
}

inline float preprocess_value(uint8_t v, Preprocess p) {
  return p == Preprocess::Tf ? static_cast<float>(v) / 127.5f - 1.0f
                             : static_cast<float>(v) / 255.0f;
}

// Writes n * h * w * 3 preprocessed values (one image) at dst.
inline void preprocess_into(const uint8_t* src, int64_t count, Preprocess p, float* dst) {
  for (int64_t i = 0; i < count; ++i) dst[i] = preprocess_value(src[i], p);
}

// Decodes, resizes to size x size (skipped when it already has that size) and returns RGB.
inline Image load_image_resized(const std::string& path, int width, int height) {
  Image img = decode_image(path);
  if (img.width == width && img.height == height) return img;
  return resize_bilinear(img, width, height);
}

}  // namespace minicnn
