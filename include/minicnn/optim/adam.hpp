// AdamT<T>: Adam with Keras' (and TF's ApplyAdam) update rule. Per step t:
//   lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)
//   m = beta1 * m + (1 - beta1) * g;   v = beta2 * v + (1 - beta2) * g^2
//   p -= lr_t * m / (sqrt(v) + epsilon)
// Keras adds epsilon to sqrt(v) of the UNcorrected v and folds the bias correction into
// the step size, so its epsilon equals torch.optim.Adam's eps * sqrt(1 - beta2^t) at step
// t; with the same number the two differ while v is small. Default epsilon is Keras' 1e-7.
// Slots: "<param>/m" and "<param>/v". Scalars are computed in double, elements in T
// (float elements through the vector kernel of kernels/optim.hpp).
#pragma once
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "../kernels/optim.hpp"
#include "optimizer.hpp"

namespace minicnn {

template <typename T>
class AdamT : public OptimizerT<T> {
 public:
  explicit AdamT(double learning_rate = 1e-3, double beta_1 = 0.9, double beta_2 = 0.999,
                 double epsilon = 1e-7)
      : OptimizerT<T>("Adam", learning_rate), beta_1_(beta_1), beta_2_(beta_2), epsilon_(epsilon) {
    auto in_unit = [](double b) { return std::isfinite(b) && b >= 0.0 && b < 1.0; };
    if (!in_unit(beta_1))
      throw ConfigError("Adam: beta_1 must be in [0, 1), got " + std::to_string(beta_1));
    if (!in_unit(beta_2))
      throw ConfigError("Adam: beta_2 must be in [0, 1), got " + std::to_string(beta_2));
    // epsilon == 0 divides 0 by 0 for parameters whose gradient has always been zero.
    if (!(std::isfinite(epsilon) && epsilon > 0.0))
      throw ConfigError("Adam: epsilon must be finite and > 0, got " + std::to_string(epsilon));
  }

  double beta_1() const { return beta_1_; }
  double beta_2() const { return beta_2_; }
  double epsilon() const { return epsilon_; }

  nlohmann::json config() const override {
    return {{"name", "Adam"},      {"learning_rate", this->learning_rate()},
            {"beta_1", beta_1_},   {"beta_2", beta_2_},
            {"epsilon", epsilon_}, {"amsgrad", false}};
  }

 protected:
  std::vector<std::string> slot_names() const override { return {"m", "v"}; }

  void begin_step(int64_t t) override {
    const double td = static_cast<double>(t);
    lr_t_ = this->learning_rate() * std::sqrt(1.0 - std::pow(beta_2_, td)) /
            (1.0 - std::pow(beta_1_, td));
  }

  void update(ParameterT<T>& p, std::vector<Tensor<T>>& slots, int64_t /*t*/, int64_t begin,
              int64_t end) override {
    T* w = p.value.data() + begin;
    const T* g = p.grad.data() + begin;
    T* m = slots[0].data() + begin;
    T* v = slots[1].data() + begin;
    const T b1 = static_cast<T>(beta_1_), b2 = static_cast<T>(beta_2_);
    const T c1 = static_cast<T>(1.0 - beta_1_), c2 = static_cast<T>(1.0 - beta_2_);
    const T lr_t = static_cast<T>(lr_t_), eps = static_cast<T>(epsilon_);
    const int64_t n = end - begin;
    if constexpr (std::is_same_v<T, float>) {
      kernels::adam_update(w, g, m, v, n, kernels::AdamCoefficients{b1, c1, b2, c2, lr_t, eps});
    } else {
      for (int64_t i = 0; i < n; ++i) {
        m[i] = b1 * m[i] + c1 * g[i];
        v[i] = b2 * v[i] + c2 * g[i] * g[i];
        w[i] -= lr_t * m[i] / (std::sqrt(v[i]) + eps);
      }
    }
  }

 private:
  double beta_1_, beta_2_, epsilon_;
  double lr_t_ = 0.0;
};

using Adam = AdamT<float>;

}  // namespace minicnn
