// Frame geometry shared by decoding and classification: the centre crop of a frame to the
// network's aspect ratio (the largest centred box of that ratio, so a 640x480 frame feeds a
// square network its middle 480x480) and the JPEG decode scale (1/1, 1/2, 1/4 or 1/8) that is
// the smallest still covering the network input after that crop, so a 96x96 network reads a
// 640x480 MJPEG frame at 1/4 (160x120, crop 120x120) and never upsamples.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>

#include "../core/error.hpp"

namespace minicnn::camera {

struct CropBox {
  int x = 0, y = 0, width = 0, height = 0;
  bool operator==(const CropBox& o) const {
    return x == o.x && y == o.y && width == o.width && height == o.height;
  }
};

// The largest box of aspect ratio target_w : target_h centred in a width x height frame.
// Odd leftovers go to the right / bottom (the box starts at floor(leftover / 2)).
inline CropBox center_crop_box(int width, int height, int target_w, int target_h) {
  if (width < 1 || height < 1 || target_w < 1 || target_h < 1)
    throw ShapeError("center crop: frame " + std::to_string(width) + "x" + std::to_string(height) +
                     " and target " + std::to_string(target_w) + "x" + std::to_string(target_h) +
                     " must be positive");
  CropBox b;
  // Compare width/height with target_w/target_h in integers: no rounding ties.
  if (int64_t(width) * target_h > int64_t(height) * target_w) {
    b.height = height;
    b.width = std::max<int>(1, static_cast<int>(int64_t(height) * target_w / target_h));
  } else {
    b.width = width;
    b.height = std::max<int>(1, static_cast<int>(int64_t(width) * target_h / target_w));
  }
  b.x = (width - b.width) / 2;
  b.y = (height - b.height) / 2;
  return b;
}

// libjpeg-turbo's size for a 1/denom scaled decode: ceil(size / denom).
inline int scaled_size(int size, int denom) {
  return (size + denom - 1) / denom;
}

// The largest denominator in {8, 4, 2} whose scaled frame still holds a centre crop of at least
// need_w x need_h; 1 when none does (or when need is 0: full size wanted).
inline int choose_decode_scale(int width, int height, int need_w, int need_h) {
  if (need_w <= 0 || need_h <= 0) return 1;
  for (int denom : {8, 4, 2}) {
    const int sw = scaled_size(width, denom), sh = scaled_size(height, denom);
    const CropBox c = center_crop_box(sw, sh, need_w, need_h);
    if (c.width >= need_w && c.height >= need_h) return denom;
  }
  return 1;
}

}  // namespace minicnn::camera
