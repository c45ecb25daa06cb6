// InvertedResidualT<T>: one MobileNetV2 block, exactly Keras' _inverted_res_block
// (keras_applications/mobilenet_v2.py), as a composite layer on NHWC input:
//   [expand 1x1 Conv2D -> BN -> ReLU6]          (not for block 0)
//   [ZeroPadding2D correct_pad]                 (stride 2 only)
//   3x3 DepthwiseConv2D (same | valid) -> BN -> ReLU6
//   project 1x1 Conv2D -> BN                    (linear bottleneck)
//   [Add(block input, projection)]              (stride 1 and in == out channels)
// Layer names carry Keras' prefix: "expanded_conv_" for block 0, "block_<id>_" else;
// the block's own name is the prefix without the trailing underscore. Convolutions
// have no bias; BN uses momentum 0.999, epsilon 1e-3. Children are created in
// build() because the expand width and the padding depend on the input shape.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "../layers/activation.hpp"
#include "../layers/add.hpp"
#include "../layers/batch_norm.hpp"
#include "../layers/conv2d.hpp"
#include "../layers/depthwise_conv2d.hpp"
#include "../layers/zero_padding2d.hpp"
#include "sequential.hpp"

namespace minicnn {

template <typename T>
class InvertedResidualT : public LayerT<T> {
 public:
  InvertedResidualT(int64_t block_id, int64_t expansion, int64_t pointwise_filters, int64_t stride)
      : LayerT<T>(block_prefix(block_id).substr(0, block_prefix(block_id).size() - 1)),
        block_id_(block_id),
        expansion_(expansion),
        filters_(pointwise_filters),
        stride_(stride),
        prefix_(block_prefix(block_id)),
        body_(prefix_ + "body") {
    if (block_id < 0 || expansion < 1 || pointwise_filters < 1 || (stride != 1 && stride != 2))
      throw ConfigError("InvertedResidual '" + this->name_ +
                        "': need block_id >= 0, expansion >= 1, "
                        "pointwise_filters >= 1 and stride 1 or 2; got block_id " +
                        std::to_string(block_id) + ", expansion " + std::to_string(expansion) +
                        ", pointwise_filters " + std::to_string(pointwise_filters) + ", stride " +
                        std::to_string(stride));
  }

  std::string type() const override { return "InvertedResidual"; }
  nlohmann::json config() const override {
    if (this->inference_only_)
      throw ConfigError("InvertedResidual '" + this->name_ +
                        "': a block folded for inference has no config (save the model before "
                        "folding it)");
    return {{"name", this->name_},
            {"block_id", block_id_},
            {"expansion", expansion_},
            {"filters", filters_},
            {"stride", stride_}};
  }

  // "expanded_conv_" (block 0) or "block_<id>_".
  static std::string block_prefix(int64_t block_id) {
    return block_id == 0 ? std::string("expanded_conv_")
                         : "block_" + std::to_string(block_id) + "_";
  }
  const std::string& prefix() const { return prefix_; }
  int64_t block_id() const { return block_id_; }
  int64_t expansion() const { return expansion_; }
  int64_t pointwise_filters() const { return filters_; }
  int64_t stride() const { return stride_; }
  // Whether the block adds its input to the projection (known once built).
  bool has_skip() const { return add_ != nullptr; }
  // The residual Add (not a LayerT, so not among children()); null without skip.
  AddT<T>* add_layer() { return add_.get(); }

  // The main-path layers (expand ... project_BN), model order.
  std::vector<LayerT<T>*> children() override { return body_.layers(); }
  std::vector<ParameterT<T>*> parameters() override { return body_.parameters(); }
  bool has_trainable_parameters() override { return body_.has_trainable_parameters(); }
  void set_trainable(bool t) override {
    LayerT<T>::set_trainable(t);
    body_.set_trainable(t);
  }
  // Folds the main path's conv + BN (+ ReLU6) runs (see Sequential); the skip is untouched.
  void fold_for_inference() override {
    body_.fold_for_inference();
    this->inference_only_ = true;
  }
  // Flat rows, as Keras prints the functional MobileNetV2: the block's layers, then the Add.
  void summary_rows(std::vector<SummaryRow>& rows, int depth = 0) override {
    for (auto* l : body_.layers()) l->summary_rows(rows, depth + 1);
    if (add_) add_->summary_rows(rows, depth + 1);
  }

 protected:
  Shape build_impl(const Shape& in) override {
    if (in.rank() != 3)
      throw ShapeError("InvertedResidual '" + this->name_ + "': input shape " + in.batched_str() +
                       " is not (None, H, W, C)");
    const int64_t in_c = in[2];
    const std::string& p = prefix_;
    if (block_id_ != 0) {
      body_.template add<Conv2DT<T>>(p + "expand", expansion_ * in_c, 1, 1, Padding::Same, false);
      body_.template add<BatchNormalizationT<T>>(p + "expand_BN", 0.999, 1e-3);
      body_.template add<ReLU6T<T>>(p + "expand_relu");
    }
    if (stride_ == 2) {
      // Keras correct_pad for a 3x3 kernel: 1 on bottom/right, 1 on top/left only for odd sizes.
      const int64_t top = 1 - (1 - in[0] % 2), left = 1 - (1 - in[1] % 2);
      body_.template add<ZeroPadding2DT<T>>(p + "pad", top, 1, left, 1);
    }
    body_.template add<DepthwiseConv2DT<T>>(p + "depthwise", 3, stride_,
                                            stride_ == 1 ? Padding::Same : Padding::Valid, false);
    body_.template add<BatchNormalizationT<T>>(p + "depthwise_BN", 0.999, 1e-3);
    body_.template add<ReLU6T<T>>(p + "depthwise_relu");
    body_.template add<Conv2DT<T>>(p + "project", filters_, 1, 1, Padding::Same, false);
    body_.template add<BatchNormalizationT<T>>(p + "project_BN", 0.999, 1e-3);
    if (!this->trainable_) body_.set_trainable(false);
    Shape out = body_.build(in);
    if (in_c == filters_ && stride_ == 1) {
      add_ = std::make_unique<AddT<T>>(p + "add");
      add_->build({in, out});
    }
    return out;
  }

  void release_activations(ActivationPoolT<T>& pool) override {
    body_.release_activations(pool);
    if (add_) add_->release_activations(pool);
  }
  bool pools_output() const override { return false; }

  const Tensor<T>& forward_impl(ConstView<T> x, bool training) override {
    const Tensor<T>& y = body_.forward(x, training);
    if (!add_) return y;
    return add_->forward(x, y.view());
  }

  const Tensor<T>& backward_impl(ConstView<T> dy, bool need_input_grad) override {
    // Through the Add, both the body and the skip receive dy unchanged.
    ConstView<T> g = add_ ? add_->backward(dy) : dy;
    const Tensor<T>& dbody = body_.backward(g, need_input_grad);
    if (!need_input_grad) return this->empty_;
    if (!add_) return dbody;
    this->input_grad_tensor(dbody.shape());
    const T* a = dbody.data();
    const T* b = g.data();
    T* dx = this->dinput_.data();
    for (int64_t i = 0, n = dbody.size(); i < n; ++i) dx[i] = a[i] + b[i];
    if (auto* pool = ActivationPoolT<T>::current_gradients()) body_.release_input_grad(*pool);
    return this->dinput_;
  }

 public:
  // With a skip, dL/dx is the block's own sum; without, the body's.
  void release_input_grad(ActivationPoolT<T>& pool) override {
    if (add_)
      LayerT<T>::release_input_grad(pool);
    else
      body_.release_input_grad(pool);
  }

 protected:
 private:
  int64_t block_id_, expansion_, filters_, stride_;
  std::string prefix_;
  SequentialT<T> body_;  // the main path; its own name never shows (children are listed flat)
  std::unique_ptr<AddT<T>> add_;
};

using InvertedResidual = InvertedResidualT<float>;

}  // namespace minicnn
