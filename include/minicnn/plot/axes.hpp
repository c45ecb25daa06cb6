// Chart furniture on a Canvas: linear data-to-pixel scales, "nice" tick positions (1, 2 or 5
// times a power of ten; integer steps for epochs), tick labels, the axes frame with its grid and
// axis titles, and a legend that goes in the corner of the plot where it hides the least data.
// Sizes are pixels already multiplied by the chart's scale factor; the caller lays out margins.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "canvas.hpp"

namespace minicnn::plot {

struct Box {
  double x0 = 0, y0 = 0, x1 = 0, y1 = 0;
  double width() const { return x1 - x0; }
  double height() const { return y1 - y0; }
  bool contains(double x, double y) const { return x >= x0 && x <= x1 && y >= y0 && y <= y1; }
  bool intersects(const Box& o) const { return x0 < o.x1 && o.x0 < x1 && y0 < o.y1 && o.y0 < y1; }
};

// Maps data [d0, d1] onto pixels [p0, p1] (p1 < p0 for a y axis pointing up).
struct LinearScale {
  double d0 = 0, d1 = 1, p0 = 0, p1 = 1;
  double operator()(double v) const { return p0 + (v - d0) / (d1 - d0) * (p1 - p0); }
};

// The smallest of 1, 2, 5 x 10^k that is at least span / target.
inline double nice_step(double span, int target) {
  const double raw = span / std::max(1, target);
  if (!(raw > 0) || !std::isfinite(raw)) return 1;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0})
    if (m * p >= raw * (1 - 1e-9)) return m * p;
  return 10 * p;
}

struct TickRange {
  double lo = 0, hi = 1, step = 0.2;
};

// An axis range around the data [mn, mx] with 5% margins, widened to whole multiples of a nice
// step giving about `target` intervals. No data (mn > mx, or NaN) gives [0, 1]; a flat series
// gets a range around its value.
inline TickRange nice_range(double mn, double mx, int target) {
  if (!(mn <= mx) || !std::isfinite(mn) || !std::isfinite(mx)) mn = 0, mx = 1;
  if (mx - mn <= 1e-12 * std::max(1.0, std::abs(mx))) {
    const double d = mn == 0 ? 0.5 : std::abs(mn) * 0.1;
    mn -= d, mx += d;
  }
  const double pad = 0.05 * (mx - mn);
  mn -= pad, mx += pad;
  const double step = nice_step(mx - mn, target);
  return {std::floor(mn / step + 1e-9) * step, std::ceil(mx / step - 1e-9) * step, step};
}

// lo, lo + step, ..., hi (computed from the index, so no drift).
inline std::vector<double> tick_values(const TickRange& r) {
  std::vector<double> v;
  const long n = std::lround((r.hi - r.lo) / r.step);
  for (long i = 0; i <= n; ++i) {
    double t = r.lo + static_cast<double>(i) * r.step;
    if (std::abs(t) < 1e-9 * r.step) t = 0;  // no "-0.0"
    v.push_back(t);
  }
  return v;
}

// Enough decimals to tell ticks `step` apart (0.05 -> "0.35"), no more.
inline std::string format_tick(double v, double step) {
  char buf[64];
  if (std::abs(v) >= 1e6 || (v != 0 && std::abs(v) < 1e-4)) {
    std::snprintf(buf, sizeof buf, "%.3g", v);
    return buf;
  }
  int decimals = 0;
  for (double x = step; decimals < 8 && std::abs(x - std::round(x)) > 1e-6 * std::max(1.0, x);
       x *= 10)
    ++decimals;
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

// Step between integer ticks on 1..last: the smallest of 1, 2, 5, 10, 20, 25, 50, 100, ... that
// leaves `min_gap_px` between neighbouring ticks and at most 15 ticks.
inline int integer_tick_step(int last, double px_per_unit, double min_gap_px) {
  for (long p = 1; p < 1000000000L; p *= 10) {
    for (long m : {10L, 20L, 25L, 50L}) {
      if (m == 25 && p == 1) continue;  // 2.5 is not an integer step
      const long step = m * p / 10;
      if (step == 0) continue;
      if (static_cast<double>(step) * px_per_unit >= min_gap_px && last / step <= 15)
        return static_cast<int>(step);
    }
  }
  return std::max(1, last);
}

// Ticks on 1..last: the multiples of `step`, and 1 itself when it is not crowded by the first
// multiple (1, 5, 10, 15 but 2, 4, 6).
inline std::vector<int> integer_ticks(int last, int step) {
  std::vector<int> t;
  if (last < 1) return t;
  if (step <= 1) {
    for (int i = 1; i <= last; ++i) t.push_back(i);
    return t;
  }
  if (step - 1 >= 0.75 * step) t.push_back(1);
  for (int i = step; i <= last; i += step) t.push_back(i);
  if (t.empty()) t.push_back(1);
  return t;
}

struct Tick {
  double value = 0;
  std::string label;
};

struct AxesStyle {
  double tick_font = 13, title_font = 13.5, tick_len = 5, gap = 4, line = 1;
  Rgb frame = rgb_hex(0x555555), grid = rgb_hex(0xE6E6E6), text = rgb_hex(0x222222);
};

inline double max_label_width(Canvas& c, const std::vector<Tick>& ticks, double font) {
  c.set_font(font);
  double w = 0;
  for (const auto& t : ticks) w = std::max(w, c.text_width(t.label));
  return w;
}

// Horizontal room the y axis needs left of the plot area (ticks, labels, axis title).
inline double y_axis_room(Canvas& c, const std::vector<Tick>& yticks, const AxesStyle& st) {
  c.set_font(st.title_font);
  const double title_h = c.line_height();
  return st.tick_len + st.gap + max_label_width(c, yticks, st.tick_font) + 2 * st.gap + title_h;
}
// Vertical room the x axis needs below the plot area.
inline double x_axis_room(Canvas& c, const AxesStyle& st) {
  c.set_font(st.tick_font);
  const double tick_h = c.line_height();
  c.set_font(st.title_font);
  return st.tick_len + st.gap + tick_h + 2 * st.gap + c.line_height();
}

// Grid lines at every tick, the frame, outward tick marks, tick labels and axis titles.
inline void draw_axes(Canvas& c, const Box& a, const LinearScale& xs, const std::vector<Tick>& xt,
                      const LinearScale& ys, const std::vector<Tick>& yt, const std::string& xtitle,
                      const std::string& ytitle, const AxesStyle& st) {
  auto crisp = [](double v) { return std::round(v - 0.5) + 0.5; };
  for (const auto& t : xt) {
    const double x = crisp(xs(t.value));
    c.line(x, a.y0, x, a.y1, st.grid, 1);
  }
  for (const auto& t : yt) {
    const double y = crisp(ys(t.value));
    c.line(a.x0, y, a.x1, y, st.grid, 1);
  }
  c.stroke_rect_crisp(a.x0, a.y0, a.width(), a.height(), st.frame);
  c.set_font(st.tick_font);
  for (const auto& t : xt) {
    const double x = crisp(xs(t.value));
    c.line(x, a.y1, x, a.y1 + st.tick_len, st.frame, st.line);
    c.text(t.label, x, a.y1 + st.tick_len + st.gap, HAlign::center, VAlign::top, st.text);
  }
  double label_w = 0;
  for (const auto& t : yt) {
    const double y = crisp(ys(t.value));
    c.line(a.x0 - st.tick_len, y, a.x0, y, st.frame, st.line);
    c.text(t.label, a.x0 - st.tick_len - st.gap, y, HAlign::right, VAlign::middle, st.text);
    label_w = std::max(label_w, c.text_width(t.label));
  }
  const double tick_h = c.line_height();
  c.set_font(st.title_font);
  c.text(xtitle, (a.x0 + a.x1) / 2, a.y1 + st.tick_len + st.gap + tick_h + 2 * st.gap,
         HAlign::center, VAlign::top, st.text);
  c.text(ytitle, a.x0 - st.tick_len - st.gap - label_w - 2 * st.gap, (a.y0 + a.y1) / 2,
         HAlign::center, VAlign::bottom, st.text, -kPi / 2);
}

struct LegendEntry {
  std::string label;
  Rgb color;
  bool marker = true;  // a dot in the middle of the line sample
};

struct LegendStyle {
  double font = 12.5, pad = 8, swatch = 26, gap = 8, line = 2, marker = 3;
};

inline double legend_row_height(Canvas& c, const LegendStyle& st) {
  c.set_font(st.font);
  return std::ceil(c.line_height() * 1.3);
}
// Width and height of the legend box.
inline Box legend_size(Canvas& c, const std::vector<LegendEntry>& entries, const LegendStyle& st) {
  const double row = legend_row_height(c, st);
  double w = 0;
  for (const auto& e : entries) w = std::max(w, c.text_width(e.label));
  return Box{0, 0, 2 * st.pad + st.swatch + st.gap + w,
             2 * st.pad + row * static_cast<double>(entries.size()) - (row - c.line_height())};
}

inline void draw_legend(Canvas& c, const std::vector<LegendEntry>& entries, double x, double y,
                        const LegendStyle& st) {
  if (entries.empty()) return;
  const Box size = legend_size(c, entries, st);
  c.fill_rect(x, y, size.x1, size.y1, Rgb{1, 1, 1}, 0.88);
  c.stroke_rect_crisp(x, y, size.x1, size.y1, rgb_hex(0xBBBBBB));
  const double row = legend_row_height(c, st);
  double cy = y + st.pad + c.line_height() / 2;
  for (const auto& e : entries) {
    const double sx = x + st.pad;
    c.line(sx, cy, sx + st.swatch, cy, e.color, st.line);
    if (e.marker) c.circle(sx + st.swatch / 2, cy, st.marker, e.color);
    c.text(e.label, sx + st.swatch + st.gap, cy, HAlign::left, VAlign::middle, rgb_hex(0x222222));
    cy += row;
  }
}

// Top-left corner for a box of the given size inside `area` (inset by `inset`): of the four
// corners and the middle of the right and left sides, the one covering the fewest `points`
// (pixel positions along the drawn curves), never one overlapping a box in `avoid` if another
// is free; ties go to the earlier entry of `preference` (0 upper right, 1 lower right,
// 2 upper left, 3 lower left, 4 middle right, 5 middle left).
inline std::pair<double, double> place_box(const Box& area, double w, double h, double inset,
                                           const std::vector<std::pair<double, double>>& points,
                                           const std::vector<Box>& avoid,
                                           const std::vector<int>& preference) {
  const double left = area.x0 + inset, right = area.x1 - inset - w;
  const double top = area.y0 + inset, bottom = area.y1 - inset - h;
  const double mid = (area.y0 + area.y1 - h) / 2;
  const std::pair<double, double> spots[6] = {{right, top},   {right, bottom}, {left, top},
                                              {left, bottom}, {right, mid},    {left, mid}};
  double best_cost = std::numeric_limits<double>::infinity();
  std::pair<double, double> best = spots[preference.empty() ? 0 : preference[0]];
  for (int k : preference) {
    const Box b{spots[k].first, spots[k].second, spots[k].first + w, spots[k].second + h};
    double cost = 0;
    for (const auto& p : points)
      if (b.contains(p.first, p.second)) cost += 1;
    for (const auto& o : avoid)
      if (b.intersects(o)) cost += 1e6;
    if (cost < best_cost) best_cost = cost, best = spots[k];
  }
  return best;
}

}  // namespace minicnn::plot
