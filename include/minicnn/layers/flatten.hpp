// FlattenT<T>: Keras Flatten, (d1, ..., dk) -> (d1 * ... * dk,) per sample. The data
// is already contiguous in that order, so forward and backward are plain copies
// into layer-owned buffers (the contract: outputs belong to the layer).
#pragma once
#include <algorithm>
#include <string>

#include "layer.hpp"

namespace minicnn {

template <typename T>
class FlattenT : public LayerT<T> {
 public:
  explicit FlattenT(std::string name) : LayerT<T>(std::move(name)) {}
  std::string type() const override { return "Flatten"; }

 protected:
  Shape build_impl(const Shape& in) override { return Shape{in.size()}; }

  const Tensor<T>& forward_impl(ConstView<T> x, bool) override {
    this->output_.resize(this->output_shape_.with_leading(x.shape()[0]));
    std::copy(x.data(), x.data() + x.size(), this->output_.data());
    return this->output_;
  }

  const Tensor<T>& backward_impl(ConstView<T> dy, bool need_input_grad) override {
    if (!need_input_grad) return this->empty_;
    this->input_grad_tensor(this->input_.shape());
    std::copy(dy.data(), dy.data() + dy.size(), this->dinput_.data());
    return this->dinput_;
  }
};

using Flatten = FlattenT<float>;

}  // namespace minicnn
