// BatchNormalizationT<T>: Keras BatchNormalization over the last axis of rank-2
// ([N, C]) or rank-4 (NHWC) inputs.
// Training mode (forward(x, true) on a trainable layer): normalise with the batch
// mean and BIASED batch variance (epsilon inside the sqrt) and update
//   moving = moving * momentum + batch * (1 - momentum)
// using the UNBIASED variance n/(n-1) for moving_variance (TF2's fused kernel, PyTorch).
// Inference mode (training=false, or frozen as in today's Keras): moving statistics.
// A BatchNormalization directly followed by a ReLU / ReLU6 in a Sequential applies that
// activation itself (fuse_activation, set by the container): one pass over memory instead
// of two each way, and one stored activation instead of two. The container then skips the
// ReLU layer, which keeps its name and place in the model.
// In training forwards, a BatchNormalization whose output only a DepthwiseConv2D reads (set
// up by the container, defer_apply_to()) does not write that output: the depthwise layer
// reads this layer's input and normalises it as it reads (kernels/dwconv2d_bn_input.hpp).
// Likewise a backward whose dx only the Conv2D before it reads leaves dx to that convolution
// (defer_input_grad_to()), which makes it from this layer's dy as its GEMMs read it.
// Parameters, in Keras' order: <name>/gamma, <name>/beta (trainable, present when
// scale / center), <name>/moving_mean, <name>/moving_variance (state, init 0 and 1).
#pragma once
#include <cmath>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../kernels/batchnorm.hpp"
#include "activation.hpp"
#include "layer.hpp"

namespace minicnn {

template <typename T>
class BatchNormalizationT : public LayerT<T> {
 public:
  explicit BatchNormalizationT(std::string name, double momentum = 0.99, double epsilon = 1e-3,
                               bool center = true, bool scale = true)
      : LayerT<T>(std::move(name)),
        momentum_(momentum),
        epsilon_(epsilon),
        center_(center),
        scale_(scale) {
    if (!(momentum >= 0.0 && momentum <= 1.0))
      throw ConfigError("BatchNormalization '" + this->name_ +
                        "': momentum must be in [0, 1], got " + std::to_string(momentum));
    if (!(epsilon > 0.0))
      throw ConfigError("BatchNormalization '" + this->name_ + "': epsilon must be > 0, got " +
                        std::to_string(epsilon));
  }

  std::string type() const override { return "BatchNormalization"; }
  nlohmann::json config() const override {
    return {{"name", this->name_},
            {"momentum", momentum_},
            {"epsilon", epsilon_},
            {"center", center_},
            {"scale", scale_}};
  }

  double momentum() const { return momentum_; }
  double epsilon() const { return epsilon_; }
  bool center() const { return center_; }
  bool scale() const { return scale_; }
  int64_t channels() const { return channels_; }
  // Null when the layer was built without that weight (scale=False / center=False) or not built.
  ParameterT<T>* gamma() { return gamma_; }
  ParameterT<T>* beta() { return beta_; }
  ParameterT<T>* moving_mean() { return moving_mean_; }
  ParameterT<T>* moving_variance() { return moving_var_; }

  // Makes this layer apply `relu` (a ReLU or ReLU6 layer that follows it in a container) to
  // its output; absorbed_next() then names it, and the container skips it. Not for other
  // activations (false).
  bool fuse_activation(LayerT<T>* relu) {
    const std::optional<Activation> a = fusable_activation(*relu);
    if (!a) return false;
    activation_ = *a;
    absorbed_ = relu;
    return true;
  }
  LayerT<T>* absorbed_next() const override { return absorbed_; }
  Activation fused_activation() const { return activation_; }

  // Makes training forwards leave the output to `consumer` (null: write it again), which
  // then reads this layer's input and applies forward_coefficients() itself. Containers
  // call it for a DepthwiseConv2D that follows, past the absorbed activation and padding.
  void defer_apply_to(LayerT<T>* consumer) { consumer_ = consumer; }
  LayerT<T>* apply_consumer() const { return consumer_; }
  bool output_deferred() const override { return deferred_input_ != nullptr; }
  // Whether the last forward was deferred and read `x` (the consumer checks that what it
  // was given is this layer's input, not a stale pass's).
  bool deferred_for(ConstView<T> x) const {
    return deferred_input_ != nullptr && deferred_input_ == x.data() &&
           this->input_.shape() == x.shape();
  }
  // Makes backwards that need dx leave it to `producer` (null: write it again), the
  // convolution before this layer, which then reads this layer's dy and makes dx a block at
  // a time from input_grad() as its products read it (kernels::BnInputGrad).
  void defer_input_grad_to(LayerT<T>* producer) { grad_consumer_ = producer; }
  LayerT<T>* input_grad_consumer() const { return grad_consumer_; }
  bool input_grad_deferred() const override { return deferred_dy_ != nullptr; }
  // Whether the last backward was deferred and read `dy` (the convolution checks that what
  // it is given is this layer's dy).
  bool input_grad_deferred_for(ConstView<T> dy) const {
    return deferred_dy_ != nullptr && deferred_dy_ == dy.data() &&
           dy.shape() == this->input_.shape();
  }
  // dx = a * g + b * (x - mean) + d as the last backward computed it.
  kernels::BnInputGrad<T> input_grad() const {
    kernels::BnInputGrad<T> gr;
    gr.x = this->input_.data();
    gr.fwd = forward_coefficients();
    gr.a = deferred_train_ ? a_t_.data() : scale_t_.data();
    gr.b = deferred_train_ ? b_t_.data() : nullptr;
    gr.d = deferred_train_ ? d_t_.data() : nullptr;
    return gr;
  }
  // y = act((x - mean) * scale + shift) as the last forward computed it, per channel.
  kernels::BnForward<T> forward_coefficients() const {
    kernels::BnForward<T> f;
    f.mean = mean_t_.data();
    f.scale = scale_t_.data();
    f.shift = shift_t_.data();
    f.act = activation_;
    return f;
  }

  // Inference-mode affine form y = x * scale + shift per channel, with
  // scale = gamma / sqrt(moving_var + eps), shift = beta - moving_mean * scale:
  // what folding a frozen BN into the preceding convolution needs.
  void folded_scale_shift(T* scale, T* shift) const {
    require_built("folded_scale_shift");
    for (int64_t c = 0; c < channels_; ++c) {
      double g = gamma_ ? double(gamma_->value[c]) : 1.0;
      double b = beta_ ? double(beta_->value[c]) : 0.0;
      double s = g / std::sqrt(double(moving_var_->value[c]) + epsilon_);
      scale[c] = T(s);
      shift[c] = T(b - double(moving_mean_->value[c]) * s);
    }
  }
  std::pair<Tensor<T>, Tensor<T>> folded_scale_shift() const {
    require_built("folded_scale_shift");
    std::pair<Tensor<T>, Tensor<T>> out{Tensor<T>(Shape{channels_}), Tensor<T>(Shape{channels_})};
    folded_scale_shift(out.first.data(), out.second.data());
    return out;
  }

 protected:
  Shape build_impl(const Shape& in) override {
    if (in.rank() != 1 && in.rank() != 3)
      throw ShapeError("BatchNormalization '" + this->name_ + "': input shape " + in.batched_str() +
                       " has rank " + std::to_string(in.rank() + 1) +
                       ", expected rank 2 (None, C) or rank 4 (None, H, W, C)");
    channels_ = in[in.rank() - 1];
    const Shape cs{channels_};
    if (scale_) gamma_ = &this->add_parameter("gamma", cs);
    if (center_) beta_ = &this->add_parameter("beta", cs);
    moving_mean_ = &this->add_parameter("moving_mean", cs, true);
    moving_var_ = &this->add_parameter("moving_variance", cs, true);
    if (gamma_) gamma_->value.fill(T(1));
    moving_var_->value.fill(T(1));
    for (auto* v : {&mean_, &var_, &moving_mean_d_, &sum_dy_, &sum_dy_xc_})
      v->assign(size_t(channels_), 0.0);
    for (auto* t : {&mean_t_, &scale_t_, &shift_t_, &a_t_, &b_t_, &d_t_}) t->resize(cs);
    return in;
  }

  const Tensor<T>& forward_impl(ConstView<T> x, bool training) override {
    const int64_t C = channels_, rows = x.size() / C;
    deferred_input_ = nullptr;
    deferred_dy_ = nullptr;
    if (this->training_mode(training)) {
      kernels::batchnorm_moments_nhwc(x.data(), rows, C, mean_.data(), var_.data(), scratch_);
      const double mom = momentum_, unbias = double(rows) / double(rows > 1 ? rows - 1 : 1);
      for (int64_t c = 0; c < C; ++c) {
        double inv = 1.0 / std::sqrt(var_[c] + epsilon_);
        mean_t_[c] = T(mean_[c]);
        scale_t_[c] = T((gamma_ ? double(gamma_->value[c]) : 1.0) * inv);
        shift_t_[c] = beta_ ? beta_->value[c] : T(0);
        T& mm = moving_mean_->value[c];
        T& mv = moving_var_->value[c];
        mm = T(double(mm) * mom + mean_[c] * (1.0 - mom));
        mv = T(double(mv) * mom + var_[c] * unbias * (1.0 - mom));
      }
    } else {
      for (int64_t c = 0; c < C; ++c) {
        double inv = 1.0 / std::sqrt(double(moving_var_->value[c]) + epsilon_);
        mean_t_[c] = moving_mean_->value[c];
        scale_t_[c] = T((gamma_ ? double(gamma_->value[c]) : 1.0) * inv);
        shift_t_[c] = beta_ ? beta_->value[c] : T(0);
      }
    }
    if (consumer_ && training) {
      deferred_input_ = x.data();
      return this->empty_;
    }
    this->output_.resize(x.shape());
    kernels::batchnorm_apply_nhwc(x.data(), rows, C, mean_t_.data(), scale_t_.data(),
                                  shift_t_.data(), this->output_.data(), activation_);
    return this->output_;
  }

  const Tensor<T>& backward_impl(ConstView<T> dy, bool need_input_grad) override {
    const ConstView<T>& x = this->input_;
    const int64_t C = channels_, rows = x.size() / C;
    const bool train = this->training_mode(this->last_training_);
    const bool param_grads = this->trainable_ && (gamma_ || beta_);
    deferred_dy_ = nullptr;
    if (!need_input_grad && !param_grads) return this->empty_;
    // dx left to the convolution before this layer (defer_input_grad_to()), or written.
    const bool defer = need_input_grad && grad_consumer_ != nullptr;
    if (need_input_grad && !defer) this->input_grad_tensor(x.shape());
    // The forward as it ran: the backward recomputes the fused activation's mask from x.
    const kernels::BnForward<T> fwd = forward_coefficients();

    if (train) {
      // Batch statistics from the forward: dx flows through mean and variance too.
      kernels::batchnorm_backward_sums_nhwc(dy.data(), fwd, x.data(), rows, C, mean_.data(),
                                            sum_dy_.data(), sum_dy_xc_.data(), scratch_);
      const double m = double(rows);
      for (int64_t c = 0; c < C; ++c) {
        double inv = 1.0 / std::sqrt(var_[c] + epsilon_);
        double g = gamma_ ? double(gamma_->value[c]) : 1.0;
        double sdyxh = sum_dy_xc_[c] * inv;  // sum dy * xhat
        if (gamma_) gamma_->grad[c] += T(sdyxh);
        if (beta_) beta_->grad[c] += T(sum_dy_[c]);
        // dx = g*inv*(dy - sum_dy/m - xhat*sum_dy_xhat/m), with xhat = (x - mean)*inv.
        double k = g * inv;
        a_t_[c] = T(k);
        b_t_[c] = T(-k * inv * sdyxh / m);
        d_t_[c] = T(-k * sum_dy_[c] / m);
      }
      if (need_input_grad && !defer)
        kernels::batchnorm_backward_apply_nhwc(dy.data(), fwd, x.data(), rows, C, a_t_.data(),
                                               b_t_.data(), d_t_.data(), this->dinput_.data());
    } else {
      if (param_grads) {
        for (int64_t c = 0; c < C; ++c) moving_mean_d_[c] = double(moving_mean_->value[c]);
        kernels::batchnorm_backward_sums_nhwc(dy.data(), fwd, x.data(), rows, C,
                                              moving_mean_d_.data(), sum_dy_.data(),
                                              sum_dy_xc_.data(), scratch_);
        for (int64_t c = 0; c < C; ++c) {
          double inv = 1.0 / std::sqrt(double(moving_var_->value[c]) + epsilon_);
          if (gamma_) gamma_->grad[c] += T(sum_dy_xc_[c] * inv);
          if (beta_) beta_->grad[c] += T(sum_dy_[c]);
        }
      }
      if (need_input_grad && !defer)  // scale_t_: gamma / sqrt(moving_var + eps), forward's
        kernels::batchnorm_backward_apply_nhwc<T>(dy.data(), fwd, x.data(), rows, C,
                                                  scale_t_.data(), nullptr, nullptr,
                                                  this->dinput_.data());
    }
    if (defer) {
      deferred_dy_ = dy.data();
      deferred_train_ = train;
      return this->empty_;
    }
    return need_input_grad ? this->dinput_ : this->empty_;
  }

 private:
  void require_built(const char* what) const {
    if (!this->built_)
      throw Error("BatchNormalization '" + this->name_ + "': " + what + " needs a built layer");
  }

  double momentum_, epsilon_;
  bool center_, scale_;
  int64_t channels_ = 0;
  ParameterT<T>* gamma_ = nullptr;
  ParameterT<T>* beta_ = nullptr;
  ParameterT<T>* moving_mean_ = nullptr;
  ParameterT<T>* moving_var_ = nullptr;
  Activation activation_ = Activation::Linear;  // fused from the next layer
  LayerT<T>* absorbed_ = nullptr;
  LayerT<T>* consumer_ = nullptr;       // defer_apply_to()
  const T* deferred_input_ = nullptr;   // the last forward's x, when it deferred
  LayerT<T>* grad_consumer_ = nullptr;  // defer_input_grad_to()
  const T* deferred_dy_ = nullptr;      // the last backward's dy, when it deferred dx
  bool deferred_train_ = false;         // ... with batch statistics
  // Batch statistics of the last training forward (double: they feed the backward).
  std::vector<double> mean_, var_, moving_mean_d_, sum_dy_, sum_dy_xc_, scratch_;
  // Per-channel coefficients handed to the kernels.
  Tensor<T> mean_t_, scale_t_, shift_t_, a_t_, b_t_, d_t_;
};

using BatchNormalization = BatchNormalizationT<float>;

}  // namespace minicnn
