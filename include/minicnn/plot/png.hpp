// PNG encoding through cairo (libpng underneath): a cairo image surface or an RgbImage to the
// bytes of a PNG file, in memory, for thumbnails inlined in HTML and for files written atomically.
#pragma once
#include <cairo.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cairo_util.hpp"
#include "rgb_image.hpp"

namespace minicnn::plot {

inline std::vector<uint8_t> surface_png_bytes(cairo_surface_t* s, const std::string& where) {
  check_cairo(cairo_surface_status(s), where, "drawing");
  cairo_surface_flush(s);
  std::vector<uint8_t> out;
  check_cairo(cairo_surface_write_to_png_stream(s, append_to_vector, &out), where, "encoding PNG");
  return out;
}

// An 8-bit RGB PNG (no alpha) with exactly the image's pixels.
inline std::vector<uint8_t> encode_png(const RgbImage& img) {
  SurfacePtr s = image_surface(img, "encode_png");
  return surface_png_bytes(s.get(), "encode_png");
}

}  // namespace minicnn::plot
