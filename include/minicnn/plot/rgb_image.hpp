// The picture type the drawing layer takes: 8-bit RGB, row-major HWC, no padding (the layout of
// minicnn::Image and of a decoded file), kept separate so the charts need no training code.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/error.hpp"

namespace minicnn::plot {

struct RgbImage {
  int width = 0, height = 0;
  std::vector<uint8_t> pixels;  // height * width * 3
};

// Cairo's image surfaces stop at 32767 pixels a side.
inline constexpr int kMaxImageSide = 32767;

// Throws ConfigError (prefixed with `where`) unless the image is non-empty, within cairo's size
// limit, and holds exactly width * height * 3 bytes.
inline void check_image(const RgbImage& img, const std::string& where) {
  if (img.width <= 0 || img.height <= 0 || img.width > kMaxImageSide || img.height > kMaxImageSide)
    throw ConfigError(where + ": image is " + std::to_string(img.width) + "x" +
                      std::to_string(img.height) + ", expected 1.." +
                      std::to_string(kMaxImageSide) + " pixels a side");
  const std::size_t want = static_cast<std::size_t>(img.width) * img.height * 3;
  if (img.pixels.size() != want)
    throw ConfigError(where + ": image " + std::to_string(img.width) + "x" +
                      std::to_string(img.height) + " needs " + std::to_string(want) +
                      " RGB bytes, found " + std::to_string(img.pixels.size()));
}

}  // namespace minicnn::plot
