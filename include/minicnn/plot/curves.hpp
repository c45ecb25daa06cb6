// The training curves of a run, the two plots of the Keras transfer-learning notebook side by
// side: accuracy (left) and loss (right), training and validation, against the epoch.
//
// Conventions: element i of every series is epoch i + 1 (the x axis shows 1..E); best_epoch is a
// 0-based index (-1: none) and is labelled 1-based ("best epoch 12" for index 11); an empty
// series is left out (legend included); NaN or infinite values leave a gap in the line.
#pragma once
#include <algorithm>
#include <cctype>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "axes.hpp"
#include "canvas.hpp"

namespace minicnn::plot {

struct Curves {
  std::vector<double> accuracy, val_accuracy, loss, val_loss;
  int best_epoch = -1;  // 0-based index into the series, -1 for none
  std::string title;
};

namespace curves_detail {

inline constexpr Rgb kTrainColor = rgb_hex(0x1F6FB4);
inline constexpr Rgb kValColor = rgb_hex(0xE8710A);
inline constexpr Rgb kTextColor = rgb_hex(0x222222);

struct Panel {
  const std::vector<double>* train;
  const std::vector<double>* val;
  const char* quantity;          // "accuracy" or "loss"
  bool unit_interval;            // keep the axis inside [0, 1] when the data are
  std::vector<int> legend_pref;  // place_box() preference
};

// Pixel positions every few pixels along the drawn polyline (for legend placement).
inline void sample_line(const std::vector<std::pair<double, double>>& pts,
                        std::vector<std::pair<double, double>>& out) {
  for (std::size_t i = 0; i + 1 < pts.size(); ++i) {
    const double dx = pts[i + 1].first - pts[i].first, dy = pts[i + 1].second - pts[i].second;
    const int n = std::max(1, static_cast<int>(std::hypot(dx, dy) / 3));
    for (int k = 0; k < n; ++k)
      out.emplace_back(pts[i].first + dx * k / n, pts[i].second + dy * k / n);
  }
  if (!pts.empty()) out.push_back(pts.back());
}

inline void draw_panel(Canvas& c, const Panel& p, const Curves& cv, int epochs, double px0,
                       double px1, double top, double s) {
  const double pad = 14 * s;
  AxesStyle st;
  st.tick_font = 12.5 * s, st.title_font = 13.5 * s, st.tick_len = 5 * s, st.gap = 4 * s;
  st.line = std::max(1.0, s);

  const bool has_train = !p.train->empty(), has_val = !p.val->empty();
  std::string heading = p.quantity;
  if (has_train && has_val)
    heading = std::string("training and validation ") + p.quantity;
  else if (has_train)
    heading = std::string("training ") + p.quantity;
  else if (has_val)
    heading = std::string("validation ") + p.quantity;
  heading[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(heading[0])));
  c.set_font(15 * s, true);
  c.text(c.ellipsize(heading, px1 - px0 - 2 * pad), (px0 + px1) / 2, top, HAlign::center,
         VAlign::top, kTextColor);

  Box a;
  a.y0 = top + c.line_height() + 10 * s;
  a.y1 = c.height() - pad - x_axis_room(c, st);

  // y range over the finite values of both series
  double mn = INFINITY, mx = -INFINITY;
  for (const auto* series : {p.train, p.val})
    for (double v : *series)
      if (std::isfinite(v)) mn = std::min(mn, v), mx = std::max(mx, v);
  const bool any = mn <= mx;
  const int target = std::clamp(static_cast<int>(std::lround((a.y1 - a.y0) / (48 * s))), 3, 8);
  TickRange yr = any ? nice_range(mn, mx, target) : TickRange{0, 1, 0.2};
  // Losses and accuracies are never negative, accuracies never above 1: no axis room there.
  if (any && mn >= 0) yr.lo = std::max(yr.lo, 0.0);
  if (p.unit_interval && any && mx <= 1) yr.hi = std::min(yr.hi, 1.0);
  std::vector<Tick> yticks;
  for (double v : tick_values(yr)) yticks.push_back({v, format_tick(v, yr.step)});

  a.x0 = px0 + pad + y_axis_room(c, yticks, st);
  a.x1 = px1 - pad;
  if (a.width() < 40 || a.height() < 40)
    throw ConfigError(c.where() + ": picture too small for the curves (plot area " +
                      std::to_string(static_cast<int>(a.width())) + "x" +
                      std::to_string(static_cast<int>(a.height())) + " pixels)");

  const int last = std::max(epochs, 1);
  const double xpad = std::max(0.4, 0.03 * (last - 1));
  const LinearScale xs{1 - xpad, last + xpad, a.x0, a.x1};
  const LinearScale ys{yr.lo, yr.hi, a.y1, a.y0};
  c.set_font(st.tick_font);
  const double label_w = c.text_width(std::to_string(last));
  const int step = integer_tick_step(last, (a.x1 - a.x0) / (xs.d1 - xs.d0), label_w + 14 * s);
  std::vector<Tick> xticks;
  for (int e : integer_ticks(last, step)) xticks.push_back({double(e), std::to_string(e)});
  draw_axes(c, a, xs, xticks, ys, yticks, "epoch", p.quantity, st);

  // the lines, broken at non-finite values; a point with no finite neighbour becomes a dot
  std::vector<std::pair<double, double>> occupied;  // pixels the legend should not cover
  const bool markers = epochs <= 60;
  const double lw = 2.2 * s, mr = 2.6 * s;
  for (const auto& [series, color] :
       {std::pair{p.train, kTrainColor}, std::pair{p.val, kValColor}}) {
    const auto& v = *series;
    std::vector<std::pair<double, double>> run;
    auto flush = [&] {
      if (run.size() == 1) {
        c.circle(run[0].first, run[0].second, std::max(mr, lw), color);
      } else if (run.size() > 1) {
        cairo_move_to(c.cr(), run[0].first, run[0].second);
        for (std::size_t i = 1; i < run.size(); ++i)
          cairo_line_to(c.cr(), run[i].first, run[i].second);
        c.set_color(color);
        cairo_set_line_width(c.cr(), lw);
        cairo_stroke(c.cr());
      }
      sample_line(run, occupied);
      run.clear();
    };
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (std::isfinite(v[i]))
        run.emplace_back(xs(double(i + 1)), ys(v[i]));
      else
        flush();
    }
    flush();
    if (markers)
      for (std::size_t i = 0; i < v.size(); ++i)
        if (std::isfinite(v[i])) c.circle(xs(double(i + 1)), ys(v[i]), mr, color);
  }

  std::vector<Box> avoid;
  if (cv.best_epoch >= 0) {
    const double bx = xs(cv.best_epoch + 1.0);
    c.line(bx, a.y0 + 1, bx, a.y1 - 1, rgb_hex(0x666666), 1.2 * s, 5 * s);
    const std::size_t b = static_cast<std::size_t>(cv.best_epoch);
    const std::vector<double>* on = nullptr;
    if (b < p.val->size() && std::isfinite((*p.val)[b]))
      on = p.val;
    else if (b < p.train->size() && std::isfinite((*p.train)[b]))
      on = p.train;
    if (on) {
      const double by = ys((*on)[b]);
      c.circle(bx, by, 5.5 * s, on == p.val ? kValColor : kTrainColor, 2 * s);
      occupied.emplace_back(bx, by);
    }
    // the label next to the line, at the top or the bottom, whichever hides less of the curves
    c.set_font(12 * s);
    const std::string label = "best epoch " + std::to_string(cv.best_epoch + 1);
    const double w = c.text_width(label) + 8 * s, h = c.line_height() + 4 * s;
    double lx = bx + 5 * s;
    if (lx + w > a.x1 - 3 * s) lx = bx - 5 * s - w;
    lx = std::max(lx, a.x0 + 2 * s);
    Box best_box;
    double best_cost = INFINITY;
    for (double ly : {a.y0 + 5 * s, a.y1 - 5 * s - h}) {
      const Box bb{lx, ly, lx + w, ly + h};
      double cost = 0;
      for (const auto& q : occupied) cost += bb.contains(q.first, q.second) ? 1 : 0;
      if (cost < best_cost) best_cost = cost, best_box = bb;
    }
    c.fill_rect(best_box.x0, best_box.y0, w, h, Rgb{1, 1, 1}, 0.85);
    c.text(label, best_box.x0 + 4 * s, (best_box.y0 + best_box.y1) / 2, HAlign::left,
           VAlign::middle, rgb_hex(0x333333));
    avoid.push_back(best_box);
  }

  std::vector<LegendEntry> entries;
  if (has_train) entries.push_back({"training", kTrainColor, markers});
  if (has_val) entries.push_back({"validation", kValColor, markers});
  LegendStyle ls;
  ls.font = 12.5 * s, ls.pad = 7 * s, ls.swatch = 26 * s, ls.gap = 7 * s, ls.line = lw,
  ls.marker = mr;
  if (!entries.empty()) {
    const Box size = legend_size(c, entries, ls);
    const auto [lx, ly] = place_box(a, size.x1, size.y1, 8 * s, occupied, avoid, p.legend_pref);
    draw_legend(c, entries, lx, ly, ls);
  } else {
    c.set_font(14 * s);
    c.text("no data", (a.x0 + a.x1) / 2, (a.y0 + a.y1) / 2, HAlign::center, VAlign::middle,
           rgb_hex(0x888888));
  }
}

inline void draw_curves(Canvas& c, const Curves& cv) {
  if (c.width() < 300 || c.height() < 200)
    throw ConfigError(c.where() + ": curves need at least 300x200 pixels, asked for " +
                      std::to_string(c.width()) + "x" + std::to_string(c.height()));
  const std::size_t epochs = std::max(std::max(cv.accuracy.size(), cv.val_accuracy.size()),
                                      std::max(cv.loss.size(), cv.val_loss.size()));
  if (cv.best_epoch < -1 ||
      (cv.best_epoch >= 0 && static_cast<std::size_t>(cv.best_epoch) >= epochs))
    throw ConfigError(c.where() + ": best_epoch " + std::to_string(cv.best_epoch) +
                      " is outside the " + std::to_string(epochs) +
                      " epochs of the curves (expected -1 or 0.." +
                      std::to_string(static_cast<long>(epochs) - 1) + ")");
  // Text and lines grow with the picture, so a 2400x900 picture looks like a sharper 1200x450.
  const double s = std::clamp(std::min(c.width() / 1200.0, c.height() / 450.0), 0.75, 2.5);
  double top = 12 * s;
  if (!cv.title.empty()) {
    c.set_font(18 * s, true);
    c.text(c.ellipsize(cv.title, c.width() - 28 * s), c.width() / 2.0, top, HAlign::center,
           VAlign::top, kTextColor);
    top += c.line_height() + 8 * s;
  }
  const double half = c.width() / 2.0;
  const int n = static_cast<int>(epochs);
  draw_panel(c, {&cv.accuracy, &cv.val_accuracy, "accuracy", true, {1, 4, 0, 3, 2, 5}}, cv, n, 0,
             half, top, s);
  draw_panel(c, {&cv.loss, &cv.val_loss, "loss", false, {0, 4, 1, 2, 3, 5}}, cv, n, half, c.width(),
             top, s);
}

}  // namespace curves_detail

// The picture as PNG or SVG bytes (for inlining in the report).
inline std::vector<uint8_t> render_curves_png(const Curves& cv, int width = 1200,
                                              int height = 450) {
  Canvas c(Format::png, width, height, "render_curves_png");
  curves_detail::draw_curves(c, cv);
  return c.finish();
}
inline std::vector<uint8_t> render_curves_svg(const Curves& cv, int width = 1200,
                                              int height = 450) {
  Canvas c(Format::svg, width, height, "render_curves_svg");
  curves_detail::draw_curves(c, cv);
  return c.finish();
}

inline void write_curves_png(const Curves& cv, const std::string& path, int width = 1200,
                             int height = 450) {
  Canvas c(Format::png, width, height, "write_curves_png '" + path + "'");
  curves_detail::draw_curves(c, cv);
  write_bytes(path, c.finish());
}
inline void write_curves_svg(const Curves& cv, const std::string& path, int width = 1200,
                             int height = 450) {
  Canvas c(Format::svg, width, height, "write_curves_svg '" + path + "'");
  curves_detail::draw_curves(c, cv);
  write_bytes(path, c.finish());
}

}  // namespace minicnn::plot
