// Adam and SGD against updates computed by hand in double, frozen and state parameters
// left alone, slot naming / checkpoint round trip, config and hyperparameter errors.
#include "test_support.hpp"

#include <minicnn/optim/adam.hpp>
#include <minicnn/optim/sgd.hpp>

using namespace minicnn;

namespace {

ParameterT<double> make_param(const std::string& name, std::vector<double> value,
                              std::vector<double> grad) {
  ParameterT<double> p(name, Shape{int64_t(value.size())});
  std::copy(value.begin(), value.end(), p.value.data());
  std::copy(grad.begin(), grad.end(), p.grad.data());
  return p;
}

}  // namespace

TEST_CASE("Adam follows Keras' rule step by step") {
  const double lr = 0.01, b1 = 0.8, b2 = 0.95, eps = 1e-3;
  AdamT<double> opt(lr, b1, b2, eps);
  auto p = make_param("dense/kernel", {0.5, -1.0, 2.0}, {0, 0, 0});
  std::vector<double> w = {0.5, -1.0, 2.0}, m(3, 0.0), v(3, 0.0);
  const double grads[3][3] = {{0.3, -2.0, 0.0}, {-0.1, 1.0, 1e-9}, {0.7, 0.2, -3.0}};
  for (int t = 1; t <= 3; ++t) {
    for (int i = 0; i < 3; ++i) p.grad[i] = grads[t - 1][i];
    opt.step({&p});
    double lr_t = lr * std::sqrt(1 - std::pow(b2, t)) / (1 - std::pow(b1, t));
    for (int i = 0; i < 3; ++i) {
      double g = grads[t - 1][i];
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      w[i] -= lr_t * m[i] / (std::sqrt(v[i]) + eps);
      CHECK(p.value[i] == doctest::Approx(w[i]).epsilon(1e-14));
    }
    CHECK(opt.iterations() == t);
  }
  // First step moves a parameter by about lr * sign(g) when |g| >> epsilon.
  AdamT<float> first(0.1);
  ParameterT<float> q("c/k", Shape{2});
  q.grad[0] = 5.f, q.grad[1] = -0.25f;
  first.step({&q});
  CHECK(q.value[0] == doctest::Approx(-0.1).epsilon(1e-5));
  CHECK(q.value[1] == doctest::Approx(0.1).epsilon(1e-5));
}

TEST_CASE("float Adam (vector kernel, flat list split over threads) follows the double rule") {
  // Sizes with vector tails, one parameter of a single element, and enough elements in all
  // that the threads' ranges cut through parameters.
  const std::vector<int64_t> sizes = {1, 15, 17, 33, 40000, 70001};
  const double lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-7;
  Rng rng(21);
  std::vector<std::unique_ptr<ParameterT<float>>> fp;
  std::vector<std::unique_ptr<ParameterT<double>>> dp;
  std::vector<ParameterT<float>*> flist;
  std::vector<ParameterT<double>*> dlist;
  for (size_t k = 0; k < sizes.size(); ++k) {
    const std::string name = "p" + std::to_string(k) + "/w";
    fp.push_back(std::make_unique<ParameterT<float>>(name, Shape{sizes[k]}));
    dp.push_back(std::make_unique<ParameterT<double>>(name, Shape{sizes[k]}));
    for (int64_t i = 0; i < sizes[k]; ++i)
      dp[k]->value[i] = fp[k]->value[i] = float(rng.uniform(-1, 1));
    flist.push_back(fp.back().get());
    dlist.push_back(dp.back().get());
  }
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    AdamT<float> fast(lr, b1, b2, eps);
    AdamT<double> exact(lr, b1, b2, eps);
    for (size_t k = 0; k < sizes.size(); ++k)
      for (int64_t i = 0; i < sizes[k]; ++i) dp[k]->value[i] = double(fp[k]->value[i]);
    for (int t = 0; t < 4; ++t) {
      for (size_t k = 0; k < sizes.size(); ++k)
        for (int64_t i = 0; i < sizes[k]; ++i)
          dp[k]->grad[i] = fp[k]->grad[i] = float(rng.uniform(-2, 2) * (t == 1 ? 1e-6 : 1.0));
      fast.step(flist);
      exact.step(dlist);
    }
    CAPTURE(threads);
    double worst = 0;
    for (size_t k = 0; k < sizes.size(); ++k)
      for (int64_t i = 0; i < sizes[k]; ++i)
        worst = std::max(worst, std::abs(double(fp[k]->value[i]) - dp[k]->value[i]));
    // Four steps of about lr each: float rounding of the values (|w| <= 1) dominates.
    CHECK(worst < 4e-7);
    // Every element moved (a range left out by the thread split would not).
    CHECK(fast.iterations() == 4);
  }
  set_num_threads(2);
}

TEST_CASE("the optimizer's flat list follows changes of the parameter list and of trainable") {
  AdamT<float> opt(0.1);
  ParameterT<float> a("a/w", Shape{3}), b("b/w", Shape{5});
  a.grad.fill(1.f);
  b.grad.fill(1.f);
  opt.step({&a, &b});
  CHECK(a.value[0] == doctest::Approx(-0.1).epsilon(1e-5));
  CHECK(b.value[4] == doctest::Approx(-0.1).epsilon(1e-5));
  // Same list, b frozen in between: b must not move.
  b.trainable = false;
  opt.step({&a, &b});
  CHECK(b.value[4] == doctest::Approx(-0.1).epsilon(1e-5));
  CHECK(a.value[0] < -0.15f);
  // Another list: only a.
  b.trainable = true;
  const float a_before = a.value[0], b_before = b.value[0];
  opt.step({&a});
  CHECK(a.value[0] < a_before);
  CHECK(b.value[0] == b_before);
  // A gradient reshaped behind the optimizer's back is refused, nothing changed.
  a.grad = Tensor<float>(Shape{4}, 1.f);
  const float a_now = a.value[0];
  CHECK_THROWS_AS(opt.step({&a}), ShapeError);
  CHECK(a.value[0] == a_now);
}

TEST_CASE("SGD: plain, momentum and nesterov follow Keras' rules") {
  const double grads[3] = {0.5, -1.5, 2.0};
  for (int mode = 0; mode < 3; ++mode) {
    double mu = mode == 0 ? 0.0 : 0.9;
    bool nesterov = mode == 2;
    SGDT<double> opt(0.1, mu, nesterov);
    auto p = make_param("w", {1.0}, {0.0});
    double w = 1.0, vel = 0.0;
    for (int t = 0; t < 3; ++t) {
      p.grad[0] = grads[t];
      opt.step({&p});
      vel = mu * vel - 0.1 * grads[t];
      w += nesterov ? mu * vel - 0.1 * grads[t] : vel;
      CHECK(p.value[0] == doctest::Approx(w).epsilon(1e-14));
    }
    CHECK(opt.state_tensors().size() == (mode == 0 ? 0u : 1u));
  }
}

TEST_CASE("optimizers never touch frozen parameters or state, even with non-zero grads") {
  ParameterT<float> train("conv/kernel", Shape{2, 2}), frozen("dense/kernel", Shape{3}),
      state("bn/moving_mean", Shape{3}, true);
  for (auto* p : {&train, &frozen}) {
    p->value.fill(1.f);
    p->grad.fill(0.5f);
  }
  frozen.trainable = false;  // grad kept non-empty on purpose
  state.value.fill(2.f);
  state.grad = TensorF(Shape{3}, 0.5f);  // a stray gradient must still be ignored
  AdamT<float> adam(0.1);
  SGDT<float> sgd(0.1, 0.9);
  for (OptimizerT<float>* opt : std::vector<OptimizerT<float>*>{&adam, &sgd}) {
    opt->step({&train, &frozen, &state});
    for (float v : frozen.value) CHECK(v == 1.f);
    for (float v : state.value) CHECK(v == 2.f);
    for (float v : train.value) CHECK(v < 1.f);
    // Only the trainable parameter owns state.
    for (auto& [name, t] : opt->state_tensors()) CHECK(name.rfind("conv/kernel/", 0) == 0);
  }
}

TEST_CASE("state tensors are named <param>/m, <param>/v, <param>/momentum and restore exactly") {
  auto make = [] {
    std::vector<std::unique_ptr<ParameterT<float>>> ps;
    ps.push_back(std::make_unique<ParameterT<float>>("block_1_expand/kernel", Shape{2, 3}));
    ps.push_back(std::make_unique<ParameterT<float>>("block_1_expand_BN/gamma", Shape{3}));
    ps.push_back(
        std::make_unique<ParameterT<float>>("block_1_expand_BN/moving_mean", Shape{3}, true));
    Rng rng(5);
    for (auto& p : ps) {
      p->value = mt::random_tensor<float>(p->value.shape(), rng);
      if (!p->is_state) p->grad = mt::random_tensor<float>(p->value.shape(), rng);
    }
    return ps;
  };
  auto ptrs = [](auto& ps) {
    std::vector<ParameterT<float>*> v;
    for (auto& p : ps) v.push_back(p.get());
    return v;
  };
  auto a = make();
  AdamT<float> adam(0.05);
  CHECK(adam.state_tensors().empty());
  adam.build(ptrs(a));
  auto names = adam.state_tensors();
  REQUIRE(names.size() == 4);
  CHECK(names[0].first == "block_1_expand/kernel/m");
  CHECK(names[1].first == "block_1_expand/kernel/v");
  CHECK(names[2].first == "block_1_expand_BN/gamma/m");
  CHECK(names[3].first == "block_1_expand_BN/gamma/v");
  CHECK(names[0].second->shape() == Shape{2, 3});
  adam.step(ptrs(a));
  adam.step(ptrs(a));
  REQUIRE(adam.find_state("block_1_expand_BN/gamma/v") != nullptr);
  CHECK(adam.find_state("block_1_expand_BN/moving_mean/m") == nullptr);

  // "Checkpoint": copy values, slots and iterations into fresh objects, then both step on.
  auto b = make();
  for (size_t i = 0; i < a.size(); ++i) b[i]->value = a[i]->value;
  AdamT<float> restored(0.05);
  restored.build(ptrs(b));
  for (auto& [name, t] : adam.state_tensors()) *restored.find_state(name) = *t;
  restored.set_iterations(adam.iterations());
  adam.step(ptrs(a));
  restored.step(ptrs(b));
  for (size_t i = 0; i < a.size(); ++i) CHECK(mt::max_abs_diff(a[i]->value, b[i]->value) == 0);

  SGDT<float> sgd(0.1, 0.5);
  sgd.step(ptrs(a));
  auto s = sgd.state_tensors();
  REQUIRE(s.size() == 2);
  CHECK(s[0].first == "block_1_expand/kernel/momentum");
  CHECK(s[1].first == "block_1_expand_BN/gamma/momentum");
}

TEST_CASE("optimizer config, learning rate and iterations") {
  AdamT<float> adam(2e-3, 0.85, 0.99, 1e-6);
  auto c = adam.config();
  CHECK(c["name"] == "Adam");
  CHECK(c["learning_rate"].get<double>() == 2e-3);
  CHECK(c["beta_1"].get<double>() == 0.85);
  CHECK(c["beta_2"].get<double>() == 0.99);
  CHECK(c["epsilon"].get<double>() == 1e-6);
  adam.set_learning_rate(1e-4);
  CHECK(adam.learning_rate() == 1e-4);
  CHECK(adam.config()["learning_rate"].get<double>() == 1e-4);
  adam.set_iterations(42);
  CHECK(adam.iterations() == 42);
  SGDT<float> sgd(0.1, 0.9, true);
  CHECK(sgd.type() == "SGD");
  CHECK(sgd.config()["momentum"].get<double>() == 0.9);
  CHECK(sgd.config()["nesterov"].get<bool>() == true);
  // Keras' defaults.
  AdamT<float> d;
  CHECK(d.learning_rate() == 1e-3);
  CHECK(d.epsilon() == 1e-7);
  CHECK(SGDT<float>().learning_rate() == 0.01);
}

TEST_CASE("optimizer errors: bad hyperparameters, gradient shape, duplicate names") {
  CHECK_THROWS_AS(AdamT<float>(-1e-3), ConfigError);
  CHECK_THROWS_AS(AdamT<float>(std::nan("")), ConfigError);
  CHECK_THROWS_AS(AdamT<float>(1e-3, 1.0), ConfigError);
  CHECK_THROWS_AS(AdamT<float>(1e-3, 0.9, -0.1), ConfigError);
  CHECK_THROWS_AS(AdamT<float>(1e-3, 0.9, 0.999, 0.0), ConfigError);
  CHECK_THROWS_AS(SGDT<float>(0.1, 1.5), ConfigError);
  CHECK_THROWS_AS(SGDT<float>(-0.1), ConfigError);
  mt::check_throws_with([] { SGDT<float>(0.1, -0.5); }, {"SGD", "momentum", "-0.5"});
  AdamT<float> adam;
  mt::check_throws_with([&] { adam.set_learning_rate(-1); }, {"Adam", "learning_rate"});
  CHECK_THROWS_AS(adam.set_iterations(-1), ConfigError);

  ParameterT<float> p("dense/bias", Shape{3});
  p.grad = TensorF(Shape{4}, 0.f);
  mt::check_throws_with([&] { adam.step({&p}); }, {"dense/bias", "(4,)", "(3,)"});
  ParameterT<float> a("same/name", Shape{2}), b("same/name", Shape{2});
  a.value.fill(3.f);
  a.grad.fill(1.f);
  mt::check_throws_with([&] { adam.step({&a, &b}); }, {"same/name", "twice"});
  // Validation runs before any update: a throwing step changes nothing.
  CHECK(a.value[0] == 3.f);
  CHECK(adam.iterations() == 0);
  ParameterT<float> c("same/name", Shape{5});
  mt::check_throws_with([&] { adam.step({&c}); }, {"same/name", "(2,)", "(5,)"});
}
