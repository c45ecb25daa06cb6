// Fuzz target: camera frames (camera/mjpeg.hpp, camera/yuyv.hpp, camera/frame_source.hpp):
// the Huffman-table insertion of UVC MJPEG frames, TurboJPEG decoding at every scale with
// the EXIF turn, splitting a recorded .mjpeg stream into frames, and YUYV to RGB at any size
// and row stride, odd ones included.
// Input: one mode byte, then the data. Mode bit 7 selects YUYV: bytes 1-2 the width, 3 the
// height, 4 the stride padding, the rest the frame. Otherwise the data is one frame decoded
// as a replayed file is (bits 0-1: the network input size, bit 2: EXIF orientation), then
// split as an MJPEG stream whose first frames are decoded too.
// Frames above 4 megapixels are only header-checked (speed, see fuzz_image.cpp).
#include <cstdint>
#include <vector>

#include <minicnn/camera/frame_source.hpp>
#include <minicnn/camera/mjpeg.hpp>
#include <minicnn/camera/yuyv.hpp>

using namespace minicnn;
using namespace minicnn::camera;

namespace {
bool small_enough(JpegDecoder& dec, const uint8_t* p, size_t n) {
  try {
    const std::vector<uint8_t> full = with_huffman_tables(p, n, "fuzz frame");
    const JpegHeader h = dec.header(full.data(), full.size(), "fuzz frame");
    return int64_t(h.width) * h.height <= (int64_t(1) << 22);
  } catch (const Error&) {
    return true;  // the library's own refusal is what is fuzzed
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static JpegDecoder dec;
  const uint8_t mode = data[0];
  ++data, --size;
  if (mode & 0x80) {
    if (size < 4) return 0;
    const int w = (data[0] | data[1] << 8) & 0x7ff, h = data[2];
    const size_t stride = size_t(w) * 2 + data[3] - 16;  // may be too short: must be refused
    Image out;
    try {
      camera::yuyv_to_rgb(data + 4, size - 4, w, h, stride, out);
      if (out.pixels.size() != size_t(w) * h * 3) __builtin_trap();
    } catch (const Error&) {
    }
    return 0;
  }
  DecodeOptions opt;
  static const int needs[4] = {0, 16, 96, 224};
  opt.need_width = opt.need_height = needs[mode & 3];
  opt.exif_orientation = mode & 4;
  const bool is_jpeg = size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF;
  if (is_jpeg && !small_enough(dec, data, size)) return 0;
  (void)jpeg_has_huffman_tables(data, size);
  try {
    Frame f;
    decode_frame(data, size, opt, dec, f, "fuzz frame");
    if (f.image.width < 1 || f.image.height < 1) __builtin_trap();
  } catch (const Error&) {
  }
  const auto frames = split_mjpeg(data, size);
  int decoded = 0;
  for (const auto& [off, len] : frames) {
    if (off + len > size || len < 4) __builtin_trap();
    if (decoded++ == 3) break;
    if (!small_enough(dec, data + off, len)) continue;
    try {
      const std::vector<uint8_t> full = with_huffman_tables(data + off, len, "fuzz stream");
      Image img = dec.decode(full.data(), full.size(), 1 << (mode & 3), "fuzz stream");
      (void)img;
    } catch (const Error&) {
    }
  }
  return 0;
}
