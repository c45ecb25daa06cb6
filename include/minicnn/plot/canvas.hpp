// A drawing surface for minicnn's pictures: owns a cairo PNG (image) or SVG (vector) surface and
// its context, draws anti-aliased text in "DejaVu Sans" through cairo's text API, and turns the
// finished drawing into the bytes of a PNG or SVG file (write_bytes() writes them atomically).
//
// Conventions: pixels, origin top-left, y down; colours are 0..1 RGB on an opaque white
// background. Every string is passed through utf8_printable() first, because file and folder
// names need not be valid UTF-8 and cairo refuses invalid UTF-8 by failing the whole context.
#pragma once
#include <cairo-svg.h>
#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../io/format.hpp"
#include "cairo_util.hpp"
#include "png.hpp"
#include "utf8.hpp"

namespace minicnn::plot {

struct Rgb {
  double r = 0, g = 0, b = 0;
};
inline constexpr Rgb rgb_hex(uint32_t v) {
  return Rgb{((v >> 16) & 255) / 255.0, ((v >> 8) & 255) / 255.0, (v & 255) / 255.0};
}
// WCAG relative luminance (0 black .. 1 white), to pick readable text on a coloured fill.
inline double luminance(Rgb c) {
  auto lin = [](double u) { return u <= 0.04045 ? u / 12.92 : std::pow((u + 0.055) / 1.055, 2.4); };
  return 0.2126 * lin(c.r) + 0.7152 * lin(c.g) + 0.0722 * lin(c.b);
}

enum class Format { png, svg };
enum class HAlign { left, center, right };
// top/bottom: the font's ascent/descent box; middle: centred on the height of capitals and digits.
enum class VAlign { top, middle, baseline, bottom };

// Larger pictures are almost certainly a caller's mistake (and 1 GiB of pixels).
inline constexpr int kMaxCanvasSide = 16384;
inline constexpr const char* kFontFamily = "DejaVu Sans";
inline constexpr double kPi = 3.14159265358979323846;  // M_PI is POSIX, not C++

class Canvas {
 public:
  // `where` names the operation and file for messages, e.g. "write_curves_png 'a/b.png'".
  Canvas(Format format, int width, int height, std::string where)
      : format_(format), width_(width), height_(height), where_(std::move(where)) {
    if (width < 1 || height < 1 || width > kMaxCanvasSide || height > kMaxCanvasSide)
      throw ConfigError(where_ + ": picture size " + std::to_string(width) + "x" +
                        std::to_string(height) + " is outside 1.." +
                        std::to_string(kMaxCanvasSide) + " pixels a side");
    if (format == Format::png) {
      surface_.reset(cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height));
    } else {
      svg_ = std::make_unique<std::vector<uint8_t>>();
      surface_.reset(
          cairo_svg_surface_create_for_stream(append_to_vector, svg_.get(), width, height));
      // Width and height in CSS pixels, like the PNG, instead of points.
      if (cairo_surface_status(surface_.get()) == CAIRO_STATUS_SUCCESS)
        cairo_svg_surface_set_document_unit(surface_.get(), CAIRO_SVG_UNIT_PX);
    }
    check_cairo(cairo_surface_status(surface_.get()), where_, "creating the surface");
    cr_.reset(cairo_create(surface_.get()));
    check_cairo(cairo_status(cr_.get()), where_, "creating the context");
    cairo_font_options_t* fo = cairo_font_options_create();
    cairo_font_options_set_antialias(fo, CAIRO_ANTIALIAS_GRAY);
    // Unhinted metrics: a string measures the same at every position and in PNG and SVG.
    cairo_font_options_set_hint_metrics(fo, CAIRO_HINT_METRICS_OFF);
    cairo_set_font_options(cr_.get(), fo);
    cairo_font_options_destroy(fo);
    cairo_set_line_join(cr_.get(), CAIRO_LINE_JOIN_ROUND);
    cairo_set_line_cap(cr_.get(), CAIRO_LINE_CAP_BUTT);
    fill_rect(0, 0, width, height, Rgb{1, 1, 1});
    set_font(13);
  }
  Canvas(const Canvas&) = delete;
  Canvas& operator=(const Canvas&) = delete;

  cairo_t* cr() const { return cr_.get(); }
  int width() const { return width_; }
  int height() const { return height_; }
  const std::string& where() const { return where_; }

  void set_color(Rgb c, double alpha = 1.0) {
    if (alpha >= 1.0)
      cairo_set_source_rgb(cr(), c.r, c.g, c.b);
    else
      cairo_set_source_rgba(cr(), c.r, c.g, c.b, alpha);
  }
  void fill_rect(double x, double y, double w, double h, Rgb c, double alpha = 1.0) {
    set_color(c, alpha);
    cairo_rectangle(cr(), x, y, w, h);
    cairo_fill(cr());
  }
  // A 1-pixel outline on pixel centres, so it stays sharp in the PNG.
  void stroke_rect_crisp(double x, double y, double w, double h, Rgb c) {
    set_color(c);
    cairo_set_line_width(cr(), 1.0);
    cairo_rectangle(cr(), std::round(x) + 0.5, std::round(y) + 0.5, std::round(w) - 1,
                    std::round(h) - 1);
    cairo_stroke(cr());
  }
  // dash > 0: dashes of `dash` pixels with gaps of 0.8 * dash.
  void line(double x0, double y0, double x1, double y1, Rgb c, double width, double dash = 0) {
    set_color(c);
    cairo_set_line_width(cr(), width);
    if (dash > 0) {
      const double pattern[2] = {dash, 0.8 * dash};
      cairo_set_dash(cr(), pattern, 2, 0);
    }
    cairo_move_to(cr(), x0, y0);
    cairo_line_to(cr(), x1, y1);
    cairo_stroke(cr());
    cairo_set_dash(cr(), nullptr, 0, 0);
  }
  void circle(double x, double y, double r, Rgb fill, double outline = 0,
              Rgb outline_color = Rgb{1, 1, 1}) {
    cairo_new_sub_path(cr());
    cairo_arc(cr(), x, y, r, 0, 2 * kPi);
    set_color(fill);
    if (outline > 0) {
      cairo_fill_preserve(cr());
      set_color(outline_color);
      cairo_set_line_width(cr(), outline);
      cairo_stroke(cr());
    } else {
      cairo_fill(cr());
    }
  }

  // ---- text ----
  void set_font(double px, bool bold = false) {
    cairo_select_font_face(cr(), kFontFamily, CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr(), px);
    cairo_font_extents_t fe;
    cairo_font_extents(cr(), &fe);
    ascent_ = fe.ascent;
    descent_ = fe.descent;
    cairo_text_extents_t te;
    cairo_text_extents(cr(), "H0", &te);
    cap_height_ = -te.y_bearing;
  }
  double ascent() const { return ascent_; }
  double descent() const { return descent_; }
  double cap_height() const { return cap_height_; }
  double line_height() const { return ascent_ + descent_; }

  // Advance width of the string in the current font.
  double text_width(const std::string& s) { return raw_width(utf8_printable(s)); }

  // The string, or its longest prefix followed by "…" that fits in max_width pixels.
  std::string ellipsize(const std::string& text, double max_width) {
    const std::string s = utf8_printable(text);
    if (raw_width(s) <= max_width) return s;
    static const std::string kDots = "\xE2\x80\xA6";  // U+2026
    std::vector<std::size_t> cuts;  // code point boundaries after the first code point
    for (std::size_t i = 1; i < s.size(); ++i)
      if ((static_cast<uint8_t>(s[i]) & 0xC0) != 0x80) cuts.push_back(i);
    // Longest prefix (cut index) whose width with the ellipsis fits; widths grow with length.
    std::size_t lo = 0, hi = cuts.size();  // answer in [lo, hi): candidates cuts[0..hi)
    while (lo < hi) {
      const std::size_t mid = (lo + hi + 1) / 2;  // try the prefix ending at cuts[mid - 1]
      if (raw_width(s.substr(0, cuts[mid - 1]) + kDots) <= max_width)
        lo = mid;
      else
        hi = mid - 1;
    }
    if (lo > 0) return s.substr(0, cuts[lo - 1]) + kDots;
    return raw_width(kDots) <= max_width ? kDots : std::string();
  }

  // Draws the string anchored at (x, y) with the given alignment; `angle` (radians, clockwise
  // as y points down) rotates the text about the anchor, the alignment applying along the text.
  void text(const std::string& text, double x, double y, HAlign h, VAlign v, Rgb c,
            double angle = 0) {
    const std::string s = utf8_printable(text);
    if (s.empty()) return;
    const double w = raw_width(s);
    double dx = h == HAlign::left ? 0 : h == HAlign::center ? -w / 2 : -w;
    double dy = 0;
    switch (v) {
      case VAlign::top: dy = ascent_; break;
      case VAlign::middle: dy = cap_height_ / 2; break;
      case VAlign::baseline: dy = 0; break;
      case VAlign::bottom: dy = -descent_; break;
    }
    set_color(c);
    cairo_save(cr());
    cairo_translate(cr(), x, y);
    if (angle != 0) cairo_rotate(cr(), angle);
    cairo_move_to(cr(), dx, dy);
    cairo_show_text(cr(), s.c_str());
    cairo_new_path(cr());
    cairo_restore(cr());
  }

  // ---- output ----
  // The whole picture as PNG or SVG bytes; the canvas cannot be drawn on afterwards.
  std::vector<uint8_t> finish() {
    check_cairo(cairo_status(cr()), where_, "drawing");
    if (format_ == Format::png) return surface_png_bytes(surface_.get(), where_);
    cr_.reset();
    cairo_surface_finish(surface_.get());
    check_cairo(cairo_surface_status(surface_.get()), where_, "writing SVG");
    return std::move(*svg_);
  }

 private:
  double raw_width(const std::string& printable) {
    cairo_text_extents_t te;
    cairo_text_extents(cr(), printable.c_str(), &te);
    return te.x_advance;
  }

  Format format_;
  int width_, height_;
  std::string where_;
  std::unique_ptr<std::vector<uint8_t>> svg_;  // the SVG stream's target; outlives surface_
  SurfacePtr surface_;
  ContextPtr cr_;
  double ascent_ = 0, descent_ = 0, cap_height_ = 0;
};

// Atomic (temporary file + rename): a reader never sees half a picture.
inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  write_file_atomic(path, reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

}  // namespace minicnn::plot
