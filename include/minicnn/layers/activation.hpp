// Activation layers with Keras semantics: ReLUT (Keras ReLU(max_value)), ReLU6T
// (ReLU with max_value 6, still type "ReLU" as in keras_applications' MobileNetV2)
// and SoftmaxT over the last axis. Element-wise on any input shape.
// ReLU gradients are taken from the output y: they pass where 0 < y < max_value and
// are 0 at the kinks (x == 0, x == max_value), as in TF.
#pragma once
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <string>

#include "../kernels/activation.hpp"
#include "layer.hpp"

namespace minicnn {

template <typename T>
class ReLUT : public LayerT<T> {
 public:
  explicit ReLUT(std::string name, double max_value = std::numeric_limits<double>::infinity())
      : LayerT<T>(std::move(name)), max_value_(max_value) {
    if (!(max_value > 0.0))  // also rejects NaN
      throw ConfigError("ReLU '" + this->name_ + "': max_value must be > 0, got " +
                        std::to_string(max_value));
  }
  std::string type() const override { return "ReLU"; }
  // max_value is null when unbounded (Keras' None).
  nlohmann::json config() const override {
    nlohmann::json c = {{"name", this->name_}, {"max_value", nullptr}};
    if (!std::isinf(max_value_)) c["max_value"] = max_value_;
    return c;
  }
  // +infinity when unbounded.
  double max_value() const { return max_value_; }

 protected:
  Shape build_impl(const Shape& in) override { return in; }

  const Tensor<T>& forward_impl(ConstView<T> x, bool) override {
    this->output_.resize(x.shape());
    const T* xp = x.data();
    T* y = this->output_.data();
    const int64_t n = x.size();
    if (std::isinf(max_value_)) {
      for (int64_t i = 0; i < n; ++i) y[i] = xp[i] < T(0) ? T(0) : xp[i];  // NaN propagates
    } else {
      const T hi = T(max_value_);
      for (int64_t i = 0; i < n; ++i) y[i] = std::min(std::max(xp[i], T(0)), hi);
    }
    return this->output_;
  }

  const Tensor<T>& backward_impl(ConstView<T> dy, bool need_input_grad) override {
    if (!need_input_grad) return this->empty_;
    this->input_grad_tensor(dy.shape());
    const T* y = this->output_.data();
    const T* g = dy.data();
    T* dx = this->dinput_.data();
    const int64_t n = dy.size();
    if (std::isinf(max_value_)) {
      kernels::activate_backward(Activation::ReLU, y, g, dx, n);
    } else {
      const T hi = T(max_value_);
      for (int64_t i = 0; i < n; ++i) dx[i] = (y[i] > T(0) && y[i] < hi) ? g[i] : T(0);
    }
    return this->dinput_;
  }

 private:
  double max_value_;
};

// The kernel epilogue that does what `layer` does when it is a ReLU (unbounded) or a ReLU6:
// what a convolution or a batch norm before it can apply itself (inference folding,
// training fusion). Empty for any other layer or max_value.
template <typename T>
std::optional<Activation> fusable_activation(const LayerT<T>& layer) {
  const auto* relu = dynamic_cast<const ReLUT<T>*>(&layer);
  if (!relu) return std::nullopt;
  if (std::isinf(relu->max_value())) return Activation::ReLU;
  if (relu->max_value() == 6.0) return Activation::ReLU6;
  return std::nullopt;
}

template <typename T>
class ReLU6T : public ReLUT<T> {
 public:
  explicit ReLU6T(std::string name) : ReLUT<T>(std::move(name), 6.0) {}
};

// Softmax over the last axis, stable (max subtracted before exp). Backward:
// dx = y * (dy - sum(dy * y)) per row.
template <typename T>
class SoftmaxT : public LayerT<T> {
 public:
  explicit SoftmaxT(std::string name) : LayerT<T>(std::move(name)) {}
  std::string type() const override { return "Softmax"; }
  nlohmann::json config() const override { return {{"name", this->name_}, {"axis", -1}}; }
  bool softmax_output() const override { return true; }
  ConstView<T> logits() const override { return this->input_; }

 protected:
  Shape build_impl(const Shape& in) override {
    if (in.rank() < 1)
      throw ShapeError("Softmax '" + this->name_ + "': input shape " + in.batched_str() +
                       " has no feature axis");
    return in;
  }

  const Tensor<T>& forward_impl(ConstView<T> x, bool) override {
    this->output_.resize(x.shape());
    const int64_t C = x.shape()[x.rank() - 1], rows = x.size() / C;
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = x.data() + r * C;
      T* yr = this->output_.data() + r * C;
      T m = xr[0];
      for (int64_t c = 1; c < C; ++c) m = std::max(m, xr[c]);
      T s = 0;
      for (int64_t c = 0; c < C; ++c) s += (yr[c] = std::exp(xr[c] - m));
      const T inv = T(1) / s;
      for (int64_t c = 0; c < C; ++c) yr[c] *= inv;
    }
    return this->output_;
  }

  const Tensor<T>& backward_impl(ConstView<T> dy, bool need_input_grad) override {
    if (!need_input_grad) return this->empty_;
    this->input_grad_tensor(dy.shape());
    const int64_t C = dy.shape()[dy.rank() - 1], rows = dy.size() / C;
    for (int64_t r = 0; r < rows; ++r) {
      const T* yr = this->output_.data() + r * C;
      const T* gr = dy.data() + r * C;
      T* dxr = this->dinput_.data() + r * C;
      T dot = 0;
      for (int64_t c = 0; c < C; ++c) dot += gr[c] * yr[c];
      for (int64_t c = 0; c < C; ++c) dxr[c] = yr[c] * (gr[c] - dot);
    }
    return this->dinput_;
  }
  const Tensor<T>& backward_logits_impl(ConstView<T> dz, bool need_input_grad) override {
    if (!need_input_grad) return this->empty_;
    this->input_grad_tensor(dz.shape());
    std::copy(dz.data(), dz.data() + dz.size(), this->dinput_.data());
    return this->dinput_;
  }
};

using ReLU = ReLUT<float>;
using ReLU6 = ReLU6T<float>;
using Softmax = SoftmaxT<float>;

}  // namespace minicnn
