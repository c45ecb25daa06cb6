// Dense: finite-difference gradients (double), fast kernels against the reference
// (float, several thread counts), parameters and error messages.
#include <cmath>

#include <minicnn/kernels/dense.hpp>
#include <minicnn/kernels/ref/dense.hpp>
#include <minicnn/layers/dense.hpp>

#include "test_support.hpp"

using namespace minicnn;

using mt::scaled_rel_diff;
using mt::ThreadGuard;

TEST_CASE("Dense gradients match finite differences (double)") {
  struct C {
    int64_t n, in, units;
    bool bias;
    Activation act;
  };
  for (C c : {C{3, 7, 5, true, Activation::Linear}, C{2, 5, 1, false, Activation::Linear},
              C{4, 9, 6, true, Activation::ReLU}, C{1, 4, 3, true, Activation::ReLU6},
              C{5, 33, 17, true, Activation::Linear}}) {
    CAPTURE(c.n);
    CAPTURE(c.in);
    CAPTURE(c.units);
    set_global_seed(8);
    DenseT<double> layer("fc", c.units, c.bias, c.act);
    layer.build(Shape{c.in});
    if (c.act == Activation::ReLU6)
      for (auto& v : layer.kernel().value) v *= 10.0;
    // Keep pre-activations away from the kinks (see test_conv2d.cpp).
    Rng rng(77);
    TensorD x;
    for (int attempt = 0;; ++attempt) {
      REQUIRE(attempt < 100);
      x = mt::random_tensor<double>(Shape{c.n, c.in}, rng);
      layer.set_activation(Activation::Linear);
      const TensorD& z = layer.forward(x);
      double margin = 1e9;
      for (double v : z) margin = std::min({margin, std::abs(v), std::abs(v - 6.0)});
      layer.set_activation(c.act);
      if (c.act == Activation::Linear || margin > 1e-4) break;
    }
    auto res = mt::check_gradients(layer, x);
    REQUIRE(res.input_error < 1e-6);
    REQUIRE(res.param_error < 1e-6);
  }
  MESSAGE("worst Dense gradcheck error: " << mt::worst_gradcheck_error());
}

TEST_CASE("Dense fast kernels match the reference") {
  ThreadGuard guard;
  struct C {
    int64_t n, in, out;
  };
  double worst = 0;
  uint64_t seed = 1;
  for (int threads : {1, 2, 3})
    for (C c : {C{32, 1280, 10}, C{32, 1280, 3}, C{1, 17, 33}, C{7, 150, 1}, C{64, 33, 150},
                C{200, 96, 40}, C{3, 3, 3}, C{1, 1280, 1000}, C{9, 400, 70}, C{13, 64, 130},
                C{5, 33, 17}}) {
      CAPTURE(threads);
      CAPTURE(c.n);
      CAPTURE(c.in);
      CAPTURE(c.out);
      set_num_threads(threads);
      Rng rng(seed++);
      TensorF x = mt::random_tensor<float>(Shape{c.n, c.in}, rng);
      TensorF w = mt::random_tensor<float>(Shape{c.in, c.out}, rng, -0.2, 0.2);
      TensorF b = mt::random_tensor<float>(Shape{c.out}, rng);
      TensorF dz = mt::random_tensor<float>(Shape{c.n, c.out}, rng);
      TensorD xd = TensorD::cast_from<float>(x), wd = TensorD::cast_from<float>(w);
      TensorD bd = TensorD::cast_from<float>(b), dzd = TensorD::cast_from<float>(dz);
      TensorF y(Shape{c.n, c.out});
      TensorD yr(Shape{c.n, c.out});
      kernels::dense_forward<float>(c.n, c.in, c.out, x.data(), w.data(), b.data(),
                                    Activation::ReLU, y.data());
      kernels::ref::dense_forward<double>(c.n, c.in, c.out, xd.data(), wd.data(), bd.data(),
                                          Activation::ReLU, yr.data());
      TensorF dx(Shape{c.n, c.in}, 5.f), dw(Shape{c.in, c.out}, 0.5f), db(Shape{c.out}, -1.f);
      TensorD dxr(Shape{c.n, c.in}), dwr(Shape{c.in, c.out}, 0.5), dbr(Shape{c.out}, -1.0);
      kernels::dense_backward<float>(c.n, c.in, c.out, x.data(), w.data(), dz.data(), dx.data(),
                                     dw.data(), db.data());
      kernels::ref::dense_backward<double>(c.n, c.in, c.out, xd.data(), wd.data(), dzd.data(),
                                           dxr.data(), dwr.data(), dbr.data());
      double e[] = {scaled_rel_diff(y, yr), scaled_rel_diff(dx, dxr), scaled_rel_diff(dw, dwr),
                    scaled_rel_diff(db, dbr)};
      for (double v : e) {
        CHECK(v < 1e-4);
        worst = std::max(worst, v);
      }
    }
  MESSAGE("worst Dense kernel-vs-reference error: " << worst);
}

TEST_CASE("Dense parameters, frozen layer and bias-free backward") {
  set_global_seed(5);
  Dense fc("predictions", 4, true, Activation::Linear);
  CHECK(fc.build(Shape{1280}) == Shape{4});
  CHECK(fc.type() == "Dense");
  auto ps = fc.parameters();
  REQUIRE(ps.size() == 2);
  CHECK(ps[0]->name == "predictions/kernel");
  CHECK(ps[0]->value.shape() == Shape{1280, 4});
  CHECK(ps[1]->name == "predictions/bias");
  CHECK(ps[1]->value.shape() == Shape{4});
  double limit = std::sqrt(6.0 / (1280 + 4)), mx = 0;
  for (float v : fc.kernel().value) mx = std::max(mx, std::abs(double(v)));
  CHECK(mx <= limit);
  CHECK(mx > 0.9 * limit);
  for (float v : fc.bias().value) CHECK(v == 0.f);

  set_global_seed(6);
  DenseT<double> frozen("head", 3, true);
  frozen.build(Shape{5});
  frozen.set_trainable(false);
  Rng rng(3);
  auto res = mt::check_gradients(frozen, mt::random_tensor<double>(Shape{2, 5}, rng), false);
  CHECK(res.input_error < 1e-6);
  CHECK(res.worst_param.empty());

  DenseT<double> nobias("nb", 2, false);
  nobias.build(Shape{3});
  CHECK(nobias.parameters().size() == 1);
  mt::check_throws_with([&] { nobias.bias(); }, {"'nb'", "bias"});
}

TEST_CASE("Dense bad input: feature count, rank, zero-sized dimension") {
  Dense fc("fc", 3);
  fc.build(Shape{5});
  TensorF x(Shape{4, 7}, 0.f);
  mt::check_throws_with([&] { fc.forward(x); }, {"Dense", "'fc'", "(4, 7)", "(None, 5)"});
  Dense r("fc2", 3);
  TensorF img(Shape{2, 4, 4, 8}, 0.f);
  mt::check_throws_with([&] { r.forward(img); },
                        {"Dense", "'fc2'", "(None, features)", "(None, 4, 4, 8)"});
  mt::check_throws_with([&] { Dense("fc3", 3).build(Shape{0}); },
                        {"Dense", "'fc3'", "(0,)", "zero"});
  mt::check_throws_with([&] { Dense("fc4", 0); }, {"Dense", "'fc4'", "units"});
  // The gradient must have the output's shape.
  fc.forward(TensorF(Shape{2, 5}, 1.f));
  mt::check_throws_with(
      [&] {
        fc.backward(TensorF(Shape{2, 4}, 1.f));
      },
      {"'fc'", "(2, 4)", "(2, 3)"});
}
