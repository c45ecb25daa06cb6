// Keras ImageDataGenerator augmentation (data/augment.hpp): outputs against fixtures that
// tools/make_augment_fixtures.py computes with numpy, scipy.ndimage and PIL (Keras' "B"
// behaviour), hand-checkable geometry, scipy's boundary rules, sampling, thread determinism
// and the options' validation and JSON form.
#include <minicnn/data/augment.hpp>

#include <chrono>
#include <fstream>
#include <set>
#include <thread>

#include "test_support.hpp"

using namespace minicnn;

namespace {

std::string augment_fixture(const std::string& name) {
  return mt::fixtures_dir() + "/augment/" + name;
}

struct Image3 {
  int h, w, c;
  std::vector<float> px;
  float at(int r, int col, int k) const { return px[(static_cast<size_t>(r) * w + col) * c + k]; }
};

Image3 load_image(const std::string& file) {
  NpyArray a = load_npy(augment_fixture(file));
  REQUIRE(a.dims.size() == 3);
  Image3 im{
      static_cast<int>(a.dims[0]), static_cast<int>(a.dims[1]), static_cast<int>(a.dims[2]), {}};
  TensorF t = a.to_tensor<float>(file);
  im.px.assign(t.data(), t.data() + t.size());
  return im;
}

// An image whose pixels are all different, so a misplaced sample cannot go unnoticed.
Image3 ramp(int h, int w, int c) {
  Image3 im{h, w, c, std::vector<float>(static_cast<size_t>(h) * w * c)};
  for (size_t i = 0; i < im.px.size(); ++i) im.px[i] = static_cast<float>((i * 37) % 251);
  return im;
}

Image3 transformed(const Image3& in, const TransformParams& p, const AugmentOptions& o) {
  Image3 out{in.h, in.w, in.c, std::vector<float>(in.px.size())};
  apply_transform(in.px.data(), in.h, in.w, in.c, p, o, out.px.data());
  return out;
}

TransformParams params_from_json(const nlohmann::json& j) {
  TransformParams p;
  p.theta = j.at("theta").get<double>();
  p.tx = j.at("tx").get<double>();
  p.ty = j.at("ty").get<double>();
  p.shear = j.at("shear").get<double>();
  p.zx = j.at("zx").get<double>();
  p.zy = j.at("zy").get<double>();
  p.flip_horizontal = j.at("flip_horizontal").get<bool>();
  p.flip_vertical = j.at("flip_vertical").get<bool>();
  if (!j.at("channel_shift_intensity").is_null())
    p.channel_shift_intensity = j.at("channel_shift_intensity").get<double>();
  if (!j.at("brightness").is_null()) p.brightness = j.at("brightness").get<double>();
  return p;
}

void check_fixtures(const std::string& shape_suffix) {
  std::ifstream f(augment_fixture("manifest.json"));
  REQUIRE(f.good());
  nlohmann::json manifest = nlohmann::json::parse(f);
  int checked = 0;
  for (const auto& cs : manifest.at("cases")) {
    std::string name = cs.at("name").get<std::string>();
    if (name.size() < shape_suffix.size() ||
        name.compare(name.size() - shape_suffix.size(), shape_suffix.size(), shape_suffix) != 0)
      continue;
    INFO("fixture " << name);
    Image3 in = load_image(cs.at("input").get<std::string>());
    Image3 expected = load_image(cs.at("output").get<std::string>());
    REQUIRE(expected.px.size() == in.px.size());
    TransformParams p = params_from_json(cs.at("params"));
    AugmentOptions o;
    o.fill_mode = fill_mode_from_string(cs.at("fill_mode").get<std::string>());
    o.cval = cs.at("cval").get<double>();
    o.rescale = cs.at("rescale").get<double>();
    Image3 out = transformed(in, p, o);
    double err = 0;
    size_t worst = 0;
    for (size_t i = 0; i < out.px.size(); ++i) {
      double e = std::abs(double(out.px[i]) - double(expected.px[i]));
      if (e > err) {
        err = e;
        worst = i;
      }
    }
    MESSAGE(name << ": max |C++ - Keras/scipy| = " << err << " (at flat index " << worst << ")");
    CHECK(err <= 1e-3);
    // Sampling uint8 pixels directly (augment_image's path) gives the same numbers.
    std::vector<uint8_t> in8(in.px.size());
    for (size_t i = 0; i < in8.size(); ++i) in8[i] = static_cast<uint8_t>(in.px[i]);
    std::vector<float> out8(in.px.size());
    augment_detail::apply(in8.data(), in.h, in.w, in.c, p, o, out8.data());
    CHECK(std::memcmp(out8.data(), out.px.data(), out8.size() * sizeof(float)) == 0);
    ++checked;
  }
  CHECK(checked == 19);
}

}  // namespace

TEST_CASE("fixtures: square 24x24 images match Keras B / scipy / PIL") {
  check_fixtures("_24x24");
}

TEST_CASE("fixtures: non-square 17x29 images match Keras B / scipy / PIL") {
  check_fixtures("_17x29");
}

TEST_CASE("1 and 4 channels agree with the fixture-checked 3-channel path") {
  // scipy warps each channel on its own, so any channel count must give, per channel, what the
  // three-channel path gives; brightness keeps an RGBA image's (truncated) alpha.
  Image3 rgb = load_image("input_17x29.npy");
  TransformParams p;
  p.theta = 27;
  p.tx = -3.3;
  p.zx = 1.6;
  p.flip_vertical = true;
  p.channel_shift_intensity = 9.5;
  p.brightness = 1.2;
  for (FillMode mode : {FillMode::Nearest, FillMode::Constant, FillMode::Reflect, FillMode::Wrap}) {
    INFO(to_string(mode));
    AugmentOptions o;
    o.fill_mode = mode;
    o.cval = 33;
    Image3 ref = transformed(rgb, p, o);
    Image3 grey{rgb.h, rgb.w, 1, {}}, rgba{rgb.h, rgb.w, 4, {}};
    for (int i = 0; i < rgb.h * rgb.w; ++i) {
      grey.px.push_back(rgb.px[i * 3 + 1]);
      for (int k = 0; k < 3; ++k) rgba.px.push_back(rgb.px[i * 3 + k]);
      rgba.px.push_back(100.75f);
    }
    // Channel shift and brightness look at the whole image's range, so compare them on the
    // geometry alone for the grey image, and in full for RGBA (alpha stays inside the range).
    TransformParams geometry = p;
    geometry.channel_shift_intensity.reset();
    geometry.brightness.reset();
    Image3 ref_geo = transformed(rgb, geometry, o), g = transformed(grey, geometry, o);
    Image3 a = transformed(rgba, p, o);
    for (int i = 0; i < rgb.h * rgb.w; ++i) {
      CHECK(g.px[i] == ref_geo.px[i * 3 + 1]);
      for (int k = 0; k < 3; ++k) CHECK(a.px[i * 4 + k] == ref.px[i * 3 + k]);
      // Alpha: 100.75 (or cval 33 where the constant fill applies) + 9.5, truncated by PIL.
      const float alpha = a.px[i * 4 + 3];
      CHECK((alpha == 110.0f || (mode == FillMode::Constant && alpha == 42.0f)));
    }
  }
}

TEST_CASE("scipy's order-1 boundary rules on a 1-D signal") {
  // Values scipy 1.10 gives for map_coordinates(order=1) on [10, 20, 30, 40], cval -100.
  const double a[4] = {10, 20, 30, 40};
  const double xs[] = {-3.5, -2.5, -1.5,  -1.0, -0.999, -0.5, -0.001, 0,        1.5,
                       2.9,  3.0,  3.001, 3.5,  3.999,  4.0,  4.5,    5.5,      6.5,
                       7.5,  9.25, -7.25, -3.0, -6.0,   6.0,  -1e-12, 3 + 1e-12};
  struct Row {
    FillMode mode;
    std::vector<double> v;
  };
  const double K = -100;
  const Row rows[] = {
      {FillMode::Nearest, {10, 10, 10, 10, 10, 10, 10, 10, 25, 39, 40, 40, 40,
                           40, 40, 40, 40, 40, 40, 40, 10, 10, 10, 40, 10, 40}},
      {FillMode::Constant,
       {K, K, K, K, K, K, K, 10, 25, 39, 40, K, K, K, K, K, K, K, K, K, K, K, K, K, K, K}},
      {FillMode::Reflect, {35, 25, 15, 10, 10, 10, 10,   10,   25, 39, 40, 40, 40,
                           40, 40, 35, 25, 15, 10, 22.5, 17.5, 30, 30, 20, 10, 40}},
      {FillMode::Wrap, {35,    15, 25, 30, 30.01, 35, 39.99, 10,   25, 39, 40, 10.01, 15,
                        19.99, 20, 25, 35, 15,    25, 12.5,  27.5, 40, 40, 10, 40,    10}},
  };
  for (const Row& row : rows) {
    for (size_t i = 0; i < std::size(xs); ++i) {
      double x = xs[i], v;
      if (!augment_detail::fold(x, 4, row.mode)) {
        v = K;
      } else {
        augment_detail::Taps t = augment_detail::taps(x, 4);
        v = a[t.i0] * t.w0 + a[t.i1] * t.w1;
      }
      INFO(to_string(row.mode) << " at " << xs[i]);
      CHECK(v == doctest::Approx(row.v[i]).epsilon(1e-9));
    }
  }
}

TEST_CASE("90 degree rotation of a square image turns it counter-clockwise on screen") {
  Image3 in = ramp(8, 8, 3);
  TransformParams p;
  p.theta = 90;
  Image3 out = transformed(in, p, AugmentOptions{});
  // B: the top-right pixel goes to the top-left, the top-left one to the bottom-left.
  for (int r = 0; r < 8; ++r)
    for (int c = 0; c < 8; ++c)
      for (int k = 0; k < 3; ++k) CHECK(out.at(r, c, k) == doctest::Approx(in.at(c, 7 - r, k)));
  CHECK(out.at(0, 0, 0) == doctest::Approx(in.at(0, 7, 0)));
  CHECK(out.at(7, 0, 0) == doctest::Approx(in.at(0, 0, 0)));
}

TEST_CASE("integer shifts: tx moves content left, ty moves it up (B)") {
  Image3 in = ramp(17, 29, 3);
  AugmentOptions o;
  o.fill_mode = FillMode::Constant;
  o.cval = -5;
  SUBCASE("tx = 3 (from height_shift_range) is horizontal") {
    TransformParams p;
    p.tx = 3;
    Image3 out = transformed(in, p, o);
    for (int r = 0; r < 17; ++r)
      for (int c = 0; c < 29; ++c)
        for (int k = 0; k < 3; ++k)
          CHECK(out.at(r, c, k) == (c + 3 < 29 ? in.at(r, c + 3, k) : -5.0f));
  }
  SUBCASE("ty = 2 (from width_shift_range) is vertical") {
    TransformParams p;
    p.ty = 2;
    Image3 out = transformed(in, p, o);
    for (int r = 0; r < 17; ++r)
      for (int c = 0; c < 29; ++c)
        for (int k = 0; k < 3; ++k)
          CHECK(out.at(r, c, k) == (r + 2 < 17 ? in.at(r + 2, c, k) : -5.0f));
  }
  SUBCASE("negative shifts move the other way and 'nearest' repeats the edge") {
    TransformParams p;
    p.tx = -4;
    p.ty = -1;
    Image3 out = transformed(in, p, AugmentOptions{});
    for (int r = 0; r < 17; ++r)
      for (int c = 0; c < 29; ++c)
        CHECK(out.at(r, c, 1) == in.at(std::max(r - 1, 0), std::max(c - 4, 0), 1));
  }
}

TEST_CASE("non-square images rotate about Keras B's misplaced centre") {
  // 17x29: B's fixed point is (row, col) = (W/2-0.5, H/2-0.5) = (14, 8), not (8, 14).
  Image3 in = ramp(17, 29, 3);
  TransformParams p;
  p.theta = 180;
  Image3 out = transformed(in, p, AugmentOptions{});
  CHECK(out.at(14, 8, 0) == doctest::Approx(in.at(14, 8, 0)));
  CHECK(out.at(8, 14, 0) != doctest::Approx(in.at(8, 14, 0)));
  for (int r = 12; r < 17; ++r)
    for (int c = 0; c <= 16; ++c)
      CHECK(out.at(r, c, 2) == doctest::Approx(in.at(28 - r, 16 - c, 2)));
}

TEST_CASE("flips mirror columns and rows") {
  Image3 in = ramp(5, 7, 3);
  TransformParams h, v, both;
  h.flip_horizontal = true;
  v.flip_vertical = true;
  both.flip_horizontal = both.flip_vertical = true;
  Image3 oh = transformed(in, h, {}), ov = transformed(in, v, {}), ob = transformed(in, both, {});
  for (int r = 0; r < 5; ++r)
    for (int c = 0; c < 7; ++c)
      for (int k = 0; k < 3; ++k) {
        CHECK(oh.at(r, c, k) == in.at(r, 6 - c, k));
        CHECK(ov.at(r, c, k) == in.at(4 - r, c, k));
        CHECK(ob.at(r, c, k) == in.at(4 - r, 6 - c, k));
      }
  // Flips act after the warp: a shift then a flip is the flipped shift.
  TransformParams sh;
  sh.tx = 2;
  TransformParams shf = sh;
  shf.flip_horizontal = true;
  Image3 a = transformed(in, sh, {}), b = transformed(in, shf, {});
  for (int r = 0; r < 5; ++r)
    for (int c = 0; c < 7; ++c) CHECK(b.at(r, c, 0) == a.at(r, 6 - c, 0));
}

TEST_CASE("brightness multiplies by PIL's float factor and truncates") {
  // Hand values from Image.blend(black, img, u): trunc(float(u) * p), clipped when u > 1.
  // A double factor would give 62, 118, 125 (u = 0.7) and 117, 221, 247 (u = 1.3).
  struct Case {
    double u;
    float p, expected;
  };
  const Case cases[] = {{0.7, 90, 63},   {0.7, 170, 119}, {0.7, 180, 126}, {0.7, 255, 178},
                        {1.3, 90, 116},  {1.3, 170, 220}, {1.3, 190, 246}, {1.3, 200, 255},
                        {1.3, 100, 130}, {0.0, 77, 0},    {1.0, 77, 77},   {2.0, 0, 0}};
  for (const Case& c : cases) {
    float px[3] = {c.p, c.p, c.p}, out[3];
    TransformParams p;
    p.brightness = c.u;
    apply_transform(px, 1, 1, 3, p, AugmentOptions{}, out);
    INFO("u = " << c.u << ", pixel " << c.p);
    CHECK(out[0] == c.expected);
  }
  // Values are truncated to whole levels before the factor applies.
  float px[3] = {100.9f, 0.5f, 254.99f}, out[3];
  TransformParams p;
  p.brightness = 1.0;
  apply_transform(px, 1, 1, 3, p, AugmentOptions{}, out);
  CHECK(out[0] == 100);
  CHECK(out[1] == 0);
  CHECK(out[2] == 254);
  // Two channels have no PIL mode.
  float two[2] = {1, 2}, two_out[2];
  mt::check_throws_with([&] { apply_transform(two, 1, 1, 2, p, AugmentOptions{}, two_out); },
                        {"brightness", "got 2"});
}

TEST_CASE("channel shift adds one intensity and clips to the image's range") {
  float px[6] = {10, 20, 30, 40, 50, 60}, out[6];
  TransformParams p;
  p.channel_shift_intensity = 25;
  apply_transform(px, 1, 2, 3, p, AugmentOptions{}, out);
  const float expected[6] = {35, 45, 55, 60, 60, 60};
  for (int i = 0; i < 6; ++i) CHECK(out[i] == expected[i]);
}

TEST_CASE("random_transform draws in Keras' order, only for active options") {
  AugmentOptions o;
  o.rotation_range = 40;
  o.height_shift_range = 0.1;
  o.width_shift_range = 0.2;
  o.shear_range = 15;
  o.zoom_lo = 0.75;
  o.zoom_hi = 1.25;
  o.horizontal_flip = o.vertical_flip = true;
  o.channel_shift_range = 30;
  o.brightness_range = std::array<double, 2>{0.5, 1.5};
  KeyedRng rng(7, 3, 11), ref(7, 3, 11);
  TransformParams p = random_transform(o, 17, 29, rng);
  double u[10];
  for (double& x : u) x = ref.uniform();
  CHECK(p.theta == doctest::Approx(-40 + 80 * u[0]).epsilon(1e-12));
  CHECK(p.tx == doctest::Approx((-0.1 + 0.2 * u[1]) * 17).epsilon(1e-12));
  CHECK(p.ty == doctest::Approx((-0.2 + 0.4 * u[2]) * 29).epsilon(1e-12));
  CHECK(p.shear == doctest::Approx(-15 + 30 * u[3]).epsilon(1e-12));
  CHECK(p.zx == doctest::Approx(0.75 + 0.5 * u[4]).epsilon(1e-12));
  CHECK(p.zy == doctest::Approx(0.75 + 0.5 * u[5]).epsilon(1e-12));
  CHECK(p.flip_horizontal == (u[6] < 0.5));
  CHECK(p.flip_vertical == (u[7] < 0.5));
  CHECK(*p.channel_shift_intensity == doctest::Approx(-30 + 60 * u[8]).epsilon(1e-12));
  CHECK(*p.brightness == doctest::Approx(0.5 + 1.0 * u[9]).epsilon(1e-12));
  CHECK(rng.uniform() == ref.uniform());

  // Inactive options draw nothing, except the two flips.
  AugmentOptions rot;
  rot.rotation_range = 10;
  KeyedRng r2(1, 2, 3), ref2(1, 2, 3);
  TransformParams q = random_transform(rot, 8, 8, r2);
  double v0 = ref2.uniform();
  ref2.uniform();
  ref2.uniform();
  CHECK(q.theta == doctest::Approx(-10 + 20 * v0).epsilon(1e-12));
  CHECK(q.tx == 0);
  CHECK(q.zx == 1);
  CHECK_FALSE(q.flip_horizontal);
  CHECK_FALSE(q.channel_shift_intensity.has_value());
  CHECK_FALSE(q.brightness.has_value());
  CHECK(r2.uniform() == ref2.uniform());
}

TEST_CASE("random_transform: ranges, units and frequencies over many draws") {
  AugmentOptions o;
  o.rotation_range = 40;
  o.height_shift_range = 0.1;
  o.width_shift_range = 0.2;
  o.shear_range = 15;
  o.zoom_range(0.25);
  o.horizontal_flip = true;
  const int n = 4000;
  double lo_theta = 1e9, hi_theta = -1e9, max_tx = 0, max_ty = 0, sx = 0, sy = 0, sxx = 0, syy = 0,
         sxy = 0;
  int flips = 0, vflips = 0, equal_zoom = 0;
  for (int i = 0; i < n; ++i) {
    KeyedRng rng(99, 0, i);
    TransformParams p = random_transform(o, 17, 29, rng);
    lo_theta = std::min(lo_theta, p.theta);
    hi_theta = std::max(hi_theta, p.theta);
    CHECK(std::abs(p.tx) <= 0.1 * 17);
    CHECK(std::abs(p.ty) <= 0.2 * 29);
    max_tx = std::max(max_tx, std::abs(p.tx));
    max_ty = std::max(max_ty, std::abs(p.ty));
    CHECK(std::abs(p.shear) <= 15);
    CHECK(p.zx >= 0.75);
    CHECK(p.zx <= 1.25);
    CHECK(p.zy >= 0.75);
    CHECK(p.zy <= 1.25);
    equal_zoom += p.zx == p.zy;
    sx += p.zx;
    sy += p.zy;
    sxx += p.zx * p.zx;
    syy += p.zy * p.zy;
    sxy += p.zx * p.zy;
    flips += p.flip_horizontal;
    vflips += p.flip_vertical;
  }
  CHECK(lo_theta >= -40);
  CHECK(lo_theta < -39);
  CHECK(hi_theta < 40);
  CHECK(hi_theta > 39);
  // Shift fractions are scaled by H (tx) and W (ty): the extremes approach 1.7 and 5.8 pixels.
  CHECK(max_tx > 1.65);
  CHECK(max_ty > 5.7);
  CHECK(equal_zoom == 0);
  double cov = sxy / n - (sx / n) * (sy / n);
  double corr = cov / std::sqrt((sxx / n - sx * sx / n / n) * (syy / n - sy * sy / n / n));
  CHECK(std::abs(corr) < 0.08);  // zx and zy independent
  CHECK(std::abs(flips / double(n) - 0.5) < 0.04);
  CHECK(vflips == 0);  // drawn, but vertical_flip is off

  SUBCASE("a range >= 1 is real-valued pixels") {
    AugmentOptions px;
    px.width_shift_range = 3.5;
    bool fractional = false;
    for (int i = 0; i < 200; ++i) {
      KeyedRng rng(5, 1, i);
      TransformParams p = random_transform(px, 17, 29, rng);
      CHECK(std::abs(p.ty) <= 3.5);
      fractional |= p.ty != std::floor(p.ty);
    }
    CHECK(fractional);
  }
  SUBCASE("integer shifts are whole pixels in (-n, n)") {
    AugmentOptions is;
    is.integer_shifts = true;
    is.height_shift_range = 4;
    is.width_shift_range = 3;
    std::set<double> txs, tys;
    for (int i = 0; i < 2000; ++i) {
      KeyedRng rng(5, 2, i);
      TransformParams p = random_transform(is, 17, 29, rng);
      txs.insert(p.tx);
      tys.insert(p.ty);
    }
    CHECK(txs == std::set<double>{-3, -2, -1, 0, 1, 2, 3});
    CHECK(tys == std::set<double>{-2, -1, 0, 1, 2});
  }
}

TEST_CASE("random_transform: the same key gives the same draw, other keys differ") {
  AugmentOptions o = AugmentOptions::notebook();
  KeyedRng a(42, 1, 7), b(42, 1, 7), c(42, 1, 8), d(42, 2, 7), e(43, 1, 7);
  TransformParams pa = random_transform(o, 96, 96, a), pb = random_transform(o, 96, 96, b);
  CHECK(pa.theta == pb.theta);
  CHECK(pa.tx == pb.tx);
  CHECK(pa.ty == pb.ty);
  CHECK(pa.shear == pb.shear);
  CHECK(pa.zx == pb.zx);
  CHECK(pa.zy == pb.zy);
  CHECK(pa.flip_horizontal == pb.flip_horizontal);
  for (KeyedRng* k : {&c, &d, &e}) CHECK(random_transform(o, 96, 96, *k).theta != pa.theta);
}

TEST_CASE("augment_image: fast path without randomness, same result as apply_transform") {
  Rng data(3);
  std::vector<uint8_t> img(20 * 30 * 3);
  for (auto& v : img) v = static_cast<uint8_t>(data.below(256));
  std::vector<float> out(img.size());
  AugmentOptions none;
  none.rescale = 1.0 / 255;
  KeyedRng rng(1);
  augment_image(img.data(), 20, 30, 3, none, rng, out.data());
  for (size_t i = 0; i < img.size(); ++i)
    CHECK(out[i] == float(img[i]) * static_cast<float>(1.0 / 255));

  AugmentOptions o = AugmentOptions::notebook();
  o.channel_shift_range = 20;
  o.brightness_range = std::array<double, 2>{0.8, 1.2};
  KeyedRng k1(9, 4, 2), k2(9, 4, 2);
  augment_image(img.data(), 20, 30, 3, o, k1, out.data());
  std::vector<float> fimg(img.begin(), img.end()), ref(img.size());
  apply_transform(fimg.data(), 20, 30, 3, random_transform(o, 20, 30, k2), o, ref.data());
  CHECK(std::memcmp(out.data(), ref.data(), out.size() * sizeof(float)) == 0);
}

TEST_CASE("augment_image is bit-identical for 1 and 2 threads") {
  const int n = 24, h = 40, w = 36, c = 3;
  const size_t sz = static_cast<size_t>(h) * w * c;
  Rng data(11);
  std::vector<uint8_t> imgs(n * sz);
  for (auto& v : imgs) v = static_cast<uint8_t>(data.below(256));
  AugmentOptions o = AugmentOptions::notebook();
  o.channel_shift_range = 15;
  o.brightness_range = std::array<double, 2>{0.7, 1.3};
  o.fill_mode = FillMode::Reflect;
  auto run = [&](int threads) {
    std::vector<float> out(n * sz);
    auto work = [&](int t) {
      for (int i = t; i < n; i += threads) {
        KeyedRng rng(2024, 5, i);  // epoch 5, image i
        augment_image(imgs.data() + i * sz, h, w, c, o, rng, out.data() + i * sz);
      }
    };
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) pool.emplace_back(work, t);
    for (auto& t : pool) t.join();
    return out;
  };
  std::vector<float> one = run(1), two = run(2), three = run(3);
  CHECK(std::memcmp(one.data(), two.data(), one.size() * sizeof(float)) == 0);
  CHECK(std::memcmp(one.data(), three.data(), one.size() * sizeof(float)) == 0);
#ifdef _OPENMP
  mt::ThreadGuard guard;
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    std::vector<float> out(n * sz);
#pragma omp parallel for schedule(dynamic)
    for (int i = 0; i < n; ++i) {
      KeyedRng rng(2024, 5, i);
      augment_image(imgs.data() + i * sz, h, w, c, o, rng, out.data() + i * sz);
    }
    CHECK(std::memcmp(one.data(), out.data(), out.size() * sizeof(float)) == 0);
  }
#endif
}

TEST_CASE("validate() names the bad option") {
  auto bad = [](auto edit, std::initializer_list<std::string> fragments) {
    AugmentOptions o;
    edit(o);
    mt::check_throws_with([&] { o.validate(); }, fragments);
  };
  bad([](AugmentOptions& o) { o.rotation_range = -1; }, {"rotation_range", "-1"});
  bad([](AugmentOptions& o) { o.width_shift_range = std::nan(""); }, {"width_shift_range"});
  bad([](AugmentOptions& o) { o.height_shift_range = -0.1; }, {"height_shift_range"});
  bad([](AugmentOptions& o) { o.shear_range = INFINITY; }, {"shear_range"});
  bad([](AugmentOptions& o) { o.channel_shift_range = -2; }, {"channel_shift_range"});
  bad([](AugmentOptions& o) { o.zoom_lo = 1.2, o.zoom_hi = 0.8; }, {"zoom_range", "1.2"});
  bad([](AugmentOptions& o) { o.zoom_range(1.5); }, {"zoom_range", "-0.5"});
  bad(
      [](AugmentOptions& o) {
        o.brightness_range = std::array<double, 2>{1.5, 0.5};
      },
      {"brightness_range"});
  bad(
      [](AugmentOptions& o) {
        o.brightness_range = std::array<double, 2>{-1, 0.5};
      },
      {"brightness_range"});
  bad(
      [](AugmentOptions& o) {
        o.integer_shifts = true;
        o.width_shift_range = 2.5;
      },
      {"integer_shifts", "width_shift_range", "2.5"});
  bad([](AugmentOptions& o) { o.cval = std::nan(""); }, {"cval"});
  bad([](AugmentOptions& o) { o.rescale = INFINITY; }, {"rescale"});
  CHECK_NOTHROW(AugmentOptions::notebook().validate());
  CHECK_NOTHROW(AugmentOptions().zoom_range(1.0).validate());
  mt::check_throws_with([] { fill_mode_from_string("mirror"); }, {"fill_mode", "'mirror'"});
  for (FillMode m : {FillMode::Nearest, FillMode::Constant, FillMode::Reflect, FillMode::Wrap})
    CHECK(fill_mode_from_string(to_string(m)) == m);
  TransformParams p;
  p.zx = std::nan("");
  float px[3] = {0, 0, 0}, out[3];
  mt::check_throws_with([&] { apply_transform(px, 1, 1, 3, p, {}, out); }, {"zx"});
}

TEST_CASE("to_json / from_json round trip with Keras' argument names") {
  AugmentOptions o;
  o.rotation_range = 12.5;
  o.width_shift_range = 3;
  o.height_shift_range = 2;
  o.integer_shifts = true;
  o.shear_range = 0.2;
  o.zoom_lo = 0.9;
  o.zoom_hi = 1.3;
  o.channel_shift_range = 7;
  o.brightness_range = std::array<double, 2>{0.6, 1.1};
  o.horizontal_flip = true;
  o.vertical_flip = true;
  o.fill_mode = FillMode::Wrap;
  o.cval = 3.25;
  o.rescale = 1.0 / 255;
  nlohmann::json j = o.to_json();
  CHECK(j.at("zoom_range") == nlohmann::json{0.9, 1.3});
  CHECK(j.at("fill_mode") == "wrap");
  AugmentOptions b = AugmentOptions::from_json(nlohmann::json::parse(j.dump()));
  CHECK(b.to_json() == j);
  CHECK(b.rotation_range == o.rotation_range);
  CHECK(b.integer_shifts);
  CHECK(b.zoom_lo == 0.9);
  CHECK(b.zoom_hi == 1.3);
  CHECK((*b.brightness_range)[1] == 1.1);
  CHECK(b.fill_mode == FillMode::Wrap);
  CHECK(b.rescale == 1.0 / 255);

  AugmentOptions d = AugmentOptions::from_json(AugmentOptions().to_json());
  CHECK_FALSE(d.random());
  CHECK_FALSE(d.brightness_range.has_value());
  CHECK(d.rescale == 0);
  CHECK(AugmentOptions().to_json().at("rescale").is_null());

  // Keras-style scalars, and the notebook's generator.
  AugmentOptions k = AugmentOptions::from_json(
      nlohmann::json::parse(R"({"zoom_range": 0.2, "fill_mode": "reflect", "rescale": null})"));
  CHECK(k.zoom_lo == doctest::Approx(0.8));
  CHECK(k.zoom_hi == doctest::Approx(1.2));
  AugmentOptions nb = AugmentOptions::from_json(AugmentOptions::notebook().to_json());
  CHECK(nb.to_json() == AugmentOptions::notebook().to_json());
  CHECK(nb.rotation_range == 90);
  CHECK(nb.horizontal_flip);

  mt::check_throws_with(
      [] { AugmentOptions::from_json(nlohmann::json::parse(R"({"rotation": 10})")); },
      {"unknown option", "'rotation'"});
  mt::check_throws_with(
      [] { AugmentOptions::from_json(nlohmann::json::parse(R"({"horizontal_flip": "yes"})")); },
      {"horizontal_flip"});
  mt::check_throws_with(
      [] { AugmentOptions::from_json(nlohmann::json::parse(R"({"zoom_range": [1, 2, 3]})")); },
      {"zoom_range"});
  mt::check_throws_with(
      [] { AugmentOptions::from_json(nlohmann::json::parse(R"({"rotation_range": -5})")); },
      {"rotation_range"});
}

TEST_CASE("speed: notebook augmentation of 96x96x3 images (reported, not asserted)") {
  const int h = 96, w = 96, c = 3, n = 64;
  const size_t sz = static_cast<size_t>(h) * w * c;
  Rng data(5);
  std::vector<uint8_t> imgs(n * sz);
  for (auto& v : imgs) v = static_cast<uint8_t>(data.below(256));
  std::vector<float> out(sz);
  AugmentOptions o = AugmentOptions::notebook();
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) {
      KeyedRng rng(1, rep, i);
      augment_image(imgs.data() + i * sz, h, w, c, o, rng, out.data());
    }
    double us =
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() /
        n;
    best = std::min(best, us);
  }
  MESSAGE("augment_image, notebook options, 96x96x3: " << best << " us per image");
  CHECK(out[0] == out[0]);
}
