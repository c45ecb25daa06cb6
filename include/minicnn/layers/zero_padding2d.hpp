// ZeroPadding2DT<T>: Keras ZeroPadding2D on NHWC input (H, W, C) ->
// (top + H + bottom, left + W + right, C). MobileNetV2 uses the asymmetric form
// ((0, 1), (0, 1)) before stride-2 depthwise convolutions on even sizes.
#pragma once
#include <algorithm>
#include <cstring>
#include <string>

#include "../core/parallel.hpp"
#include "../kernels/conv_geometry.hpp"
#include "layer.hpp"

namespace minicnn {

template <typename T>
class ZeroPadding2DT : public LayerT<T> {
 public:
  ZeroPadding2DT(std::string name, int64_t top, int64_t bottom, int64_t left, int64_t right)
      : LayerT<T>(std::move(name)), top_(top), bottom_(bottom), left_(left), right_(right) {
    if (top < 0 || bottom < 0 || left < 0 || right < 0)
      throw ConfigError("ZeroPadding2D '" + this->name_ + "': padding must be >= 0, got ((" +
                        std::to_string(top) + ", " + std::to_string(bottom) + "), (" +
                        std::to_string(left) + ", " + std::to_string(right) + "))");
  }
  // Keras ZeroPadding2D(padding=p): p rows/columns on every side.
  ZeroPadding2DT(std::string name, int64_t pad)
      : ZeroPadding2DT(std::move(name), pad, pad, pad, pad) {}
  // Keras ZeroPadding2D(padding=(ph, pw)): ph rows top and bottom, pw columns left and right.
  ZeroPadding2DT(std::string name, int64_t pad_h, int64_t pad_w)
      : ZeroPadding2DT(std::move(name), pad_h, pad_h, pad_w, pad_w) {}

  std::string type() const override { return "ZeroPadding2D"; }
  nlohmann::json config() const override {
    return {{"name", this->name_}, {"padding", {{top_, bottom_}, {left_, right_}}}};
  }
  int64_t top() const { return top_; }
  int64_t bottom() const { return bottom_; }
  int64_t left() const { return left_; }
  int64_t right() const { return right_; }

 protected:
  Shape build_impl(const Shape& in) override {
    if (in.rank() != 3)
      throw ShapeError("ZeroPadding2D '" + this->name_ + "': input shape " + in.batched_str() +
                       " is not (None, H, W, C)");
    return Shape{in[0] + top_ + bottom_, in[1] + left_ + right_, in[2]};
  }

  const Tensor<T>& forward_impl(ConstView<T> x, bool) override {
    const Shape& s = x.shape();
    this->output_.resize(this->output_shape_.with_leading(s[0]));
    this->output_.zero();
    copy_rows(x.data(), this->output_.data(), s[0], s[1], s[2], s[3], /*to_padded=*/true);
    return this->output_;
  }

  const Tensor<T>& backward_impl(ConstView<T> dy, bool need_input_grad) override {
    if (!need_input_grad) return this->empty_;
    const Shape& s = this->input_.shape();
    this->input_grad_tensor(s);
    copy_rows(dy.data(), this->dinput_.data(), s[0], s[1], s[2], s[3], /*to_padded=*/false);
    return this->dinput_;
  }

 private:
  // Copies each unpadded row of W*C values between the input layout and its place
  // inside the padded layout (forward: into it; backward: cropping out of it).
  void copy_rows(const T* src, T* dst, int64_t n, int64_t h, int64_t w, int64_t c,
                 bool to_padded) const {
    const int64_t ph = h + top_ + bottom_, pw = w + left_ + right_;
    const int64_t rows = n * h, row_len = w * c;
    const bool par = rows * row_len > 65536 && !in_parallel();
    parallel_ranges(rows, par ? num_threads() : 1, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t b = r / h, i = r % h;
        const int64_t padded = ((b * ph + i + top_) * pw + left_) * c;
        const int64_t plain = r * row_len;
        if (to_padded)
          std::memcpy(dst + padded, src + plain, sizeof(T) * size_t(row_len));
        else
          std::memcpy(dst + plain, src + padded, sizeof(T) * size_t(row_len));
      }
    });
  }

  int64_t top_, bottom_, left_, right_;
};

using ZeroPadding2D = ZeroPadding2DT<float>;

// The ZeroPadding2D in front of a 'valid' convolution that the convolution pads for itself
// during training (Conv2D and DepthwiseConv2D hold one). MobileNetV2 pads before every
// stride-2 convolution exactly as TF 'same' padding would; running the convolution as 'same'
// on the unpadded input gives the same sums without a padded copy of the activations in
// forward or of their gradient in backward. The container skips the pad layer
// (LayerT::absorbed_previous()); the convolution still accepts padded input when run alone.
template <typename T>
class AbsorbedPaddingT {
 public:
  // Takes `prev` when it is a built ZeroPadding2D that feeds a 'valid' kh x kw, stride
  // (sh, sw) convolution built on `padded` and pads as 'same' would. False (and nothing
  // absorbed) otherwise.
  bool absorb(LayerT<T>* prev, const Shape& padded, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
              Padding padding) {
    layer_ = nullptr;
    auto* zp = dynamic_cast<ZeroPadding2DT<T>*>(prev);
    if (!zp || !zp->built() || padding != Padding::Valid || zp->output_shape() != padded ||
        !zero_padding_folds(zp->input_shape(), padded, kh, kw, sh, sw, zp->top(), zp->bottom(),
                            zp->left(), zp->right()))
      return false;
    layer_ = zp;
    return true;
  }
  void clear() { layer_ = nullptr; }
  LayerT<T>* layer() const { return layer_; }
  // The unpadded input shape (without batch) the convolution also accepts, or null.
  const Shape* input_shape() const { return layer_ ? &layer_->input_shape() : nullptr; }
  // Whether a batch of shape `x` (N, H, W, C) is the unpadded input.
  bool is_unpadded(const Shape& x) const {
    if (!layer_ || x.rank() != 4) return false;
    const Shape& in = layer_->input_shape();
    return x[1] == in[0] && x[2] == in[1] && x[3] == in[2];
  }

 private:
  ZeroPadding2DT<T>* layer_ = nullptr;
};

}  // namespace minicnn
