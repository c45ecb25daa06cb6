// Small cairo plumbing shared by the drawing headers: owning handles, the status check that turns
// a cairo failure into a minicnn error naming the file, the stream callback that collects PNG or
// SVG bytes in memory (files are then written atomically), and RgbImage -> cairo image surface.
#pragma once
#include <cairo.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "rgb_image.hpp"

namespace minicnn::plot {

struct SurfaceDeleter {
  void operator()(cairo_surface_t* s) const { cairo_surface_destroy(s); }
};
struct ContextDeleter {
  void operator()(cairo_t* c) const { cairo_destroy(c); }
};
using SurfacePtr = std::unique_ptr<cairo_surface_t, SurfaceDeleter>;
using ContextPtr = std::unique_ptr<cairo_t, ContextDeleter>;

// `where` names the operation and the file, e.g. "write_curves_png 'out/curves.png'".
inline void check_cairo(cairo_status_t st, const std::string& where, const char* step) {
  if (st == CAIRO_STATUS_SUCCESS) return;
  if (st == CAIRO_STATUS_INVALID_SIZE)
    throw ConfigError(where + ": " + step + ": cairo refused the size (" +
                      cairo_status_to_string(st) + ")");
  throw IoError(where + ": " + step + ": cairo failed: " + cairo_status_to_string(st));
}

// cairo_write_func_t appending to a std::vector<uint8_t> given as the closure.
inline cairo_status_t append_to_vector(void* closure, const unsigned char* data, unsigned int n) {
  auto* out = static_cast<std::vector<uint8_t>*>(closure);
  try {
    out->insert(out->end(), data, data + n);
  } catch (...) {
    return CAIRO_STATUS_NO_MEMORY;
  }
  return CAIRO_STATUS_SUCCESS;
}

// A CAIRO_FORMAT_RGB24 copy of the image (cairo stores each pixel as a native-endian 32-bit
// 0x00RRGGBB word).
inline SurfacePtr image_surface(const RgbImage& img, const std::string& where) {
  check_image(img, where);
  SurfacePtr s(cairo_image_surface_create(CAIRO_FORMAT_RGB24, img.width, img.height));
  check_cairo(cairo_surface_status(s.get()), where, "creating an image surface");
  cairo_surface_flush(s.get());
  unsigned char* base = cairo_image_surface_get_data(s.get());
  const int stride = cairo_image_surface_get_stride(s.get());
  for (int y = 0; y < img.height; ++y) {
    const uint8_t* src = img.pixels.data() + static_cast<std::size_t>(y) * img.width * 3;
    unsigned char* row = base + static_cast<std::size_t>(y) * stride;
    for (int x = 0; x < img.width; ++x, src += 3) {
      const uint32_t v = (uint32_t(src[0]) << 16) | (uint32_t(src[1]) << 8) | src[2];
      std::memcpy(row + 4 * x, &v, 4);
    }
  }
  cairo_surface_mark_dirty(s.get());
  return s;
}

}  // namespace minicnn::plot
