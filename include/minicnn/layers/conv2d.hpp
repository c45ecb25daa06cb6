// Conv2DT<T>: Keras' Conv2D on NHWC batches. Parameters "<name>/kernel" of shape
// (kh, kw, in_channels, filters) (Keras HWIO) and, with use_bias, "<name>/bias" of shape
// (filters,); glorot_uniform kernel (Keras fans), zero bias. Padding "same" is TF's
// (asymmetric for stride 2 on even inputs). An optional activation (linear, relu,
// relu6) is fused into the kernel's epilogue; backward takes its gradient from the
// stored output. enable_bias() and set_activation() let BatchNormalization folding
// turn "conv, BN, ReLU6" into one convolution. Once folded for inference the layer
// keeps its kernel packed for the GEMM micro-kernels (a snapshot: the weights are
// frozen from then on).
#pragma once
#include <string>
#include <utility>

#include "../kernels/activation.hpp"
#include "../kernels/conv2d.hpp"
#include "../kernels/conv_geometry.hpp"
#include "batch_norm.hpp"
#include "initializers.hpp"
#include "layer.hpp"
#include "zero_padding2d.hpp"

namespace minicnn {

template <typename T>
class Conv2DT : public LayerT<T> {
 public:
  Conv2DT(std::string name, int64_t filters, int64_t kernel_size, int64_t stride = 1,
          Padding padding = Padding::Valid, bool use_bias = true,
          Activation activation = Activation::Linear)
      : Conv2DT(std::move(name), filters, {kernel_size, kernel_size}, {stride, stride}, padding,
                use_bias, activation) {}
  // Separate sizes, as DepthwiseConv2DT takes them.
  Conv2DT(std::string name, int64_t filters, int64_t kernel_h, int64_t kernel_w, int64_t stride_h,
          int64_t stride_w, Padding padding = Padding::Valid, bool use_bias = true,
          Activation activation = Activation::Linear)
      : Conv2DT(std::move(name), filters, {kernel_h, kernel_w}, {stride_h, stride_w}, padding,
                use_bias, activation) {}
  // Separate sizes: {kh, kw}, {stride_h, stride_w}.
  Conv2DT(std::string name, int64_t filters, std::pair<int64_t, int64_t> kernel_size,
          std::pair<int64_t, int64_t> strides, Padding padding = Padding::Valid,
          bool use_bias = true, Activation activation = Activation::Linear)
      : LayerT<T>(std::move(name)),
        filters_(filters),
        kh_(kernel_size.first),
        kw_(kernel_size.second),
        sh_(strides.first),
        sw_(strides.second),
        padding_(padding),
        use_bias_(use_bias),
        activation_(activation) {
    if (filters_ <= 0 || kh_ <= 0 || kw_ <= 0 || sh_ <= 0 || sw_ <= 0)
      throw ConfigError("Conv2D '" + this->name_ + "': filters (" + std::to_string(filters_) +
                        "), kernel size (" + std::to_string(kh_) + ", " + std::to_string(kw_) +
                        ") and strides (" + std::to_string(sh_) + ", " + std::to_string(sw_) +
                        ") must be positive");
  }

  std::string type() const override { return "Conv2D"; }
  nlohmann::json config() const override {
    return {{"name", this->name_},
            {"filters", filters_},
            {"kernel_size", {kh_, kw_}},
            {"strides", {sh_, sw_}},
            {"padding", to_string(padding_)},
            {"use_bias", use_bias_},
            {"activation", to_string(activation_)}};
  }

  int64_t filters() const { return filters_; }
  std::pair<int64_t, int64_t> kernel_size() const { return {kh_, kw_}; }
  std::pair<int64_t, int64_t> strides() const { return {sh_, sw_}; }
  Padding padding() const { return padding_; }
  bool use_bias() const { return use_bias_; }
  Activation activation() const { return activation_; }
  void set_activation(Activation a) {
    activation_ = a;
    // A batch norm's deferred dx needs a linear convolution (read_batch_norm_input_grad()).
    if (bn_grad_ && a != Activation::Linear) {
      bn_grad_->defer_input_grad_to(nullptr);
      bn_grad_ = nullptr;
    }
  }

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

  // Makes backwards whose dy is `bn`'s deferred dy (BatchNormalizationT::defer_input_grad_to
  // (this)) make the gradient of this layer's output from it, as the GEMMs read it; null
  // undoes it. For a linear convolution right before `bn`.
  void read_batch_norm_input_grad(BatchNormalizationT<T>* bn) { bn_grad_ = bn; }
  BatchNormalizationT<T>* batch_norm_input_grad() const { return bn_grad_; }

  ParameterT<T>& kernel() {
    if (!kernel_) throw Error("Conv2D '" + this->name_ + "': kernel() called before build");
    return *kernel_;
  }
  ParameterT<T>& bias() {
    if (!bias_)
      throw Error("Conv2D '" + this->name_ + "': bias() called on a layer " +
                  (use_bias_ ? "not built yet" : "without bias (use_bias=false)"));
    return *bias_;
  }
  // Gives the layer a zero bias "<name>/bias" (no-op when it has one).
  void enable_bias() {
    if (use_bias_) return;
    use_bias_ = true;
    if (this->built_) bias_ = &this->add_parameter("bias", Shape{filters_});
  }

 protected:
  Shape build_impl(const Shape& in) override {
    if (in.rank() != 3)
      throw ShapeError("Conv2D '" + this->name_ +
                       "': expected input (None, height, width, channels), got " +
                       in.batched_str());
    int64_t pt, pb, pl, pr;
    int64_t oh = conv_out_size(in[0], kh_, sh_, padding_, &pt, &pb);
    int64_t ow = conv_out_size(in[1], kw_, sw_, padding_, &pl, &pr);
    if (oh <= 0 || ow <= 0)
      throw ShapeError("Conv2D '" + this->name_ + "': input " + in.batched_str() +
                       " is smaller than the " + std::to_string(kh_) + "x" + std::to_string(kw_) +
                       " kernel with padding '" + to_string(padding_) +
                       "'; the output would be empty");
    int64_t cin = in[2];
    kernel_ = &this->add_parameter("kernel", Shape{kh_, kw_, cin, filters_});
    glorot_uniform(kernel_->value, double(kh_ * kw_ * cin), double(kh_ * kw_ * filters_));
    if (use_bias_) bias_ = &this->add_parameter("bias", Shape{filters_});
    return Shape{oh, ow, filters_};
  }

  // The geometry of a batch of shape `x`: padded as built, or the unpadded input of an
  // absorbed ZeroPadding2D, padded 'same' inside the kernel.
  ConvGeometry geometry_for(const Shape& x) const {
    if (own_padding_.is_unpadded(x))
      return make_conv_geometry(x[0], x[1], x[2], x[3], filters_, kh_, kw_, sh_, sw_,
                                Padding::Same);
    const Shape& in = this->input_shape_;
    return make_conv_geometry(x[0], in[0], in[1], in[2], filters_, kh_, kw_, sh_, sw_, padding_);
  }
  const Shape* alternative_input_shape() const override { return own_padding_.input_shape(); }

  const Tensor<T>& forward_impl(ConstView<T> x, bool /*training*/) override {
    ConvGeometry g = geometry_for(x.shape());
    this->output_.resize(this->output_shape_.with_leading(g.n));
    kernels::conv2d_forward<T>(g, x.data(), kernel_->value.data(),
                               use_bias_ ? bias_->value.data() : nullptr, activation_,
                               this->output_.data(), packed_valid_ ? &packed_ : nullptr);
    return this->output_;
  }

 public:
  void fold_for_inference() override {
    LayerT<T>::fold_for_inference();
    if (!this->built_) return;
    const Shape& k = kernel_->value.shape();
    packed_.pack(k[0] * k[1] * k[2], k[3], kernel_->value.data(), k[3], false);
    packed_valid_ = true;
  }

 protected:
  const Tensor<T>& backward_impl(ConstView<T> dy, bool need_input_grad) override {
    bool param_grads = this->trainable_ && kernel_->trainable;
    if (!param_grads && !need_input_grad) return this->empty_;
    ConvGeometry g = geometry_for(this->input_.shape());
    const T* dz = this->preactivation_grad(activation_, dy, dz_);
    T* dx = this->input_grad_buffer(need_input_grad);
    T* dw = param_grads ? kernel_->grad.data() : nullptr;
    T* db = param_grads && use_bias_ && bias_->trainable ? bias_->grad.data() : nullptr;
    if (bn_grad_ && bn_grad_->input_grad_deferred_for(dy)) {
      if (activation_ != Activation::Linear)
        throw Error("Conv2D '" + this->name_ +
                    "': a batch norm left its gradient to a convolution with an activation");
      const kernels::BnInputGrad<T> bn = bn_grad_->input_grad();
      kernels::conv2d_backward<T>(g, this->input_.data(), kernel_->value.data(), dy.data(), dx, dw,
                                  db, &bn);
    } else {
      kernels::conv2d_backward<T>(g, this->input_.data(), kernel_->value.data(), dz, dx, dw, db);
    }
    return need_input_grad ? this->dinput_ : this->empty_;
  }

 private:
  int64_t filters_, kh_, kw_, sh_, sw_;
  Padding padding_;
  bool use_bias_;
  Activation activation_;
  // Owned by params_ (unique_ptr), so these stay valid as parameters are added.
  ParameterT<T>* kernel_ = nullptr;
  ParameterT<T>* bias_ = nullptr;
  Tensor<T> dz_;                // dL/d(pre-activation) when the activation is not linear
  kernels::PackedB<T> packed_;  // the kernel as GEMM panels, once folded for inference
  bool packed_valid_ = false;
  AbsorbedPaddingT<T> own_padding_;
  BatchNormalizationT<T>* bn_grad_ = nullptr;  // read_batch_norm_input_grad()
};

using Conv2D = Conv2DT<float>;

}  // namespace minicnn
