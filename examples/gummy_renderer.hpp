// A synthetic stand-in for the origin notebook's photos of Haribo gummies: renders "photos" of
// one translucent gummy per image (bear, cola bottle, frog, heart, ring, star, worm) on a
// cluttered table, with cairo, and writes them as a class-folder dataset (DIR/<class>/*.png) that
// load_image_folder and haribo_train read like real photos.
// Conventions: every image is a pure function of (seed, class name, index) through KeyedRng, so
// the thread count never changes a byte; pixel work is in float RGB in [0, 1] (sRGB values, no
// linearisation: the look matters, not photometry); one local shape unit is about the gummy's
// half-extent, and a pose maps it to pixels. cairo rasterises every shape; the per-pixel passes
// (jelly shading from a blurred silhouette used as a height map, camera noise) work on its output.
#pragma once
#include <cairo.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <minicnn/core/error.hpp>
#include <minicnn/core/random.hpp>
#include <minicnn/io/format.hpp>
#include <minicnn/plot/cairo_util.hpp>
#include <minicnn/plot/png.hpp>
#include <minicnn/plot/rgb_image.hpp>

namespace minicnn::gummies {

// Bumped whenever the pictures change, so that datasets cached by an older renderer re-render.
inline constexpr int kGummyRendererVersion = 1;

inline const std::vector<std::string>& supported_gummy_classes() {
  static const std::vector<std::string> names = {"bear", "cola_bottle", "frog", "heart",
                                                 "ring", "star",        "worm"};
  return names;
}

struct GummyDatasetOptions {
  int per_class = 80;  // images per class
  int size = 128;      // square PNG side in pixels
  uint64_t seed = 2024;
  std::vector<std::string> classes = supported_gummy_classes();
  int threads = 0;  // 0: all cores; never changes the output
};

struct GummyDatasetReport {
  std::vector<std::string> classes;
  int64_t images = 0;  // images in the dataset (rendered now or found complete)
  double seconds = 0;  // wall time of this call
  std::string dir;
  bool reused = false;  // true when a complete dataset with the same options was already there
};

namespace gummy_detail {

constexpr double kPi = 3.14159265358979323846;

// ---------------------------------------------------------------------------------------
// Random draws (all from one KeyedRng per image, in a fixed order)

struct Rand {
  KeyedRng g;
  double u() { return g.uniform(); }
  double u(double lo, double hi) { return g.uniform(lo, hi); }
  int below(int n) { return static_cast<int>(g.below(static_cast<uint64_t>(n))); }
  bool chance(double p) { return g.uniform() < p; }
  double sym() { return g.uniform(-1.0, 1.0); }
  double normal() {  // Box-Muller, both values used (platform independent)
    if (has_spare) {
      has_spare = false;
      return spare;
    }
    double u1 = g.uniform(), u2 = g.uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    const double rad = std::sqrt(-2.0 * std::log(u1));
    spare = rad * std::sin(2 * kPi * u2);
    has_spare = true;
    return rad * std::cos(2 * kPi * u2);
  }
  // Pixel noise: the sum of four 16-bit uniforms from one draw, scaled to unit variance (an
  // Irwin-Hall approximation of the normal, within +-3.46; ten times cheaper than Box-Muller).
  double pixel_noise() {
    const uint64_t b = g.next_u64();
    const double s = double(b & 0xffff) + double((b >> 16) & 0xffff) + double((b >> 32) & 0xffff) +
                     double(b >> 48);
    return (s / 65536.0 - 2.0) * 1.7320508075688772;
  }
  double spare = 0;
  bool has_spare = false;
};

// FNV-1a: the class key of an image, so one class's images do not depend on the class list.
inline uint64_t class_key(const std::string& name) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char ch : name) h = (h ^ ch) * 0x100000001b3ULL;
  return h;
}

// ---------------------------------------------------------------------------------------
// Float images and blurs

struct Img {
  int w = 0, h = 0, c = 1;
  std::vector<float> v;
  Img() = default;
  Img(int w_, int h_, int c_, float fill = 0)
      : w(w_), h(h_), c(c_), v(size_t(w_) * h_ * c_, fill) {}
  float* px(int x, int y) { return v.data() + (size_t(y) * w + x) * c; }
  const float* px(int x, int y) const { return v.data() + (size_t(y) * w + x) * c; }
};

// One running-sum box pass of radius r over n samples `stride` apart, edges clamped.
inline void box_pass(const float* src, float* dst, int n, int stride, int r) {
  const float inv = 1.0f / float(2 * r + 1);
  auto at = [&](int i) { return src[size_t(std::clamp(i, 0, n - 1)) * stride]; };
  float acc = 0;
  for (int k = -r; k <= r; ++k) acc += at(k);
  for (int i = 0; i < n; ++i) {
    dst[size_t(i) * stride] = acc * inv;
    acc += at(i + r + 1) - at(i - r);
  }
}

// Three box passes per axis: close to a Gaussian of sigma ~ r.
inline void blur(Img& im, int r, int passes = 3) {
  if (r < 1) return;
  Img tmp(im.w, im.h, im.c);
  for (int p = 0; p < passes; ++p) {
    for (int y = 0; y < im.h; ++y)
      for (int ch = 0; ch < im.c; ++ch)
        box_pass(im.px(0, y) + ch, tmp.px(0, y) + ch, im.w, im.c, r);
    for (int x = 0; x < im.w; ++x)
      for (int ch = 0; ch < im.c; ++ch)
        box_pass(tmp.px(x, 0) + ch, im.px(x, 0) + ch, im.h, im.w * im.c, r);
  }
}

// ---------------------------------------------------------------------------------------
// cairo surfaces <-> float images

struct Surface {
  plot::SurfacePtr s;
  plot::ContextPtr cr;
  Surface(int w, int h, cairo_format_t f) {
    s.reset(cairo_image_surface_create(f, w, h));
    plot::check_cairo(cairo_surface_status(s.get()), "render_gummy", "creating a surface");
    cr.reset(cairo_create(s.get()));
    plot::check_cairo(cairo_status(cr.get()), "render_gummy", "creating a context");
  }
  cairo_t* get() const { return cr.get(); }
};

inline Img alpha_plane(Surface& sf) {
  cairo_surface_flush(sf.s.get());
  const int w = cairo_image_surface_get_width(sf.s.get());
  const int h = cairo_image_surface_get_height(sf.s.get());
  const int stride = cairo_image_surface_get_stride(sf.s.get());
  const unsigned char* d = cairo_image_surface_get_data(sf.s.get());
  Img out(w, h, 1);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) out.v[size_t(y) * w + x] = d[size_t(y) * stride + x] / 255.0f;
  return out;
}

inline Img rgb_plane(Surface& sf) {
  cairo_surface_flush(sf.s.get());
  const int w = cairo_image_surface_get_width(sf.s.get());
  const int h = cairo_image_surface_get_height(sf.s.get());
  const int stride = cairo_image_surface_get_stride(sf.s.get());
  const unsigned char* d = cairo_image_surface_get_data(sf.s.get());
  Img out(w, h, 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint32_t p;
      std::memcpy(&p, d + size_t(y) * stride + 4 * size_t(x), 4);
      float* o = out.px(x, y);
      o[0] = ((p >> 16) & 255) / 255.0f;
      o[1] = ((p >> 8) & 255) / 255.0f;
      o[2] = (p & 255) / 255.0f;
    }
  return out;
}

// ---------------------------------------------------------------------------------------
// Colours

struct Col {
  double r, g, b;
};
inline Col mix(Col a, Col b, double t) {
  return {a.r + (b.r - a.r) * t, a.g + (b.g - a.g) * t, a.b + (b.b - a.b) * t};
}
inline Col scale(Col a, double k) {
  return {std::clamp(a.r * k, 0.0, 1.0), std::clamp(a.g * k, 0.0, 1.0),
          std::clamp(a.b * k, 0.0, 1.0)};
}
inline void set_source(cairo_t* cr, Col c, double a = 1) {
  cairo_set_source_rgba(cr, c.r, c.g, c.b, a);
}

struct Candy {
  Col col;
  double opacity;  // how much of the body colour covers the background seen through the jelly
};

// Candy colours, each usable for every shape: red, dark red, orange, yellow, green, lime,
// white/clear, cola brown, raspberry pink, blue (sour). Jittered per gummy.
inline Candy random_candy(Rand& r, int avoid = -1, int* chosen = nullptr) {
  static const Col base[] = {{0.86, 0.07, 0.08}, {0.48, 0.03, 0.07}, {0.98, 0.42, 0.04},
                             {0.98, 0.78, 0.08}, {0.22, 0.62, 0.12}, {0.58, 0.80, 0.12},
                             {0.95, 0.93, 0.86}, {0.45, 0.20, 0.06}, {0.90, 0.28, 0.45},
                             {0.16, 0.36, 0.80}};
  static const double weight[] = {1.4, 0.9, 1.2, 1.2, 1.1, 0.7, 1.0, 0.8, 0.7, 0.4};
  double total = 0;
  for (int i = 0; i < 10; ++i) total += i == avoid ? 0 : weight[i];
  double t = r.u() * total;
  int k = 0;
  for (; k < 9; ++k) {
    const double wk = k == avoid ? 0 : weight[k];
    if (t < wk) break;
    t -= wk;
  }
  if (k == avoid) k = (k + 1) % 10;
  if (chosen) *chosen = k;
  Col c = base[k];
  const double j = 0.08;
  c = {std::clamp(c.r * (1 + j * r.sym()), 0.0, 1.0), std::clamp(c.g * (1 + j * r.sym()), 0.0, 1.0),
       std::clamp(c.b * (1 + j * r.sym()), 0.0, 1.0)};
  const double op = k == 6 ? r.u(0.2, 0.35) : k == 1 || k == 7 ? r.u(0.5, 0.8) : r.u(0.3, 0.65);
  return {c, op};
}

// ---------------------------------------------------------------------------------------
// Shapes, in local units (the gummy fits in a circle of radius ~1, upright: head up)

enum class Shape { bear, cola_bottle, frog, heart, ring, star, worm };
enum class Part { silhouette, bumps, grooves };

inline Shape shape_of(const std::string& name) {
  const auto& n = supported_gummy_classes();
  for (size_t i = 0; i < n.size(); ++i)
    if (n[i] == name) return static_cast<Shape>(i);
  std::string list;
  for (const auto& s : n) list += (list.empty() ? "" : ", ") + s;
  throw ConfigError("gummy renderer: unknown class '" + name + "', expected one of: " + list);
}

// Adds an ellipse as a closed sub-path (positive direction, so WINDING fills unite them).
inline void ellipse(cairo_t* cr, double cx, double cy, double rx, double ry, double angle = 0) {
  cairo_save(cr);
  cairo_translate(cr, cx, cy);
  cairo_rotate(cr, angle);
  cairo_scale(cr, rx, ry);
  cairo_new_sub_path(cr);
  cairo_arc(cr, 0, 0, 1, 0, 2 * kPi);
  cairo_close_path(cr);
  cairo_restore(cr);
}

// A closed smooth curve through points (Catmull-Rom turned into Bezier segments).
inline void smooth_closed(cairo_t* cr, const std::vector<std::pair<double, double>>& p) {
  const size_t n = p.size();
  cairo_new_sub_path(cr);
  cairo_move_to(cr, p[0].first, p[0].second);
  for (size_t i = 0; i < n; ++i) {
    const auto& p0 = p[(i + n - 1) % n];
    const auto& p1 = p[i];
    const auto& p2 = p[(i + 1) % n];
    const auto& p3 = p[(i + 2) % n];
    cairo_curve_to(cr, p1.first + (p2.first - p0.first) / 6,
                   p1.second + (p2.second - p0.second) / 6, p2.first - (p3.first - p1.first) / 6,
                   p2.second - (p3.second - p1.second) / 6, p2.first, p2.second);
  }
  cairo_close_path(cr);
}

// Per-gummy variation of a shape: jitters in [-1, 1] each shape reads as it likes.
struct ShapeVar {
  double j[16];
};

inline void stroke_local(cairo_t* cr, double width) {
  cairo_set_line_width(cr, width);
  cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
  cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
  cairo_stroke(cr);
}

inline void draw_bear(cairo_t* cr, const ShapeVar& v, Part part) {
  const double* j = v.j;
  const double hr = 0.29 * (1 + 0.06 * j[0]), hy = -0.5;
  const double ex = 0.2 * (1 + 0.08 * j[1]), er = 0.11 * (1 + 0.12 * j[2]);
  const double bx = 0.35 * (1 + 0.06 * j[3]), by = 0.4 * (1 + 0.04 * j[4]);
  const double aa = 0.55 + 0.25 * j[5], ax = 0.33, ay = -0.02;
  const double lx = 0.19 * (1 + 0.08 * j[6]), ly = 0.6, lr = 0.15 * (1 + 0.08 * j[7]);
  if (part == Part::silhouette) {
    ellipse(cr, 0, hy, hr, hr * 0.93);
    ellipse(cr, -ex, hy - 0.25, er, er);
    ellipse(cr, ex, hy - 0.25, er, er);
    ellipse(cr, 0, 0.14, bx, by);
    ellipse(cr, -ax, ay, 0.1, 0.2, aa);
    ellipse(cr, ax, ay, 0.1, 0.2, -aa);
    ellipse(cr, -lx, ly, lr, lr * 1.08);
    ellipse(cr, lx, ly, lr, lr * 1.08);
    cairo_set_fill_rule(cr, CAIRO_FILL_RULE_WINDING);
    cairo_fill(cr);
  } else if (part == Part::bumps) {
    ellipse(cr, 0, hy + 0.1, 0.12, 0.085);      // snout
    ellipse(cr, -0.1, hy - 0.07, 0.035, 0.04);  // eyes
    ellipse(cr, 0.1, hy - 0.07, 0.035, 0.04);
    ellipse(cr, -ex, hy - 0.25, er * 0.5, er * 0.5);  // inner ears
    ellipse(cr, ex, hy - 0.25, er * 0.5, er * 0.5);
    ellipse(cr, 0, 0.2, bx * 0.55, by * 0.55);  // belly
    cairo_fill(cr);
  } else {
    ellipse(cr, -ax, ay, 0.1, 0.2, aa);
    ellipse(cr, ax, ay, 0.1, 0.2, -aa);
    stroke_local(cr, 0.035);
    cairo_new_sub_path(cr);
    cairo_arc(cr, 0, hy, hr * 0.97, 0.2 * kPi, 0.8 * kPi);  // neck
    stroke_local(cr, 0.035);
    cairo_new_sub_path(cr);
    cairo_arc(cr, -lx, ly, lr, 1.1 * kPi, 1.9 * kPi);  // hips
    cairo_new_sub_path(cr);
    cairo_arc(cr, lx, ly, lr, 1.1 * kPi, 1.9 * kPi);
    stroke_local(cr, 0.035);
  }
}

inline void draw_ring(cairo_t* cr, const ShapeVar& v, Part part) {
  const double R = 0.8 * (1 + 0.04 * v.j[0]), r = 0.32 * (1 + 0.12 * v.j[1]);
  const double sq = 1 + 0.05 * v.j[2];
  if (part == Part::silhouette) {
    ellipse(cr, 0, 0, R, R * sq);
    ellipse(cr, 0.03 * v.j[3], 0.03 * v.j[4], r, r * sq);
    cairo_set_fill_rule(cr, CAIRO_FILL_RULE_EVEN_ODD);
    cairo_fill(cr);
    cairo_set_fill_rule(cr, CAIRO_FILL_RULE_WINDING);
  } else if (part == Part::grooves) {
    ellipse(cr, 0, 0, (R + r) / 2 * 1.0, (R + r) / 2 * sq);  // a faint seam of the mould
    stroke_local(cr, 0.015);
  }
}

// The worm's centre line: x along its length, a wave and a bend.
inline std::vector<std::pair<double, double>> worm_line(const ShapeVar& v) {
  const double len = 0.95 * (1 + 0.05 * v.j[0]);
  const double amp = 0.13 + 0.08 * v.j[1], waves = 1.25 + 0.5 * v.j[2], phase = kPi * v.j[3];
  const double bend = 0.25 * v.j[4];
  std::vector<std::pair<double, double>> p;
  const int n = 72;
  for (int i = 0; i <= n; ++i) {
    const double t = double(i) / n, x = -len + 2 * len * t;
    const double y = amp * std::sin(2 * kPi * waves * t + phase) + bend * (x * x - 0.3);
    p.emplace_back(x, y);
  }
  return p;
}

inline void draw_worm(cairo_t* cr, const ShapeVar& v, Part part) {
  const auto line = worm_line(v);
  const double w = 0.13 * (1 + 0.1 * v.j[5]);
  const size_t n = line.size();
  if (part == Part::silhouette) {
    for (size_t i = 0; i < n; ++i) {
      const double t = double(i) / double(n - 1);
      const double taper =
          1 - 0.2 * std::pow(std::abs(2 * t - 1), 3) - (t > 0.5 ? 0.1 * (2 * t - 1) : 0);
      ellipse(cr, line[i].first, line[i].second, w * taper, w * taper);
    }
    cairo_set_fill_rule(cr, CAIRO_FILL_RULE_WINDING);
    cairo_fill(cr);
  }
}

inline void draw_heart(cairo_t* cr, const ShapeVar& v, Part part) {
  const double sx = 0.055 * (1 + 0.07 * v.j[0]), sy = 0.055 * (1 + 0.05 * v.j[1]);
  const double lobe = 1 + 0.25 * v.j[2];
  auto pt = [&](double t) {
    const double x = 16 * std::pow(std::sin(t), 3);
    const double y =
        -(13 * std::cos(t) - 5 * lobe * std::cos(2 * t) - 2 * std::cos(3 * t) - std::cos(4 * t));
    return std::make_pair(x * sx, y * sy + 0.1);
  };
  if (part == Part::silhouette) {
    cairo_new_sub_path(cr);
    const int n = 96;
    for (int i = 0; i < n; ++i) {
      const auto p = pt(2 * kPi * i / n);
      if (i == 0)
        cairo_move_to(cr, p.first, p.second);
      else
        cairo_line_to(cr, p.first, p.second);
    }
    cairo_close_path(cr);
    cairo_set_fill_rule(cr, CAIRO_FILL_RULE_WINDING);
    cairo_fill(cr);
  }
}

inline void draw_cola(cairo_t* cr, const ShapeVar& v, Part part) {
  const double k = 1.25 * (1 + 0.07 * v.j[0]), waist = 1 + 0.08 * v.j[1], bulge = 1 + 0.06 * v.j[2];
  // Right half-profile from the cap down to the base: (half width, y).
  const std::vector<std::pair<double, double>> prof = {
      {0.14, -0.96},        {0.16, -0.9},  {0.155, -0.83},        {0.115, -0.78},
      {0.12, -0.62},        {0.19, -0.42}, {0.27 * bulge, -0.22}, {0.28 * bulge, -0.06},
      {0.24 / waist, 0.14}, {0.27, 0.34},  {0.3 * bulge, 0.56},   {0.29 * bulge, 0.8},
      {0.23, 0.95}};
  if (part == Part::silhouette) {
    std::vector<std::pair<double, double>> p;
    p.emplace_back(0, -0.97);
    for (const auto& q : prof) p.emplace_back(q.first * k, q.second);
    p.emplace_back(0, 0.98);
    for (auto it = prof.rbegin(); it != prof.rend(); ++it)
      p.emplace_back(-it->first * k, it->second);
    smooth_closed(cr, p);
    cairo_set_fill_rule(cr, CAIRO_FILL_RULE_WINDING);
    cairo_fill(cr);
  } else if (part == Part::grooves) {
    cairo_move_to(cr, -0.13 * k, -0.8);  // under the lip
    cairo_line_to(cr, 0.13 * k, -0.8);
    cairo_move_to(cr, -0.24 * k, 0.12);  // the label band
    cairo_line_to(cr, 0.24 * k, 0.12);
    stroke_local(cr, 0.03);
  } else {
    ellipse(cr, 0, -0.88, 0.13 * k, 0.05);  // cap
    ellipse(cr, 0, 0.62, 0.2 * k, 0.22);    // the round lower belly
    cairo_fill(cr);
  }
}

inline void star_points(const ShapeVar& v, double R, std::vector<std::pair<double, double>>& p) {
  const double r = R * (0.47 + 0.06 * v.j[0]);
  for (int i = 0; i < 10; ++i) {
    const double a = -kPi / 2 + i * kPi / 5, rr = (i % 2) ? r : R;
    p.emplace_back(rr * std::cos(a), rr * std::sin(a) + 0.05);
  }
}

inline void draw_star(cairo_t* cr, const ShapeVar& v, Part part) {
  std::vector<std::pair<double, double>> p;
  star_points(v, 0.84, p);
  if (part == Part::silhouette) {
    cairo_new_sub_path(cr);
    for (size_t i = 0; i < p.size(); ++i)
      i ? cairo_line_to(cr, p[i].first, p[i].second) : cairo_move_to(cr, p[i].first, p[i].second);
    cairo_close_path(cr);
    cairo_set_fill_rule(cr, CAIRO_FILL_RULE_WINDING);
    cairo_fill_preserve(cr);
    stroke_local(cr, 0.16);  // rounds the tips and the notches
  } else if (part == Part::bumps) {
    for (size_t i = 0; i < p.size(); i += 2) {  // ridges from the centre to each tip
      cairo_move_to(cr, 0, 0.05);
      cairo_line_to(cr, p[i].first * 0.85, p[i].second * 0.85 + 0.0075);
    }
    stroke_local(cr, 0.07);
  }
}

// Seen from above, sitting: a wide head with bulging eyes at its corners, legs spread sideways
// (wider than tall, unlike the bear).
inline void draw_frog(cairo_t* cr, const ShapeVar& v, Part part) {
  const double* j = v.j;
  const double bx = 0.4 * (1 + 0.06 * j[0]), hx = 0.42 * (1 + 0.06 * j[1]);
  const double ea = 0.15 * (1 + 0.1 * j[2]), ex = 0.27, ey = -0.34;
  const double la = 0.45 + 0.15 * j[3], fa = 0.4 + 0.2 * j[4];
  if (part == Part::silhouette) {
    ellipse(cr, 0, 0.12, bx, 0.36);
    ellipse(cr, 0, -0.22, hx, 0.2);
    ellipse(cr, -ex, ey, ea * 1.1, ea);
    ellipse(cr, ex, ey, ea * 1.1, ea);
    for (int s = -1; s <= 1; s += 2) {
      ellipse(cr, s * 0.5, 0.3, 0.26, 0.12, s * la);    // thigh, spread out
      ellipse(cr, s * 0.72, 0.5, 0.17, 0.09, s * 1.1);  // back foot
      for (int t = -1; t <= 1; ++t)                     // toes
        ellipse(cr, s * (0.8 + 0.05 * t), 0.6 + 0.04 * std::abs(t) + 0.02 * t * s, 0.045, 0.045);
      ellipse(cr, s * 0.45, -0.06, 0.17, 0.065, -s * fa);  // front leg
      ellipse(cr, s * 0.6, -0.16, 0.075, 0.065);           // front foot
    }
    cairo_set_fill_rule(cr, CAIRO_FILL_RULE_WINDING);
    cairo_fill(cr);
  } else if (part == Part::bumps) {
    ellipse(cr, -ex, ey - 0.01, ea * 0.55, ea * 0.55);
    ellipse(cr, ex, ey - 0.01, ea * 0.55, ea * 0.55);
    cairo_fill(cr);
  } else {
    cairo_new_sub_path(cr);
    cairo_arc(cr, 0, -0.32, 0.22, 0.25 * kPi, 0.75 * kPi);  // mouth
    stroke_local(cr, 0.03);
    for (int s = -1; s <= 1; s += 2) ellipse(cr, s * 0.5, 0.3, 0.26, 0.12, s * la);
    stroke_local(cr, 0.03);
  }
}

inline void draw_shape(cairo_t* cr, Shape s, const ShapeVar& v, Part part) {
  switch (s) {
    case Shape::bear: draw_bear(cr, v, part); break;
    case Shape::cola_bottle: draw_cola(cr, v, part); break;
    case Shape::frog: draw_frog(cr, v, part); break;
    case Shape::heart: draw_heart(cr, v, part); break;
    case Shape::ring: draw_ring(cr, v, part); break;
    case Shape::star: draw_star(cr, v, part); break;
    case Shape::worm: draw_worm(cr, v, part); break;
  }
  cairo_new_path(cr);
}

// How thick the jelly is, in local units: the radius of the blur that turns the silhouette
// into a height map.
// How strongly the embossed details (bumps, grooves) show.
inline double emboss(Shape s) {
  switch (s) {
    case Shape::star: return 0.35;
    case Shape::ring: return 0.5;
    case Shape::bear: return 0.6;
    default: return 0.8;
  }
}

// Shapes longer than the unit circle are drawn smaller, so they stay mostly in the frame.
inline double extent_scale(Shape s) {
  switch (s) {
    case Shape::worm: return 0.8;
    case Shape::cola_bottle: return 0.92;
    case Shape::frog: return 0.9;
    default: return 1.0;
  }
}

inline double thickness(Shape s) {
  switch (s) {
    case Shape::ring: return 0.11;
    case Shape::worm: return 0.09;
    case Shape::heart: return 0.2;
    case Shape::star: return 0.14;
    default: return 0.13;
  }
}

// ---------------------------------------------------------------------------------------
// One gummy: pose, colours, and how it is composited over what is already there

struct Pose {
  double cx, cy, px_per_unit, rot, squash, squash_axis;
  void apply(cairo_t* cr, double dx = 0, double dy = 0) const {
    cairo_translate(cr, cx + dx, cy + dy);
    cairo_rotate(cr, squash_axis);
    cairo_scale(cr, 1, squash);
    cairo_rotate(cr, rot - squash_axis);
    cairo_scale(cr, px_per_unit, px_per_unit);
  }
};

struct Light {
  double x, y, z;  // unit vector towards the light (image axes: x right, y down, z to the camera)
  double spec_x, spec_y, spec_z;  // a second, weaker light (a window), for a second glint
  double second;                  // its strength, 0 when absent
};

struct Gummy {
  Shape shape;
  ShapeVar var;
  Pose pose;
  Candy a, b;  // b: the second colour of two-tone gummies
  bool two_tone = false;
  double tone_axis = 0, tone_at = 0, tone_soft = 0.05;  // local axis angle, split, blend width
  bool sugared = false;
  double bumpiness = 1, rim_dark = 0.35, shininess = 30, spec = 0.8;
  double shadow_len = 0.08, shadow_blur = 0.1, shadow_dark = 0.45;
};

inline Gummy random_gummy(Shape s, Rand& r, int size, bool distractor) {
  Gummy g;
  g.shape = s;
  for (double& x : g.var.j) x = r.sym();
  const double S = size;
  g.pose.px_per_unit = S * extent_scale(s) * (distractor ? r.u(0.2, 0.35) : r.u(0.38, 0.56));
  // Most photos show the gummy roughly upright; some at any angle.
  g.pose.rot = r.chance(0.9) ? std::clamp(0.25 * r.normal(), -0.8, 0.8) : r.u(0, 2 * kPi);
  g.pose.squash = r.chance(0.6) ? r.u(0.72, 1.0) : 1.0;
  g.pose.squash_axis = r.u(0, kPi);
  if (!distractor) {
    const double spread = r.chance(0.25) ? 0.2 : 0.09;
    g.pose.cx = S * (0.5 + std::clamp(spread * r.normal(), -0.25, 0.25));
    g.pose.cy = S * (0.5 + std::clamp(spread * r.normal(), -0.25, 0.25));
  } else {
    // Centred beyond an edge so that only a part shows.
    const int edge = r.below(4);
    const double along = r.u(0.05, 0.95) * S;
    const double out = r.u(0.45, 0.9) * g.pose.px_per_unit;
    g.pose.cx = edge == 0 ? -out : edge == 1 ? S + out : along;
    g.pose.cy = edge == 2 ? -out : edge == 3 ? S + out : along;
  }
  int first = -1;
  g.a = random_candy(r, -1, &first);
  g.two_tone = s == Shape::worm || r.chance(0.3);
  g.b = random_candy(r, first);
  if (s == Shape::worm) {
    g.tone_axis = 0;
    g.tone_at = r.u(-0.2, 0.2);
    g.tone_soft = r.u(0.03, 0.12);
  } else {
    g.tone_axis = r.chance(0.7) ? kPi / 2 + r.u(-0.3, 0.3) : r.u(0, 2 * kPi);
    g.tone_at = r.u(-0.3, 0.35);
    g.tone_soft = r.u(0.02, 0.08);
  }
  g.sugared = r.chance(0.12);
  g.bumpiness = r.u(0.75, 1.3);
  g.rim_dark = r.u(0.2, 0.45);
  g.shininess = r.u(15, 60);
  g.spec = g.sugared ? r.u(0.1, 0.3) : r.u(0.5, 1.0);
  g.shadow_len = r.u(0.03, 0.13);
  g.shadow_blur = r.u(0.05, 0.14);
  g.shadow_dark = r.u(0.25, 0.6);
  return g;
}

inline Img draw_mask(const Gummy& g, int size, Part part, double dx = 0, double dy = 0) {
  Surface sf(size, size, CAIRO_FORMAT_A8);
  cairo_t* cr = sf.get();
  g.pose.apply(cr, dx, dy);
  cairo_set_source_rgba(cr, 0, 0, 0, 1);
  draw_shape(cr, g.shape, g.var, part);
  return alpha_plane(sf);
}

// The body colour at every pixel (one colour, or two with a soft seam along a local axis).
inline Img colour_plane(const Gummy& g, int size) {
  if (!g.two_tone) {
    Img c(size, size, 3);
    for (size_t i = 0; i < c.v.size(); i += 3) {
      c.v[i] = float(g.a.col.r), c.v[i + 1] = float(g.a.col.g), c.v[i + 2] = float(g.a.col.b);
    }
    return c;
  }
  Surface sf(size, size, CAIRO_FORMAT_RGB24);
  cairo_t* cr = sf.get();
  g.pose.apply(cr);
  cairo_rotate(cr, g.tone_axis);
  cairo_pattern_t* pat =
      cairo_pattern_create_linear(g.tone_at - g.tone_soft, 0, g.tone_at + g.tone_soft, 0);
  cairo_pattern_add_color_stop_rgb(pat, 0, g.a.col.r, g.a.col.g, g.a.col.b);
  cairo_pattern_add_color_stop_rgb(pat, 1, g.b.col.r, g.b.col.g, g.b.col.b);
  cairo_set_source(cr, pat);
  cairo_paint(cr);
  cairo_pattern_destroy(pat);
  return rgb_plane(sf);
}

// The opacity plane follows the colours (a clear half stays clearer).
inline float opacity_at(const Gummy& g, const float* c) {
  if (!g.two_tone) return float(g.a.opacity);
  const double da =
      std::abs(c[0] - g.a.col.r) + std::abs(c[1] - g.a.col.g) + std::abs(c[2] - g.a.col.b);
  const double db =
      std::abs(c[0] - g.b.col.r) + std::abs(c[1] - g.b.col.g) + std::abs(c[2] - g.b.col.b);
  const double t = da + db > 1e-6 ? da / (da + db) : 0;
  return float(g.a.opacity + (g.b.opacity - g.a.opacity) * t);
}

// Draws the gummy over `img` (RGB in [0, 1]): soft drop shadow, then a jelly body lit from
// `L`: colour filter over the background, diffuse shading and specular glints from the normals
// of a height map (the blurred silhouette plus embossed details), darker rims.
inline void composite(Img& img, const Gummy& g, const Light& L, Rand& r) {
  const int S = img.w;
  const double ppu = g.pose.px_per_unit;
  Img M = draw_mask(g, S, Part::silhouette);
  double cover = 0;
  for (float m : M.v) cover += m;
  if (cover < 1) return;

  // Shadow: the silhouette moved away from the light, blurred; the jelly lets some coloured
  // light through, so the shadow's core is tinted.
  const double lxy = std::max(1e-6, std::hypot(L.x, L.y));
  const double sl = g.shadow_len * ppu * (0.5 + 0.5 * lxy / std::max(0.2, L.z));
  Img sh = draw_mask(g, S, Part::silhouette, -L.x / lxy * sl, -L.y / lxy * sl);
  blur(sh, std::max(1, int(std::lround(g.shadow_blur * ppu * 0.6))));
  const Col tint = g.a.col;
  for (int i = 0; i < S * S; ++i) {
    const float s = sh.v[size_t(i)] * float(g.shadow_dark);
    float* p = img.v.data() + size_t(i) * 3;
    p[0] = p[0] * (1 - s) + s * 0.25f * float(tint.r) * p[0];
    p[1] = p[1] * (1 - s) + s * 0.25f * float(tint.g) * p[1];
    p[2] = p[2] * (1 - s) + s * 0.25f * float(tint.b) * p[2];
  }

  // Height map.
  const int rh = std::max(1, int(std::lround(thickness(g.shape) * ppu * 0.75)));
  Img H = M;
  blur(H, rh);
  const int rd = std::max(1, int(std::lround(0.025 * ppu)));
  {
    Img B = draw_mask(g, S, Part::bumps), G = draw_mask(g, S, Part::grooves);
    blur(B, rd);
    blur(G, rd);
    for (size_t i = 0; i < H.v.size(); ++i)
      H.v[i] += float(emboss(g.shape) * g.bumpiness) * (0.22f * B.v[i] - 0.25f * G.v[i]);
  }
  Img E = M;  // near the edge E < 1: the rim
  blur(E, std::max(1, int(std::lround(thickness(g.shape) * ppu * 0.3))));
  Img C = colour_plane(g, S);
  // What is seen through the jelly: the table, scattered (blurred) and refracted.
  Img seen = img;
  blur(seen, std::max(1, int(std::lround(0.02 * ppu))), 2);
  const double refract = 0.9 * rh;

  const double kn = 2.0 * rh * g.bumpiness;
  double hx = L.x, hy = L.y, hz = L.z + 1;  // Blinn-Phong half vector, viewer at +z
  const double hn = std::sqrt(hx * hx + hy * hy + hz * hz);
  hx /= hn, hy /= hn, hz /= hn;
  double qx = L.spec_x, qy = L.spec_y, qz = L.spec_z + 1;
  const double qn = std::sqrt(qx * qx + qy * qy + qz * qz);
  qx /= qn, qy /= qn, qz /= qn;
  for (int y = 0; y < S; ++y)
    for (int x = 0; x < S; ++x) {
      const size_t i = size_t(y) * S + x;
      const float m = M.v[i];
      if (m <= 0) continue;
      const float* h = H.v.data();
      const int x0 = std::max(0, x - 1), x1 = std::min(S - 1, x + 1);
      const int y0 = std::max(0, y - 1), y1 = std::min(S - 1, y + 1);
      double nx = -(h[size_t(y) * S + x1] - h[size_t(y) * S + x0]) * kn / (x1 - x0);
      double ny = -(h[size_t(y1) * S + x] - h[size_t(y0) * S + x]) * kn / (y1 - y0);
      double nz = 1;
      const double nn = std::sqrt(nx * nx + ny * ny + nz * nz);
      nx /= nn, ny /= nn, nz /= nn;
      const double diffuse = std::max(0.0, nx * L.x + ny * L.y + nz * L.z);
      const double nh = std::max(0.0, nx * hx + ny * hy + nz * hz);
      const double sp = std::pow(nh, g.shininess);
      const double soft = nh * nh * nh * nh * nh;
      const double sp2 =
          L.second > 0
              ? L.second * std::pow(std::max(0.0, nx * qx + ny * qy + nz * qz), g.shininess * 1.5)
              : 0.0;
      const double rim = std::clamp(2.0 * (1.0 - E.v[i]), 0.0, 1.0);
      // Light that enters on the lit side leaves through the far side: a glow there.
      const double back = std::max(0.0, -(nx * L.x + ny * L.y) / lxy) * rim;
      const float* c = C.px(x, y);
      float* p = img.px(x, y);
      const double op = std::clamp(opacity_at(g, c) + 0.3 * rim, 0.0, 1.0);
      const int sx = std::clamp(int(std::lround(x - nx * refract)), 0, S - 1);
      const int sy = std::clamp(int(std::lround(y - ny * refract)), 0, S - 1);
      const float* bgp = seen.px(sx, sy);
      const double fresnel = rim * std::max(0.0, (nx * L.x + ny * L.y) / lxy);
      const double shade = 0.35 + 0.75 * diffuse;
      double out[3];
      for (int k = 0; k < 3; ++k) {
        const double through = bgp[k] * (0.1 + 0.9 * c[k]) * 0.95;
        double v = through * (1 - op) + c[k] * shade * op;
        v *= 1 - g.rim_dark * rim;
        v += 0.35 * back * c[k] + 0.25 * fresnel * fresnel;
        v += g.spec * (sp + sp2) + 0.12 * soft * g.spec;
        out[k] = v;
      }
      if (g.sugared) {  // crystals: random bright specks
        const double s = r.u() < 0.35 ? r.u(0.15, 0.55) : 0.0;
        for (double& o : out) o += (0.95 - o) * s;
      }
      for (int k = 0; k < 3; ++k) p[k] = float(p[k] + (out[k] - p[k]) * m);
    }
}

// ---------------------------------------------------------------------------------------
// Backgrounds: a table (wood, cloth, laminate, stone) with blurred blobs

inline Col random_table_colour(Rand& r) {
  static const Col c[] = {{0.78, 0.6, 0.42},  {0.55, 0.36, 0.22}, {0.86, 0.76, 0.6},
                          {0.35, 0.22, 0.14}, {0.72, 0.7, 0.66},  {0.92, 0.9, 0.86},
                          {0.3, 0.3, 0.32},   {0.85, 0.2, 0.18},  {0.2, 0.45, 0.25},
                          {0.2, 0.3, 0.55},   {0.95, 0.85, 0.4},  {0.9, 0.6, 0.7},
                          {0.6, 0.75, 0.85},  {0.15, 0.15, 0.17}, {0.96, 0.6, 0.3}};
  const Col b = c[r.below(15)];
  return {std::clamp(b.r * r.u(0.85, 1.15), 0.0, 1.0), std::clamp(b.g * r.u(0.85, 1.15), 0.0, 1.0),
          std::clamp(b.b * r.u(0.85, 1.15), 0.0, 1.0)};
}

inline void wood(cairo_t* cr, Rand& r, double S) {
  static const Col woods[] = {{0.78, 0.58, 0.38}, {0.55, 0.34, 0.2}, {0.86, 0.74, 0.56},
                              {0.36, 0.22, 0.13}, {0.7, 0.68, 0.64}, {0.9, 0.87, 0.8}};
  const Col base = scale(woods[r.below(6)], r.u(0.85, 1.12));
  set_source(cr, base);
  cairo_paint(cr);
  cairo_translate(cr, S / 2, S / 2);
  cairo_rotate(cr, r.u(0, kPi));
  const double plank = S * r.u(0.3, 0.9);
  for (double y0 = -S - r.u(0, plank); y0 < S; y0 += plank) {
    set_source(cr, scale(base, r.u(0.85, 1.12)), 0.6);
    cairo_rectangle(cr, -S, y0, 2 * S, plank);
    cairo_fill(cr);
    set_source(cr, scale(base, 0.4), r.u(0.4, 0.8));
    cairo_move_to(cr, -S, y0);
    cairo_line_to(cr, S, y0);
    cairo_set_line_width(cr, r.u(0.6, 2.0));
    cairo_stroke(cr);
  }
  const int lines = 30 + r.below(40);
  for (int i = 0; i < lines; ++i) {
    const double y = r.u(-S, S), wob = r.u(0.5, 4.0), ph = r.u(0, 6.28);
    cairo_move_to(cr, -S, y);
    for (int k = 1; k <= 8; ++k) {
      const double x = -S + k * S / 4;
      cairo_line_to(cr, x, y + wob * std::sin(ph + k * r.u(0.4, 1.1)));
    }
    set_source(cr, scale(base, r.chance(0.7) ? r.u(0.55, 0.9) : r.u(1.05, 1.25)), r.u(0.15, 0.5));
    cairo_set_line_width(cr, r.u(0.4, 3.0) * S / 128);
    cairo_stroke(cr);
  }
  if (r.chance(0.3)) {  // a knot
    const double kx = r.u(-S / 2, S / 2), ky = r.u(-S / 2, S / 2);
    for (int k = 1; k <= 5; ++k) {
      ellipse(cr, kx, ky, k * S * 0.025, k * S * 0.01);
      set_source(cr, scale(base, 0.6), 0.35);
      cairo_set_line_width(cr, S / 128);
      cairo_stroke(cr);
    }
  }
}

inline void cloth(cairo_t* cr, Rand& r, double S) {
  const Col base = random_table_colour(r), second = random_table_colour(r);
  set_source(cr, base);
  cairo_paint(cr);
  cairo_translate(cr, S / 2, S / 2);
  cairo_rotate(cr, r.u(0, kPi));
  cairo_scale(cr, 1, r.u(0.75, 1.0));  // the table seen at an angle
  const int kind = r.below(3);
  const double band = S * r.u(0.06, 0.2);
  if (kind == 0 || kind == 1) {  // gingham or stripes
    for (int dir = 0; dir < (kind == 0 ? 2 : 1); ++dir)
      for (double x = -1.5 * S; x < 1.5 * S; x += 2 * band) {
        dir ? cairo_rectangle(cr, -1.5 * S, x, 3 * S, band)
            : cairo_rectangle(cr, x, -1.5 * S, band, 3 * S);
        set_source(cr, second, r.u(0.25, 0.45));
        cairo_fill(cr);
      }
  } else {  // dots
    for (double x = -1.5 * S; x < 1.5 * S; x += band * 1.6)
      for (double y = -1.5 * S; y < 1.5 * S; y += band * 1.6) {
        ellipse(cr, x + (int(y / band) % 2) * band * 0.8, y, band * 0.3, band * 0.3);
        set_source(cr, second, r.u(0.4, 0.7));
        cairo_fill(cr);
      }
  }
  // The weave: fine threads in both directions.
  for (double x = -1.5 * S; x < 1.5 * S; x += 2) {
    cairo_move_to(cr, x, -1.5 * S);
    cairo_line_to(cr, x, 1.5 * S);
  }
  set_source(cr, {0, 0, 0}, 0.05);
  cairo_set_line_width(cr, 0.7);
  cairo_stroke(cr);
  // Folds: broad soft light and dark bands.
  for (int k = r.below(3); k > 0; --k) {
    const double x = r.u(-S, S), w = S * r.u(0.05, 0.2);
    cairo_pattern_t* p = cairo_pattern_create_linear(x - w, 0, x + w, 0);
    const double dark = r.chance(0.5) ? 0 : 1;
    cairo_pattern_add_color_stop_rgba(p, 0, dark, dark, dark, 0);
    cairo_pattern_add_color_stop_rgba(p, 0.5, dark, dark, dark, r.u(0.1, 0.25));
    cairo_pattern_add_color_stop_rgba(p, 1, dark, dark, dark, 0);
    cairo_set_source(cr, p);
    cairo_paint(cr);
    cairo_pattern_destroy(p);
  }
}

inline void stone(cairo_t* cr, Rand& r, double S) {
  const Col base = random_table_colour(r);
  set_source(cr, base);
  cairo_paint(cr);
  const int n = int(S * S / 40);
  for (int i = 0; i < n; ++i) {
    ellipse(cr, r.u(0, S), r.u(0, S), r.u(0.3, 1.6) * S / 128, r.u(0.3, 1.6) * S / 128, r.u(0, 3));
    set_source(cr, scale(base, r.chance(0.5) ? r.u(0.3, 0.8) : r.u(1.2, 1.6)), r.u(0.3, 0.8));
    cairo_fill(cr);
  }
}

inline void laminate(cairo_t* cr, Rand& r, double S) {
  const Col base = random_table_colour(r);
  cairo_pattern_t* p = cairo_pattern_create_linear(r.u(0, S), 0, r.u(0, S), S);
  const Col a = scale(base, r.u(1.0, 1.2)), b = scale(base, r.u(0.6, 0.95));
  cairo_pattern_add_color_stop_rgb(p, 0, a.r, a.g, a.b);
  cairo_pattern_add_color_stop_rgb(p, 1, b.r, b.g, b.b);
  cairo_set_source(cr, p);
  cairo_paint(cr);
  cairo_pattern_destroy(p);
}

inline Img background(Rand& r, int size) {
  const double S = size;
  Surface sf(size, size, CAIRO_FORMAT_RGB24);
  cairo_t* cr = sf.get();
  cairo_save(cr);
  const double kind = r.u();
  if (kind < 0.35)
    wood(cr, r, S);
  else if (kind < 0.65)
    cloth(cr, r, S);
  else if (kind < 0.82)
    stone(cr, r, S);
  else
    laminate(cr, r, S);
  cairo_restore(cr);
  // Out-of-focus things on the table: soft blobs of any colour.
  for (int k = 1 + r.below(6); k > 0; --k) {
    const double x = r.u(0, S), y = r.u(0, S), rad = S * r.u(0.08, 0.45);
    const Col c = r.chance(0.5) ? random_table_colour(r) : random_candy(r).col;
    cairo_pattern_t* p = cairo_pattern_create_radial(x, y, 0, x, y, rad);
    cairo_pattern_add_color_stop_rgba(p, 0, c.r, c.g, c.b, r.u(0.15, 0.5));
    cairo_pattern_add_color_stop_rgba(p, 1, c.r, c.g, c.b, 0);
    cairo_set_source(cr, p);
    cairo_paint(cr);
    cairo_pattern_destroy(p);
  }
  if (r.chance(0.3)) {  // sugar crumbs
    for (int k = 5 + r.below(30); k > 0; --k) {
      ellipse(cr, r.u(0, S), r.u(0, S), r.u(0.4, 1.2) * S / 128, r.u(0.4, 1.2) * S / 128);
      set_source(cr, {0.97, 0.96, 0.93}, r.u(0.5, 0.9));
      cairo_fill(cr);
    }
  }
  Img out = rgb_plane(sf);
  if (r.chance(0.5)) blur(out, 1, 2);  // the table is a little out of focus
  return out;
}

// ---------------------------------------------------------------------------------------
// Camera: white balance, exposure, vignetting, blur, JPEG-like chroma smearing, noise

inline plot::RgbImage camera(Img& im, Rand& r) {
  const int S = im.w;
  const double gain = r.u(0.8, 1.15), gamma = r.u(0.85, 1.15);
  // The tone curve x^gamma, tabulated (linear between 1024 steps).
  float curve[1026];
  for (int i = 0; i <= 1024; ++i) curve[i] = float(std::pow(i / 1024.0, gamma));
  curve[1025] = curve[1024];
  auto tone = [&](double x) {
    const double t = std::clamp(x, 0.0, 1.0) * 1024;
    const int i = int(t);
    return curve[i] + (curve[i + 1] - curve[i]) * float(t - i);
  };
  const double wb[3] = {1 + 0.07 * r.normal(), 1 + 0.04 * r.normal(), 1 + 0.07 * r.normal()};
  const double vig = r.u(0.0, 0.55);
  const double vx = S * (0.5 + 0.1 * r.sym()), vy = S * (0.5 + 0.1 * r.sym());
  const double sigma = r.u(0.004, 0.02), luma_sigma = r.u(0.0, 0.01);
  const int blur_r = r.chance(0.3) ? 1 : 0;
  if (blur_r) blur(im, 1, r.chance(0.5) ? 1 : 2);
  for (int y = 0; y < S; ++y)
    for (int x = 0; x < S; ++x) {
      const double d2 = (std::pow(x - vx, 2) + std::pow(y - vy, 2)) / (0.5 * S * S);
      const double v = gain * (1 - vig * d2);
      float* p = im.px(x, y);
      for (int k = 0; k < 3; ++k) p[k] = tone(p[k] * v * wb[k]);
    }
  // JPEG-like: chroma averaged over 2x2 blocks, a small brightness step per 8x8 block.
  const bool jpeg = r.chance(0.6);
  plot::RgbImage out;
  out.width = out.height = S;
  out.pixels.resize(size_t(S) * S * 3);
  std::vector<float> block(size_t((S + 7) / 8) * ((S + 7) / 8));
  for (float& b : block) b = jpeg ? float(0.006 * r.sym()) : 0.0f;
  for (int y = 0; y < S; y += 2)
    for (int x = 0; x < S; x += 2) {
      double cb = 0, cr = 0;
      int n = 0;
      for (int dy = 0; dy < 2 && y + dy < S; ++dy)
        for (int dx = 0; dx < 2 && x + dx < S; ++dx, ++n) {
          const float* p = im.px(x + dx, y + dy);
          const double Y = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
          cb += p[2] - Y;
          cr += p[0] - Y;
        }
      cb /= n, cr /= n;
      for (int dy = 0; dy < 2 && y + dy < S; ++dy)
        for (int dx = 0; dx < 2 && x + dx < S; ++dx) {
          float* p = im.px(x + dx, y + dy);
          double Y = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
          Y += block[size_t((y + dy) / 8) * ((S + 7) / 8) + (x + dx) / 8] +
               luma_sigma * r.pixel_noise();
          double c[3];
          if (jpeg) {
            const double bb = 0.5 * (p[2] - Y) + 0.5 * cb, rr = 0.5 * (p[0] - Y) + 0.5 * cr;
            c[0] = Y + rr;
            c[2] = Y + bb;
            c[1] = (Y - 0.299 * c[0] - 0.114 * c[2]) / 0.587;
          } else {
            c[0] = p[0], c[1] = p[1], c[2] = p[2];
            const double d = Y - (0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]);
            for (double& q : c) q += d;
          }
          uint8_t* o = out.pixels.data() + (size_t(y + dy) * S + x + dx) * 3;
          for (int k = 0; k < 3; ++k)
            o[k] = uint8_t(std::lround(std::clamp(c[k] + sigma * r.pixel_noise(), 0.0, 1.0) * 255));
        }
    }
  return out;
}

inline Light random_light(Rand& r) {
  Light L{};
  const double az = r.u(0, 2 * kPi), el = r.u(0.55, 1.15);
  L.x = std::cos(az) * std::cos(el), L.y = std::sin(az) * std::cos(el), L.z = std::sin(el);
  const double az2 = az + r.u(1.5, 4.8), el2 = r.u(0.6, 1.2);
  L.spec_x = std::cos(az2) * std::cos(el2), L.spec_y = std::sin(az2) * std::cos(el2);
  L.spec_z = std::sin(el2);
  L.second = r.chance(0.4) ? r.u(0.3, 0.7) : 0.0;
  return L;
}

}  // namespace gummy_detail

// One synthetic photo: a gummy of class `cls` (one of supported_gummy_classes()) on a table,
// size x size pixels. A pure function of (cls, seed, index): render_gummy_dataset writes image
// `index` of class `cls` as exactly these pixels.
inline plot::RgbImage render_gummy(const std::string& cls, uint64_t seed, int size,
                                   uint64_t index = 0) {
  using namespace gummy_detail;
  const Shape shape = shape_of(cls);
  if (size < 16 || size > 4096)
    throw ConfigError("render_gummy: size is " + std::to_string(size) + ", expected 16..4096");
  Rand r{KeyedRng(seed, class_key(cls), index)};
  Img img = background(r, size);
  const Light L = random_light(r);
  const double nd = r.u();
  const int distractors = nd < 0.6 ? 0 : nd < 0.92 ? 1 : 2;
  for (int k = 0; k < distractors; ++k) {
    const Shape other = static_cast<Shape>(r.below(int(supported_gummy_classes().size())));
    const Gummy d = random_gummy(other, r, size, true);
    composite(img, d, L, r);
  }
  const Gummy g = random_gummy(shape, r, size, false);
  composite(img, g, L, r);
  return camera(img, r);
}

namespace gummy_detail {

inline void check_options(const GummyDatasetOptions& o) {
  const std::string w = "render_gummy_dataset: ";
  if (o.per_class < 1 || o.per_class > 100000)
    throw ConfigError(w + "per_class is " + std::to_string(o.per_class) + ", expected 1..100000");
  if (o.size < 16 || o.size > 4096)
    throw ConfigError(w + "size is " + std::to_string(o.size) + ", expected 16..4096");
  if (o.threads < 0)
    throw ConfigError(w + "threads is " + std::to_string(o.threads) + ", expected >= 0");
  if (o.classes.empty()) throw ConfigError(w + "no classes given");
  std::set<std::string> seen;
  for (const auto& c : o.classes) {
    shape_of(c);
    if (!seen.insert(c).second) throw ConfigError(w + "class '" + c + "' is listed twice");
  }
}

inline std::string file_name(const std::string& cls, int index, int per_class) {
  int digits = 4;
  for (int n = per_class - 1; n >= 10000; n /= 10) ++digits;
  std::string num = std::to_string(index);
  if (int(num.size()) < digits) num.insert(0, size_t(digits) - num.size(), '0');
  return cls + "_" + num + ".png";
}

inline const char* manifest_name() {
  return "gummies_manifest.json";
}

inline nlohmann::json options_json(const GummyDatasetOptions& o) {
  return {{"per_class", o.per_class}, {"size", o.size}, {"seed", o.seed}, {"classes", o.classes}};
}

inline nlohmann::json read_manifest(const std::string& dir) {
  std::ifstream in(dir + "/" + manifest_name());
  if (!in) return nullptr;
  try {
    nlohmann::json j;
    in >> j;
    return j;
  } catch (const std::exception&) {
    return nullptr;
  }
}

// True when `dir` holds every file the manifest promises, with the sizes it recorded, made
// with these options by this renderer and library version.
inline bool complete(const std::string& dir, const GummyDatasetOptions& o,
                     const nlohmann::json& m) {
  namespace fs = std::filesystem;
  if (!m.is_object() || m.value("renderer_version", -1) != kGummyRendererVersion ||
      m.value("library_version", std::string()) != kMcnnLibraryVersion || !m.contains("options") ||
      m["options"] != options_json(o) || !m.contains("sizes"))
    return false;
  const auto& sizes = m["sizes"];
  for (const auto& c : o.classes) {
    if (!sizes.contains(c) || !sizes[c].is_array() || sizes[c].size() != size_t(o.per_class))
      return false;
    for (int i = 0; i < o.per_class; ++i) {
      std::error_code ec;
      const auto n = fs::file_size(dir + "/" + c + "/" + file_name(c, i, o.per_class), ec);
      if (ec || !sizes[c][size_t(i)].is_number_unsigned() ||
          n != sizes[c][size_t(i)].get<uint64_t>())
        return false;
    }
  }
  return true;
}

// Removes what an earlier render left that the new one will not overwrite: files named like
// ours (class_NNNN.png) in the class folders the old manifest lists. Nothing else is touched.
inline void remove_stale(const std::string& dir, const nlohmann::json& old,
                         const GummyDatasetOptions& o) {
  namespace fs = std::filesystem;
  if (!old.is_object() || !old.contains("sizes") || !old["sizes"].is_object()) return;
  std::set<std::string> keep;
  for (const auto& c : o.classes)
    for (int i = 0; i < o.per_class; ++i) keep.insert(c + "/" + file_name(c, i, o.per_class));
  for (const auto& item : old["sizes"].items()) {
    const std::string c = item.key();
    if (c.empty() || c.find('/') != std::string::npos || c[0] == '.') continue;
    const fs::path folder = fs::path(dir) / c;
    std::error_code ec;
    if (!fs::is_directory(folder, ec)) continue;
    for (const auto& e : fs::directory_iterator(folder, ec)) {
      const std::string name = e.path().filename().string();
      const bool ours = name.rfind(c + "_", 0) == 0 && name.size() > c.size() + 5 &&
                        name.compare(name.size() - 4, 4, ".png") == 0 &&
                        name.find_first_not_of("0123456789", c.size() + 1) == name.size() - 4;
      if (ours && !keep.count(c + "/" + name)) fs::remove(e.path(), ec);
    }
    fs::remove(folder, ec);  // only succeeds when empty
  }
}

}  // namespace gummy_detail

// Writes dir/<class>/<class>_0000.png ... (PNG, 8-bit RGB) and dir/gummies_manifest.json. The
// same options give byte-identical files for any thread count. When dir already holds a complete
// dataset made with the same options by this renderer version, returns at once (reused = true)
// without rewriting anything. The manifest is removed first and written last, so an interrupted
// render is never taken for a complete one.
inline GummyDatasetReport render_gummy_dataset(const std::string& dir,
                                               const GummyDatasetOptions& o = {}) {
  namespace fs = std::filesystem;
  using namespace gummy_detail;
  const auto t0 = std::chrono::steady_clock::now();
  check_options(o);
  GummyDatasetReport rep;
  rep.classes = o.classes;
  rep.dir = dir;
  rep.images = int64_t(o.classes.size()) * o.per_class;
  auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  const nlohmann::json old = read_manifest(dir);
  if (complete(dir, o, old)) {
    rep.reused = true;
    rep.seconds = seconds();
    return rep;
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec && !fs::is_directory(dir))
    throw IoError("render_gummy_dataset: cannot create folder '" + dir + "': " + ec.message());
  fs::remove(fs::path(dir) / manifest_name(), ec);
  remove_stale(dir, old, o);
  for (const auto& c : o.classes) {
    fs::create_directories(fs::path(dir) / c, ec);
    if (ec && !fs::is_directory(fs::path(dir) / c))
      throw IoError("render_gummy_dataset: cannot create folder '" + dir + "/" + c +
                    "': " + ec.message());
  }

  const int64_t total = rep.images;
  std::vector<uint64_t> sizes(size_t(total), 0);
  std::atomic<int64_t> next{0};
  std::exception_ptr failure;
  std::mutex failure_mutex;
  auto work = [&] {
    for (;;) {
      const int64_t k = next.fetch_add(1);
      if (k >= total) return;
      try {
        const std::string& c = o.classes[size_t(k / o.per_class)];
        const int i = int(k % o.per_class);
        const auto png = plot::encode_png(render_gummy(c, o.seed, o.size, uint64_t(i)));
        const std::string path = dir + "/" + c + "/" + file_name(c, i, o.per_class);
        std::ofstream f(path, std::ios::binary | std::ios::trunc);
        f.write(reinterpret_cast<const char*>(png.data()), std::streamsize(png.size()));
        f.close();
        if (!f) throw IoError("render_gummy_dataset: cannot write '" + path + "'");
        sizes[size_t(k)] = png.size();
      } catch (...) {
        std::lock_guard<std::mutex> lock(failure_mutex);
        if (!failure) failure = std::current_exception();
        next = total;  // the others stop after their current image
      }
    }
  };
  int threads = o.threads > 0 ? o.threads : int(std::thread::hardware_concurrency());
  threads = int(std::clamp<int64_t>(threads, 1, total));
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (failure) std::rethrow_exception(failure);

  nlohmann::json m = {{"generator", "minicnn gummy renderer (synthetic images, not photos)"},
                      {"renderer_version", kGummyRendererVersion},
                      {"library_version", kMcnnLibraryVersion},
                      {"options", options_json(o)}};
  nlohmann::json sz = nlohmann::json::object();
  for (size_t c = 0; c < o.classes.size(); ++c)
    sz[o.classes[c]] = std::vector<uint64_t>(sizes.begin() + int64_t(c) * o.per_class,
                                             sizes.begin() + int64_t(c + 1) * o.per_class);
  m["sizes"] = sz;
  const std::string text = m.dump() + "\n";
  write_file_atomic(dir + "/" + manifest_name(), text.data(), text.size());
  rep.seconds = seconds();
  return rep;
}

}  // namespace minicnn::gummies
