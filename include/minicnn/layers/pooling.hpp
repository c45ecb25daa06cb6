// GlobalAveragePooling2DT<T>: Keras GlobalAveragePooling2D (keepdims=False) on NHWC
// input, (H, W, C) -> (C,), the pooling MobileNetV2's classification head uses.
#pragma once
#include <string>

#include "../kernels/pool.hpp"
#include "layer.hpp"

namespace minicnn {

template <typename T>
class GlobalAveragePooling2DT : public LayerT<T> {
 public:
  explicit GlobalAveragePooling2DT(std::string name) : LayerT<T>(std::move(name)) {}
  std::string type() const override { return "GlobalAveragePooling2D"; }

 protected:
  Shape build_impl(const Shape& in) override {
    if (in.rank() != 3)
      throw ShapeError("GlobalAveragePooling2D '" + this->name_ + "': input shape " +
                       in.batched_str() + " is not (None, H, W, C)");
    return Shape{in[2]};
  }

  const Tensor<T>& forward_impl(ConstView<T> x, bool) override {
    const Shape& s = x.shape();
    this->output_.resize(Shape{s[0], s[3]});
    kernels::global_avg_pool_nhwc(x.data(), s[0], s[1] * s[2], s[3], this->output_.data());
    return this->output_;
  }

  const Tensor<T>& backward_impl(ConstView<T> dy, bool need_input_grad) override {
    if (!need_input_grad) return this->empty_;
    const Shape& s = this->input_.shape();
    this->input_grad_tensor(s);
    kernels::global_avg_pool_nhwc_backward(dy.data(), s[0], s[1] * s[2], s[3],
                                           this->dinput_.data());
    return this->dinput_;
  }
};

using GlobalAveragePooling2D = GlobalAveragePooling2DT<float>;

}  // namespace minicnn
