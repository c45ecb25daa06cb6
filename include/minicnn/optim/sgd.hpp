// SGDT<T>: stochastic gradient descent with Keras' momentum rule:
//   momentum == 0:  p -= lr * g                                  (no state)
//   otherwise:      v = momentum * v - lr * g;  p += v           (slot "<param>/momentum")
//   nesterov:       v = momentum * v - lr * g;  p += momentum * v - lr * g
// With a constant learning rate this equals torch.optim.SGD (dampening 0), whose buffer
// b = momentum * b + g is Keras' v / -lr.
#pragma once
#include <cmath>
#include <string>
#include <vector>

#include "optimizer.hpp"

namespace minicnn {

template <typename T>
class SGDT : public OptimizerT<T> {
 public:
  explicit SGDT(double learning_rate = 0.01, double momentum = 0.0, bool nesterov = false)
      : OptimizerT<T>("SGD", learning_rate), momentum_(momentum), nesterov_(nesterov) {
    if (!(std::isfinite(momentum) && momentum >= 0.0 && momentum <= 1.0))
      throw ConfigError("SGD: momentum must be in [0, 1], got " + std::to_string(momentum));
  }

  double momentum() const { return momentum_; }
  bool nesterov() const { return nesterov_; }

  nlohmann::json config() const override {
    return {{"name", "SGD"},
            {"learning_rate", this->learning_rate()},
            {"momentum", momentum_},
            {"nesterov", nesterov_}};
  }

 protected:
  // Keras creates momentum slots only when momentum != 0.
  std::vector<std::string> slot_names() const override {
    if (momentum_ == 0.0) return {};
    return {"momentum"};
  }

  void update(ParameterT<T>& p, std::vector<Tensor<T>>& slots, int64_t /*t*/, int64_t begin,
              int64_t end) override {
    T* w = p.value.data() + begin;
    const T* g = p.grad.data() + begin;
    const T lr = static_cast<T>(this->learning_rate());
    const int64_t n = end - begin;
    if (slots.empty()) {
      for (int64_t i = 0; i < n; ++i) w[i] -= lr * g[i];
      return;
    }
    T* v = slots[0].data() + begin;
    const T mu = static_cast<T>(momentum_);
    if (nesterov_) {
      for (int64_t i = 0; i < n; ++i) {
        v[i] = mu * v[i] - lr * g[i];
        w[i] += mu * v[i] - lr * g[i];
      }
    } else {
      for (int64_t i = 0; i < n; ++i) {
        v[i] = mu * v[i] - lr * g[i];
        w[i] += v[i];
      }
    }
  }

 private:
  double momentum_;
  bool nesterov_;
};

using SGD = SGDT<float>;

}  // namespace minicnn
