// GlobalMaxPooling2D: (N, H, W, C) -> (N, C), the maximum over each channel's map.
// The gradient flows to the first position holding the maximum (as TF's argmax).
#pragma once
#include <vector>

#include "layer.hpp"

namespace minicnn {

template <typename T>
class GlobalMaxPooling2DT : public LayerT<T> {
 public:
  explicit GlobalMaxPooling2DT(std::string name) : LayerT<T>(std::move(name)) {}
  std::string type() const override { return "GlobalMaxPooling2D"; }

 protected:
  Shape build_impl(const Shape& in) override {
    if (in.rank() != 3)
      throw ShapeError(type() + " '" + this->name_ + "': expects (H, W, C) inputs, got " +
                       in.str());
    return Shape{in[2]};
  }
  const Tensor<T>& forward_impl(ConstView<T> x, bool) override {
    const int64_t n = x.dim(0), hw = x.dim(1) * x.dim(2), c = x.dim(3);
    this->output_.resize(Shape{n, c});
    argmax_.resize(static_cast<size_t>(n * c));
    for (int64_t b = 0; b < n; ++b) {
      const T* src = x.data() + b * hw * c;
      T* dst = this->output_.data() + b * c;
      int64_t* arg = argmax_.data() + b * c;
      for (int64_t k = 0; k < c; ++k) {
        dst[k] = src[k];
        arg[k] = 0;
      }
      for (int64_t p = 1; p < hw; ++p)
        for (int64_t k = 0; k < c; ++k)
          if (src[p * c + k] > dst[k]) {
            dst[k] = src[p * c + k];
            arg[k] = p;
          }
    }
    return this->output_;
  }
  const Tensor<T>& backward_impl(ConstView<T> dy, bool need_input_grad) override {
    if (!need_input_grad) return this->empty_;
    const Shape& xs = this->input_.shape();
    const int64_t n = xs[0], hw = xs[1] * xs[2], c = xs[3];
    this->input_grad_tensor(xs);
    this->dinput_.zero();
    for (int64_t b = 0; b < n; ++b)
      for (int64_t k = 0; k < c; ++k)
        this->dinput_[(b * hw + argmax_[b * c + k]) * c + k] = dy[b * c + k];
    return this->dinput_;
  }

 private:
  std::vector<int64_t> argmax_;
};

using GlobalMaxPooling2D = GlobalMaxPooling2DT<float>;

}  // namespace minicnn
