// YUYV (YUV 4:2:2 packed: Y0 U Y1 V per pixel pair, V4L2_PIX_FMT_YUYV) to RGB. Cameras send
// BT.601 "limited range" (studio swing: Y in 16..235, Cb/Cr in 16..240 around 128), which
// is what ffmpeg's swscale assumes for YUYV422 by default:
//   R = 1.164383 (Y-16)                     + 1.596027 (Cr-128)
//   G = 1.164383 (Y-16) - 0.391762 (Cb-128) - 0.812968 (Cr-128)
//   B = 1.164383 (Y-16) + 2.017232 (Cb-128)
// (the JFIF full-range matrix of JPEG would wash such frames out). Both pixels of a pair share
// their pair's Cb and Cr (no chroma interpolation). Fixed point with 16 fraction bits,
// rounded to nearest and clamped to 0..255.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "../core/error.hpp"
#include "../data/image.hpp"

namespace minicnn::camera {

namespace yuyv_detail {
inline constexpr int32_t kY = 76309;    // 1.164383 * 65536
inline constexpr int32_t kRv = 104597;  // 1.596027 * 65536
inline constexpr int32_t kGu = 25675;   // 0.391762 * 65536
inline constexpr int32_t kGv = 53279;   // 0.812968 * 65536
inline constexpr int32_t kBu = 132201;  // 2.017232 * 65536
inline uint8_t clamp8(int32_t v) {
  v = (v + 32768) >> 16;
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}
}  // namespace yuyv_detail

// Converts a width x height YUYV frame whose rows are `stride` bytes apart (at least
// 2 * width; width must be even) into `out`.
inline void yuyv_to_rgb(const uint8_t* src, size_t size, int width, int height, size_t stride,
                        Image& out) {
  if (width < 2 || height < 1 || width % 2)
    throw ShapeError("YUYV frame: size " + std::to_string(width) + "x" + std::to_string(height) +
                     " must have an even width of at least 2");
  if (stride < size_t(width) * 2)
    throw ShapeError("YUYV frame: rows of " + std::to_string(stride) + " bytes, a " +
                     std::to_string(width) + "-pixel row needs " + std::to_string(width * 2));
  // stride * (height - 1) + 2 * width without overflow: a driver's (or a file's) absurd
  // stride must not wrap around to a small size (found by fuzz/fuzz_mjpeg.cpp).
  const size_t row = size_t(width) * 2;
  if (size < row || (height > 1 && (size - row) / size_t(height - 1) < stride))
    throw FormatError("YUYV frame: " + std::to_string(size) + " bytes, a " + std::to_string(width) +
                      "x" + std::to_string(height) + " frame with rows " + std::to_string(stride) +
                      " bytes apart needs " +
                      (stride > (SIZE_MAX - row) / size_t(std::max(height - 1, 1))
                           ? std::string("more than memory can hold")
                           : std::to_string(stride * size_t(height - 1) + row)));
  using namespace yuyv_detail;
  out.width = width;
  out.height = height;
  out.pixels.resize(size_t(width) * height * 3);
  for (int y = 0; y < height; ++y) {
    const uint8_t* s = src + stride * size_t(y);
    uint8_t* o = out.row(y);
    for (int x = 0; x < width; x += 2, s += 4, o += 6) {
      const int32_t u = int32_t(s[1]) - 128, v = int32_t(s[3]) - 128;
      const int32_t r = kRv * v, g = -kGu * u - kGv * v, b = kBu * u;
      const int32_t y0 = kY * (int32_t(s[0]) - 16), y1 = kY * (int32_t(s[2]) - 16);
      o[0] = clamp8(y0 + r);
      o[1] = clamp8(y0 + g);
      o[2] = clamp8(y0 + b);
      o[3] = clamp8(y1 + r);
      o[4] = clamp8(y1 + g);
      o[5] = clamp8(y1 + b);
    }
  }
}

}  // namespace minicnn::camera
