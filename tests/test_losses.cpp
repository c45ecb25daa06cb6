// CategoricalCrossentropy: finite-difference gradient checks in double for both forms
// (with and without label smoothing), the clipped and +-1000-logit extremes, hand values,
// accuracy and errors. Probabilities are kept away from the clip points for gradchecks.
#include "test_support.hpp"

#include <minicnn/losses/categorical_crossentropy.hpp>

using namespace minicnn;

namespace {

// Rows of random positive, unnormalised "probabilities" in [lo, hi].
TensorD random_probs(const Shape& s, Rng& rng, double lo = 0.05, double hi = 1.0) {
  return mt::random_tensor<double>(s, rng, lo, hi);
}

TensorD one_hot(int64_t rows, int64_t k, Rng& rng) {
  TensorD t(Shape{rows, k}, 0.0);
  for (int64_t r = 0; r < rows; ++r) t.at(r, int64_t(rng.below(k))) = 1.0;
  return t;
}

// Central differences of forward() against backward(); returns the relative error.
double gradcheck(CategoricalCrossentropyT<double>& loss, TensorD y_pred, const TensorD& y_true,
                 double h = 1e-6) {
  loss.forward(y_pred, y_true);
  TensorD analytic = loss.backward();
  std::vector<double> a, num;
  for (int64_t i = 0; i < y_pred.size(); ++i) {
    double old = y_pred[i];
    y_pred[i] = old + h;
    double lp = loss.forward(y_pred, y_true);
    y_pred[i] = old - h;
    double lm = loss.forward(y_pred, y_true);
    y_pred[i] = old;
    a.push_back(analytic[i]);
    num.push_back((lp - lm) / (2 * h));
  }
  double e = mt::rel_error(a, num);
  mt::worst_gradcheck_error() = std::max(mt::worst_gradcheck_error(), e);
  return e;
}

}  // namespace

TEST_CASE("crossentropy gradcheck: probabilities, one-hot and soft labels, with smoothing") {
  Rng rng(11);
  for (double smoothing : {0.0, 0.1}) {
    CategoricalCrossentropyT<double> loss(false, smoothing);
    TensorD p = random_probs(Shape{5, 7}, rng);
    double e1 = gradcheck(loss, p, one_hot(5, 7, rng));
    TensorD soft = random_probs(Shape{5, 7}, rng, 0.0, 1.0);
    double e2 = gradcheck(loss, p, soft);
    MESSAGE("probabilities, smoothing " << smoothing << ": rel err one-hot " << e1 << ", soft "
                                        << e2);
    CHECK(e1 < 1e-6);
    CHECK(e2 < 1e-6);
  }
}

TEST_CASE("crossentropy gradcheck: logits, with smoothing, rank 4 input") {
  Rng rng(12);
  for (double smoothing : {0.0, 0.2}) {
    CategoricalCrossentropyT<double> loss(true, smoothing);
    TensorD z = mt::random_tensor<double>(Shape{6, 5}, rng, -4.0, 4.0);
    double e1 = gradcheck(loss, z, one_hot(6, 5, rng));
    // Classes on the last axis of a rank-4 tensor: every (n, h, w) is a sample.
    TensorD z4 = mt::random_tensor<double>(Shape{2, 2, 3, 4}, rng, -3.0, 3.0);
    TensorD y4(z4.shape(), 0.0);
    for (int64_t r = 0; r < 12; ++r) y4[r * 4 + int64_t(rng.below(4))] = 1.0;
    double e2 = gradcheck(loss, z4, y4);
    MESSAGE("logits, smoothing " << smoothing << ": rel err " << e1 << ", rank 4 " << e2);
    CHECK(e1 < 1e-6);
    CHECK(e2 < 1e-6);
  }
}

TEST_CASE("crossentropy matches hand-computed values") {
  // Probabilities that do not sum to 1 are normalised first (Keras).
  TensorD p(Shape{2, 3});
  double pv[] = {0.2, 0.6, 0.2, 2.0, 1.0, 1.0};
  std::copy(pv, pv + 6, p.data());
  TensorD y(Shape{2, 3}, 0.0);
  y.at(0, 1) = 1.0;
  y.at(1, 0) = 1.0;
  CategoricalCrossentropyT<double> probs;
  CHECK(probs.forward(p, y) ==
        doctest::Approx(-(std::log(0.6) + std::log(0.5)) / 2).epsilon(1e-14));

  // Label smoothing 0.3 with K = 3: targets 0.8 / 0.1 / 0.1.
  CategoricalCrossentropyT<double> smooth(false, 0.3);
  double want = -(0.1 * std::log(0.2) + 0.8 * std::log(0.6) + 0.1 * std::log(0.2) +
                  0.8 * std::log(0.5) + 0.1 * std::log(0.25) + 0.1 * std::log(0.25)) /
                2;
  CHECK(smooth.forward(p, y) == doctest::Approx(want).epsilon(1e-14));

  CategoricalCrossentropyT<double> logits(true);
  TensorD z(Shape{1, 3});
  z[0] = 1.0, z[1] = 2.0, z[2] = 3.0;
  TensorD y1(Shape{1, 3}, 0.0);
  y1[2] = 1.0;
  double lse = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
  CHECK(logits.forward(z, y1) == doctest::Approx(lse - 3.0).epsilon(1e-14));
  const TensorD& g = logits.backward();
  CHECK(g[0] == doctest::Approx(std::exp(1.0 - lse)).epsilon(1e-14));
  CHECK(g[2] == doctest::Approx(std::exp(3.0 - lse) - 1.0).epsilon(1e-14));
}

TEST_CASE("crossentropy from logits is finite and exact for logits of +-1000") {
  TensorF z(Shape{3, 3});
  float zv[] = {1000.f, -1000.f, 0.f, -1000.f, 1000.f, 999.f, 0.f, 0.f, -1000.f};
  std::copy(zv, zv + 9, z.data());
  TensorF y(Shape{3, 3}, 0.f);
  y.at(0, 1) = 1.f;  // wrong by 2000
  y.at(1, 2) = 1.f;  // log(1 + e) behind the winner
  y.at(2, 0) = 1.f;  // log 2
  CategoricalCrossentropy loss(true);
  double l = loss.forward(z, y);
  double want = (2000.0 + std::log1p(std::exp(-2000.0)) + (1.0 + std::log1p(std::exp(-1.0))) +
                 std::log(2.0)) /
                3.0;
  CHECK(std::isfinite(l));
  CHECK(l == doctest::Approx(want).epsilon(1e-6));
  const TensorF& g = loss.backward();
  for (float v : g) CHECK(std::isfinite(v));
  // Row 0: softmax is (1, 0, 0); gradient (1, -1, 0) / 3.
  CHECK(g.at(0, 0) == doctest::Approx(1.0 / 3));
  CHECK(g.at(0, 1) == doctest::Approx(-1.0 / 3));
  CHECK(g.at(0, 2) == doctest::Approx(0.0));
}

TEST_CASE(
    "crossentropy on probabilities clips: finite loss, zero gradient through clipped entries") {
  TensorD p(Shape{2, 3});
  double pv[] = {0.0, 1.0, 0.0, 0.0, 0.3, 0.7};
  std::copy(pv, pv + 6, p.data());
  TensorD y(Shape{2, 3}, 0.0);
  y.at(0, 0) = 1.0;  // true class has probability 0: clipped to 1e-7
  y.at(1, 2) = 1.0;
  CategoricalCrossentropyT<double> loss;
  double l = loss.forward(p, y);
  CHECK(std::isfinite(l));
  CHECK(l == doctest::Approx((-std::log(1e-7) - std::log(0.7)) / 2).epsilon(1e-12));
  const TensorD& g = loss.backward();
  // Row 0 is clipped everywhere (q = 0 < eps, q = 1 > 1 - eps): no gradient at all.
  for (int j = 0; j < 3; ++j) CHECK(g.at(0, j) == 0.0);
  // Row 1 is unclipped apart from the zero entry: analytic gradient still matches numerics.
  TensorD p1(Shape{1, 3});
  p1[0] = 0.0, p1[1] = 0.3, p1[2] = 0.7;
  TensorD y1(Shape{1, 3}, 0.0);
  y1[2] = 1.0;
  CHECK(gradcheck(loss, p1, y1) < 1e-6);

  // float: Keras' float32 bounds, still finite.
  TensorF pf(Shape{1, 2});
  pf[0] = 0.f, pf[1] = 1.f;
  TensorF yf(Shape{1, 2}, 0.f);
  yf[0] = 1.f;
  CategoricalCrossentropy lf;
  CHECK(lf.forward(pf, yf) == doctest::Approx(-std::log(1e-7)).epsilon(1e-6));
}

TEST_CASE("crossentropy errors: shape mismatch, non-finite loss, bad smoothing, backward first") {
  TensorF a(Shape{4, 3}, 0.3f), b(Shape{4, 5}, 0.2f);
  CategoricalCrossentropy loss;
  mt::check_throws_with([&] { loss.forward(a, b); }, {"(4, 3)", "(4, 5)"});
  CHECK_THROWS_AS(loss.forward(a, b), ShapeError);
  mt::check_throws_with([&] { loss.backward(); }, {"before forward"});
  TensorF nan_pred(Shape{2, 3}, 0.3f);
  nan_pred[4] = std::numeric_limits<float>::quiet_NaN();
  TensorF y(Shape{2, 3}, 0.f);
  y[1] = y[4] = 1.f;
  CHECK_THROWS_AS(loss.forward(nan_pred, y), NumericError);
  CategoricalCrossentropy logits(true);
  nan_pred[4] = std::numeric_limits<float>::infinity();
  CHECK_THROWS_AS(logits.forward(nan_pred, y), NumericError);
  CHECK_THROWS_AS(CategoricalCrossentropy(false, -0.1), ConfigError);
  CHECK_THROWS_AS(CategoricalCrossentropy(true, 1.5), ConfigError);
}

TEST_CASE("categorical accuracy counts argmax matches") {
  TensorF p(Shape{4, 3});
  float pv[] = {0.1f, 0.7f, 0.2f, 0.5f, 0.4f, 0.1f, 0.3f, 0.3f, 0.4f, 0.2f, 0.2f, 0.6f};
  std::copy(pv, pv + 12, p.data());
  TensorF y(Shape{4, 3}, 0.f);
  y.at(0, 1) = 1.f;
  y.at(1, 1) = 1.f;  // wrong
  y.at(2, 2) = 1.f;
  y.at(3, 2) = 1.f;
  CHECK(CategoricalCrossentropy::count_correct(p, y) == 3);
  CHECK(CategoricalCrossentropy::accuracy(p, y) == doctest::Approx(0.75));
  CHECK_THROWS_AS(CategoricalCrossentropy::accuracy(p, TensorF(Shape{4, 2})), ShapeError);
}
