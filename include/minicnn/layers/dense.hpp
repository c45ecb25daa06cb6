// DenseT<T>: Keras' Dense on a batch of feature vectors (N, features). Parameters
// "<name>/kernel" of shape (features, units) and, with use_bias, "<name>/bias" of shape
// (units,); glorot_uniform kernel, zero bias. The activation is Keras' string: "linear",
// "relu" and "relu6" are fused into the GEMM epilogue (backward takes their gradient from
// the stored output); "softmax" normalises each row after the GEMM and keeps the logits,
// so a cross-entropy loss can start from them (LayerT::backward_from_logits).
#pragma once
#include <algorithm>
#include <cmath>
#include <string>

#include "../kernels/activation.hpp"
#include "../kernels/dense.hpp"
#include "initializers.hpp"
#include "layer.hpp"

namespace minicnn {

// Keyword-style options: Dense("fc", 128, {.activation = "relu"}).
struct DenseOptions {
  std::string activation = "linear";  // "linear", "relu", "relu6" or "softmax"
  bool use_bias = true;
};

template <typename T>
class DenseT : public LayerT<T> {
 public:
  DenseT(std::string name, int64_t units, const DenseOptions& options)
      : LayerT<T>(std::move(name)), units_(units), use_bias_(options.use_bias) {
    if (units_ <= 0)
      throw ConfigError("Dense '" + this->name_ + "': units must be positive, got " +
                        std::to_string(units_));
    if (options.activation == "softmax") {
      softmax_ = true;
    } else {
      try {
        activation_ = activation_from_string(options.activation);
      } catch (const ConfigError&) {
        throw ConfigError("Dense '" + this->name_ + "': unknown activation '" + options.activation +
                          "' (expected linear, relu, relu6 or softmax)");
      }
    }
  }
  DenseT(std::string name, int64_t units) : DenseT(std::move(name), units, DenseOptions{}) {}
  // Positional form kept for existing code; prefer DenseOptions.
  DenseT(std::string name, int64_t units, bool use_bias, Activation activation = Activation::Linear)
      : DenseT(std::move(name), units, DenseOptions{to_string(activation), use_bias}) {}

  std::string type() const override { return "Dense"; }
  nlohmann::json config() const override {
    return {{"name", this->name_},
            {"units", units_},
            {"use_bias", use_bias_},
            {"activation", softmax_ ? std::string("softmax") : to_string(activation_)}};
  }

  int64_t units() const { return units_; }
  bool use_bias() const { return use_bias_; }
  // The element-wise activation fused into the GEMM (Linear when the activation is softmax).
  Activation activation() const { return activation_; }
  void set_activation(Activation a) {
    activation_ = a;
    softmax_ = false;
  }
  bool softmax_output() const override { return softmax_; }
  ConstView<T> logits() const override {
    if (!softmax_) return LayerT<T>::logits();
    return logits_.view();
  }

  ParameterT<T>& kernel() {
    if (!kernel_) throw Error("Dense '" + this->name_ + "': kernel() called before build");
    return *kernel_;
  }
  ParameterT<T>& bias() {
    if (!bias_)
      throw Error("Dense '" + this->name_ + "': bias() called on a layer " +
                  (use_bias_ ? "not built yet" : "without bias (use_bias=false)"));
    return *bias_;
  }

 protected:
  Shape build_impl(const Shape& in) override {
    if (in.rank() != 1)
      throw ShapeError("Dense '" + this->name_ + "': expected input (None, features), got " +
                       in.batched_str() + " (flatten or pool first)");
    kernel_ = &this->add_parameter("kernel", Shape{in[0], units_});
    glorot_uniform(kernel_->value, double(in[0]), double(units_));
    if (use_bias_) bias_ = &this->add_parameter("bias", Shape{units_});
    return Shape{units_};
  }

  const Tensor<T>& forward_impl(ConstView<T> x, bool /*training*/) override {
    int64_t n = x.dim(0), in = this->input_shape_[0];
    Tensor<T>& z = softmax_ ? logits_ : this->output_;
    z.resize(Shape{n, units_});
    kernels::dense_forward<T>(n, in, units_, x.data(), kernel_->value.data(),
                              use_bias_ ? bias_->value.data() : nullptr, activation_, z.data());
    if (softmax_) {
      this->output_.resize(Shape{n, units_});
      for (int64_t r = 0; r < n; ++r)
        softmax_row(z.data() + r * units_, this->output_.data() + r * units_);
    }
    return this->output_;
  }

  const Tensor<T>& backward_impl(ConstView<T> dy, bool need_input_grad) override {
    if (!softmax_)
      return backward_preactivation(this->preactivation_grad(activation_, dy, dz_),
                                    need_input_grad);
    // dz = p * (dy - sum(dy * p)) per row (the softmax Jacobian).
    const int64_t n = dy.dim(0);
    dz_.resize(dy.shape());
    for (int64_t r = 0; r < n; ++r) {
      const T* p = this->output_.data() + r * units_;
      const T* g = dy.data() + r * units_;
      T* d = dz_.data() + r * units_;
      T dot = 0;
      for (int64_t j = 0; j < units_; ++j) dot += g[j] * p[j];
      for (int64_t j = 0; j < units_; ++j) d[j] = p[j] * (g[j] - dot);
    }
    return backward_preactivation(dz_.data(), need_input_grad);
  }

  const Tensor<T>& backward_logits_impl(ConstView<T> dz, bool need_input_grad) override {
    return backward_preactivation(dz.data(), need_input_grad);
  }

 private:
  void softmax_row(const T* z, T* p) const {
    T m = *std::max_element(z, z + units_);
    T s = 0;
    for (int64_t j = 0; j < units_; ++j) s += (p[j] = std::exp(z[j] - m));
    const T inv = T(1) / s;
    for (int64_t j = 0; j < units_; ++j) p[j] *= inv;
  }

  // Parameter gradients and dx from dz = dL/d(GEMM output).
  const Tensor<T>& backward_preactivation(const T* dz, bool need_input_grad) {
    bool param_grads = this->trainable_ && kernel_->trainable;
    if (!param_grads && !need_input_grad) return this->empty_;
    int64_t n = this->input_.dim(0), in = this->input_shape_[0];
    T* dx = this->input_grad_buffer(need_input_grad);
    T* dw = param_grads ? kernel_->grad.data() : nullptr;
    T* db = param_grads && use_bias_ && bias_->trainable ? bias_->grad.data() : nullptr;
    kernels::dense_backward<T>(n, in, units_, this->input_.data(), kernel_->value.data(), dz, dx,
                               dw, db);
    return need_input_grad ? this->dinput_ : this->empty_;
  }

  int64_t units_;
  bool use_bias_;
  Activation activation_ = Activation::Linear;
  bool softmax_ = false;
  ParameterT<T>* kernel_ = nullptr;
  ParameterT<T>* bias_ = nullptr;
  Tensor<T> dz_;
  Tensor<T> logits_;  // pre-softmax output, when the activation is softmax
};

using Dense = DenseT<float>;

}  // namespace minicnn
