// Random image augmentation with the semantics of Keras' ImageDataGenerator, in the "B" form
// that current Keras runs (TF >= 2.9, tf_keras, and Keras 3's legacy ImageDataGenerator); see
// ../shared/docs/keras-semantics.md section 1. Images are row-major HWC floats in [0, 255] units.
//
// What "exact" means here, and the quirks we keep on purpose because Keras has them:
// - One affine pull warp M = R*T*S*Z (neutral factors skipped), centred with offsets H/2-0.5 and
//   W/2-0.5 computed for (row, col) and then applied to (x=col, y=row) after Keras swaps the
//   matrix axes. For non-square images the centre of rotation and zoom is therefore
//   (W/2-0.5, H/2-0.5) in (row, col), not the image centre. We reproduce that to match Keras.
//   In the same way tx (drawn from height_shift_range, scaled by H) moves content sideways and
//   ty (from width_shift_range, scaled by W) moves it vertically.
// - Sampling is scipy.ndimage.affine_transform(order=1) per channel: bilinear in double, stored
//   as float. Out-of-range coordinates follow scipy >= 1.6 (checked against 1.10):
//     nearest   clamp the coordinate to [0, n-1];
//     constant  cval as soon as a coordinate leaves [0, n-1] (strictly; no blending with cval,
//               unlike 'grid-constant');
//     reflect   half-sample symmetric (d c b a | a b c d | d c b a), period 2n;
//     wrap      scipy's own period n-1: the first and last samples sit on the same spot (this is
//               not 'grid-wrap'); on the seam a coordinate below 0 lands on the last sample, one
//               beyond n-1 on the first.
//   The sample position and weights are computed once per output pixel for all channels.
// - Then channel shift (one intensity for all channels, clipped to the image's range before the
//   shift), horizontal then vertical flip, brightness, and finally rescale (Keras' standardize()
//   multiplies after the transform). Brightness is PIL's ImageEnhance.Brightness on the image
//   truncated to uint8, i.e. trunc(float(u) * pixel) in float arithmetic, clipped to [0, 255] when
//   u > 1. The factor is a C float in PIL, and that matters: float(0.7) * 90 rounds to 63.0f and
//   gives 63, where 0.7 * 90 in double is 62.99999999999999 and would give 62. When values fall
//   outside [0, 255] they are first stretched into it, and mapped back afterwards.
// Random draws come from a KeyedRng, in Keras' order, so image i of epoch e gets the same
// augmentation whatever the number of threads.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <sstream>
#include <string>
#include <utility>

#ifdef __AVX2__
#include <immintrin.h>
#endif

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../core/random.hpp"

namespace minicnn {

enum class FillMode { Nearest, Constant, Reflect, Wrap };

inline std::string to_string(FillMode m) {
  switch (m) {
    case FillMode::Nearest: return "nearest";
    case FillMode::Constant: return "constant";
    case FillMode::Reflect: return "reflect";
    case FillMode::Wrap: return "wrap";
  }
  return "?";
}

inline FillMode fill_mode_from_string(const std::string& s) {
  for (FillMode m : {FillMode::Nearest, FillMode::Constant, FillMode::Reflect, FillMode::Wrap})
    if (s == to_string(m)) return m;
  throw ConfigError("fill_mode: expected one of 'nearest', 'constant', 'reflect', 'wrap', got '" +
                    s + "'");
}

namespace augment_detail {
inline std::string num(double v) {
  std::ostringstream s;
  s.precision(10);
  s << v;
  return s.str();
}
}  // namespace augment_detail

// Keras ImageDataGenerator's augmentation arguments, same names and units.
struct AugmentOptions {
  double rotation_range = 0;        // degrees: theta ~ U(-r, r)
  double width_shift_range = 0;     // < 1: fraction of the width; >= 1: pixels (real, sub-pixel)
  double height_shift_range = 0;    // < 1: fraction of the height
  bool integer_shifts = false;      // Keras' int form: choice(n) * choice([-1, 1]) pixels
  double shear_range = 0;           // degrees (Keras >= 2.1.3)
  double zoom_lo = 1, zoom_hi = 1;  // Keras zoom_range [lo, hi]; zx, zy drawn independently
  AugmentOptions& zoom_range(double z) {
    zoom_lo = 1 - z;
    zoom_hi = 1 + z;
    return *this;
  }
  double channel_shift_range = 0;
  std::optional<std::array<double, 2>> brightness_range;
  bool horizontal_flip = false, vertical_flip = false;
  FillMode fill_mode = FillMode::Nearest;
  double cval = 0;
  double rescale = 0;  // 0: none; else multiply after the transform (Keras standardize order)

  bool random() const {
    return rotation_range != 0 || width_shift_range != 0 || height_shift_range != 0 ||
           shear_range != 0 || zoom_lo != 1 || zoom_hi != 1 || channel_shift_range != 0 ||
           brightness_range.has_value() || horizontal_flip || vertical_flip;
  }

  void validate() const {
    using augment_detail::num;
    auto range = [](const char* name, double v) {
      if (!(std::isfinite(v) && v >= 0))
        throw ConfigError(std::string("AugmentOptions: ") + name +
                          " must be a finite number >= 0, got " + num(v));
    };
    range("rotation_range", rotation_range);
    range("width_shift_range", width_shift_range);
    range("height_shift_range", height_shift_range);
    range("shear_range", shear_range);
    range("channel_shift_range", channel_shift_range);
    if (integer_shifts)
      for (auto [name, v] : {std::pair<const char*, double>{"width_shift_range", width_shift_range},
                             {"height_shift_range", height_shift_range}})
        if (v != std::floor(v) || v > 1e6)
          throw ConfigError(std::string("AugmentOptions: with integer_shifts, ") + name +
                            " must be a whole number of pixels (at most 1e6), got " + num(v));
    if (!(std::isfinite(zoom_lo) && std::isfinite(zoom_hi) && zoom_lo >= 0 && zoom_lo <= zoom_hi))
      throw ConfigError("AugmentOptions: zoom_range must be finite with 0 <= lo <= hi, got [" +
                        num(zoom_lo) + ", " + num(zoom_hi) + "]");
    if (brightness_range) {
      double a = (*brightness_range)[0], b = (*brightness_range)[1];
      if (!(std::isfinite(a) && std::isfinite(b) && a >= 0 && a <= b))
        throw ConfigError(
            "AugmentOptions: brightness_range must be finite with 0 <= lo <= hi, got [" + num(a) +
            ", " + num(b) + "]");
    }
    if (!std::isfinite(cval))
      throw ConfigError("AugmentOptions: cval must be finite, got " + num(cval));
    if (!std::isfinite(rescale))
      throw ConfigError("AugmentOptions: rescale must be finite (0 for none), got " + num(rescale));
  }

  // Keras' argument names; zoom_range as [lo, hi], rescale null when 0. integer_shifts is ours:
  // Keras tells the integer form by the Python type of the shift ranges.
  nlohmann::json to_json() const {
    nlohmann::json j;
    j["rotation_range"] = rotation_range;
    j["width_shift_range"] = width_shift_range;
    j["height_shift_range"] = height_shift_range;
    j["integer_shifts"] = integer_shifts;
    j["shear_range"] = shear_range;
    j["zoom_range"] = {zoom_lo, zoom_hi};
    j["channel_shift_range"] = channel_shift_range;
    j["brightness_range"] = brightness_range
                                ? nlohmann::json{(*brightness_range)[0], (*brightness_range)[1]}
                                : nlohmann::json(nullptr);
    j["horizontal_flip"] = horizontal_flip;
    j["vertical_flip"] = vertical_flip;
    j["fill_mode"] = to_string(fill_mode);
    j["cval"] = cval;
    j["rescale"] = rescale != 0 ? nlohmann::json(rescale) : nlohmann::json(nullptr);
    return j;
  }

  // Missing keys keep their defaults; unknown keys and wrong types are errors (a misspelt
  // option would otherwise silently train without it). zoom_range may be a number z.
  static AugmentOptions from_json(const nlohmann::json& j) {
    if (!j.is_object())
      throw ConfigError("AugmentOptions::from_json: expected a JSON object, got " +
                        std::string(j.type_name()));
    AugmentOptions o;
    auto number = [](const std::string& key, const nlohmann::json& v) {
      if (!v.is_number())
        throw ConfigError("AugmentOptions::from_json: '" + key + "' must be a number, got " +
                          v.dump());
      return v.get<double>();
    };
    auto pair = [&](const std::string& key, const nlohmann::json& v) {
      if (!v.is_array() || v.size() != 2)
        throw ConfigError("AugmentOptions::from_json: '" + key +
                          "' must be a list of two numbers, got " + v.dump());
      return std::array<double, 2>{number(key, v[0]), number(key, v[1])};
    };
    auto boolean = [](const std::string& key, const nlohmann::json& v) {
      if (!v.is_boolean())
        throw ConfigError("AugmentOptions::from_json: '" + key + "' must be true or false, got " +
                          v.dump());
      return v.get<bool>();
    };
    for (auto it = j.begin(); it != j.end(); ++it) {
      const std::string& k = it.key();
      const nlohmann::json& v = it.value();
      if (k == "rotation_range") {
        o.rotation_range = number(k, v);
      } else if (k == "width_shift_range") {
        o.width_shift_range = number(k, v);
      } else if (k == "height_shift_range") {
        o.height_shift_range = number(k, v);
      } else if (k == "integer_shifts") {
        o.integer_shifts = boolean(k, v);
      } else if (k == "shear_range") {
        o.shear_range = number(k, v);
      } else if (k == "zoom_range") {
        if (v.is_number()) {
          o.zoom_range(number(k, v));
        } else {
          auto z = pair(k, v);
          o.zoom_lo = z[0];
          o.zoom_hi = z[1];
        }
      } else if (k == "channel_shift_range") {
        o.channel_shift_range = number(k, v);
      } else if (k == "brightness_range") {
        if (v.is_null())
          o.brightness_range.reset();
        else
          o.brightness_range = pair(k, v);
      } else if (k == "horizontal_flip") {
        o.horizontal_flip = boolean(k, v);
      } else if (k == "vertical_flip") {
        o.vertical_flip = boolean(k, v);
      } else if (k == "fill_mode") {
        if (!v.is_string())
          throw ConfigError("AugmentOptions::from_json: 'fill_mode' must be a string, got " +
                            v.dump());
        o.fill_mode = fill_mode_from_string(v.get<std::string>());
      } else if (k == "cval") {
        o.cval = number(k, v);
      } else if (k == "rescale") {
        o.rescale = v.is_null() ? 0.0 : number(k, v);
      } else {
        throw ConfigError("AugmentOptions::from_json: unknown option '" + k + "'");
      }
    }
    o.validate();
    return o;
  }

  // The origin notebook's generator (its rescale is left out: minicnn preprocesses separately).
  static AugmentOptions notebook() {
    AugmentOptions o;
    o.rotation_range = 90;
    o.width_shift_range = 0.1;
    o.height_shift_range = 0.1;
    o.shear_range = 0.1;
    o.zoom_range(0.1);
    o.horizontal_flip = true;
    o.fill_mode = FillMode::Nearest;
    return o;
  }
};

// Keras' transform_parameters dict.
struct TransformParams {
  // theta, shear in degrees; tx from height_shift_range, ty from width_shift_range, in pixels.
  double theta = 0, tx = 0, ty = 0, shear = 0, zx = 1, zy = 1;
  bool flip_horizontal = false, flip_vertical = false;
  std::optional<double> channel_shift_intensity, brightness;

  // Keras calls scipy only when some affine parameter is not neutral.
  bool has_affine() const {
    return theta != 0 || tx != 0 || ty != 0 || shear != 0 || zx != 1 || zy != 1;
  }
};

// Keras' get_random_transform, for options that pass validate().
inline TransformParams random_transform(const AugmentOptions& o, int height, int width,
                                        KeyedRng& rng) {
  // One fused multiply-add, so a draw is the same number whatever the compiler flags.
  auto uniform = [&](double lo, double hi) { return std::fma(hi - lo, rng.uniform(), lo); };
  auto shift = [&](double range, int extent) -> double {
    if (range == 0) return 0;
    if (o.integer_shifts) {  // np.random.choice(n) * np.random.choice([-1, 1])
      double magnitude = static_cast<double>(rng.below(static_cast<uint64_t>(range)));
      return rng.below(2) == 0 ? -magnitude : magnitude;
    }
    double t = uniform(-range, range);
    return range < 1 ? t * extent : t;
  };
  TransformParams p;
  if (o.rotation_range != 0) p.theta = uniform(-o.rotation_range, o.rotation_range);
  p.tx = shift(o.height_shift_range, height);
  p.ty = shift(o.width_shift_range, width);
  if (o.shear_range != 0) p.shear = uniform(-o.shear_range, o.shear_range);
  if (!(o.zoom_lo == 1 && o.zoom_hi == 1)) {
    p.zx = uniform(o.zoom_lo, o.zoom_hi);
    p.zy = uniform(o.zoom_lo, o.zoom_hi);
  }
  // Both flip draws happen even when the option is off, as in Keras.
  p.flip_horizontal = rng.uniform() < 0.5 && o.horizontal_flip;
  p.flip_vertical = rng.uniform() < 0.5 && o.vertical_flip;
  if (o.channel_shift_range != 0)
    p.channel_shift_intensity = uniform(-o.channel_shift_range, o.channel_shift_range);
  if (o.brightness_range)
    p.brightness = uniform((*o.brightness_range)[0], (*o.brightness_range)[1]);
  return p;
}

namespace augment_detail {

struct Mat3 {
  double m[3][3];
};
inline Mat3 mul(const Mat3& a, const Mat3& b) {
  Mat3 c;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      double s = 0;
      for (int k = 0; k < 3; ++k) s += a.m[i][k] * b.m[k][j];
      c.m[i][j] = s;
    }
  return c;
}

// Output pixel (r, c) samples the input at row = rr*r + rc*c + r0, col = cr*r + cc*c + c0.
struct PullMap {
  double rr, rc, r0, cr, cc, c0;
};

// Keras B's matrix, centred and axis-swapped, as coefficients on (row, col).
inline PullMap keras_pull_map(const TransformParams& p, int height, int width) {
  const double kDeg = 3.14159265358979323846 / 180.0;
  bool any = false;
  Mat3 m{};
  auto then = [&](const Mat3& f) {
    m = any ? mul(m, f) : f;
    any = true;
  };
  if (p.theta != 0) {
    double t = p.theta * kDeg, c = std::cos(t), s = std::sin(t);
    then({{{c, -s, 0}, {s, c, 0}, {0, 0, 1}}});
  }
  if (p.tx != 0 || p.ty != 0) then({{{1, 0, p.tx}, {0, 1, p.ty}, {0, 0, 1}}});
  if (p.shear != 0) {
    double s = p.shear * kDeg;
    then({{{1, -std::sin(s), 0}, {0, std::cos(s), 0}, {0, 0, 1}}});
  }
  if (p.zx != 1 || p.zy != 1) then({{{p.zx, 0, 0}, {0, p.zy, 0}, {0, 0, 1}}});
  if (!any) m = {{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}}};
  // Offsets from (H, W) as Keras computes them for (row, col), used after the swap on (col, row).
  const double ox = height / 2.0 - 0.5, oy = width / 2.0 - 0.5;
  m = mul(mul({{{1, 0, ox}, {0, 1, oy}, {0, 0, 1}}}, m), {{{1, 0, -ox}, {0, 1, -oy}, {0, 0, 1}}});
  // Swapping rows and columns 0/1: the first matrix axis now means the column.
  return {m.m[1][1], m.m[1][0], m.m[1][2], m.m[0][1], m.m[0][0], m.m[0][2]};
}

// Where scipy's order-1 spline samples for coordinate x on an axis of n samples; false when
// mode is constant and x lies outside [0, n-1]. The result lies in [0, n-1], except reflect
// which may return a point in (-1, 0) or (n-1, n): both neighbours there are the edge sample.
// The integer arithmetic mirrors scipy's so the seams of 'wrap' fall on the same side.
inline bool fold(double& x, int64_t n, FillMode mode) {
  if (x >= 0 && x <= static_cast<double>(n - 1)) return true;
  switch (mode) {
    case FillMode::Nearest: x = x < 0 ? 0.0 : static_cast<double>(n - 1); return true;
    case FillMode::Constant: return false;
    case FillMode::Reflect: {
      if (n <= 1) {
        x = 0;
        return true;
      }
      const int64_t period = 2 * n;
      if (x < 0) {
        if (x < -static_cast<double>(period))
          x += static_cast<double>(period * static_cast<int64_t>(-x / period));
        x = x < -static_cast<double>(n) ? x + static_cast<double>(period) : -x - 1;
      } else {
        x -= static_cast<double>(period * static_cast<int64_t>(x / period));
        if (x >= static_cast<double>(n)) x = static_cast<double>(period) - x - 1;
      }
      return true;
    }
    case FillMode::Wrap: {
      if (n <= 1) {
        x = 0;
        return true;
      }
      const int64_t period = n - 1;
      if (x < 0)
        x += static_cast<double>(period * (static_cast<int64_t>(-x / period) + 1));
      else
        x -= static_cast<double>(period * static_cast<int64_t>(x / period));
      return true;
    }
  }
  return true;
}

// Neighbour indices and weights along one axis for a folded coordinate.
struct Taps {
  int i0, i1;
  double w0, w1;
};
inline Taps taps(double x, int n) {
  double f = std::floor(x);
  int i = static_cast<int>(f);
  Taps t;
  t.w1 = x - f;
  t.w0 = 1.0 - t.w1;
  t.i0 = std::clamp(i, 0, n - 1);
  t.i1 = std::clamp(i + 1, 0, n - 1);
  return t;
}

#ifdef __AVX2__
// Four consecutive values as doubles.
inline __m256d lanes4(const uint8_t* p) {
  int32_t u;
  std::memcpy(&u, p, sizeof(u));
  return _mm256_cvtepi32_pd(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(u)));
}
inline __m256d lanes4(const float* p) {
  return _mm256_cvtps_pd(_mm_loadu_ps(p));
}
#endif

// One output pixel of the warp: samples the input at (sr, sc) into o[0..C).
template <int NC, FillMode Mode, typename In>
inline void warp_pixel(const In* in, int H, int W, int C, double sr, double sc, float cval,
                       float* o) {
  const int64_t row_stride = static_cast<int64_t>(W) * C;
  const In* p;
  int64_t dr, dc;
  double wr0, wr1, wc0, wc1;
  if (sr >= 0 && sr < H - 1 && sc >= 0 && sc < W - 1) {
    const int r0 = static_cast<int>(sr), c0 = static_cast<int>(sc);
    wr1 = sr - r0;
    wr0 = 1.0 - wr1;
    wc1 = sc - c0;
    wc0 = 1.0 - wc1;
    p = in + r0 * row_stride + static_cast<int64_t>(c0) * C;
    dr = row_stride;
    dc = C;
  } else {
    if (!fold(sr, H, Mode) || !fold(sc, W, Mode)) {
      for (int k = 0; k < C; ++k) o[k] = cval;
      return;
    }
    const Taps tr = taps(sr, H), tc = taps(sc, W);
    p = in + tr.i0 * row_stride + static_cast<int64_t>(tc.i0) * C;
    dr = (tr.i1 - tr.i0) * row_stride;
    dc = static_cast<int64_t>(tc.i1 - tc.i0) * C;
    wr0 = tr.w0;
    wr1 = tr.w1;
    wc0 = tc.w0;
    wc1 = tc.w1;
  }
  // scipy's accumulation: each tap times the row weight, then the column weight.
#ifdef __AVX2__
  if constexpr (NC == 3) {
    // Each tap is read as four lanes (the fourth is the next pixel's first value, computed and
    // dropped); only a tap on the very last pixel would read past the end.
    if (p + dr + dc != in + (static_cast<int64_t>(H) * W - 1) * C) {
      const __m256d w0 = _mm256_set1_pd(wr0), w1 = _mm256_set1_pd(wr1);
      const __m256d v0 = _mm256_set1_pd(wc0), v1 = _mm256_set1_pd(wc1);
      __m256d t = _mm256_mul_pd(_mm256_mul_pd(lanes4(p), w0), v0);
      t = _mm256_add_pd(t, _mm256_mul_pd(_mm256_mul_pd(lanes4(p + dc), w0), v1));
      t = _mm256_add_pd(t, _mm256_mul_pd(_mm256_mul_pd(lanes4(p + dr), w1), v0));
      t = _mm256_add_pd(t, _mm256_mul_pd(_mm256_mul_pd(lanes4(p + dr + dc), w1), v1));
      const __m128 f = _mm256_cvtpd_ps(t);
      _mm_storel_pi(reinterpret_cast<__m64*>(o), f);
      _mm_store_ss(o + 2, _mm_movehl_ps(f, f));
      return;
    }
  }
#endif
  for (int k = 0; k < (NC > 0 ? NC : C); ++k) {
    double t = static_cast<double>(p[k]) * wr0 * wc0;
    t += static_cast<double>(p[k + dc]) * wr0 * wc1;
    t += static_cast<double>(p[k + dr]) * wr1 * wc0;
    t += static_cast<double>(p[k + dr + dc]) * wr1 * wc1;
    o[k] = static_cast<float>(t);
  }
}

#ifdef __AVX2__
// Four consecutive output pixels of a three-channel image, for the common cases: all samples
// inside the image, or fill mode 'nearest' (whose clamping vectorises). The coordinates and
// weights of the four are computed together, then each pixel's taps are read as four lanes
// (three channels and one value that is dropped). Returns false, writing nothing, when a sample
// needs the other boundary rules or touches the last pixel (whose four-lane read would pass the
// end of the image); the caller then takes the scalar path.
template <FillMode Mode, typename In>
inline bool warp4_rgb(const In* in, int H, int W, __m256d sr, __m256d sc, float* o) {
  const __m256d zero = _mm256_setzero_pd();
  const __m256d hmax = _mm256_set1_pd(H - 1), wmax = _mm256_set1_pd(W - 1);
  if constexpr (Mode == FillMode::Nearest) {
    sr = _mm256_min_pd(_mm256_max_pd(sr, zero), hmax);
    sc = _mm256_min_pd(_mm256_max_pd(sc, zero), wmax);
  } else {
    const __m256d inside = _mm256_and_pd(
        _mm256_and_pd(_mm256_cmp_pd(sr, zero, _CMP_GE_OQ), _mm256_cmp_pd(sr, hmax, _CMP_LE_OQ)),
        _mm256_and_pd(_mm256_cmp_pd(sc, zero, _CMP_GE_OQ), _mm256_cmp_pd(sc, wmax, _CMP_LE_OQ)));
    if (_mm256_movemask_pd(inside) != 0xF) return false;
  }
  const int row_stride = W * 3;
  const __m128i r0 = _mm256_cvttpd_epi32(sr), c0 = _mm256_cvttpd_epi32(sc);
  // The second tap repeats the first on the last row or column (its weight is zero there).
  const __m128i dr =
      _mm_and_si128(_mm_cmplt_epi32(r0, _mm_set1_epi32(H - 1)), _mm_set1_epi32(row_stride));
  const __m128i dc = _mm_and_si128(_mm_cmplt_epi32(c0, _mm_set1_epi32(W - 1)), _mm_set1_epi32(3));
  const __m128i off = _mm_add_epi32(_mm_mullo_epi32(r0, _mm_set1_epi32(row_stride)),
                                    _mm_mullo_epi32(c0, _mm_set1_epi32(3)));
  const __m128i far = _mm_add_epi32(off, _mm_add_epi32(dr, dc));
  if (_mm_movemask_epi8(_mm_cmpeq_epi32(far, _mm_set1_epi32((H * W - 1) * 3))) != 0) return false;
  alignas(16) int32_t offs[4], drs[4], dcs[4];
  alignas(32) double w[4][4];
  _mm_store_si128(reinterpret_cast<__m128i*>(offs), off);
  _mm_store_si128(reinterpret_cast<__m128i*>(drs), dr);
  _mm_store_si128(reinterpret_cast<__m128i*>(dcs), dc);
  const __m256d one = _mm256_set1_pd(1.0);
  const __m256d wr1 = _mm256_sub_pd(sr, _mm256_cvtepi32_pd(r0));
  const __m256d wc1 = _mm256_sub_pd(sc, _mm256_cvtepi32_pd(c0));
  _mm256_store_pd(w[0], _mm256_sub_pd(one, wr1));
  _mm256_store_pd(w[1], wr1);
  _mm256_store_pd(w[2], _mm256_sub_pd(one, wc1));
  _mm256_store_pd(w[3], wc1);
  for (int q = 0; q < 4; ++q) {
    const In* p = in + offs[q];
    const int d_r = drs[q], d_c = dcs[q];
    const __m256d w0 = _mm256_broadcast_sd(&w[0][q]), w1 = _mm256_broadcast_sd(&w[1][q]);
    const __m256d v0 = _mm256_broadcast_sd(&w[2][q]), v1 = _mm256_broadcast_sd(&w[3][q]);
    // scipy's accumulation: each tap times the row weight, then the column weight.
    __m256d t = _mm256_mul_pd(_mm256_mul_pd(lanes4(p), w0), v0);
    t = _mm256_add_pd(t, _mm256_mul_pd(_mm256_mul_pd(lanes4(p + d_c), w0), v1));
    t = _mm256_add_pd(t, _mm256_mul_pd(_mm256_mul_pd(lanes4(p + d_r), w1), v0));
    t = _mm256_add_pd(t, _mm256_mul_pd(_mm256_mul_pd(lanes4(p + d_r + d_c), w1), v1));
    const __m128 f = _mm256_cvtpd_ps(t);
    _mm_storel_pi(reinterpret_cast<__m64*>(o + 3 * q), f);
    _mm_store_ss(o + 3 * q + 2, _mm_movehl_ps(f, f));
  }
  return true;
}
#endif

// The affine warp with flips folded into which source column and row each output pixel takes
// (flips commute with everything that follows). NC > 0 fixes the channel count at compile time;
// Mode is a template argument so the boundary handling compiles to a few instructions.
template <int NC, FillMode Mode, typename In>
void warp(const In* in, int H, int W, int C_, const PullMap& m, float cval, bool flip_h,
          bool flip_v, float* out) {
  const int C = NC > 0 ? NC : C_;
  const int64_t row_stride = static_cast<int64_t>(W) * C;
  for (int orow = 0; orow < H; ++orow) {
    const int r = flip_v ? H - 1 - orow : orow;
    float* o = out + orow * row_stride;
    const double rr = r * m.rr, cr = r * m.cr;
    int j = 0;
#ifdef __AVX2__
    if constexpr (NC == 3) {
      if (static_cast<int64_t>(H) * W * 3 < (int64_t{1} << 31)) {
        const __m256d lane = _mm256_setr_pd(0, 1, 2, 3);
        const __m256d rrv = _mm256_set1_pd(rr), crv = _mm256_set1_pd(cr);
        const __m256d rcv = _mm256_set1_pd(m.rc), ccv = _mm256_set1_pd(m.cc);
        const __m256d r0v = _mm256_set1_pd(m.r0), c0v = _mm256_set1_pd(m.c0);
        for (; j + 4 <= W; j += 4) {
          const __m256d cv = flip_h ? _mm256_sub_pd(_mm256_set1_pd(W - 1 - j), lane)
                                    : _mm256_add_pd(_mm256_set1_pd(j), lane);
          const __m256d sr = _mm256_add_pd(_mm256_add_pd(rrv, _mm256_mul_pd(cv, rcv)), r0v);
          const __m256d sc = _mm256_add_pd(_mm256_add_pd(crv, _mm256_mul_pd(cv, ccv)), c0v);
          if (warp4_rgb<Mode>(in, H, W, sr, sc, o + j * 3)) continue;
          for (int q = j; q < j + 4; ++q) {
            const int c = flip_h ? W - 1 - q : q;
            warp_pixel<NC, Mode>(in, H, W, C, (rr + c * m.rc) + m.r0, (cr + c * m.cc) + m.c0, cval,
                                 o + q * 3);
          }
        }
      }
    }
#endif
    for (; j < W; ++j) {
      const int c = flip_h ? W - 1 - j : j;
      // Summed in scipy's order: (row term + col term) + offset.
      warp_pixel<NC, Mode>(in, H, W, C, (rr + c * m.rc) + m.r0, (cr + c * m.cc) + m.c0, cval,
                           o + static_cast<int64_t>(j) * C);
    }
  }
}

template <int NC, typename In>
void warp_mode(const In* in, int H, int W, int C, const PullMap& m, FillMode mode, float cval,
               bool flip_h, bool flip_v, float* out) {
  switch (mode) {
    case FillMode::Nearest:
      return warp<NC, FillMode::Nearest>(in, H, W, C, m, cval, flip_h, flip_v, out);
    case FillMode::Constant:
      return warp<NC, FillMode::Constant>(in, H, W, C, m, cval, flip_h, flip_v, out);
    case FillMode::Reflect:
      return warp<NC, FillMode::Reflect>(in, H, W, C, m, cval, flip_h, flip_v, out);
    case FillMode::Wrap: return warp<NC, FillMode::Wrap>(in, H, W, C, m, cval, flip_h, flip_v, out);
  }
}

template <typename In>
void copy_flipped(const In* in, int H, int W, int C, bool flip_h, bool flip_v, float* out) {
  const int64_t row_stride = static_cast<int64_t>(W) * C;
  for (int r = 0; r < H; ++r) {
    const In* irow = in + r * row_stride;
    float* orow = out + (flip_v ? H - 1 - r : r) * row_stride;
    if (!flip_h) {
      for (int64_t i = 0; i < row_stride; ++i) orow[i] = static_cast<float>(irow[i]);
    } else {
      for (int c = 0; c < W; ++c)
        for (int k = 0; k < C; ++k)
          orow[static_cast<int64_t>(W - 1 - c) * C + k] = static_cast<float>(irow[c * C + k]);
    }
  }
}

inline void min_max(const float* x, int64_t n, float& lo, float& hi) {
  lo = hi = x[0];
  for (int64_t i = 1; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
}

// float32 image + float32(intensity), clipped to the range before the shift (numpy's casts).
inline void channel_shift(float* x, int64_t n, double intensity) {
  float lo, hi;
  min_max(x, n, lo, hi);
  const float s = static_cast<float>(intensity);
  for (int64_t i = 0; i < n; ++i) x[i] = std::min(std::max(x[i] + s, lo), hi);
}

// Keras B's apply_brightness_shift(scale=False): array_to_img (uint8 truncation, stretched to
// [0, 255] only when values leave it), ImageEnhance.Brightness = Image.blend(black, img, u),
// img_to_array, and the stretch undone. Every step is float32 as in numpy and PIL.
inline void brightness(float* x, int H, int W, int C, double u) {
  if (C != 1 && C != 3 && C != 4)
    throw ShapeError(
        "apply_transform: brightness works on 1, 3 or 4 channels (PIL modes L, RGB, "
        "RGBA), got " +
        std::to_string(C));
  const int64_t n = static_cast<int64_t>(H) * W * C;
  float lo, hi;
  min_max(x, n, lo, hi);
  const bool stretch = lo < 0 || hi > 255;
  const float span = hi - lo;
  // Blending and the way back depend only on the uint8 level: two tables of 256.
  const float f = static_cast<float>(u);  // PIL passes the factor as a C float
  uint8_t blend[256];
  float back[256];
  for (int p = 0; p < 256; ++p) {
    const float t = f * static_cast<float>(p);
    if (f >= 0.0f && f <= 1.0f)
      blend[p] = static_cast<uint8_t>(t);
    else
      blend[p] = t <= 0.0f ? 0 : t >= 255.0f ? 255 : static_cast<uint8_t>(t);
    // numpy rounds (b / 255) * span before adding lo; the volatile keeps the compiler from
    // fusing the two into one FMA (GCC's default -ffp-contract=fast would).
    volatile float scaled = static_cast<float>(p) / 255.0f * span;
    back[p] = stretch ? scaled + lo : static_cast<float>(p);
  }
  for (int64_t i = 0; i < n; ++i) {
    float y = x[i];
    if (stretch) {
      y -= lo;
      if (span != 0) y /= span;
      y *= 255.0f;
    }
    // astype('uint8') truncates; y is in [0, 255] here unless the image held NaN or infinity.
    const int p = y >= 0.0f && y < 256.0f ? static_cast<int>(y) : 0;
    // The black image carries the alpha channel, so blending leaves alpha unchanged.
    x[i] = back[C == 4 && i % 4 == 3 ? p : blend[p]];
  }
}

inline void check_params(const TransformParams& p) {
  auto bad = [](const char* name, double v) {
    throw ConfigError(std::string("apply_transform: ") + name + " must be finite and below 1e9 " +
                      "in magnitude, got " + num(v));
  };
  for (auto [name, v] : {std::pair<const char*, double>{"theta", p.theta},
                         {"tx", p.tx},
                         {"ty", p.ty},
                         {"shear", p.shear},
                         {"zx", p.zx},
                         {"zy", p.zy}})
    if (!(std::abs(v) < 1e9)) bad(name, v);
  if (p.channel_shift_intensity && !std::isfinite(*p.channel_shift_intensity))
    bad("channel_shift_intensity", *p.channel_shift_intensity);
  if (p.brightness && !std::isfinite(*p.brightness)) bad("brightness", *p.brightness);
}

template <typename In>
void apply(const In* in, int H, int W, int C, const TransformParams& p, const AugmentOptions& o,
           float* out) {
  if (H <= 0 || W <= 0 || C <= 0)
    throw ShapeError("apply_transform: image must have positive height, width and channels, got " +
                     std::to_string(H) + "x" + std::to_string(W) + "x" + std::to_string(C));
  check_params(p);
  if (p.has_affine()) {
    const PullMap m = keras_pull_map(p, H, W);
    const float cval = static_cast<float>(o.cval);
    if (C == 3)
      warp_mode<3>(in, H, W, C, m, o.fill_mode, cval, p.flip_horizontal, p.flip_vertical, out);
    else if (C == 1)
      warp_mode<1>(in, H, W, C, m, o.fill_mode, cval, p.flip_horizontal, p.flip_vertical, out);
    else
      warp_mode<0>(in, H, W, C, m, o.fill_mode, cval, p.flip_horizontal, p.flip_vertical, out);
  } else {
    copy_flipped(in, H, W, C, p.flip_horizontal, p.flip_vertical, out);
  }
  const int64_t n = static_cast<int64_t>(H) * W * C;
  if (p.channel_shift_intensity) channel_shift(out, n, *p.channel_shift_intensity);
  if (p.brightness) brightness(out, H, W, C, *p.brightness);
  if (o.rescale != 0) {
    const float s = static_cast<float>(o.rescale);
    for (int64_t i = 0; i < n; ++i) out[i] *= s;
  }
}

}  // namespace augment_detail

// Keras' apply_transform + rescale on one HWC float image (values in [0,255] units); in and out
// must not alias.
inline void apply_transform(const float* in, int height, int width, int channels,
                            const TransformParams& p, const AugmentOptions& o, float* out) {
  augment_detail::apply(in, height, width, channels, p, o, out);
}

// uint8 HWC in -> augmented float out: random_transform, then apply_transform (sampling the
// uint8 pixels directly, which gives the same numbers as converting them to float first).
inline void augment_image(const uint8_t* in, int height, int width, int channels,
                          const AugmentOptions& o, KeyedRng& rng, float* out) {
  if (!o.random()) {
    TransformParams none;
    augment_detail::apply(in, height, width, channels, none, o, out);
    return;
  }
  augment_detail::apply(in, height, width, channels, random_transform(o, height, width, rng), o,
                        out);
}

}  // namespace minicnn
