// A grid of pictures with a caption under each: the notebook's "training image examples" (e.g.
// augmented training images with their class names). Each image is scaled, keeping its aspect
// ratio, to fit a square cell: nearest neighbour when enlarged (96 px -> 160 px keeps the pixels
// sharp and honest), cairo's "good" filter when reduced. Captions are centred and ellipsised to
// the cell width.
#pragma once
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "cairo_util.hpp"
#include "canvas.hpp"
#include "rgb_image.hpp"

namespace minicnn::plot {

struct GridItem {
  RgbImage image;
  std::string caption;
};

namespace grid_detail {

struct GridLayout {
  int margin, gap, caption_h, title_h, columns, rows, width, height;
  double caption_font;
};

inline GridLayout grid_layout(std::size_t n, int columns, int cell, bool has_title) {
  GridLayout g{};
  g.margin = 12, g.gap = 10;
  g.caption_font = std::clamp(cell * 0.085, 9.0, 13.0);
  g.caption_h = static_cast<int>(std::ceil(g.caption_font * 1.9));
  g.title_h = has_title ? 34 : 0;
  g.columns = static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(columns), n));
  g.rows = static_cast<int>((n + columns - 1) / columns);
  g.width = 2 * g.margin + g.columns * cell + (g.columns - 1) * g.gap;
  g.height = 2 * g.margin + g.title_h + g.rows * (cell + g.caption_h) + (g.rows - 1) * g.gap;
  return g;
}

inline std::vector<uint8_t> render_grid(const std::vector<GridItem>& items, int columns, int cell,
                                        const std::string& title, const std::string& where) {
  if (items.empty()) throw ConfigError(where + ": no images to draw");
  if (columns < 1)
    throw ConfigError(where + ": columns is " + std::to_string(columns) + ", expected >= 1");
  if (cell < 16 || cell > 4096)
    throw ConfigError(where + ": cell size is " + std::to_string(cell) +
                      ", expected 16..4096 pixels");
  for (std::size_t i = 0; i < items.size(); ++i)
    check_image(items[i].image, where + ": item " + std::to_string(i));
  const GridLayout g = grid_layout(items.size(), columns, cell, !title.empty());
  if (g.width > kMaxCanvasSide || g.height > kMaxCanvasSide)
    throw ConfigError(where + ": " + std::to_string(items.size()) + " images in " +
                      std::to_string(columns) + " columns of " + std::to_string(cell) +
                      " px make a " + std::to_string(g.width) + "x" + std::to_string(g.height) +
                      " picture, more than " + std::to_string(kMaxCanvasSide) + " a side");
  Canvas c(Format::png, g.width, g.height, where);
  const Rgb text = rgb_hex(0x222222);
  if (!title.empty()) {
    c.set_font(17, true);
    c.text(c.ellipsize(title, g.width - 2 * g.margin), g.width / 2.0, g.margin, HAlign::center,
           VAlign::top, text);
  }
  c.set_font(g.caption_font);
  for (std::size_t i = 0; i < items.size(); ++i) {
    const int col = static_cast<int>(i % columns), row = static_cast<int>(i / columns);
    const double x = g.margin + col * (cell + g.gap);
    const double y = g.margin + g.title_h + row * (cell + g.caption_h + g.gap);
    const RgbImage& img = items[i].image;
    c.fill_rect(x, y, cell, cell, rgb_hex(0xF2F2F2));
    const double k = std::min(double(cell) / img.width, double(cell) / img.height);
    // Whole pixels on screen, so nearest-neighbour blocks line up and the image stays centred.
    const double dw = std::max(1.0, std::round(img.width * k));
    const double dh = std::max(1.0, std::round(img.height * k));
    const double ox = x + std::floor((cell - dw) / 2), oy = y + std::floor((cell - dh) / 2);
    SurfacePtr src = image_surface(img, where + ": item " + std::to_string(i));
    cairo_t* cr = c.cr();
    cairo_save(cr);
    cairo_rectangle(cr, ox, oy, dw, dh);
    cairo_clip(cr);
    cairo_translate(cr, ox, oy);
    cairo_scale(cr, dw / img.width, dh / img.height);
    cairo_set_source_surface(cr, src.get(), 0, 0);
    cairo_pattern_set_filter(cairo_get_source(cr),
                             k >= 1 ? CAIRO_FILTER_NEAREST : CAIRO_FILTER_GOOD);
    // Edge pixels repeat outwards instead of fading into transparency at the border.
    cairo_pattern_set_extend(cairo_get_source(cr), CAIRO_EXTEND_PAD);
    cairo_paint(cr);
    cairo_restore(cr);
    c.stroke_rect_crisp(x - 1, y - 1, cell + 2, cell + 2, rgb_hex(0xCCCCCC));  // outside the cell
    c.text(c.ellipsize(items[i].caption, cell - 4), x + cell / 2.0, y + cell + g.caption_h / 2.0,
           HAlign::center, VAlign::middle, text);
  }
  return c.finish();
}

}  // namespace grid_detail

// The picture as PNG bytes (for inlining in the report).
inline std::vector<uint8_t> render_image_grid_png(const std::vector<GridItem>& items, int columns,
                                                  int cell = 160, const std::string& title = "") {
  return grid_detail::render_grid(items, columns, cell, title, "render_image_grid_png");
}

inline void write_image_grid_png(const std::vector<GridItem>& items, int columns,
                                 const std::string& path, int cell = 160,
                                 const std::string& title = "") {
  write_bytes(path, grid_detail::render_grid(items, columns, cell, title,
                                             "write_image_grid_png '" + path + "'"));
}

}  // namespace minicnn::plot
