// Layers other than convolutions: BatchNormalization (fast kernels vs reference,
// moving statistics, training / inference / frozen gradients), ReLU / ReLU6,
// Softmax, ZeroPadding2D (and the convolutions that pad for it inside a Sequential),
// GlobalAveragePooling2D, Dropout, Flatten and Add.
// Every layer passes a double-precision finite-difference gradient check.
#include "test_support.hpp"

#include <limits>

#include <minicnn/kernels/batchnorm.hpp>
#include <minicnn/kernels/pool.hpp>
#include <minicnn/kernels/ref/batchnorm.hpp>
#include <minicnn/layers/activation.hpp>
#include <minicnn/layers/add.hpp>
#include <minicnn/layers/batch_norm.hpp>
#include <minicnn/layers/conv2d.hpp>
#include <minicnn/layers/depthwise_conv2d.hpp>
#include <minicnn/layers/dropout.hpp>
#include <minicnn/layers/flatten.hpp>
#include <minicnn/layers/pooling.hpp>
#include <minicnn/layers/zero_padding2d.hpp>

using namespace minicnn;

namespace {

using mt::kGradTol;
using mt::require_gradcheck;

// Random values kept at least `gap` away from every point in `kinks`, so central
// differences never straddle a kink.
TensorD away_from(const Shape& s, Rng& rng, double lo, double hi, std::vector<double> kinks,
                  double gap = 1e-3) {
  TensorD t(s);
  for (int64_t i = 0; i < t.size(); ++i) {
    double v;
    bool ok;
    do {
      v = rng.uniform(lo, hi);
      ok = true;
      for (double k : kinks) ok = ok && std::abs(v - k) > gap;
    } while (!ok);
    t[i] = v;
  }
  return t;
}

// Randomises gamma / beta (and optionally the moving statistics) of a built BN.
template <typename T>
void randomize_bn(BatchNormalizationT<T>& bn, Rng& rng, bool moving) {
  if (bn.gamma())
    for (auto& v : bn.gamma()->value) v = T(rng.uniform(0.5, 1.5));
  if (bn.beta())
    for (auto& v : bn.beta()->value) v = T(rng.uniform(-0.5, 0.5));
  if (moving) {
    for (auto& v : bn.moving_mean()->value) v = T(rng.uniform(-0.5, 0.5));
    for (auto& v : bn.moving_variance()->value) v = T(rng.uniform(0.3, 2.0));
  }
}

// Adapter so Add (a multi-input layer) can go through the single-input gradient
// checker: input (N, K, D) is split into K inputs of shape (N, D).
class AddAdapter : public LayerT<double> {
 public:
  AddAdapter() : LayerT<double>("add_adapter"), add_("add") {}
  std::string type() const override { return "AddAdapter"; }

 protected:
  Shape build_impl(const Shape& in) override {
    k_ = in[0];
    d_ = in[1];
    add_.build(std::vector<Shape>(size_t(k_), Shape{d_}));
    return Shape{d_};
  }
  const TensorD& forward_impl(ConstView<double> x, bool) override {
    const int64_t n = x.shape()[0];
    parts_.resize(size_t(k_));
    std::vector<ConstView<double>> views;
    for (int64_t k = 0; k < k_; ++k) {
      parts_[k].resize(Shape{n, d_});
      for (int64_t b = 0; b < n; ++b)
        for (int64_t j = 0; j < d_; ++j) parts_[k].at(b, j) = x[(b * k_ + k) * d_ + j];
      views.push_back(parts_[k].view());
    }
    return add_.forward(views);
  }
  const TensorD& backward_impl(ConstView<double> dy, bool) override {
    ConstView<double> g = add_.backward(dy);
    const int64_t n = dy.shape()[0];
    dinput_.resize(input_.shape());
    for (int64_t b = 0; b < n; ++b)
      for (int64_t k = 0; k < k_; ++k)
        for (int64_t j = 0; j < d_; ++j) dinput_[(b * k_ + k) * d_ + j] = g[b * d_ + j];
    return dinput_;
  }

 private:
  AddT<double> add_;
  std::vector<TensorD> parts_;
  int64_t k_ = 0, d_ = 0;
};

// What the fast batch-norm kernels take, from the batch moments m, v (eps 1e-3) and, for
// the backward, the kernel's sums sdy = sum(dy), sdyx = sum(dy * (x - m)):
// forward y = (x - mean) * scale + beta; dgamma = sdyx / sigma, dbeta = sdy and
// dx = a * dy + b * (x - mean) + d (the training-mode gradient, written out by hand).
struct BnCoefficients {
  TensorF mean, scale, dgamma, dbeta, a, b, d;
  BnCoefficients(const std::vector<double>& m, const std::vector<double>& v, const TensorF& gamma)
      : mean(Shape{gamma.size()}), scale(Shape{gamma.size()}) {
    for (int64_t c = 0; c < gamma.size(); ++c) {
      mean[c] = float(m[c]);
      scale[c] = float(gamma[c] / std::sqrt(v[c] + 1e-3));
    }
  }
  void backward(const std::vector<double>& v, const TensorF& gamma, const std::vector<double>& sdy,
                const std::vector<double>& sdyx, int64_t rows) {
    const Shape s{gamma.size()};
    dgamma = TensorF(s), dbeta = TensorF(s), a = TensorF(s), b = TensorF(s), d = TensorF(s);
    for (int64_t c = 0; c < gamma.size(); ++c) {
      double inv = 1.0 / std::sqrt(v[c] + 1e-3), k = gamma[c] * inv;
      dgamma[c] = float(sdyx[c] * inv);
      dbeta[c] = float(sdy[c]);
      a[c] = float(k);
      b[c] = float(-k * inv * sdyx[c] * inv / rows);
      d[c] = float(-k * sdy[c] / rows);
    }
  }
};

}  // namespace

// ---------------------------------------------------------------- BatchNormalization

TEST_CASE("batchnorm moments keep their digits when |mean| >> std, in one pass") {
  // float values 1000 + N(0, 1e-2): a plain E[x^2] - E[x]^2 in double would lose ~10 of its
  // 16 digits to cancellation (1e6 against 1e-4); the shifted sums must not.
  Rng rng(21);
  const int64_t rows = 4099, C = 37;
  TensorF x(Shape{rows, C});
  for (int64_t i = 0; i < x.size(); ++i) x[i] = float(1000.0 + 0.01 * rng.normal());
  std::vector<double> m_ref(C), v_ref(C), m(C), v(C), scratch;
  kernels::ref::batchnorm_moments(x.data(), rows, C, m_ref.data(), v_ref.data());
  for (int threads : {1, 2, 3}) {
    kernels::batchnorm_moments_nhwc(x.data(), rows, C, m.data(), v.data(), scratch, threads);
    for (int64_t c = 0; c < C; ++c) {
      CHECK(m[c] == doctest::Approx(m_ref[c]).epsilon(1e-13));
      CHECK(v[c] == doctest::Approx(v_ref[c]).epsilon(1e-9));
    }
  }
}

TEST_CASE("batchnorm fast kernels match the reference (odd channels, several thread counts)") {
  Rng rng(11);
  for (int64_t C : {1, 7, 16, 17, 33, 130}) {
    for (int64_t rows : {1, 5, 97, 1031}) {
      TensorF x = mt::random_tensor<float>(Shape{rows, C}, rng, -2.0, 3.0);
      TensorF dy = mt::random_tensor<float>(Shape{rows, C}, rng);
      std::vector<double> m_ref(C), v_ref(C);
      kernels::ref::batchnorm_moments(x.data(), rows, C, m_ref.data(), v_ref.data());
      TensorF gamma = mt::random_tensor<float>(Shape{C}, rng, 0.5, 1.5);
      TensorF beta = mt::random_tensor<float>(Shape{C}, rng);
      TensorF y_ref(x.shape()), dx_ref(x.shape()), dg_ref(Shape{C}), db_ref(Shape{C});
      kernels::ref::batchnorm_forward(x.data(), rows, C, gamma.data(), beta.data(), m_ref.data(),
                                      v_ref.data(), 1e-3, y_ref.data());
      kernels::ref::batchnorm_backward_training(dy.data(), x.data(), rows, C, gamma.data(),
                                                m_ref.data(), v_ref.data(), 1e-3, dx_ref.data(),
                                                dg_ref.data(), db_ref.data());
      for (int threads : {1, 2, 3, 4}) {
        CAPTURE(C);
        CAPTURE(rows);
        CAPTURE(threads);
        std::vector<double> m(C), v(C), sdy(C), sdyx(C), scratch;
        kernels::batchnorm_moments_nhwc(x.data(), rows, C, m.data(), v.data(), scratch, threads);
        for (int64_t c = 0; c < C; ++c) {
          CHECK(m[c] == doctest::Approx(m_ref[c]).epsilon(1e-12));
          CHECK(v[c] == doctest::Approx(v_ref[c]).epsilon(1e-12));
        }
        BnCoefficients k(m, v, gamma);
        TensorF y(x.shape());
        kernels::batchnorm_apply_nhwc(x.data(), rows, C, k.mean.data(), k.scale.data(), beta.data(),
                                      y.data(), threads);
        CHECK(mt::max_rel_diff(y, y_ref, 1.0) < 1e-5);
        kernels::batchnorm_backward_sums_nhwc(dy.data(), x.data(), rows, C, m.data(), sdy.data(),
                                              sdyx.data(), scratch, threads);
        k.backward(v, gamma, sdy, sdyx, rows);
        TensorF dx(x.shape());
        kernels::batchnorm_backward_apply_nhwc(dy.data(), x.data(), rows, C, k.mean.data(),
                                               k.a.data(), k.b.data(), k.d.data(), dx.data(),
                                               threads);
        CHECK(mt::max_rel_diff(k.dgamma, dg_ref, 1.0) < 1e-5);
        CHECK(mt::max_rel_diff(k.dbeta, db_ref, 1.0) < 1e-5);
        CHECK(mt::max_rel_diff(dx, dx_ref, 1.0) < 1e-4);
      }
    }
  }
}

TEST_CASE(
    "batchnorm kernels with a fused ReLU / ReLU6 match the reference followed by the activation") {
  Rng rng(12);
  for (Activation act : {Activation::ReLU, Activation::ReLU6}) {
    for (int64_t C : {3, 16, 300}) {
      const int64_t rows = 211;
      // Inputs spread so that every clamp region (below 0, inside, above 6) is hit.
      TensorF x = mt::random_tensor<float>(Shape{rows, C}, rng, -3.0, 3.0);
      TensorF dy = mt::random_tensor<float>(Shape{rows, C}, rng);
      std::vector<double> m(C), v(C);
      kernels::ref::batchnorm_moments(x.data(), rows, C, m.data(), v.data());
      TensorF gamma = mt::random_tensor<float>(Shape{C}, rng, 1.0, 4.0);
      TensorF beta = mt::random_tensor<float>(Shape{C}, rng, -1.0, 5.0);
      // Reference: BN, then the activation, then its gradient mask, then the BN backward.
      TensorF z(x.shape()), y_ref(x.shape()), g(x.shape()), dx_ref(x.shape());
      TensorF dg_ref(Shape{C}), db_ref(Shape{C});
      kernels::ref::batchnorm_forward(x.data(), rows, C, gamma.data(), beta.data(), m.data(),
                                      v.data(), 1e-3, z.data());
      int64_t clipped = 0;
      for (int64_t i = 0; i < x.size(); ++i) {
        y_ref[i] = kernels::activate(act, z[i]);
        g[i] = kernels::activate_grad_from_output(act, y_ref[i], dy[i]);
        clipped += g[i] == 0.f;
      }
      CHECK(clipped > x.size() / 10);  // the mask matters in this case
      kernels::ref::batchnorm_backward_training(g.data(), x.data(), rows, C, gamma.data(), m.data(),
                                                v.data(), 1e-3, dx_ref.data(), dg_ref.data(),
                                                db_ref.data());
      for (int threads : {1, 2}) {
        CAPTURE(C);
        CAPTURE(threads);
        BnCoefficients k(m, v, gamma);
        TensorF y(x.shape());
        kernels::batchnorm_apply_nhwc(x.data(), rows, C, k.mean.data(), k.scale.data(), beta.data(),
                                      y.data(), act, threads);
        CHECK(mt::max_abs_diff(y, y_ref) < 1e-5);
        std::vector<double> sdy(C), sdyx(C), scratch;
        kernels::BnForward<float> fwd;
        fwd.mean = k.mean.data();
        fwd.scale = k.scale.data();
        fwd.shift = beta.data();
        fwd.act = act;
        kernels::batchnorm_backward_sums_nhwc(dy.data(), fwd, x.data(), rows, C, m.data(),
                                              sdy.data(), sdyx.data(), scratch, threads);
        k.backward(v, gamma, sdy, sdyx, rows);
        TensorF dx(x.shape());
        kernels::batchnorm_backward_apply_nhwc(dy.data(), fwd, x.data(), rows, C, k.a.data(),
                                               k.b.data(), k.d.data(), dx.data(), threads);
        CHECK(mt::max_rel_diff(k.dgamma, dg_ref, 1.0) < 1e-5);
        CHECK(mt::max_rel_diff(k.dbeta, db_ref, 1.0) < 1e-5);
        CHECK(mt::max_rel_diff(dx, dx_ref, 1.0) < 1e-4);
      }
    }
  }
}

TEST_CASE("batchnorm kernels treat NaN, infinities, 0 and 6 as the scalar activation does") {
  // Every edge value in every lane position, with a tail (C = 37 is not a multiple of any
  // vector width). Identity normalisation (mean 0, scale 1, shift 0), so z = x exactly.
  const float inf = std::numeric_limits<float>::infinity(), nan = std::nan("");
  const std::vector<float> edges = {nan, inf, -inf, 0.f, 6.f, -0.f, 3.f, 7.f, -1.f, 1e-30f};
  const int64_t C = 37, rows = 11;
  TensorF x(Shape{rows, C}), dy(Shape{rows, C});
  for (int64_t i = 0; i < x.size(); ++i) {
    x[i] = edges[size_t(i) % edges.size()];
    dy[i] = 1.f + float(i % 5);
  }
  TensorF zero(Shape{C}), one(Shape{C}), a(Shape{C});
  zero.fill(0.f);
  one.fill(1.f);
  a.fill(2.f);
  for (Activation act : {Activation::ReLU, Activation::ReLU6}) {
    CAPTURE(int(act));
    TensorF y(x.shape()), dx(x.shape());
    kernels::batchnorm_apply_nhwc(x.data(), rows, C, zero.data(), one.data(), zero.data(), y.data(),
                                  act, 2);
    kernels::BnForward<float> fwd;
    fwd.mean = zero.data();
    fwd.scale = one.data();
    fwd.shift = zero.data();
    fwd.act = act;
    kernels::batchnorm_backward_apply_nhwc<float>(dy.data(), fwd, x.data(), rows, C, a.data(),
                                                  nullptr, nullptr, dx.data(), 2);
    std::vector<double> m(size_t(C), 0.0), sdy(size_t(C), 0.0), sdyx(size_t(C), 0.0), scratch;
    kernels::batchnorm_backward_sums_nhwc(dy.data(), fwd, x.data(), rows, C, m.data(), sdy.data(),
                                          sdyx.data(), scratch, 2);
    std::vector<double> sdy_ref(size_t(C), 0.0);
    for (int64_t i = 0; i < x.size(); ++i) {
      const float z = x[i];
      const float top = act == Activation::ReLU6 ? 6.f : inf;
      // Keras: relu6(z) = min(max(z, 0), 6); NaN stays NaN. The gradient passes strictly
      // inside (0, top) for ReLU6 and above 0 for ReLU, never at NaN.
      const float want = std::isnan(z) ? nan : std::min(std::max(z, 0.f), top);
      const bool pass = act == Activation::ReLU6 ? (z > 0.f && z < 6.f) : z > 0.f;
      CAPTURE(i);
      CAPTURE(z);
      if (std::isnan(want))
        CHECK(std::isnan(y[i]));
      else
        CHECK(y[i] == want);
      CHECK(dx[i] == (pass ? 2.f * dy[i] : 0.f));
      if (pass) sdy_ref[size_t(i % C)] += dy[i];
    }
    for (int64_t c = 0; c < C; ++c) CHECK(sdy[size_t(c)] == sdy_ref[size_t(c)]);
  }
}

TEST_CASE("Sequential fuses BatchNormalization + ReLU6: same results as the layers run alone") {
  Rng rng(8);
  const Shape s{4, 6, 5, 9};
  TensorF x = mt::random_tensor<float>(s, rng, -2.0, 3.0);
  TensorF dy = mt::random_tensor<float>(s, rng);
  for (bool training : {true, false}) {
    CAPTURE(training);
    Sequential seq("seq");
    auto& bn = seq.add<BatchNormalization>("bn", 0.9, 1e-3);
    auto& relu = seq.add<ReLU6>("relu");
    auto& bn2 = seq.add<BatchNormalization>("bn2", 0.9, 1e-3);
    seq.build(s.sample());
    // Alone (not in a container): nothing is fused.
    BatchNormalization a("a", 0.9, 1e-3), a2("a2", 0.9, 1e-3);
    ReLU6 r("r");
    a.build(s.sample());
    a2.build(s.sample());
    randomize_bn(bn, rng, true);
    randomize_bn(bn2, rng, true);
    for (auto* p : {bn.gamma(), bn.beta()}) p->value[0] *= 3;  // some outputs above 6
    for (auto [from, to] : {std::pair{&bn, &a}, std::pair{&bn2, &a2}})
      for (size_t i = 0; i < 4; ++i) to->parameters()[i]->value = from->parameters()[i]->value;
    CHECK(bn.absorbed_next() == &relu);
    CHECK(bn2.absorbed_next() == nullptr);
    CHECK(a.absorbed_next() == nullptr);

    const TensorF y = seq.forward(x, training);
    const TensorF y_ref =
        a2.forward(r.forward(a.forward(x, training).view(), training).view(), training);
    CHECK(mt::max_abs_diff(y, y_ref) == 0);
    seq.zero_grad();
    for (auto* l : std::initializer_list<Layer*>{&a, &a2}) l->zero_grad();
    const TensorF dx = seq.backward(dy);
    const TensorF dx_ref = a.backward(r.backward(a2.backward(dy).view()).view());
    CHECK(mt::max_rel_diff(dx, dx_ref, 1.0) < 1e-5);
    CHECK(mt::max_rel_diff(bn.gamma()->grad, a.gamma()->grad, 1.0) < 1e-5);
    CHECK(mt::max_rel_diff(bn.beta()->grad, a.beta()->grad, 1.0) < 1e-5);
    // The moving statistics moved identically.
    CHECK(mt::max_abs_diff(bn.moving_mean()->value, a.moving_mean()->value) == 0);
  }
}

TEST_CASE("BatchNormalization forward/backward match the reference kernels") {
  Rng rng(3);
  const Shape s{3, 5, 7, 13};
  const int64_t C = 13, rows = 3 * 5 * 7;
  TensorF x = mt::random_tensor<float>(s, rng, -1.0, 2.0);
  TensorF dy = mt::random_tensor<float>(s, rng);
  BatchNormalization bn("bn", 0.9, 1e-3);
  bn.build(s.sample());
  randomize_bn(bn, rng, true);
  CHECK(bn.parameters().size() == 4);
  CHECK(bn.parameters()[0]->name == "bn/gamma");
  CHECK(bn.parameters()[1]->name == "bn/beta");
  CHECK(bn.parameters()[2]->name == "bn/moving_mean");
  CHECK(bn.parameters()[3]->name == "bn/moving_variance");
  CHECK(bn.count_params(true) == 2 * C);
  CHECK(bn.count_params(false) == 4 * C);

  SUBCASE("inference") {
    TensorF y_ref(s), dx_ref(s), dg(Shape{C}), db(Shape{C});
    kernels::ref::batchnorm_forward(x.data(), rows, C, bn.gamma()->value.data(),
                                    bn.beta()->value.data(), bn.moving_mean()->value.data(),
                                    bn.moving_variance()->value.data(), 1e-3, y_ref.data());
    kernels::ref::batchnorm_backward_inference(
        dy.data(), x.data(), rows, C, bn.gamma()->value.data(), bn.moving_mean()->value.data(),
        bn.moving_variance()->value.data(), 1e-3, dx_ref.data(), dg.data(), db.data());
    TensorF mm = bn.moving_mean()->value;
    CHECK(mt::max_rel_diff(bn.forward(x, false), y_ref, 1.0) < 1e-5);
    CHECK(mt::max_abs_diff(bn.moving_mean()->value, mm) == 0);  // inference leaves stats alone
    bn.zero_grad();
    CHECK(mt::max_rel_diff(bn.backward(dy), dx_ref, 1.0) < 1e-5);
    CHECK(mt::max_rel_diff(bn.gamma()->grad, dg, 1.0) < 1e-5);
    CHECK(mt::max_rel_diff(bn.beta()->grad, db, 1.0) < 1e-5);
  }
  SUBCASE("training") {
    std::vector<double> m(C), v(C);
    kernels::ref::batchnorm_moments(x.data(), rows, C, m.data(), v.data());
    TensorF y_ref(s), dx_ref(s), dg(Shape{C}), db(Shape{C});
    kernels::ref::batchnorm_forward(x.data(), rows, C, bn.gamma()->value.data(),
                                    bn.beta()->value.data(), m.data(), v.data(), 1e-3,
                                    y_ref.data());
    kernels::ref::batchnorm_backward_training(dy.data(), x.data(), rows, C,
                                              bn.gamma()->value.data(), m.data(), v.data(), 1e-3,
                                              dx_ref.data(), dg.data(), db.data());
    CHECK(mt::max_rel_diff(bn.forward(x, true), y_ref, 1.0) < 1e-5);
    bn.zero_grad();
    CHECK(mt::max_rel_diff(bn.backward(dy), dx_ref, 1.0) < 1e-4);
    CHECK(mt::max_rel_diff(bn.gamma()->grad, dg, 1.0) < 1e-5);
    CHECK(mt::max_rel_diff(bn.beta()->grad, db, 1.0) < 1e-5);
    // Gradients accumulate (ADD) across backward calls.
    bn.backward(dy);
    for (int64_t c = 0; c < C; ++c)
      CHECK(bn.beta()->grad[c] == doctest::Approx(2 * db[c]).epsilon(1e-5));
  }
}

TEST_CASE("BatchNormalization training updates moving statistics with the unbiased variance") {
  Rng rng(5);
  const Shape s{2, 3, 5, 4};
  const int64_t C = 4, n = 2 * 3 * 5;
  TensorF x = mt::random_tensor<float>(s, rng, -1.0, 3.0);
  BatchNormalization bn("bn", 0.99, 1e-3);
  bn.forward(x, true);
  std::vector<double> mean(C, 0.0), var(C, 0.0);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < C; ++c) mean[c] += x[r * C + c] / double(n);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < C; ++c) var[c] += std::pow(x[r * C + c] - mean[c], 2) / double(n - 1);
  for (int64_t c = 0; c < C; ++c) {
    CHECK(bn.moving_mean()->value[c] == doctest::Approx(0.0 * 0.99 + mean[c] * 0.01).epsilon(1e-5));
    CHECK(bn.moving_variance()->value[c] ==
          doctest::Approx(1.0 * 0.99 + var[c] * 0.01).epsilon(1e-5));
  }
  // A second step compounds: moving = moving * momentum + batch * (1 - momentum).
  double mm1 = bn.moving_mean()->value[0], mv1 = bn.moving_variance()->value[0];
  bn.forward(x, true);
  CHECK(bn.moving_mean()->value[0] == doctest::Approx(mm1 * 0.99 + mean[0] * 0.01).epsilon(1e-5));
  CHECK(bn.moving_variance()->value[0] ==
        doctest::Approx(mv1 * 0.99 + var[0] * 0.01).epsilon(1e-5));
  // Training output uses the biased batch variance.
  const TensorF& y = bn.forward(x, true);
  double biased0 = var[0] * double(n - 1) / double(n);
  CHECK(y[0] == doctest::Approx((x[0] - mean[0]) / std::sqrt(biased0 + 1e-3)).epsilon(1e-4));
}

TEST_CASE("BatchNormalization gradcheck in training mode (rank 4 and rank 2, batch > 1)") {
  Rng rng(21);
  for (auto [center, scale] :
       {std::pair{true, true}, std::pair{false, true}, std::pair{true, false}}) {
    CAPTURE(center);
    CAPTURE(scale);
    BatchNormalizationT<double> bn("bn4", 0.9, 1e-3, center, scale);
    TensorD x = mt::random_tensor<double>(Shape{3, 5, 3, 7}, rng, -1.0, 2.0);
    bn.build(x.shape().sample());
    randomize_bn(bn, rng, true);
    require_gradcheck(bn, x, true);
  }
  BatchNormalizationT<double> bn2("bn2");
  TensorD x2 = mt::random_tensor<double>(Shape{5, 9}, rng, -3.0, 1.0);
  bn2.build(x2.shape().sample());
  randomize_bn(bn2, rng, true);
  require_gradcheck(bn2, x2, true);
}

TEST_CASE("BatchNormalization gradcheck in inference mode and when frozen") {
  Rng rng(22);
  BatchNormalizationT<double> bn("bn", 0.99, 1e-3);
  TensorD x = mt::random_tensor<double>(Shape{2, 3, 5, 5}, rng, -1.0, 2.0);
  bn.build(x.shape().sample());
  randomize_bn(bn, rng, true);
  require_gradcheck(bn, x, false);

  // Frozen: training=true still uses moving statistics, leaves them unchanged and
  // adds no parameter gradients, but dL/dx still flows.
  TensorD mm = bn.moving_mean()->value, mv = bn.moving_variance()->value;
  TensorD y_inf = bn.forward(x, false);
  bn.set_trainable(false);
  CHECK(bn.count_params(true) == 0);
  CHECK(mt::max_abs_diff(bn.forward(x, true), y_inf) == 0);
  CHECK(mt::max_abs_diff(bn.moving_mean()->value, mm) == 0);
  CHECK(mt::max_abs_diff(bn.moving_variance()->value, mv) == 0);
  require_gradcheck(bn, x, true);
  TensorD dy = mt::random_tensor<double>(x.shape(), rng);
  const TensorD& dx = bn.backward(dy);
  for (int64_t i = 0; i < x.size(); ++i) {
    int64_t c = i % 5;
    CHECK(dx[i] == doctest::Approx(dy[i] * bn.gamma()->value[c] /
                                   std::sqrt(bn.moving_variance()->value[c] + 1e-3)));
  }
  CHECK(bn.backward(dy, false).empty());
}

TEST_CASE("BatchNormalization folded scale/shift reproduce inference") {
  Rng rng(23);
  BatchNormalization bn("bn", 0.999, 1e-3);
  TensorF x = mt::random_tensor<float>(Shape{2, 3, 3, 6}, rng);
  bn.build(x.shape().sample());
  randomize_bn(bn, rng, true);
  auto [scale, shift] = bn.folded_scale_shift();
  const TensorF& y = bn.forward(x, false);
  for (int64_t i = 0; i < x.size(); ++i)
    CHECK(y[i] == doctest::Approx(x[i] * scale[i % 6] + shift[i % 6]).epsilon(1e-5));
  BatchNormalization unbuilt("ub");
  mt::check_throws_with([&] { unbuilt.folded_scale_shift(); },
                        {"BatchNormalization 'ub'", "built"});
}

TEST_CASE("BatchNormalization rejects bad inputs and options") {
  BatchNormalization bn("bn_x");
  mt::check_throws_with(
      [&] {
        bn.build(Shape{4, 5});
      },
      {"BatchNormalization 'bn_x'", "(None, 4, 5)", "rank"});
  BatchNormalization bn2("bn_y");
  bn2.build(Shape{4, 4, 5});
  TensorF wrong(Shape{2, 4, 4, 3}, 0.f);
  mt::check_throws_with([&] { bn2.forward(wrong); },
                        {"BatchNormalization 'bn_y'", "(2, 4, 4, 3)", "(None, 4, 4, 5)"});
  TensorF empty_batch(Shape{0, 4, 4, 5});
  mt::check_throws_with([&] { bn2.forward(empty_batch); },
                        {"BatchNormalization 'bn_y'", "(0, 4, 4, 5)"});
  BatchNormalization bn3("bn_z");
  mt::check_throws_with(
      [&] {
        bn3.build(Shape{4, 0, 5});
      },
      {"BatchNormalization 'bn_z'", "(4, 0, 5)", "zero-sized"});
  mt::check_throws_with([&] { BatchNormalization("bad", 1.5); }, {"'bad'", "momentum"});
  mt::check_throws_with([&] { BatchNormalization("bad", 0.9, 0.0); }, {"'bad'", "epsilon"});
}

// ---------------------------------------------------------------- activations

TEST_CASE("ReLU, ReLU6 and ReLU(max_value) forward values and zero gradient at kinks") {
  ReLU relu("r");
  ReLU6 relu6("r6");
  ReLUT<float> relu35("r35", 3.5);
  CHECK(relu.type() == "ReLU");
  CHECK(relu6.type() == "ReLU");
  CHECK(relu6.max_value() == 6.0);
  TensorF x(Shape{1, 7});
  float vals[] = {-2.f, 0.f, 0.5f, 3.5f, 5.f, 6.f, 9.f};
  std::copy(vals, vals + 7, x.data());
  float e_relu[] = {0, 0, 0.5f, 3.5f, 5, 6, 9}, e6[] = {0, 0, 0.5f, 3.5f, 5, 6, 6},
        e35[] = {0, 0, 0.5f, 3.5f, 3.5f, 3.5f, 3.5f};
  TensorF ones(Shape{1, 7}, 1.f);
  const TensorF& y = relu.forward(x);
  for (int i = 0; i < 7; ++i) CHECK(y[i] == e_relu[i]);
  const TensorF& y6 = relu6.forward(x);
  for (int i = 0; i < 7; ++i) CHECK(y6[i] == e6[i]);
  const TensorF& y35 = relu35.forward(x);
  for (int i = 0; i < 7; ++i) CHECK(y35[i] == e35[i]);
  float g_relu[] = {0, 0, 1, 1, 1, 1, 1}, g6[] = {0, 0, 1, 1, 1, 0, 0},
        g35[] = {0, 0, 1, 0, 0, 0, 0};
  const TensorF& d = relu.backward(ones);
  for (int i = 0; i < 7; ++i) CHECK(d[i] == g_relu[i]);
  const TensorF& d6 = relu6.backward(ones);
  for (int i = 0; i < 7; ++i) CHECK(d6[i] == g6[i]);
  const TensorF& d35 = relu35.backward(ones);
  for (int i = 0; i < 7; ++i) CHECK(d35[i] == g35[i]);
  CHECK(relu.backward(ones, false).empty());
  mt::check_throws_with([] { ReLU("bad", -1.0); }, {"ReLU 'bad'", "max_value"});
}

TEST_CASE("ReLU / ReLU6 gradcheck on odd shapes away from kinks") {
  Rng rng(31);
  ReLUT<double> relu("relu");
  require_gradcheck(relu, away_from(Shape{3, 5, 7, 3}, rng, -2.0, 2.0, {0.0}));
  ReLU6T<double> relu6("relu6");
  require_gradcheck(relu6, away_from(Shape{2, 3, 5, 9}, rng, -2.0, 8.0, {0.0, 6.0}));
  ReLUT<double> relu_max("relu_max", 1.5);
  require_gradcheck(relu_max, away_from(Shape{4, 11}, rng, -1.0, 3.0, {0.0, 1.5}));
}

TEST_CASE("Softmax is stable, sums to one and passes gradcheck") {
  Softmax sm("sm");
  CHECK(sm.type() == "Softmax");
  TensorF x(Shape{2, 3});
  float v[] = {1000.f, 1001.f, 1002.f, -5.f, 0.f, 5.f};
  std::copy(v, v + 6, x.data());
  const TensorF& y = sm.forward(x);
  double e0 = 1.0 / (1.0 + std::exp(1.0) + std::exp(2.0));
  CHECK(y[0] == doctest::Approx(e0));
  CHECK(y[2] == doctest::Approx(std::exp(2.0) * e0));
  for (int r = 0; r < 2; ++r) CHECK(y[3 * r] + y[3 * r + 1] + y[3 * r + 2] == doctest::Approx(1.0));
  for (int64_t i = 0; i < y.size(); ++i) CHECK(std::isfinite(y[i]));

  Rng rng(32);
  SoftmaxT<double> smd("softmax");
  require_gradcheck(smd, mt::random_tensor<double>(Shape{5, 7}, rng, -3.0, 3.0));
  SoftmaxT<double> sm4("softmax4");
  require_gradcheck(sm4, mt::random_tensor<double>(Shape{2, 3, 3, 5}, rng, -3.0, 3.0));
}

// ---------------------------------------------------------------- ZeroPadding2D

TEST_CASE("ZeroPadding2D places the input and pads asymmetrically") {
  ZeroPadding2D pad("pad", 1, 2, 0, 3);
  CHECK(pad.type() == "ZeroPadding2D");
  TensorF x(Shape{2, 3, 5, 2});
  for (int64_t i = 0; i < x.size(); ++i) x[i] = float(i + 1);
  const TensorF& y = pad.forward(x);
  REQUIRE(y.shape() == Shape{2, 6, 8, 2});
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t h = 0; h < 6; ++h)
      for (int64_t w = 0; w < 8; ++w)
        for (int64_t c = 0; c < 2; ++c) {
          bool inside = h >= 1 && h < 4 && w < 5;
          CHECK(y.at(n, h, w, c) == (inside ? x.at(n, h - 1, w, c) : 0.f));
        }
  CHECK(ZeroPadding2D("p1", 1).build(Shape{4, 4, 3}) == Shape{6, 6, 3});
  CHECK(ZeroPadding2D("p2", 1, 2).build(Shape{4, 4, 3}) == Shape{6, 8, 3});
  mt::check_throws_with([] { ZeroPadding2D("neg", -1); }, {"ZeroPadding2D 'neg'", ">= 0"});
  mt::check_throws_with(
      [] {
        ZeroPadding2D("r2", 1).build(Shape{4, 3});
      },
      {"ZeroPadding2D 'r2'", "(None, 4, 3)"});

  Rng rng(41);
  ZeroPadding2DT<double> padd("pad_d", 0, 1, 2, 1);
  require_gradcheck(padd, mt::random_tensor<double>(Shape{2, 5, 3, 3}, rng));
  ZeroPadding2DT<double> pad_mnv2("block_1_pad", 0, 1, 0, 1);
  require_gradcheck(pad_mnv2, mt::random_tensor<double>(Shape{3, 4, 6, 2}, rng));
}

// [pad, conv] in a Sequential against the same layers run one by one (the convolution then
// reads the padded copy), for both convolution kinds, with the pad first or after a layer
// that needs dL/dx, in training and inference, and folded for inference afterwards.
TEST_CASE("Sequential: a 'valid' convolution pads its own input in place of its ZeroPadding2D") {
  struct Case {
    Shape in;
    int64_t top, bottom, left, right, stride;
    bool folds;
  };
  const Case cases[] = {
      {{8, 8, 5}, 0, 1, 0, 1, 2, true},   // MobileNetV2's correct_pad on an even size
      {{7, 9, 5}, 1, 1, 1, 1, 2, true},   // odd sizes: TF 'same' pads 1 on each side
      {{6, 5, 5}, 1, 1, 1, 1, 1, true},   // stride 1
      {{8, 8, 5}, 1, 2, 0, 1, 2, false},  // not what 'same' would do: the pad layer runs
  };
  auto conv = [](bool depthwise, const std::string& name,
                 int64_t stride) -> std::unique_ptr<Layer> {
    if (depthwise)
      return std::make_unique<DepthwiseConv2D>(name, 3, stride, Padding::Valid, true,
                                               Activation::ReLU6);
    return std::make_unique<Conv2D>(name, 4, 3, stride, Padding::Valid, true);
  };
  Rng rng(17);
  for (const Case& c : cases)
    for (bool depthwise : {true, false})
      for (bool pad_first : {true, false})
        for (bool training : {true, false}) {
          CAPTURE(c.in.str());
          CAPTURE(c.top);
          CAPTURE(depthwise);
          CAPTURE(pad_first);
          CAPTURE(training);
          Sequential seq("seq");
          Layer* pre = pad_first ? nullptr : &seq.add<Conv2D>("pre", 5, 1, 1, Padding::Valid, true);
          auto& pad = seq.add<ZeroPadding2D>("pad", c.top, c.bottom, c.left, c.right);
          Layer& cv = seq.add(conv(depthwise, "conv", c.stride));
          seq.build(c.in);
          CHECK(cv.absorbed_previous() == (c.folds ? &pad : nullptr));
          // The same layers, alone: nothing absorbed.
          Conv2D pre2("pre2", 5, 1, 1, Padding::Valid, true);
          ZeroPadding2D pad2("pad2", c.top, c.bottom, c.left, c.right);
          auto cv2 = conv(depthwise, "conv2", c.stride);
          if (pre) pre2.build(c.in);
          cv2->build(pad.output_shape());
          auto params = seq.parameters();
          std::vector<Parameter*> params2 = cv2->parameters();
          if (pre) {
            std::vector<Parameter*> pre_params = pre2.parameters();
            params2.insert(params2.begin(), pre_params.begin(), pre_params.end());
          }
          REQUIRE(params.size() == params2.size());
          for (size_t i = 0; i < params.size(); ++i) {
            for (auto& v : params[i]->value) v = float(rng.uniform(-1, 1));
            params2[i]->value = params[i]->value;
          }
          const TensorF x = mt::random_tensor<float>(c.in.with_leading(3), rng, -2.0, 2.0);
          const TensorF y = seq.forward(x, training);
          const TensorF h = pre ? pre2.forward(x, training) : x;
          const TensorF y_ref = cv2->forward(pad2.forward(h.view(), training).view(), training);
          REQUIRE(y.shape() == y_ref.shape());
          CHECK(mt::max_rel_diff(y, y_ref, 1.0) < 1e-5);

          const TensorF dy = mt::random_tensor<float>(y.shape(), rng);
          seq.zero_grad();
          cv2->zero_grad();
          pre2.zero_grad();
          const TensorF dx = seq.backward(dy);
          TensorF dx_ref = pad2.backward(cv2->backward(dy).view());
          if (pre) dx_ref = pre2.backward(dx_ref.view());
          REQUIRE(dx.shape() == x.shape());
          CHECK(mt::max_rel_diff(dx, dx_ref, 1.0) < 1e-5);
          for (size_t i = 0; i < params.size(); ++i)
            CHECK(mt::max_rel_diff(params[i]->grad, params2[i]->grad, 1.0) < 1e-5);

          // Inference folding drops the pad layer for good; the folded convolution runs a
          // packed GEMM, another summation order.
          if (!training) {
            seq.fold_for_inference();
            CHECK(mt::max_rel_diff(seq.forward(x, false), y_ref, 1.0) < 1e-5);
          }
        }

  // Finite differences through the absorbed padding (double precision).
  for (bool depthwise : {true, false}) {
    CAPTURE(depthwise);
    SequentialT<double> seq("seq_d");
    seq.add<ZeroPadding2DT<double>>("pad", 1, 1, 1, 1);
    if (depthwise)
      seq.add<DepthwiseConv2DT<double>>("conv", 3, 2, Padding::Valid, true);
    else
      seq.add<Conv2DT<double>>("conv", 3, 3, 2, Padding::Valid, true);
    seq.build(Shape{5, 7, 3});
    REQUIRE(seq.layers()[1]->absorbed_previous() == seq.layers()[0]);
    require_gradcheck(seq, mt::random_tensor<double>(Shape{2, 5, 7, 3}, rng));
  }
}

// ---------------------------------------------------------------- GlobalAveragePooling2D

TEST_CASE("GlobalAveragePooling2D averages each channel and passes gradcheck") {
  Rng rng(51);
  GlobalAveragePooling2D gap("gap");
  CHECK(gap.type() == "GlobalAveragePooling2D");
  TensorF x = mt::random_tensor<float>(Shape{3, 5, 7, 19}, rng);
  const TensorF& y = gap.forward(x);
  REQUIRE(y.shape() == Shape{3, 19});
  for (int64_t n = 0; n < 3; ++n)
    for (int64_t c = 0; c < 19; ++c) {
      double s = 0;
      for (int64_t h = 0; h < 5; ++h)
        for (int64_t w = 0; w < 7; ++w) s += x.at(n, h, w, c);
      CHECK(y.at(n, c) == doctest::Approx(s / 35).epsilon(1e-5));
    }
  // Large enough for the parallel path.
  TensorF big = mt::random_tensor<float>(Shape{4, 12, 12, 160}, rng);
  TensorF ybig(Shape{4, 160});
  kernels::global_avg_pool_nhwc(big.data(), 4, 144, 160, ybig.data());
  for (int64_t c = 0; c < 160; c += 13) {
    double s = 0;
    for (int64_t i = 0; i < 144; ++i) s += big[(3 * 144 + i) * 160 + c];
    CHECK(ybig.at(3, c) == doctest::Approx(s / 144).epsilon(1e-5));
  }
  mt::check_throws_with([] { GlobalAveragePooling2D("g2").build(Shape{7}); },
                        {"GlobalAveragePooling2D 'g2'", "(None, 7)"});
  GlobalAveragePooling2DT<double> gapd("gap_d");
  require_gradcheck(gapd, mt::random_tensor<double>(Shape{2, 3, 5, 7}, rng));
}

// ---------------------------------------------------------------- Dropout

TEST_CASE("Dropout: identity at inference, rate and scaling in training, seeded masks") {
  Rng rng(61);
  const double rate = 0.3;
  TensorF x = mt::random_tensor<float>(Shape{10, 10000}, rng, 0.5, 1.5);
  Dropout d("dropout", rate, 123);
  CHECK(d.type() == "Dropout");
  CHECK(mt::max_abs_diff(d.forward(x, false), x) == 0);

  const TensorF& y = d.forward(x, true);
  int64_t dropped = 0;
  for (int64_t i = 0; i < x.size(); ++i) {
    if (y[i] == 0.f)
      ++dropped;
    else
      CHECK_MESSAGE(std::abs(y[i] - x[i] / (1 - rate)) < 1e-5, "element " << i);
  }
  double frac = double(dropped) / double(x.size());
  CHECK(frac == doctest::Approx(rate).epsilon(0.02));  // 100k draws: sd ~ 0.0015
  TensorF mask1 = d.mask();

  // Backward multiplies by the same mask.
  TensorF ones(x.shape(), 1.f);
  const TensorF& dx = d.backward(ones);
  CHECK(mt::max_abs_diff(dx, mask1) == 0);

  // Same seed -> same mask; next call draws a different one; reseed replays.
  Dropout d2("dropout2", rate, 123);
  d2.forward(x, true);
  CHECK(mt::max_abs_diff(d2.mask(), mask1) == 0);
  d2.forward(x, true);
  CHECK(mt::max_abs_diff(d2.mask(), mask1) > 0);
  d2.reseed(123);
  d2.forward(x, true);
  CHECK(mt::max_abs_diff(d2.mask(), mask1) == 0);
  Dropout d3("dropout3", rate, 124);
  d3.forward(x, true);
  CHECK(mt::max_abs_diff(d3.mask(), mask1) > 0);

  // Backward after an inference forward is the identity.
  d.forward(x, false);
  CHECK(mt::max_abs_diff(d.backward(ones), ones) == 0);
  // Keras semantics: Dropout has no weights and ignores `trainable`; a frozen Dropout still
  // drops when called in training mode (only the training flag matters).
  d.set_trainable(false);
  const TensorF& yf = d.forward(x, true);
  int64_t dropped_frozen = 0;
  for (int64_t i = 0; i < yf.size(); ++i) dropped_frozen += yf[i] == 0.f;
  CHECK(dropped_frozen > 0);
  CHECK(mt::max_abs_diff(d.forward(x, false), x) == 0);

  mt::check_throws_with([] { Dropout("bad", 1.0); }, {"Dropout 'bad'", "[0, 1)"});
  mt::check_throws_with([] { Dropout("bad", -0.1); }, {"Dropout 'bad'", "[0, 1)"});
  Dropout zero("zero", 0.0);
  CHECK(mt::max_abs_diff(zero.forward(x, true), x) == 0);
}

TEST_CASE("Dropout gradcheck with a reseed hook") {
  Rng rng(62);
  DropoutT<double> d("dropout", 0.4, 9);
  require_gradcheck(d, mt::random_tensor<double>(Shape{3, 5, 7}, rng), true, [&] { d.reseed(9); });
}

// ---------------------------------------------------------------- Flatten

TEST_CASE("Flatten keeps memory order and passes gradcheck") {
  Rng rng(71);
  Flatten f("flatten");
  CHECK(f.type() == "Flatten");
  TensorF x = mt::random_tensor<float>(Shape{2, 3, 4, 5}, rng);
  const TensorF& y = f.forward(x);
  REQUIRE(y.shape() == Shape{2, 60});
  CHECK(mt::max_abs_diff(y, x) == 0);
  TensorF dy = mt::random_tensor<float>(Shape{2, 60}, rng);
  const TensorF& dx = f.backward(dy);
  CHECK(dx.shape() == x.shape());
  CHECK(mt::max_abs_diff(dx, dy) == 0);
  mt::check_throws_with(
      [&] {
        f.forward(TensorF(Shape{2, 3, 4, 6}, 0.f));
      },
      {"Flatten 'flatten'", "(2, 3, 4, 6)", "(None, 3, 4, 5)"});
  FlattenT<double> fd("flatten_d");
  require_gradcheck(fd, mt::random_tensor<double>(Shape{3, 5, 3, 2}, rng));
}

// ---------------------------------------------------------------- Add

TEST_CASE("Add sums N inputs, passes dy to every input, rejects mismatched operands") {
  Rng rng(81);
  Add add("block_1_add");
  CHECK(add.type() == "Add");
  TensorF a = mt::random_tensor<float>(Shape{2, 3, 3, 4}, rng);
  TensorF b = mt::random_tensor<float>(Shape{2, 3, 3, 4}, rng);
  TensorF c = mt::random_tensor<float>(Shape{2, 3, 3, 4}, rng);
  const TensorF& y = add.forward({a, b, c});
  CHECK(add.num_inputs() == 3);
  CHECK(add.output_shape() == Shape{3, 3, 4});
  for (int64_t i = 0; i < y.size(); ++i) CHECK(y[i] == doctest::Approx(a[i] + b[i] + c[i]));
  TensorF dy = mt::random_tensor<float>(y.shape(), rng);
  ConstView<float> g = add.backward(dy);
  CHECK(g.data() == dy.data());  // documented: the gradient of every input is dy itself

  Add two("two");
  const TensorF& y2 = two.forward(a, b);
  CHECK(y2[5] == doctest::Approx(a[5] + b[5]));

  TensorF odd = mt::random_tensor<float>(Shape{2, 3, 3, 5}, rng);
  Add bad("block_2_add");
  mt::check_throws_with([&] { bad.forward(a, odd); },
                        {"Add 'block_2_add'", "(2, 3, 3, 4)", "(2, 3, 3, 5)"});
  mt::check_throws_with(
      [&] {
        bad.build({Shape{3, 3, 4}, Shape{3, 3, 5}});
      },
      {"Add 'block_2_add'", "(None, 3, 3, 4)", "(None, 3, 3, 5)"});
  mt::check_throws_with([&] { bad.build({Shape{3, 3, 4}}); }, {"Add 'block_2_add'", "at least 2"});
  mt::check_throws_with(
      [&] {
        bad.build({Shape{3, 0, 4}, Shape{3, 0, 4}});
      },
      {"Add 'block_2_add'", "(3, 0, 4)", "zero-sized"});
  // Built for one shape, fed another.
  mt::check_throws_with(
      [&] {
        add.forward({odd, odd, odd});
      },
      {"Add 'block_1_add'", "(2, 3, 3, 5)", "(None, 3, 3, 4)"});
  mt::check_throws_with([&] { add.backward(odd); },
                        {"Add 'block_1_add'", "(2, 3, 3, 5)", "(2, 3, 3, 4)"});

  AddAdapter adapter;
  require_gradcheck(adapter, mt::random_tensor<double>(Shape{2, 3, 7}, rng));
}

TEST_CASE("layers reject wrong input shapes and zero-sized dimensions, naming themselves") {
  ReLU6 r("block_1_expand_relu");
  r.build(Shape{4, 4, 8});
  mt::check_throws_with(
      [&] {
        r.forward(TensorF(Shape{1, 4, 5, 8}, 0.f));
      },
      {"ReLU 'block_1_expand_relu'", "(1, 4, 5, 8)", "(None, 4, 4, 8)"});
  Softmax s("sm");
  mt::check_throws_with([&] { s.build(Shape{0}); }, {"Softmax 'sm'", "zero-sized"});
  ZeroPadding2D p("block_1_pad", 0, 1, 0, 1);
  p.build(Shape{6, 6, 3});
  mt::check_throws_with(
      [&] {
        p.forward(TensorF(Shape{2, 6, 6, 4}, 0.f));
      },
      {"ZeroPadding2D 'block_1_pad'", "(2, 6, 6, 4)", "(None, 6, 6, 3)"});
  GlobalAveragePooling2D g("gap");
  mt::check_throws_with(
      [&] {
        g.build(Shape{3, 0, 4});
      },
      {"GlobalAveragePooling2D 'gap'", "zero-sized"});
  Dropout d("drop", 0.2);
  d.build(Shape{10});
  mt::check_throws_with(
      [&] {
        d.forward(TensorF(Shape{2, 11}, 0.f));
      },
      {"Dropout 'drop'", "(2, 11)", "(None, 10)"});
  mt::check_throws_with([&] { d.backward(TensorF(Shape{2, 10}, 0.f)); }, {"Dropout 'drop'"});
}
