// DepthwiseConv2D (Keras semantics, depth_multiplier 1): each channel convolved with its own
// k_h x k_w filter, optional bias, fused activation. NHWC; input rank 4 (batch, H, W, C).
// Parameters: "<name>/depthwise_kernel" of shape (k_h, k_w, C, 1) (Keras HWC1 layout,
// glorot_uniform with Keras' fans) and, with use_bias, "<name>/bias" of shape (C,) (zeros).
// Padding "same" is TF's (asymmetric for stride 2 on even sizes), via ConvGeometry.
// Float 3x3 stride 1/2 runs the fast kernels of kernels/dwconv2d.hpp, the rest the generic ones.
// Backward takes the activation gradient from the stored output y (activation.hpp).
// In training, when the layer before it (past an absorbed ReLU and padding) is a
// BatchNormalization that left its output unwritten (read_batch_norm_output()), the input
// is that batch norm's input, normalised here as it is read (kernels/dwconv2d_bn_input.hpp).
#pragma once
#include <cstdint>
#include <string>

#include "../kernels/activation.hpp"
#include "../kernels/conv_geometry.hpp"
#include "../kernels/dwconv2d.hpp"
#include "../kernels/dwconv2d_bn_input.hpp"
#include "batch_norm.hpp"
#include "initializers.hpp"
#include "layer.hpp"
#include "zero_padding2d.hpp"

namespace minicnn {

template <typename T>
class DepthwiseConv2DT : public LayerT<T> {
 public:
  DepthwiseConv2DT(std::string name, int64_t kernel_size, int64_t stride = 1,
                   Padding padding = Padding::Valid, bool use_bias = true,
                   Activation activation = Activation::Linear, int64_t depth_multiplier = 1)
      : DepthwiseConv2DT(std::move(name), kernel_size, kernel_size, stride, stride, padding,
                         use_bias, activation, depth_multiplier) {}
  DepthwiseConv2DT(std::string name, int64_t kernel_h, int64_t kernel_w, int64_t stride_h,
                   int64_t stride_w, Padding padding = Padding::Valid, bool use_bias = true,
                   Activation activation = Activation::Linear, int64_t depth_multiplier = 1)
      : LayerT<T>(std::move(name)),
        kh_(kernel_h),
        kw_(kernel_w),
        sh_(stride_h),
        sw_(stride_w),
        padding_(padding),
        use_bias_(use_bias),
        activation_(activation) {
    if (depth_multiplier != 1)
      throw ConfigError(where() + "depth_multiplier " + std::to_string(depth_multiplier) +
                        " is not supported, expected 1");
    if (kh_ < 1 || kw_ < 1)
      throw ConfigError(where() + "kernel size must be positive, got " + std::to_string(kh_) + "x" +
                        std::to_string(kw_));
    if (sh_ < 1 || sw_ < 1)
      throw ConfigError(where() + "strides must be positive, got (" + std::to_string(sh_) + ", " +
                        std::to_string(sw_) + ")");
  }

  std::string type() const override { return "DepthwiseConv2D"; }
  nlohmann::json config() const override {
    return {{"name", this->name_},   {"kernel_size", {kh_, kw_}},
            {"strides", {sh_, sw_}}, {"padding", to_string(padding_)},
            {"use_bias", use_bias_}, {"activation", to_string(activation_)},
            {"depth_multiplier", 1}};
  }

  ParameterT<T>& kernel() {
    if (!kernel_) throw Error(where() + "kernel() called before build");
    return *kernel_;
  }
  ParameterT<T>& bias() {
    if (!bias_)
      throw Error(where() + (use_bias_ ? "bias() called before build" : "layer has no bias"));
    return *bias_;
  }
  bool use_bias() const { return use_bias_; }
  Activation activation() const { return activation_; }
  // Both strides are equal unless the (kernel_h, kernel_w, stride_h, stride_w) constructor made
  // them differ.
  int64_t stride() const { return sh_; }
  int64_t stride_h() const { return sh_; }
  int64_t stride_w() const { return sw_; }
  int64_t kernel_h() const { return kh_; }
  int64_t kernel_w() const { return kw_; }
  int64_t depth_multiplier() const { return 1; }
  Padding padding() const { return padding_; }

  // For BatchNormalization folding: adds a zero "<name>/bias" (now, or at build) if there is none.
  void enable_bias() {
    if (use_bias_ && (bias_ || !this->built_)) return;
    use_bias_ = true;
    if (this->built_) bias_ = &this->add_parameter("bias", Shape{channels_});
  }
  void set_activation(Activation a) { activation_ = a; }

  // Inference folding: when a ZeroPadding2D with these pads feeds this 'valid' layer
  // and pads its input `in` exactly as TF 'same' would, the layer takes `in` directly
  // and pads inside the kernel. True when absorbed (output shape unchanged).
  bool absorb_zero_padding(const Shape& in, int64_t top, int64_t bottom, int64_t left,
                           int64_t right) {
    if (!this->built_ || padding_ != Padding::Valid ||
        !zero_padding_folds(in, this->input_shape_, kh_, kw_, sh_, sw_, top, bottom, left, right))
      return false;
    padding_ = Padding::Same;
    this->input_shape_ = in;
    own_padding_.clear();
    return true;
  }

  // Training-time absorption of the ZeroPadding2D before this layer (AbsorbedPaddingT).
  bool absorb_previous(LayerT<T>* previous) override {
    return this->built_ &&
           own_padding_.absorb(previous, this->input_shape_, kh_, kw_, sh_, sw_, padding_);
  }
  LayerT<T>* absorbed_previous() const override { return own_padding_.layer(); }

  // Makes this layer read `bn`'s output from `bn`'s input in the forwards where `bn`
  // deferred it (BatchNormalizationT::defer_apply_to(this)); null undoes it.
  void read_batch_norm_output(BatchNormalizationT<T>* bn) { bn_ = bn; }
  BatchNormalizationT<T>* batch_norm_input() const { return bn_; }

  // The geometry of a batch of n inputs (valid after build).
  ConvGeometry geometry(int64_t n) const {
    return make_conv_geometry(n, this->input_shape_[0], this->input_shape_[1], channels_, channels_,
                              kh_, kw_, sh_, sw_, padding_);
  }
  // The geometry of a batch of shape `x`: padded as built, or the unpadded input of an
  // absorbed ZeroPadding2D, padded 'same' inside the kernel.
  ConvGeometry geometry_for(const Shape& x) const {
    if (!own_padding_.is_unpadded(x)) return geometry(x[0]);
    return make_conv_geometry(x[0], x[1], x[2], channels_, channels_, kh_, kw_, sh_, sw_,
                              Padding::Same);
  }

 protected:
  Shape build_impl(const Shape& in) override {
    if (in.rank() != 3)
      throw ShapeError(
          where() +
          "expected input of rank 4 (batch, height, width, channels) like (None, H, W, C), "
          "found " +
          in.batched_str());
    const int64_t C = in[2];
    ConvGeometry g = make_conv_geometry(1, in[0], in[1], C, C, kh_, kw_, sh_, sw_, padding_);
    if (g.out_h <= 0 || g.out_w <= 0)
      throw ShapeError(where() + "input " + in.batched_str() + " is too small for a " +
                       std::to_string(kh_) + "x" + std::to_string(kw_) + " kernel with '" +
                       to_string(padding_) + "' padding: output would be (None, " +
                       std::to_string(g.out_h) + ", " + std::to_string(g.out_w) + ", " +
                       std::to_string(C) + ")");
    channels_ = C;
    kernel_ = &this->add_parameter("depthwise_kernel", Shape{kh_, kw_, C, 1});
    glorot_uniform(kernel_->value, double(kh_ * kw_ * C), double(kh_ * kw_));
    if (use_bias_) bias_ = &this->add_parameter("bias", Shape{C});
    return Shape{g.out_h, g.out_w, C};
  }

  const Tensor<T>& forward_impl(ConstView<T> x, bool) override {
    const ConvGeometry g = geometry_for(x.shape());
    this->output_.resize(this->output_shape_.with_leading(g.n));
    from_bn_ = bn_ && bn_->deferred_for(x);
    if (from_bn_)
      kernels::dwconv2d_nhwc_forward_bn_input<T>(
          g, x.data(), bn_->forward_coefficients(), kernel_->value.data(),
          bias_ ? bias_->value.data() : nullptr, activation_, this->output_.data());
    else
      kernels::dwconv2d_nhwc_forward<T>(g, x.data(), kernel_->value.data(),
                                        bias_ ? bias_->value.data() : nullptr, activation_,
                                        this->output_.data());
    return this->output_;
  }

  const Tensor<T>& backward_impl(ConstView<T> dy, bool need_input_grad) override {
    const bool wgrad = this->trainable_ && kernel_->trainable;
    if (!need_input_grad && !wgrad) return this->empty_;
    const ConvGeometry g = geometry_for(this->input_.shape());
    const T* dz = dy.data();
    if (activation_ != Activation::Linear) {
      dz_.resize(dy.shape());
      activation_backward(dy.data(), dz_.data(), dy.size());
      dz = dz_.data();
    }
    T* dx = this->input_grad_buffer(need_input_grad);
    T* dw = wgrad ? kernel_->grad.data() : nullptr;
    T* db = (wgrad && bias_ && bias_->trainable) ? bias_->grad.data() : nullptr;
    if (from_bn_)  // the batch norm's coefficients stay as the forward used them
      kernels::dwconv2d_nhwc_backward_bn_input<T>(g, this->input_.data(),
                                                  bn_->forward_coefficients(), dz,
                                                  kernel_->value.data(), dx, dw, db);
    else
      kernels::dwconv2d_nhwc_backward<T>(g, this->input_.data(), dz, kernel_->value.data(), dx, dw,
                                         db);
    return need_input_grad ? this->dinput_ : this->empty_;
  }

 protected:
  const Shape* alternative_input_shape() const override { return own_padding_.input_shape(); }

 private:
  std::string where() const { return "DepthwiseConv2D '" + this->name_ + "': "; }

  // dz = dL/d(pre-activation) from dy and the stored output, split over threads (one pass).
  void activation_backward(const T* dy, T* dz, int64_t n) {
    const T* y = this->output_.data();
    const Activation a = activation_;
    const int nt = plan_threads(double(n), n, 32768);  // 32K elements a thread at least
    run_threads(nt, [&](int t, int m) {
      int64_t lo, hi;
      kernels::dw_detail::band(n, t, m, lo, hi);
      kernels::activate_backward(a, y + lo, dy + lo, dz + lo, hi - lo);
    });
  }

  int64_t kh_, kw_, sh_, sw_;
  Padding padding_;
  bool use_bias_;
  Activation activation_;
  int64_t channels_ = 0;
  ParameterT<T>* kernel_ = nullptr;
  ParameterT<T>* bias_ = nullptr;
  Tensor<T> dz_;
  AbsorbedPaddingT<T> own_padding_;
  BatchNormalizationT<T>* bn_ = nullptr;  // read_batch_norm_output()
  bool from_bn_ = false;                  // the last forward read bn_'s input
};

using DepthwiseConv2D = DepthwiseConv2DT<float>;

}  // namespace minicnn
