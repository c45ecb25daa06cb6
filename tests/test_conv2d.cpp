// Conv2D: finite-difference gradients (double), fast kernels against the reference on
// random shapes and thread counts (float), the backward that makes a batch norm's dx as it
// reads it (kernels::BnInputGrad), Keras padding equivalence, error messages.
#include <cmath>
#include <vector>

#include <minicnn/kernels/conv2d.hpp>
#include <minicnn/kernels/ref/conv2d.hpp>
#include <minicnn/layers/conv2d.hpp>

#include "test_support.hpp"

using namespace minicnn;

namespace {

using mt::scaled_rel_diff;
using mt::ThreadGuard;

double& worst_kernel_error() {
  static double w = 0;
  return w;
}

struct GradCase {
  const char* what;
  int64_t n, h, w, cin, filters, kh, kw, sh, sw;
  Padding pad;
  bool bias;
  Activation act;
};

// Pre-activation outputs must keep away from the ReLU / ReLU6 kinks so central
// differences see one linear piece: reseed the input until they do.
TensorD input_away_from_kinks(Conv2DT<double>& layer, const Shape& xs, Activation act,
                              uint64_t seed) {
  Rng rng(seed);
  for (int attempt = 0; attempt < 100; ++attempt) {
    TensorD x = mt::random_tensor<double>(xs, rng);
    if (act == Activation::Linear) return x;
    layer.set_activation(Activation::Linear);
    const TensorD& z = layer.forward(x);
    double margin = 1e9;
    for (int64_t i = 0; i < z.size(); ++i)
      margin = std::min({margin, std::abs(z[i]), std::abs(z[i] - 6.0)});
    layer.set_activation(act);
    if (margin > 1e-4) return x;
  }
  FAIL("no input away from the activation kinks");
  return {};
}

void run_gradcheck(const GradCase& c) {
  CAPTURE(c.what);
  set_global_seed(42);
  Conv2DT<double> layer("conv", c.filters, {c.kh, c.kw}, {c.sh, c.sw}, c.pad, c.bias, c.act);
  Shape xs{c.n, c.h, c.w, c.cin};
  layer.build(xs.sample());
  if (c.bias) {  // non-zero bias so its gradient path matters for the kinks too
    Rng r(7);
    for (int64_t i = 0; i < layer.bias().value.size(); ++i)
      layer.bias().value[i] = r.uniform(-0.3, 0.3);
  }
  if (c.act == Activation::ReLU6)  // make some outputs saturate at 6
    for (int64_t i = 0; i < layer.kernel().value.size(); ++i) layer.kernel().value[i] *= 8.0;
  TensorD x = input_away_from_kinks(layer, xs, c.act, 1234);
  auto res = mt::check_gradients(layer, x);
  REQUIRE(res.input_error < 1e-6);
  REQUIRE(res.param_error < 1e-6);
}

}  // namespace

TEST_CASE("Conv2D gradients match finite differences (double)") {
  const Activation L = Activation::Linear, R = Activation::ReLU, R6 = Activation::ReLU6;
  const GradCase cases[] = {
      {"3x3 valid, odd 7x5, bias", 2, 7, 5, 2, 3, 3, 3, 1, 1, Padding::Valid, true, L},
      {"3x3 same stride 1, no bias", 2, 7, 5, 3, 4, 3, 3, 1, 1, Padding::Same, false, L},
      {"3x3 same stride 2, odd 7x5", 2, 7, 5, 2, 3, 3, 3, 2, 2, Padding::Same, true, L},
      {"3x3 same stride 2, even 8x6 (asymmetric pad)", 3, 8, 6, 2, 3, 3, 3, 2, 2, Padding::Same,
       true, L},
      {"3x3 valid stride 2, even 8x6", 2, 8, 6, 3, 2, 3, 3, 2, 2, Padding::Valid, false, L},
      {"1x1 pointwise, batch 3", 3, 5, 7, 4, 5, 1, 1, 1, 1, Padding::Same, true, L},
      {"1x1 stride 2", 2, 7, 6, 3, 4, 1, 1, 2, 2, Padding::Valid, true, L},
      {"5x3 same, stride (2,1)", 2, 8, 7, 2, 3, 5, 3, 2, 1, Padding::Same, true, L},
      {"5x3 valid", 2, 7, 5, 2, 2, 5, 3, 1, 1, Padding::Valid, true, L},
      {"3x3 same stride 2 fused ReLU", 2, 8, 6, 3, 4, 3, 3, 2, 2, Padding::Same, true, R},
      {"1x1 fused ReLU6", 2, 5, 5, 3, 4, 1, 1, 1, 1, Padding::Valid, true, R6},
      {"3x3 same fused ReLU6, no bias", 2, 7, 5, 2, 3, 3, 3, 1, 1, Padding::Same, false, R6},
  };
  for (const auto& c : cases) run_gradcheck(c);
  MESSAGE("worst Conv2D gradcheck error so far: " << mt::worst_gradcheck_error());
}

TEST_CASE("Conv2D frozen: no parameter gradients, input gradient still exact") {
  set_global_seed(3);
  Conv2DT<double> layer("frozen", 3, 3, 2, Padding::Same, true);
  Shape xs{2, 6, 5, 2};
  layer.build(xs.sample());
  layer.set_trainable(false);
  for (auto* p : layer.parameters()) CHECK_FALSE(p->trainable);
  Rng r5(5);
  auto res = mt::check_gradients(layer, mt::random_tensor<double>(xs, r5), false);
  CHECK(res.input_error < 1e-6);
  CHECK(res.worst_param.empty());
  // Frozen and nobody needs dx: nothing to do.
  Rng r(9);
  TensorD x = mt::random_tensor<double>(xs, r);
  const TensorD& y = layer.forward(x);
  TensorD dy(y.shape(), 1.0);
  CHECK(layer.backward(dy, false).empty());
  // Freezing releases the gradient storage (a frozen base would otherwise double its memory).
  for (auto* p : layer.parameters()) CHECK(p->grad.empty());
}

namespace {

struct KCase {
  int64_t n, h, w, cin, cout, kh, kw, sh, sw;
  Padding pad;
};

// Fast float kernels against the reference computed in double.
void compare_with_reference(const KCase& c, int threads, uint64_t seed) {
  CAPTURE(c.n);
  CAPTURE(c.h);
  CAPTURE(c.w);
  CAPTURE(c.cin);
  CAPTURE(c.cout);
  CAPTURE(c.kh);
  CAPTURE(c.kw);
  CAPTURE(c.sh);
  CAPTURE(c.sw);
  CAPTURE(threads);
  ConvGeometry g = make_conv_geometry(c.n, c.h, c.w, c.cin, c.cout, c.kh, c.kw, c.sh, c.sw, c.pad);
  REQUIRE(g.out_h > 0);
  Rng rng(seed);
  Shape xs{g.n, g.in_h, g.in_w, g.in_c}, ys{g.n, g.out_h, g.out_w, g.out_c};
  Shape ws{g.k_h, g.k_w, g.in_c, g.out_c};
  TensorF x = mt::random_tensor<float>(xs, rng), w = mt::random_tensor<float>(ws, rng, -0.3, 0.3);
  TensorF b = mt::random_tensor<float>(Shape{g.out_c}, rng), dz = mt::random_tensor<float>(ys, rng);
  TensorD xd = TensorD::cast_from<float>(x), wd = TensorD::cast_from<float>(w);
  TensorD bd = TensorD::cast_from<float>(b), dzd = TensorD::cast_from<float>(dz);
  set_num_threads(threads);

  for (Activation act : {Activation::Linear, Activation::ReLU6}) {
    const bool with_bias = act != Activation::Linear;
    TensorF y(ys);
    TensorD yr(ys);
    kernels::conv2d_forward<float>(g, x.data(), w.data(), with_bias ? b.data() : nullptr, act,
                                   y.data());
    kernels::ref::conv2d_forward<double>(g, xd.data(), wd.data(), with_bias ? bd.data() : nullptr,
                                         act, yr.data());
    double e = scaled_rel_diff(y, yr);
    worst_kernel_error() = std::max(worst_kernel_error(), e);
    CHECK_MESSAGE(e < 1e-4, "forward " << to_string(act) << " error " << e);
    // Weights packed once, as a layer folded for inference keeps them.
    kernels::PackedB<float> packed;
    packed.pack(g.k_h * g.k_w * g.in_c, g.out_c, w.data(), g.out_c, false);
    TensorF yp(ys, 5.f);
    kernels::conv2d_forward<float>(g, x.data(), w.data(), with_bias ? b.data() : nullptr, act,
                                   yp.data(), &packed);
    double ep = scaled_rel_diff(yp, yr);
    worst_kernel_error() = std::max(worst_kernel_error(), ep);
    CHECK_MESSAGE(ep < 1e-4, "forward (prepacked) " << to_string(act) << " error " << ep);
  }
  // backward, separately and fused; gradients are added into non-zero buffers
  TensorF dx(xs, 7.f), dw = mt::random_tensor<float>(ws, rng),
                       db = mt::random_tensor<float>(Shape{g.out_c}, rng);
  TensorD dxr(xs), dwr = TensorD::cast_from<float>(dw), dbr = TensorD::cast_from<float>(db);
  kernels::ref::conv2d_backward_input<double>(g, dzd.data(), wd.data(), dxr.data());
  kernels::ref::conv2d_backward_weight<double>(g, xd.data(), dzd.data(), dwr.data(), dbr.data());
  TensorF dw2 = dw, db2 = db;
  kernels::conv2d_backward_input<float>(g, dz.data(), w.data(), dx.data());
  kernels::conv2d_backward_weight<float>(g, x.data(), dz.data(), dw.data(), db.data());
  double ex = scaled_rel_diff(dx, dxr), ew = scaled_rel_diff(dw, dwr),
         eb = scaled_rel_diff(db, dbr);
  CHECK_MESSAGE(ex < 1e-4, "backward input error " << ex);
  CHECK_MESSAGE(ew < 1e-4, "backward weight error " << ew);
  CHECK_MESSAGE(eb < 1e-4, "backward bias error " << eb);
  TensorF dx2(xs, -3.f);
  kernels::conv2d_backward<float>(g, x.data(), w.data(), dz.data(), dx2.data(), dw2.data(),
                                  db2.data());
  double fx = scaled_rel_diff(dx2, dxr), fw = scaled_rel_diff(dw2, dwr),
         fb = scaled_rel_diff(db2, dbr);
  CHECK_MESSAGE(fx < 1e-4, "fused backward input error " << fx);
  CHECK_MESSAGE(fw < 1e-4, "fused backward weight error " << fw);
  CHECK_MESSAGE(fb < 1e-4, "fused backward bias error " << fb);
  worst_kernel_error() = std::max({worst_kernel_error(), ex, ew, eb, fx, fw, fb});
}

}  // namespace

TEST_CASE("Conv2D fast kernels match the reference: pointwise shapes") {
  ThreadGuard guard;
  const KCase cases[] = {
      {2, 9, 7, 1, 17, 1, 1, 1, 1, Padding::Same},
      {2, 9, 7, 3, 33, 1, 1, 1, 1, Padding::Same},
      {3, 7, 6, 17, 3, 1, 1, 1, 1, Padding::Valid},
      {2, 8, 8, 33, 150, 1, 1, 1, 1, Padding::Same},
      {2, 6, 5, 150, 33, 1, 1, 1, 1, Padding::Same},
      {1, 5, 5, 150, 1, 1, 1, 1, 1, Padding::Same},
      {4, 12, 12, 16, 96, 1, 1, 1, 1, Padding::Same},
      {4, 12, 12, 96, 24, 1, 1, 1, 1, Padding::Same},
      {2, 3, 3, 320, 70, 1, 1, 1, 1, Padding::Same},
      {1, 2, 3, 5, 7, 1, 1, 1, 1, Padding::Same},
      {3, 11, 13, 40, 40, 1, 1, 1, 1, Padding::Same},
      {3, 8, 8, 40, 90, 1, 1, 1, 1, Padding::Same},
      {3, 8, 8, 90, 40, 1, 1, 1, 1, Padding::Same},
      // few rows, many columns: threads split the columns of the GEMMs
      {2, 6, 6, 64, 150, 1, 1, 1, 1, Padding::Same},
      {2, 6, 6, 64, 200, 1, 1, 1, 1, Padding::Same},
      {2, 6, 6, 200, 64, 1, 1, 1, 1, Padding::Same},
      // fewer rows than a micro-tile (batch-1 inference on small maps): one padded tile
      {1, 3, 3, 320, 1280, 1, 1, 1, 1, Padding::Same},
      {1, 3, 3, 160, 150, 1, 1, 1, 1, Padding::Same},
      {1, 1, 1, 64, 100, 1, 1, 1, 1, Padding::Same},
      {1, 3, 4, 96, 40, 1, 1, 1, 1, Padding::Same},
      {1, 2, 7, 40, 33, 1, 1, 1, 1, Padding::Same},
      {1, 1, 5, 700, 50, 1, 1, 1, 1, Padding::Same},
      {1, 3, 5, 17, 1, 1, 1, 1, 1, Padding::Same},
  };
  uint64_t seed = 100;
  for (int threads : {1, 2, 3})
    for (const auto& c : cases) compare_with_reference(c, threads, seed++);
  MESSAGE("worst Conv2D kernel-vs-reference error so far: " << worst_kernel_error());
}

TEST_CASE("Conv2D fast kernels match the reference: strided and KxK shapes") {
  ThreadGuard guard;
  const KCase cases[] = {
      {2, 24, 24, 3, 32, 3, 3, 2, 2, Padding::Same},
      {2, 23, 17, 3, 17, 3, 3, 2, 2, Padding::Same},
      {3, 9, 8, 17, 33, 3, 3, 1, 1, Padding::Same},
      {2, 10, 9, 33, 3, 3, 3, 2, 2, Padding::Valid},
      {2, 11, 9, 1, 8, 5, 3, 1, 1, Padding::Same},
      {2, 9, 12, 150, 17, 3, 3, 2, 2, Padding::Same},
      {2, 7, 7, 17, 33, 1, 1, 2, 2, Padding::Valid},
      {2, 6, 6, 3, 1, 5, 3, 2, 1, Padding::Same},
      {1, 4, 4, 2, 3, 3, 3, 1, 1, Padding::Valid},
      {5, 13, 11, 8, 20, 3, 3, 2, 2, Padding::Same},
      // wide rows: the direct (no im2col) forward with gathered border pixels
      {2, 10, 70, 3, 32, 3, 3, 2, 2, Padding::Same},
      {2, 7, 67, 3, 17, 3, 3, 2, 2, Padding::Same},
      {2, 6, 40, 17, 33, 3, 3, 1, 1, Padding::Same},
      {2, 9, 36, 5, 20, 5, 3, 1, 1, Padding::Valid},
      {1, 5, 50, 2, 70, 3, 5, 2, 1, Padding::Same},
      {2, 6, 40, 7, 90, 3, 3, 1, 1, Padding::Same},
  };
  uint64_t seed = 500;
  for (int threads : {1, 2, 3})
    for (const auto& c : cases) compare_with_reference(c, threads, seed++);
  MESSAGE("worst Conv2D kernel-vs-reference error so far: " << worst_kernel_error());
}

TEST_CASE("Conv2D 'same' stride 2 equals ZeroPadding + 'valid' (Keras correct_pad)") {
  // TF "same" pads (0, 1) rows/cols for even inputs with k=3, s=2 and (1, 1) for odd ones.
  struct P {
    int64_t h, w, top, bottom, left, right;
  };
  for (P p : {P{8, 8, 0, 1, 0, 1}, P{8, 6, 0, 1, 0, 1}, P{7, 7, 1, 1, 1, 1}, P{8, 7, 0, 1, 1, 1}}) {
    CAPTURE(p.h);
    CAPTURE(p.w);
    set_global_seed(11);
    Conv2D conv("Conv1", 5, 3, 2, Padding::Same, true);
    Rng rng(21);
    TensorF x = mt::random_tensor<float>(Shape{2, p.h, p.w, 3}, rng);
    conv.build(x.shape().sample());
    for (int64_t i = 0; i < conv.bias().value.size(); ++i)
      conv.bias().value[i] = float(rng.uniform(-1, 1));
    const TensorF& y = conv.forward(x);
    // Explicit zero padding, then a 'valid' reference convolution.
    int64_t ph = p.h + p.top + p.bottom, pw = p.w + p.left + p.right;
    TensorF xp(Shape{2, ph, pw, 3}, 0.f);
    for (int64_t n = 0; n < 2; ++n)
      for (int64_t h = 0; h < p.h; ++h)
        for (int64_t w = 0; w < p.w; ++w)
          for (int64_t c = 0; c < 3; ++c) xp.at(n, h + p.top, w + p.left, c) = x.at(n, h, w, c);
    ConvGeometry gv = make_conv_geometry(2, ph, pw, 3, 5, 3, 3, 2, 2, Padding::Valid);
    REQUIRE(gv.out_h == y.dim(1));
    REQUIRE(gv.out_w == y.dim(2));
    TensorF yv(y.shape());
    kernels::ref::conv2d_forward<float>(gv, xp.data(), conv.kernel().value.data(),
                                        conv.bias().value.data(), Activation::Linear, yv.data());
    CHECK(mt::max_abs_diff(y, yv) < 1e-5);
    ConvGeometry gs = make_conv_geometry(2, p.h, p.w, 3, 5, 3, 3, 2, 2, Padding::Same);
    CHECK(gs.pad_top == p.top);
    CHECK(gs.pad_bottom == p.bottom);
    CHECK(gs.pad_left == p.left);
    CHECK(gs.pad_right == p.right);
  }
}

TEST_CASE("Conv2D parameters: Keras names, HWIO shapes, glorot_uniform, zero bias") {
  set_global_seed(1);
  Conv2D conv("block_1_expand", 96, 1, 1, Padding::Same, false);
  Shape out = conv.build(Shape{48, 48, 16});
  CHECK(out == Shape{48, 48, 96});
  auto params = conv.parameters();
  REQUIRE(params.size() == 1);
  CHECK(params[0]->name == "block_1_expand/kernel");
  CHECK(params[0]->value.shape() == Shape{1, 1, 16, 96});
  CHECK(conv.type() == "Conv2D");
  CHECK_FALSE(conv.use_bias());
  mt::check_throws_with([&] { conv.bias(); }, {"block_1_expand", "bias"});

  Conv2D stem("Conv1", 32, 3, 2, Padding::Same, true, Activation::ReLU6);
  CHECK(stem.build(Shape{96, 96, 3}) == Shape{48, 48, 32});
  CHECK(stem.kernel().name == "Conv1/kernel");
  CHECK(stem.kernel().value.shape() == Shape{3, 3, 3, 32});
  CHECK(stem.bias().name == "Conv1/bias");
  CHECK(stem.bias().value.shape() == Shape{32});
  double limit = std::sqrt(6.0 / (27 + 288)), mx = 0;
  for (float v : stem.kernel().value) mx = std::max(mx, std::abs(double(v)));
  CHECK(mx <= limit);
  CHECK(mx > 0.8 * limit);
  for (float v : stem.bias().value) CHECK(v == 0.f);
  CHECK(stem.count_params(false) == 3 * 3 * 3 * 32 + 32);
  CHECK(make_conv_geometry(1, 97, 97, 3, 32, 3, 3, 2, 2, Padding::Valid).out_h == 48);
  CHECK(Conv2D("v", 4, 3, 2, Padding::Valid).build(Shape{96, 96, 3}) == Shape{47, 47, 4});
  Conv2D rect("rect", 4, 5, 3, 2, 1, Padding::Same);
  CHECK(rect.build(Shape{9, 7, 2}) == Shape{5, 7, 4});
  CHECK(rect.kernel().value.shape() == Shape{5, 3, 2, 4});
  CHECK(rect.kernel_size() == std::pair<int64_t, int64_t>{5, 3});
  CHECK(rect.strides() == std::pair<int64_t, int64_t>{2, 1});
}

TEST_CASE("Conv2D enable_bias and set_activation (BatchNorm folding hooks)") {
  set_global_seed(2);
  Conv2D conv("block_2_project", 6, 1, 1, Padding::Same, false);
  Rng rng(4);
  TensorF x = mt::random_tensor<float>(Shape{2, 3, 3, 4}, rng);
  TensorF y0 = conv.forward(x);
  conv.enable_bias();
  CHECK(conv.use_bias());
  REQUIRE(conv.parameters().size() == 2);
  CHECK(conv.parameters()[1]->name == "block_2_project/bias");
  for (int64_t i = 0; i < 6; ++i) conv.bias().value[i] = float(i) - 2.5f;
  conv.set_activation(Activation::ReLU6);
  CHECK(conv.activation() == Activation::ReLU6);
  const TensorF& y1 = conv.forward(x);
  for (int64_t i = 0; i < y1.size(); ++i) {
    float expect = std::min(std::max(y0[i] + float(i % 6) - 2.5f, 0.f), 6.f);
    CHECK(y1[i] == doctest::Approx(expect).epsilon(1e-6));
  }
  conv.enable_bias();  // already has one: no-op
  CHECK(conv.parameters().size() == 2);
  Conv2D fresh("f", 3, 1, 1, Padding::Same, false);
  fresh.enable_bias();  // before build: created by build
  fresh.build(Shape{2, 2, 2});
  CHECK(fresh.bias().value.shape() == Shape{3});
}

TEST_CASE("Conv2D bad input: channels, rank, zero-sized dimension, empty output") {
  Conv2D conv("c1", 4, 3, 1, Padding::Same);
  conv.build(Shape{8, 8, 3});
  TensorF wrong_c(Shape{2, 8, 8, 4}, 0.f);
  mt::check_throws_with([&] { conv.forward(wrong_c); },
                        {"Conv2D", "'c1'", "(2, 8, 8, 4)", "(None, 8, 8, 3)"});
  TensorF wrong_hw(Shape{2, 9, 8, 3}, 0.f);
  mt::check_throws_with([&] { conv.forward(wrong_hw); },
                        {"'c1'", "(2, 9, 8, 3)", "(None, 8, 8, 3)"});

  Conv2D rank("c2", 4, 3);
  TensorF unbatched(Shape{8, 8, 3}, 0.f);  // an image without batch dimension
  mt::check_throws_with([&] { rank.forward(unbatched); },
                        {"Conv2D", "'c2'", "(None, height, width, channels)", "(None, 8, 3)"});
  mt::check_throws_with([&] { Conv2D("c3", 4, 3).build(Shape{8, 8}); }, {"'c3'", "(None, 8, 8)"});

  mt::check_throws_with(
      [&] {
        Conv2D("c4", 4, 3).build(Shape{0, 8, 3});
      },
      {"Conv2D", "'c4'", "(0, 8, 3)", "zero"});
  mt::check_throws_with(
      [&] {
        Conv2D("c5", 4, 5, 1, Padding::Valid).build(Shape{3, 8, 2});
      },
      {"Conv2D", "'c5'", "(None, 3, 8, 2)", "5x5", "valid", "empty"});
  TensorF empty_batch(Shape{0, 8, 8, 3});
  mt::check_throws_with([&] { conv.forward(empty_batch); }, {"'c1'", "(0, 8, 8, 3)"});
  mt::check_throws_with([&] { Conv2D("c6", 0, 3); }, {"Conv2D", "'c6'", "filters (0)"});
}

TEST_CASE("conv2d_backward making a batch norm's dx block by block equals it on the written dx") {
  // kernels::BnInputGrad: the convolution reads the batch norm's dy and makes dz (the batch
  // norm's dx) a block of rows at a time. Every path: the fused pointwise pass (large M), the
  // separate pointwise products (small M, or no dx), im2col (3x3 stride 2), bias only.
  // dz made whole by the batch-norm kernel (tested against its reference elsewhere) is the
  // oracle: the blocks hold the same values, so the results are equal bit for bit.
  mt::ThreadGuard guard;
  struct Case {
    int64_t n, h, w, cin, cout, k, s;
    bool dx, dw, db, train;
    Activation act;
  };
  const Case cases[] = {
      {8, 24, 24, 24, 40, 1, 1, true, true, false, true, Activation::ReLU6},
      {8, 24, 24, 24, 40, 1, 1, true, true, true, false, Activation::Linear},
      {2, 3, 3, 96, 37, 1, 1, true, true, false, true, Activation::ReLU},
      {8, 24, 24, 24, 40, 1, 1, false, true, false, true, Activation::ReLU6},
      {8, 24, 24, 24, 40, 1, 1, true, false, false, true, Activation::ReLU6},
      {4, 33, 31, 3, 32, 3, 2, false, true, false, true, Activation::ReLU6},
      {4, 17, 18, 8, 19, 3, 2, true, true, true, true, Activation::Linear},
      {3, 9, 9, 5, 21, 1, 1, false, false, true, true, Activation::ReLU6},
  };
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    Rng rng(40 + threads);
    for (const auto& k : cases) {
      CAPTURE(threads);
      CAPTURE(k.cin);
      CAPTURE(k.cout);
      const ConvGeometry g =
          make_conv_geometry(k.n, k.h, k.w, k.cin, k.cout, k.k, k.k, k.s, k.s, Padding::Same);
      const Shape ys{g.n, g.out_h, g.out_w, g.out_c};
      TensorF x = mt::random_tensor<float>(Shape{k.n, k.h, k.w, k.cin}, rng, -1, 1);
      TensorF w = mt::random_tensor<float>(Shape{k.k, k.k, k.cin, k.cout}, rng, -1, 1);
      TensorF xbn = mt::random_tensor<float>(ys, rng, -3, 3);  // the conv output
      TensorF dy = mt::random_tensor<float>(ys, rng, -1, 1);
      TensorF mean = mt::random_tensor<float>(Shape{k.cout}, rng, -1, 1);
      TensorF scale = mt::random_tensor<float>(Shape{k.cout}, rng, 0.5, 2);
      TensorF shift = mt::random_tensor<float>(Shape{k.cout}, rng, -1, 4);
      TensorF a = mt::random_tensor<float>(Shape{k.cout}, rng, -1, 1);
      TensorF b = mt::random_tensor<float>(Shape{k.cout}, rng, -1, 1);
      TensorF d = mt::random_tensor<float>(Shape{k.cout}, rng, -1, 1);
      kernels::BnInputGrad<float> bn;
      bn.x = xbn.data();
      bn.fwd.mean = mean.data();
      bn.fwd.scale = scale.data();
      bn.fwd.shift = shift.data();
      bn.fwd.act = k.act;
      bn.a = a.data();
      bn.b = k.train ? b.data() : nullptr;
      bn.d = k.train ? d.data() : nullptr;
      TensorF dz(ys);
      bn.make(dy.data(), 0, g.n * g.out_h * g.out_w, g.out_c, dz.data());
      TensorF dx0(x.shape(), 5.f), dx1(x.shape(), 5.f), dw0(w.shape(), 0.5f), dw1(w.shape(), 0.5f),
          db0(Shape{k.cout}, 0.25f), db1(Shape{k.cout}, 0.25f);
      kernels::conv2d_backward<float>(g, x.data(), w.data(), dz.data(), k.dx ? dx0.data() : nullptr,
                                      k.dw ? dw0.data() : nullptr, k.db ? db0.data() : nullptr);
      kernels::conv2d_backward<float>(g, x.data(), w.data(), dy.data(), k.dx ? dx1.data() : nullptr,
                                      k.dw ? dw1.data() : nullptr, k.db ? db1.data() : nullptr,
                                      &bn);
      CHECK(mt::max_abs_diff(dx1, dx0) == 0);
      CHECK(mt::max_abs_diff(dw1, dw0) == 0);
      CHECK(mt::max_abs_diff(db1, db0) == 0);
      if (k.dw) CHECK(mt::max_abs_diff(dw0, TensorF(w.shape(), 0.5f)) > 0);
    }
  }
}
