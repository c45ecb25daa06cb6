// Confusion matrix heat map: counts[i][j] = images of true class i predicted as class j, rows
// "true", columns "predicted". Each cell is coloured by its share of its row (so every class reads
// as its recall profile, whatever its size) and shows its count (white on dark cells; zeros light
// grey, left out above 20 classes); class names label both axes. Sizes follow the number of
// classes: 64-pixel cells up to 14 classes, shrinking to 12 pixels at 75..100 classes (beyond
// 100, 1200/n pixels, too small for names); column names rotate (45 or 90 degrees) when wider
// than a column; counts are left out when no legible font fits a cell.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "canvas.hpp"

namespace minicnn::plot {

namespace confusion_detail {

// A white-to-navy sequential scale (our own anchors), sampled at v in [0, 1].
inline Rgb heat_color(double v) {
  static const double kStops[][4] = {{0.00, 247, 250, 255}, {0.15, 214, 229, 244},
                                     {0.35, 158, 197, 226}, {0.55, 94, 157, 207},
                                     {0.75, 43, 110, 176},  {1.00, 12, 52, 112}};
  v = std::clamp(std::isfinite(v) ? v : 0.0, 0.0, 1.0);
  std::size_t k = 1;
  while (k + 1 < std::size(kStops) && v > kStops[k][0]) ++k;
  const double* a = kStops[k - 1];
  const double* b = kStops[k];
  const double t = (v - a[0]) / (b[0] - a[0]);
  return Rgb{(a[1] + t * (b[1] - a[1])) / 255, (a[2] + t * (b[2] - a[2])) / 255,
             (a[3] + t * (b[3] - a[3])) / 255};
}

inline constexpr std::size_t kMaxClasses = 1000;
inline constexpr double kMinTextPx = 6.5;  // below this, text is noise
inline constexpr double kMaxNamePx = 190;  // longer class names are ellipsised

inline std::vector<uint8_t> render_confusion(const std::vector<std::vector<int64_t>>& counts,
                                             const std::vector<std::string>& class_names,
                                             const std::string& title, const std::string& where) {
  const std::size_t n = counts.size();
  if (n < 1 || n > kMaxClasses)
    throw ConfigError(where + ": " + std::to_string(n) + " classes, expected 1.." +
                      std::to_string(kMaxClasses));
  if (class_names.size() != n)
    throw ConfigError(where + ": " + std::to_string(class_names.size()) + " class names for a " +
                      std::to_string(n) + "x" + std::to_string(n) + " matrix");
  std::vector<int64_t> row_sum(n, 0);
  int64_t max_count = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (counts[i].size() != n)
      throw ConfigError(where + ": row " + std::to_string(i) + " has " +
                        std::to_string(counts[i].size()) + " counts, expected " +
                        std::to_string(n));
    for (std::size_t j = 0; j < n; ++j) {
      if (counts[i][j] < 0)
        throw ConfigError(where + ": count [" + std::to_string(i) + "][" + std::to_string(j) +
                          "] is " + std::to_string(counts[i][j]) + ", expected >= 0");
      row_sum[i] += counts[i][j];
      max_count = std::max(max_count, counts[i][j]);
    }
  }

  // ---- layout: measured on a scratch canvas, then drawn on one of the final size ----
  const int cell = n <= 100 ? std::clamp(static_cast<int>(900 / n), 12, 64)
                            : std::max(4, static_cast<int>(1200 / n));
  double name_font = std::min(13.0, cell * 0.6);
  if (cell >= 12) name_font = std::max(name_font, 8.0);
  const bool names = name_font >= kMinTextPx;
  const double pad = 16, label_gap = 7;
  Canvas m(Format::png, 1, 1, where);
  std::vector<std::string> shown(n);
  std::vector<double> name_w(n, 0);
  double max_name_w = 0, name_h = 0;
  if (names) {
    m.set_font(name_font);
    name_h = m.line_height();
    for (std::size_t i = 0; i < n; ++i) {
      shown[i] = m.ellipsize(class_names[i], kMaxNamePx);
      name_w[i] = m.text_width(shown[i]);
      max_name_w = std::max(max_name_w, name_w[i]);
    }
  }
  // x labels: horizontal if they fit a column, else 45 degrees if neighbours stay apart, else 90
  const double cap = name_font * 0.73;
  int angle = 0;
  if (names && max_name_w > cell - 6) angle = cell * 0.7071 >= name_h * 1.05 ? 45 : 90;
  double xlab_h = 0;
  if (names) xlab_h = angle == 0 ? name_h : angle == 90 ? max_name_w : (max_name_w + cap) * 0.7071;
  m.set_font(13.5);
  const double axis_title_h = m.line_height();
  double title_h = 0, title_w = 0;
  if (!title.empty()) {
    m.set_font(17, true);
    title_h = m.line_height() + 12;
    title_w = m.text_width(title);
  }
  double count_font = std::min(13.0, cell * 0.42);
  if (max_count > 0) {
    m.set_font(count_font);
    const double w = m.text_width(std::to_string(max_count));
    if (w > cell - 4) count_font *= (cell - 4) / w;
  }
  const bool numbers = count_font >= kMinTextPx;

  double mx0 = pad + axis_title_h + label_gap + (names ? max_name_w + label_gap : 0);
  if (angle == 45)  // the rotated names run down and to the left of their column
    for (std::size_t j = 0; j < n; ++j)
      mx0 = std::max(mx0, pad + (name_w[j] + cap) * 0.7071 - (j + 0.5) * cell);
  const double my0 = pad + title_h;
  const double side = static_cast<double>(n) * cell;
  const double bar_x = mx0 + side + 20, bar_w = 16;
  m.set_font(11.5);
  const double bar_label_w = m.text_width("100%");
  double width = bar_x + bar_w + 6 + bar_label_w + 10 + axis_title_h + pad;
  width = std::max(width, std::min(title_w + 2 * pad, 1600.0));
  const double height = my0 + side + label_gap + xlab_h + label_gap + axis_title_h + pad;
  if (width > kMaxCanvasSide || height > kMaxCanvasSide)
    throw ConfigError(where + ": " + std::to_string(n) + " classes need a picture larger than " +
                      std::to_string(kMaxCanvasSide) + " pixels a side");

  Canvas c(Format::png, static_cast<int>(std::ceil(width)), static_cast<int>(std::ceil(height)),
           where);
  const Rgb text = rgb_hex(0x222222), frame = rgb_hex(0x888888);
  if (!title.empty()) {
    c.set_font(17, true);
    c.text(c.ellipsize(title, c.width() - 2 * pad), c.width() / 2.0, pad, HAlign::center,
           VAlign::top, text);
  }
  // cells
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      const double v = row_sum[i] > 0 ? double(counts[i][j]) / double(row_sum[i]) : 0.0;
      c.fill_rect(mx0 + j * cell, my0 + i * cell, cell, cell, heat_color(v));
    }
  if (cell >= 10)  // hairlines keep neighbouring cells of equal colour apart
    for (std::size_t k = 1; k < n; ++k) {
      const double p = std::round(k * double(cell)) + 0.5;
      c.line(mx0 + p, my0, mx0 + p, my0 + side, Rgb{1, 1, 1}, 1);
      c.line(mx0, my0 + p, mx0 + side, my0 + p, Rgb{1, 1, 1}, 1);
    }
  c.stroke_rect_crisp(mx0 - 1, my0 - 1, side + 2, side + 2, frame);
  if (numbers) {
    c.set_font(count_font);
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < n; ++j) {
        const int64_t k = counts[i][j];
        if (k == 0 && n > 20) continue;  // in a large matrix the zeros would drown the rest
        const double v = row_sum[i] > 0 ? double(k) / double(row_sum[i]) : 0.0;
        const Rgb ink = k == 0                           ? rgb_hex(0xA0A0A0)
                        : luminance(heat_color(v)) < 0.3 ? Rgb{1, 1, 1}
                                                         : text;
        c.text(std::to_string(k), mx0 + (j + 0.5) * cell, my0 + (i + 0.5) * cell, HAlign::center,
               VAlign::middle, ink);
      }
  }
  // class names
  if (names) {
    c.set_font(name_font);
    for (std::size_t i = 0; i < n; ++i)
      c.text(shown[i], mx0 - label_gap, my0 + (i + 0.5) * cell, HAlign::right, VAlign::middle,
             text);
    const double ly = my0 + side + label_gap;
    for (std::size_t j = 0; j < n; ++j) {
      const double lx = mx0 + (j + 0.5) * cell;
      if (angle == 0)
        c.text(shown[j], lx, ly, HAlign::center, VAlign::top, text);
      else if (angle == 90)
        c.text(shown[j], lx, ly, HAlign::right, VAlign::middle, text, -kPi / 2);
      else  // the end of the name sits under its column, a cap height right of the centre
        c.text(shown[j], lx + cap * 0.5, ly, HAlign::right, VAlign::top, text, -kPi / 4);
    }
  }
  // axis titles
  c.set_font(13.5, true);
  c.text("predicted", mx0 + side / 2, my0 + side + label_gap + xlab_h + label_gap, HAlign::center,
         VAlign::top, text);
  c.text("true", pad, my0 + side / 2, HAlign::center, VAlign::top, text, -kPi / 2);
  // colour bar: share of the true class
  cairo_pattern_t* grad = cairo_pattern_create_linear(0, my0 + side, 0, my0);
  for (int k = 0; k <= 20; ++k) {
    const Rgb col = heat_color(k / 20.0);
    cairo_pattern_add_color_stop_rgb(grad, k / 20.0, col.r, col.g, col.b);
  }
  cairo_rectangle(c.cr(), bar_x, my0, bar_w, side);
  cairo_set_source(c.cr(), grad);
  cairo_fill(c.cr());
  cairo_pattern_destroy(grad);
  c.stroke_rect_crisp(bar_x - 1, my0 - 1, bar_w + 2, side + 2, frame);
  c.set_font(11.5);
  const int bar_ticks = side >= 150 ? 4 : 1;
  for (int k = 0; k <= bar_ticks; ++k) {
    const double y = std::round(my0 + side - side * k / bar_ticks) + 0.5;
    c.line(bar_x + bar_w, y, bar_x + bar_w + 4, y, frame, 1);
    c.text(std::to_string(100 * k / bar_ticks) + "%", bar_x + bar_w + 6, y, HAlign::left,
           VAlign::middle, text);
  }
  c.set_font(12.5);
  c.text("share of the true class", bar_x + bar_w + 6 + bar_label_w + 10, my0 + side / 2,
         HAlign::center, VAlign::bottom, text, kPi / 2);
  return c.finish();
}

}  // namespace confusion_detail

// The picture as PNG bytes (for inlining in the report).
inline std::vector<uint8_t> render_confusion_matrix_png(
    const std::vector<std::vector<int64_t>>& counts, const std::vector<std::string>& class_names,
    const std::string& title = "") {
  return confusion_detail::render_confusion(counts, class_names, title,
                                            "render_confusion_matrix_png");
}

inline void write_confusion_matrix_png(const std::vector<std::vector<int64_t>>& counts,
                                       const std::vector<std::string>& class_names,
                                       const std::string& path, const std::string& title = "") {
  write_bytes(path, confusion_detail::render_confusion(
                        counts, class_names, title, "write_confusion_matrix_png '" + path + "'"));
}

}  // namespace minicnn::plot
