// DepthwiseConv2D: finite-difference gradient checks of the layer (double, generic kernels),
// generic-vs-reference kernels in double, fast float kernels vs the reference on random shapes
// and thread counts, the kernels that read a batch norm's input (dwconv2d_bn_input.hpp), layer
// API (parameters, freezing, bias folding hooks) and error messages.
#include "test_support.hpp"

#include <algorithm>
#include <iterator>

#include <minicnn/kernels/dwconv2d.hpp>
#include <minicnn/kernels/dwconv2d_bn_input.hpp>
#include <minicnn/kernels/ref/dwconv2d.hpp>
#include <minicnn/layers/depthwise_conv2d.hpp>

using namespace minicnn;

namespace {

using DwD = DepthwiseConv2DT<double>;

// Builds a double layer on (h, w, c), randomises kernel (scaled) and bias, checks gradients.
mt::GradCheckResult gradcheck(DwD& layer, int64_t n, int64_t h, int64_t w, int64_t c, uint64_t seed,
                              double x_scale = 1.0, double w_scale = 1.0) {
  Rng rng(seed);
  layer.build(Shape{h, w, c});
  for (auto& v : layer.kernel().value) v = rng.uniform(-w_scale, w_scale);
  if (layer.use_bias())
    for (auto& v : layer.bias().value) v = rng.uniform(-1, 1);
  TensorD x = mt::random_tensor<double>(Shape{n, h, w, c}, rng, -x_scale, x_scale);
  return mt::check_gradients(layer, x, true, seed + 17);
}

// Pre-activations of a clamped layer stay at least `margin` away from the kinks 0 and 6 and
// fall in all three regions (below 0, inside, above 6), so finite differences are exact-ish
// and the test still sees the zero-gradient regions.
bool kink_free(DwD& layer, const TensorD& x, double margin, bool want_above_six) {
  Activation saved = layer.activation();
  layer.set_activation(Activation::Linear);
  TensorD z = layer.forward(x);
  layer.set_activation(saved);
  int below = 0, inside = 0, above = 0;
  for (double v : z) {
    if (std::abs(v) < margin || std::abs(v - 6) < margin) return false;
    (v < 0 ? below : v < 6 ? inside : above)++;
  }
  return below > 0 && inside > 0 && (!want_above_six || above > 0);
}

void check_clamped(Activation a, int64_t stride, Padding pad, uint64_t seed) {
  DwD layer("dw_act", 3, stride, pad, true, a);
  const int64_t n = 2, h = 7, w = 6, c = 3;
  layer.build(Shape{h, w, c});
  Rng rng(seed);
  TensorD x;
  bool ok = false;
  for (int attempt = 0; attempt < 50 && !ok; ++attempt) {
    for (auto& v : layer.kernel().value) v = rng.uniform(-1.5, 1.5);
    for (auto& v : layer.bias().value) v = rng.uniform(0, 3);
    x = mt::random_tensor<double>(Shape{n, h, w, c}, rng, -3, 3);
    ok = kink_free(layer, x, 1e-3, a == Activation::ReLU6);
  }
  REQUIRE(ok);
  auto r = mt::check_gradients(layer, x, true, seed);
  REQUIRE(r.worst() < 1e-6);
}

}  // namespace

TEST_CASE("DepthwiseConv2D gradcheck: odd 7x5, stride 1, same, bias, batch 2") {
  DwD layer("dw_odd", 3, 1, Padding::Same, true);
  auto r = gradcheck(layer, 2, 7, 5, 3, 1);
  REQUIRE(r.worst() < 1e-6);
}

TEST_CASE("DepthwiseConv2D gradcheck: stride 2 same, even input (asymmetric padding 0/1)") {
  DwD layer("dw_s2_even", 3, 2, Padding::Same, true);
  layer.build(Shape{8, 6, 4});
  auto g = layer.geometry(1);
  CHECK(g.pad_top == 0);
  CHECK(g.pad_bottom == 1);
  CHECK(g.pad_left == 0);
  CHECK(g.pad_right == 1);
  auto r = gradcheck(layer, 2, 8, 6, 4, 2);
  REQUIRE(r.worst() < 1e-6);
}

TEST_CASE("DepthwiseConv2D gradcheck: stride 2 same, odd input (padding 1/1)") {
  DwD layer("dw_s2_odd", 3, 2, Padding::Same, false);
  layer.build(Shape{7, 9, 3});
  auto g = layer.geometry(1);
  CHECK(g.pad_top == 1);
  CHECK(g.pad_left == 1);
  CHECK(g.out_h == 4);
  CHECK(g.out_w == 5);
  auto r = gradcheck(layer, 3, 7, 9, 3, 3);
  REQUIRE(r.worst() < 1e-6);
}

TEST_CASE("DepthwiseConv2D gradcheck: valid padding, stride 1 and 2") {
  DwD a("dw_valid_s1", 3, 1, Padding::Valid, true);
  REQUIRE(gradcheck(a, 2, 6, 7, 2, 4).worst() < 1e-6);
  DwD b("dw_valid_s2", 3, 2, Padding::Valid, true);  // last input column receives no gradient
  REQUIRE(gradcheck(b, 2, 7, 8, 3, 5).worst() < 1e-6);
}

TEST_CASE("DepthwiseConv2D gradcheck: kernel 5, same, stride 1 and 2") {
  DwD a("dw_k5_s1", 5, 1, Padding::Same, true);
  REQUIRE(gradcheck(a, 2, 7, 6, 3, 6).worst() < 1e-6);
  DwD b("dw_k5_s2", 5, 2, Padding::Same, true);
  REQUIRE(gradcheck(b, 2, 9, 8, 2, 7).worst() < 1e-6);
}

TEST_CASE("DepthwiseConv2D gradcheck: rectangular kernel and strides") {
  DwD a("dw_rect", 3, 5, 2, 1, Padding::Same, true);
  REQUIRE(gradcheck(a, 2, 7, 8, 3, 8).worst() < 1e-6);
  DwD b("dw_rect_valid", 2, 3, 1, 2, Padding::Valid, false);
  REQUIRE(gradcheck(b, 1, 5, 9, 2, 9).worst() < 1e-6);
}

TEST_CASE("DepthwiseConv2D gradcheck: fused ReLU6 and ReLU away from kinks") {
  check_clamped(Activation::ReLU6, 1, Padding::Same, 11);
  check_clamped(Activation::ReLU6, 2, Padding::Same, 12);
  check_clamped(Activation::ReLU, 1, Padding::Valid, 13);
}

TEST_CASE("DepthwiseConv2D generic double kernels equal the reference") {
  Rng rng(21);
  struct Case {
    int64_t n, h, w, c, kh, kw, sh, sw;
    Padding p;
  };
  const Case cases[] = {
      {2, 7, 5, 3, 3, 3, 1, 1, Padding::Same},  {2, 8, 6, 4, 3, 3, 2, 2, Padding::Same},
      {1, 7, 9, 5, 3, 3, 2, 2, Padding::Same},  {2, 9, 8, 3, 5, 5, 2, 2, Padding::Same},
      {3, 6, 7, 2, 3, 3, 1, 1, Padding::Valid}, {1, 7, 8, 3, 3, 5, 2, 1, Padding::Same}};
  for (const auto& k : cases) {
    auto g = make_conv_geometry(k.n, k.h, k.w, k.c, k.c, k.kh, k.kw, k.sh, k.sw, k.p);
    TensorD x = mt::random_tensor<double>(Shape{k.n, k.h, k.w, k.c}, rng);
    TensorD w = mt::random_tensor<double>(Shape{k.kh, k.kw, k.c}, rng);
    TensorD b = mt::random_tensor<double>(Shape{k.c}, rng);
    TensorD dy = mt::random_tensor<double>(Shape{k.n, g.out_h, g.out_w, k.c}, rng);
    TensorD y0(dy.shape()), y1(dy.shape()), dx0(x.shape()), dx1(x.shape());
    TensorD dw0(w.shape(), 0.5), dw1(w.shape(), 0.5), db0(b.shape(), 0.25), db1(b.shape(), 0.25);
    kernels::ref::dwconv2d_nhwc_forward(g, x.data(), w.data(), b.data(), Activation::ReLU,
                                        y0.data());
    kernels::dwconv2d_nhwc_forward(g, x.data(), w.data(), b.data(), Activation::ReLU, y1.data());
    kernels::ref::dwconv2d_nhwc_backward_input(g, dy.data(), w.data(), dx0.data());
    kernels::ref::dwconv2d_nhwc_backward_weight(g, x.data(), dy.data(), dw0.data(), db0.data());
    kernels::dwconv2d_nhwc_backward(g, x.data(), dy.data(), w.data(), dx1.data(), dw1.data(),
                                    db1.data());
    CHECK(mt::max_abs_diff(y1, y0) < 1e-12);
    CHECK(mt::max_abs_diff(dx1, dx0) < 1e-12);
    CHECK(mt::max_abs_diff(dw1, dw0) < 1e-12);
    CHECK(mt::max_abs_diff(db1, db0) < 1e-12);
  }
}

namespace {

using mt::max_abs;
// Normwise relative error max|a - b| / max|b|.
double rel_inf(const TensorF& a, const TensorF& b) {
  double s = max_abs(b);
  return mt::max_abs_diff(a, b) / (s > 0 ? s : 1.0);
}

struct KernelErrors {
  double worst = 0;
  void add(double e) { worst = std::max(worst, e); }
};

// One random problem: fast (or dispatched) float kernels vs the reference.
void compare_with_reference(const ConvGeometry& g, Rng& rng, Activation act, bool with_bias,
                            bool fast_api, KernelErrors& err) {
  const int64_t C = g.in_c;
  TensorF x = mt::random_tensor<float>(Shape{g.n, g.in_h, g.in_w, C}, rng);
  TensorF w = mt::random_tensor<float>(Shape{g.k_h, g.k_w, C}, rng);
  TensorF b = mt::random_tensor<float>(Shape{C}, rng);
  TensorF dy = mt::random_tensor<float>(Shape{g.n, g.out_h, g.out_w, C}, rng);
  const float* bp = with_bias ? b.data() : nullptr;
  TensorF y0(dy.shape()), y1(dy.shape(), 123.f), dx0(x.shape()), dx1(x.shape(), 123.f),
      dx2(x.shape(), 7.f);
  TensorF dw0(w.shape(), 0.5f), dw1(w.shape(), 0.5f), dw2(w.shape(), 0.5f);
  TensorF db0(b.shape(), 0.25f), db1(b.shape(), 0.25f), db2(b.shape(), 0.25f);
  kernels::ref::dwconv2d_nhwc_forward(g, x.data(), w.data(), bp, act, y0.data());
  kernels::ref::dwconv2d_nhwc_backward_input(g, dy.data(), w.data(), dx0.data());
  kernels::ref::dwconv2d_nhwc_backward_weight(g, x.data(), dy.data(), dw0.data(), db0.data());
  if (fast_api) {
    REQUIRE(kernels::dwconv2d_nhwc_has_fast_path(g));
    const bool s1 = g.stride_h == 1;
    (s1 ? kernels::dwconv2d_nhwc_3x3_s1 : kernels::dwconv2d_nhwc_3x3_s2)(g, x.data(), w.data(), bp,
                                                                         act, y1.data());
    // Fused pass, and the separate input / weight entry points.
    (s1 ? kernels::dwconv2d_nhwc_3x3_s1_backward : kernels::dwconv2d_nhwc_3x3_s2_backward)(
        g, x.data(), dy.data(), w.data(), dx1.data(), dw1.data(), db1.data());
    (s1 ? kernels::dwconv2d_nhwc_3x3_s1_backward_input
        : kernels::dwconv2d_nhwc_3x3_s2_backward_input)(g, dy.data(), w.data(), dx2.data());
    (s1 ? kernels::dwconv2d_nhwc_3x3_s1_backward_weight
        : kernels::dwconv2d_nhwc_3x3_s2_backward_weight)(g, x.data(), dy.data(), dw2.data(),
                                                         db2.data());
  } else {
    kernels::dwconv2d_nhwc_forward(g, x.data(), w.data(), bp, act, y1.data());
    kernels::dwconv2d_nhwc_backward(g, x.data(), dy.data(), w.data(), dx1.data(), dw1.data(),
                                    db1.data());
    kernels::dwconv2d_nhwc_backward<float>(g, nullptr, dy.data(), w.data(), dx2.data(), nullptr,
                                           nullptr);
    kernels::dwconv2d_nhwc_backward<float>(g, x.data(), dy.data(), w.data(), nullptr, dw2.data(),
                                           db2.data());
  }
  const double e[] = {rel_inf(y1, y0),   rel_inf(dx1, dx0), rel_inf(dx2, dx0), rel_inf(dw1, dw0),
                      rel_inf(dw2, dw0), rel_inf(db1, db0), rel_inf(db2, db0)};
  double worst = 0;
  for (double v : e) worst = std::max(worst, v);
  err.add(worst);
  INFO("n=" << g.n << " h=" << g.in_h << " w=" << g.in_w << " c=" << C << " k=" << g.k_h << "x"
            << g.k_w << " s=" << g.stride_h << " pad(t,l)=" << g.pad_top << "," << g.pad_left
            << " act=" << to_string(act) << " bias=" << with_bias << " threads=" << num_threads()
            << " errors y/dx/dx_only/dw/dw_only/db/db_only " << e[0] << " " << e[1] << " " << e[2]
            << " " << e[3] << " " << e[4] << " " << e[5] << " " << e[6]);
  REQUIRE(worst < 1e-5);
}

}  // namespace

using mt::ThreadGuard;

TEST_CASE("dwconv2d fast 3x3 kernels match the reference (random shapes, 1-3 threads)") {
  ThreadGuard guard;
  const int64_t channels[] = {1, 3, 16, 17, 33, 144, 150};
  const int64_t sizes[] = {1, 2, 3, 4, 5, 7, 8, 12, 19, 24, 33};
  const Activation acts[] = {Activation::Linear, Activation::ReLU, Activation::ReLU6};
  KernelErrors err;
  int cases = 0;
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    Rng rng(100 + threads);
    for (int64_t C : channels)
      for (int rep = 0; rep < 6; ++rep) {
        const int64_t s = 1 + int64_t(rng.below(2));
        const Padding p = rng.below(3) ? Padding::Same : Padding::Valid;
        int64_t h = sizes[rng.below(std::size(sizes))], w = sizes[rng.below(std::size(sizes))];
        if (p == Padding::Valid) h = std::max<int64_t>(h, 3), w = std::max<int64_t>(w, 3);
        if (C >= 144) h = std::min<int64_t>(h, 12);  // keep the reference affordable
        const int64_t n = 1 + int64_t(rng.below(3));
        auto g = make_conv_geometry(n, h, w, C, C, 3, 3, s, s, p);
        compare_with_reference(g, rng, acts[rng.below(3)], rng.below(2) == 0, true, err);
        ++cases;
      }
  }
  MESSAGE("fast 3x3 vs reference: " << cases << " cases, worst normwise relative error "
                                    << err.worst);
}

TEST_CASE("dwconv2d fast kernels: outputs large enough for streaming stores match the reference") {
  // Outputs above 1 MiB per thread with C a multiple of the vector width are written with
  // streaming stores; these shapes take that path (checked), at 1-3 threads, with every
  // padding case (even and odd sizes, same and valid) and a tail-free channel count.
  ThreadGuard guard;
  KernelErrors err;
  const int64_t MiB = int64_t(1) << 20;
  int streamed = 0;
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    Rng rng(400 + threads);
    const ConvGeometry gs[] = {make_conv_geometry(2, 45, 47, 192, 192, 3, 3, 1, 1, Padding::Same),
                               make_conv_geometry(2, 41, 40, 96, 96, 3, 3, 1, 1, Padding::Valid),
                               make_conv_geometry(4, 66, 64, 128, 128, 3, 3, 2, 2, Padding::Same),
                               make_conv_geometry(3, 65, 63, 48, 48, 3, 3, 2, 2, Padding::Same),
                               make_conv_geometry(2, 50, 49, 144, 144, 3, 3, 2, 2, Padding::Valid)};
    for (const auto& g : gs) {
      const int64_t in_bytes = g.n * g.in_h * g.in_w * g.in_c * 4;
      const int64_t out_bytes = g.n * g.out_h * g.out_w * g.in_c * 4;
      if (in_bytes > threads * MiB) ++streamed;   // backward dx
      if (out_bytes > threads * MiB) ++streamed;  // forward y
      for (Activation act : {Activation::Linear, Activation::ReLU6})
        compare_with_reference(g, rng, act, act == Activation::ReLU6, true, err);
    }
  }
  CHECK(streamed == 17);  // of 30 outputs; the rest take plain stores, also compared
  // Where the predicate says no: a channel tail, an unaligned base, a small output.
  alignas(64) static float buf[64];
  using kernels::dw_detail::stream_output;
  const int64_t big = 4 * MiB;
  CHECK(stream_output(buf, 192, big, 2) == kernels::dw_detail::can_stream());
  CHECK_FALSE(stream_output(buf, 150, big, 2));
  CHECK_FALSE(stream_output(buf + 1, 192, big, 2));
  CHECK_FALSE(stream_output(buf, 192, MiB / 4, 1));
  MESSAGE("streaming-size kernels vs reference: worst normwise relative error " << err.worst);
}

TEST_CASE("dwconv2d fast kernels: stride-1 backward row groups on small maps match the reference") {
  // Maps narrower than 48 pixels are swept several rows per call (s1_group_rows): groups
  // that span two images, end early at a thread's band, cover padding rows, or are one row.
  ThreadGuard guard;
  KernelErrors err;
  const int64_t dims[][3] = {{3, 3, 5},   {6, 6, 7},  {5, 7, 4}, {1, 9, 3},
                             {12, 12, 2}, {2, 47, 2}, {7, 1, 6}};
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    Rng rng(500 + threads);
    for (const auto& d : dims)
      for (int64_t C : {16, 40}) {
        for (Padding p : {Padding::Same, Padding::Valid}) {
          if (p == Padding::Valid && (d[0] < 3 || d[1] < 3)) continue;
          const auto g = make_conv_geometry(d[2], d[0], d[1], C, C, 3, 3, 1, 1, p);
          compare_with_reference(g, rng, Activation::Linear, true, true, err);
        }
      }
  }
  CHECK(kernels::dw_detail::s1_group_rows(3) == 16);
  CHECK(kernels::dw_detail::s1_group_rows(6) == 8);
  CHECK(kernels::dw_detail::s1_group_rows(48) == 1);
  MESSAGE("row groups vs reference: worst normwise relative error " << err.worst);
}

TEST_CASE("dwconv2d: the vector path is the one MINICNN_ISA selects") {
  // tests/CMakeLists.txt runs this file once per instruction set the machine has, capped
  // through MINICNN_ISA; make sure each run exercises its own path.
  const Isa isa = active_isa();
  if (const char* env = std::getenv("MINICNN_ISA"); env && *env)
    CHECK(isa == cpu_detail::best_available(parse_isa(env)));
  const int64_t lanes = isa == Isa::avx512 ? 16 : 8;
  CHECK(kernels::dw_detail::vector_lanes() == lanes);
  CHECK(kernels::dw_detail::can_stream() == (isa == Isa::avx512));
  MESSAGE("depthwise vector path: "
          << std::string(isa_name(isa)) << ", " << kernels::dw_detail::vector_lanes()
          << " lanes, streaming stores "
          << std::string(kernels::dw_detail::can_stream() ? "on" : "off"));
}

TEST_CASE("dwconv2d dispatch: generic float path (5x5, mixed strides) matches the reference") {
  ThreadGuard guard;
  KernelErrors err;
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    Rng rng(200 + threads);
    for (int64_t C : {1, 3, 17, 33, 150}) {
      auto g1 = make_conv_geometry(2, 9, 11, C, C, 5, 5, 1, 1, Padding::Same);
      auto g2 = make_conv_geometry(1, 10, 7, C, C, 5, 5, 2, 2, Padding::Same);
      auto g3 = make_conv_geometry(2, 8, 9, C, C, 3, 3, 1, 2, Padding::Same);
      auto g4 = make_conv_geometry(3, 8, 8, C, C, 3, 3, 3, 3, Padding::Valid);
      for (const auto& g : {g1, g2, g3, g4})
        compare_with_reference(g, rng, Activation::ReLU6, true, false, err);
      auto g5 = make_conv_geometry(2, 9, 10, C, C, 3, 3, 2, 2,
                                   Padding::Same);  // dispatched to the fast path
      compare_with_reference(g5, rng, Activation::Linear, false, false, err);
    }
  }
  MESSAGE("dispatched kernels vs reference: worst normwise relative error " << err.worst);
}

TEST_CASE(
    "dwconv2d fast kernels: deterministic per thread count, serial inside a parallel region") {
  ThreadGuard guard;
  Rng rng(300);
  auto g = make_conv_geometry(3, 19, 17, 150, 150, 3, 3, 1, 1, Padding::Same);
  TensorF x = mt::random_tensor<float>(Shape{3, 19, 17, 150}, rng);
  TensorF w = mt::random_tensor<float>(Shape{3, 3, 150}, rng);
  TensorF dy = mt::random_tensor<float>(Shape{3, 19, 17, 150}, rng);
  auto grads = [&](TensorF& dw, TensorF& db) {
    dw = TensorF(w.shape(), 0.f);
    db = TensorF(Shape{150}, 0.f);
    kernels::dwconv2d_nhwc_3x3_s1_backward_weight(g, x.data(), dy.data(), dw.data(), db.data());
  };
  set_num_threads(2);
  TensorF dw_a, db_a, dw_b, db_b;
  grads(dw_a, db_a);
  grads(dw_b, db_b);
  CHECK(mt::max_abs_diff(dw_a, dw_b) == 0);
  CHECK(mt::max_abs_diff(db_a, db_b) == 0);

  TensorF y_ref(dy.shape());
  kernels::ref::dwconv2d_nhwc_forward(g, x.data(), w.data(), nullptr, Activation::Linear,
                                      y_ref.data());
  const int outer = 3;
  std::vector<TensorF> ys(outer, TensorF(dy.shape()));
#ifdef _OPENMP
#pragma omp parallel for num_threads(outer)
#endif
  for (int i = 0; i < outer; ++i)
    kernels::dwconv2d_nhwc_3x3_s1(g, x.data(), w.data(), nullptr, Activation::Linear, ys[i].data());
  for (const auto& y : ys) CHECK(rel_inf(y, y_ref) < 1e-5);
}

TEST_CASE("DepthwiseConv2D layer: parameters, init, float forward/backward vs reference") {
  set_global_seed(5);
  DepthwiseConv2D layer("block_3_depthwise", 3, 2, Padding::Same, true, Activation::ReLU6);
  CHECK(layer.type() == "DepthwiseConv2D");
  Shape out = layer.build(Shape{12, 10, 17});
  CHECK(out == Shape{6, 5, 17});
  auto params = layer.parameters();
  REQUIRE(params.size() == 2);
  CHECK(params[0]->name == "block_3_depthwise/depthwise_kernel");
  CHECK(params[0]->value.shape() == Shape{3, 3, 17, 1});
  CHECK(params[1]->name == "block_3_depthwise/bias");
  CHECK(params[1]->value.shape() == Shape{17});
  const double limit = std::sqrt(6.0 / (9.0 * 17 + 9.0));
  double wmax = 0;
  for (float v : layer.kernel().value) wmax = std::max(wmax, double(std::abs(v)));
  CHECK(wmax <= limit);
  CHECK(wmax > 0.8 * limit);
  CHECK(mt::max_abs_diff(layer.bias().value, TensorF(Shape{17}, 0.f)) == 0);
  CHECK(layer.count_params(false) == 9 * 17 + 17);
  CHECK(layer.stride() == 2);
  CHECK(layer.padding() == Padding::Same);
  CHECK(layer.activation() == Activation::ReLU6);

  Rng rng(6);
  for (auto& v : layer.bias().value) v = float(rng.uniform(-0.5, 0.5));
  TensorF x = mt::random_tensor<float>(Shape{2, 12, 10, 17}, rng, -3, 3);
  const TensorF& y = layer.forward(x, true);
  auto g = layer.geometry(2);
  TensorF y_ref(y.shape());
  kernels::ref::dwconv2d_nhwc_forward(g, x.data(), layer.kernel().value.data(),
                                      layer.bias().value.data(), Activation::ReLU6, y_ref.data());
  CHECK(rel_inf(y, y_ref) < 1e-5);

  TensorF dy = mt::random_tensor<float>(y.shape(), rng);
  layer.zero_grad();
  TensorF dx = layer.backward(dy);
  TensorF dz(dy.shape()), dx_ref(x.shape()), dw_ref(Shape{3, 3, 17, 1}, 0.f),
      db_ref(Shape{17}, 0.f);
  kernels::activate_backward(Activation::ReLU6, y.data(), dy.data(), dz.data(), dy.size());
  kernels::ref::dwconv2d_nhwc_backward_input(g, dz.data(), layer.kernel().value.data(),
                                             dx_ref.data());
  kernels::ref::dwconv2d_nhwc_backward_weight(g, x.data(), dz.data(), dw_ref.data(), db_ref.data());
  CHECK(rel_inf(dx, dx_ref) < 1e-5);
  CHECK(rel_inf(layer.kernel().grad, dw_ref) < 1e-5);
  CHECK(rel_inf(layer.bias().grad, db_ref) < 1e-5);

  // backward ADDS parameter gradients.
  layer.backward(dy);
  for (auto& v : dw_ref) v *= 2;
  CHECK(rel_inf(layer.kernel().grad, dw_ref) < 1e-5);
}

TEST_CASE("DepthwiseConv2D frozen: no parameter gradients, dx still computed") {
  Rng rng(7);
  DepthwiseConv2D layer("dw_frozen", 3, 1, Padding::Same, true);
  layer.build(Shape{9, 9, 33});
  TensorF x = mt::random_tensor<float>(Shape{2, 9, 9, 33}, rng);
  layer.forward(x, true);
  TensorF dy = mt::random_tensor<float>(Shape{2, 9, 9, 33}, rng);
  layer.zero_grad();
  TensorF dx_train = layer.backward(dy);
  layer.set_trainable(false);
  CHECK(layer.count_params(true) == 0);
  TensorF gw = layer.kernel().grad, gb = layer.bias().grad;
  layer.forward(x, true);
  TensorF dx_frozen = layer.backward(dy, true);
  CHECK(mt::max_abs_diff(dx_frozen, dx_train) == 0);
  if (!layer.kernel().grad.empty()) CHECK(mt::max_abs_diff(layer.kernel().grad, gw) == 0);
  if (!layer.bias().grad.empty()) CHECK(mt::max_abs_diff(layer.bias().grad, gb) == 0);
  CHECK(layer.backward(dy, false).empty());
  layer.set_trainable(true);
  CHECK(layer.kernel().grad.shape() == layer.kernel().value.shape());
}

TEST_CASE("DepthwiseConv2D enable_bias and set_activation (BatchNorm folding hooks)") {
  Rng rng(8);
  DepthwiseConv2D layer("dw_fold", 3, 1, Padding::Same, false);
  layer.build(Shape{5, 6, 20});
  CHECK(layer.parameters().size() == 1);
  CHECK_THROWS_AS(layer.bias(), Error);
  TensorF x = mt::random_tensor<float>(Shape{1, 5, 6, 20}, rng);
  TensorF y0 = layer.forward(x);
  layer.enable_bias();
  layer.enable_bias();  // idempotent
  REQUIRE(layer.parameters().size() == 2);
  CHECK(layer.parameters()[1]->name == "dw_fold/bias");
  CHECK(layer.bias().value.shape() == Shape{20});
  CHECK(mt::max_abs_diff(layer.forward(x), y0) == 0);
  for (auto& v : layer.bias().value) v = 10.f;
  layer.set_activation(Activation::ReLU6);
  for (float v : layer.forward(x)) CHECK(v == 6.f);

  DepthwiseConv2D later("dw_fold2", 3, 2, Padding::Same, false);
  later.enable_bias();  // before build: created by build
  later.build(Shape{8, 8, 4});
  CHECK(later.find_parameter("dw_fold2/bias") != nullptr);
}

TEST_CASE("DepthwiseConv2D errors name the layer, the expected and the actual shape") {
  DepthwiseConv2D layer("dw_err", 3, 1, Padding::Same);
  layer.build(Shape{5, 5, 3});
  TensorF wrong_c(Shape{2, 5, 5, 4}, 0.f);
  mt::check_throws_with([&] { layer.forward(wrong_c); },
                        {"DepthwiseConv2D", "'dw_err'", "(2, 5, 5, 4)", "(None, 5, 5, 3)"});

  DepthwiseConv2D rank("dw_rank", 3);
  mt::check_throws_with(
      [&] {
        rank.build(Shape{5, 5});
      },
      {"DepthwiseConv2D", "'dw_rank'", "rank 4", "(None, 5, 5)"});
  DepthwiseConv2D rank2("dw_rank2", 3);
  TensorF r3(Shape{2, 5, 5}, 0.f);
  mt::check_throws_with([&] { rank2.forward(r3); }, {"'dw_rank2'", "rank 4", "(None, 5, 5)"});

  DepthwiseConv2D zero("dw_zero", 3);
  mt::check_throws_with(
      [&] {
        zero.build(Shape{0, 5, 3});
      },
      {"DepthwiseConv2D", "'dw_zero'", "(0, 5, 3)", "zero"});

  DepthwiseConv2D small("dw_small", 3, 1, Padding::Valid);
  mt::check_throws_with(
      [&] {
        small.build(Shape{2, 5, 3});
      },
      {"DepthwiseConv2D", "'dw_small'", "(None, 2, 5, 3)", "(None, 0, 3, 3)", "valid"});

  mt::check_throws_with(
      [&] { DepthwiseConv2D("dw_mult", 3, 1, Padding::Same, true, Activation::Linear, 2); },
      {"DepthwiseConv2D", "'dw_mult'", "depth_multiplier 2", "expected 1"});
  CHECK_THROWS_AS(DepthwiseConv2D("dw_mult", 3, 1, Padding::Same, true, Activation::Linear, 2),
                  ConfigError);
  CHECK_THROWS_AS(DepthwiseConv2D("dw_k0", 0), ConfigError);

  layer.forward(TensorF(Shape{2, 5, 5, 3}, 1.f));
  TensorF bad_dy(Shape{2, 5, 4, 3}, 0.f);
  mt::check_throws_with([&] { layer.backward(bad_dy); },
                        {"'dw_err'", "(2, 5, 4, 3)", "(2, 5, 5, 3)"});
}

namespace {

// dwconv2d_nhwc_*_bn_input against the reference depthwise kernels run on the batch norm's
// output, made here in double from the same float x and coefficients.
double compare_bn_input_with_reference(const ConvGeometry& g, Rng& rng, Activation bn_act,
                                       Activation act, bool with_bias) {
  const int64_t C = g.in_c;
  TensorF x = mt::random_tensor<float>(Shape{g.n, g.in_h, g.in_w, C}, rng, -3, 3);
  TensorF mean = mt::random_tensor<float>(Shape{C}, rng, -1, 1);
  TensorF scale = mt::random_tensor<float>(Shape{C}, rng, 0.5, 2);
  TensorF shift = mt::random_tensor<float>(Shape{C}, rng, -1, 4);
  TensorF w = mt::random_tensor<float>(Shape{g.k_h, g.k_w, C}, rng);
  TensorF b = mt::random_tensor<float>(Shape{C}, rng);
  TensorF dy = mt::random_tensor<float>(Shape{g.n, g.out_h, g.out_w, C}, rng);
  const float* bp = with_bias ? b.data() : nullptr;
  TensorF ybn(x.shape());
  for (int64_t i = 0; i < x.size(); ++i) {
    const int64_t c = i % C;
    double z = (double(x[i]) - mean[c]) * double(scale[c]) + shift[c];
    if (bn_act != Activation::Linear) z = std::max(z, 0.0);
    if (bn_act == Activation::ReLU6) z = std::min(z, 6.0);
    ybn[i] = float(z);
  }
  TensorF y0(dy.shape()), y1(dy.shape(), 123.f), dx0(x.shape()), dx1(x.shape(), 123.f);
  TensorF dw0(w.shape(), 0.5f), dw1(w.shape(), 0.5f), db0(b.shape(), 0.25f), db1(b.shape(), 0.25f);
  kernels::ref::dwconv2d_nhwc_forward(g, ybn.data(), w.data(), bp, act, y0.data());
  kernels::ref::dwconv2d_nhwc_backward_input(g, dy.data(), w.data(), dx0.data());
  kernels::ref::dwconv2d_nhwc_backward_weight(g, ybn.data(), dy.data(), dw0.data(), db0.data());
  kernels::BnForward<float> bn;
  bn.mean = mean.data();
  bn.scale = scale.data();
  bn.shift = shift.data();
  bn.act = bn_act;
  kernels::dwconv2d_nhwc_forward_bn_input<float>(g, x.data(), bn, w.data(), bp, act, y1.data());
  kernels::dwconv2d_nhwc_backward_bn_input<float>(g, x.data(), bn, dy.data(), w.data(), dx1.data(),
                                                  dw1.data(), db1.data());
  const double e[] = {rel_inf(y1, y0), rel_inf(dx1, dx0), rel_inf(dw1, dw0), rel_inf(db1, db0)};
  INFO("n=" << g.n << " h=" << g.in_h << " w=" << g.in_w << " c=" << C << " s=" << g.stride_h
            << " pad(t,l)=" << g.pad_top << "," << g.pad_left << " bn_act=" << to_string(bn_act)
            << " act=" << to_string(act) << " bias=" << with_bias << " threads=" << num_threads()
            << " errors y/dx/dw/db " << e[0] << " " << e[1] << " " << e[2] << " " << e[3]);
  const double worst = *std::max_element(std::begin(e), std::end(e));
  REQUIRE(worst < 1e-5);
  return worst;
}

}  // namespace

TEST_CASE("dwconv2d of a batch norm's input equals the reference on the batch norm's output") {
  // Batches split into whole images per thread (n >= 2 threads, several small images per
  // kernel call), and the whole-batch fallback (fewer images than that); channel tails,
  // both strides, both paddings, every fused activation of the batch norm.
  ThreadGuard guard;
  const int64_t channels[] = {3, 16, 17, 37, 96};
  const int64_t sizes[] = {3, 4, 5, 7, 8, 12, 19};
  const Activation acts[] = {Activation::Linear, Activation::ReLU, Activation::ReLU6};
  double worst = 0;
  int cases = 0;
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    Rng rng(700 + threads);
    for (int64_t C : channels)
      for (int rep = 0; rep < 4; ++rep) {
        const int64_t s = 1 + int64_t(rng.below(2));
        const Padding p = rng.below(3) ? Padding::Same : Padding::Valid;
        const int64_t h = sizes[rng.below(std::size(sizes))],
                      w = sizes[rng.below(std::size(sizes))];
        const int64_t n = 1 + int64_t(rng.below(7));
        auto g = make_conv_geometry(n, h, w, C, C, 3, 3, s, s, p);
        worst =
            std::max(worst, compare_bn_input_with_reference(g, rng, acts[rng.below(3)],
                                                            acts[rng.below(3)], rng.below(2) == 0));
        ++cases;
      }
  }
  // Outputs large enough to be streamed (StreamOutputsScope), one image per kernel call.
  set_num_threads(2);
  Rng rng(777);
  for (int64_t s : {1, 2}) {
    auto g = make_conv_geometry(6, 96, 96, 32, 32, 3, 3, s, s, Padding::Same);
    worst = std::max(worst, compare_bn_input_with_reference(g, rng, Activation::ReLU6,
                                                            Activation::Linear, false));
    ++cases;
  }
  MESSAGE("depthwise of a batch norm's input vs reference: " << cases << " cases, worst error "
                                                             << worst);
}
