// DenseT<T>: Keras' Dense on a batch of feature vectors (N, features). Parameters
// "<name>/kernel" of shape (features, units) and, with use_bias, "<name>/bias" of shape
// (units,); glorot_uniform kernel, zero bias. An optional activation (linear, relu,
// relu6) is fused into the GEMM epilogue; backward takes its gradient from the stored
// output. (Softmax belongs to the loss, as with Keras' from_logits=True.)
#pragma once
#include <string>

#include "../kernels/activation.hpp"
#include "../kernels/dense.hpp"
#include "initializers.hpp"
#include "layer.hpp"

namespace minicnn {

template <typename T>
class DenseT : public LayerT<T> {
 public:
  DenseT(std::string name, int64_t units, bool use_bias = true,
         Activation activation = Activation::Linear)
      : LayerT<T>(std::move(name)), units_(units), use_bias_(use_bias), activation_(activation) {
    if (units_ <= 0)
      throw ConfigError("Dense '" + this->name_ + "': units must be positive, got " +
                        std::to_string(units_));
  }

  std::string type() const override { return "Dense"; }

  int64_t units() const { return units_; }
  bool use_bias() const { return use_bias_; }
  Activation activation() const { return activation_; }
  void set_activation(Activation a) { activation_ = a; }

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
    this->output_.resize(Shape{n, units_});
    kernels::dense_forward<T>(n, in, units_, x.data(), kernel_->value.data(),
                              use_bias_ ? bias_->value.data() : nullptr, activation_,
                              this->output_.data());
    return this->output_;
  }

  const Tensor<T>& backward_impl(ConstView<T> dy, bool need_input_grad) override {
    bool param_grads = this->trainable_ && kernel_->trainable;
    if (!param_grads && !need_input_grad) return this->empty_;
    int64_t n = dy.dim(0), in = this->input_shape_[0];
    const T* dz = this->preactivation_grad(activation_, dy, dz_);
    T* dx = this->input_grad_buffer(need_input_grad);
    T* dw = param_grads ? kernel_->grad.data() : nullptr;
    T* db = param_grads && use_bias_ && bias_->trainable ? bias_->grad.data() : nullptr;
    kernels::dense_backward<T>(n, in, units_, this->input_.data(), kernel_->value.data(), dz, dx,
                               dw, db);
    return need_input_grad ? this->dinput_ : this->empty_;
  }

 private:
  int64_t units_;
  bool use_bias_;
  Activation activation_;
  ParameterT<T>* kernel_ = nullptr;
  ParameterT<T>* bias_ = nullptr;
  Tensor<T> dz_;
};

using Dense = DenseT<float>;

}  // namespace minicnn
