// AddT<T>: Keras Add, the element-wise sum of N >= 2 inputs of one shape (the
// residual merge of MobileNetV2's inverted residual blocks). It takes several
// inputs, so it is not a LayerT; it has its own small interface:
//   build(shapes)  -> output shape (shapes exclude the batch dimension)
//   forward(inputs) -> y = sum of inputs, in a buffer the layer owns
//   backward(dy)    -> dL/d(input_i) for EVERY i, which is dy itself: the returned
//                      view aliases dy (no copy), so it lives as long as dy does.
// It has no parameters.
#pragma once
#include <string>
#include <vector>

#include "../core/parallel.hpp"
#include "layer.hpp"

namespace minicnn {

template <typename T>
class AddT {
 public:
  explicit AddT(std::string name) : name_(std::move(name)) {}
  AddT(const AddT&) = delete;
  AddT& operator=(const AddT&) = delete;

  const std::string& name() const { return name_; }
  std::string type() const { return "Add"; }
  bool built() const { return built_; }
  int64_t num_inputs() const { return int64_t(input_shapes_.size()); }
  const std::vector<Shape>& input_shapes() const { return input_shapes_; }
  const Shape& output_shape() const { return output_shape_; }

  Shape build(const std::vector<Shape>& shapes) {
    if (shapes.size() < 2)
      throw ShapeError(where() + "needs at least 2 inputs, got " + std::to_string(shapes.size()));
    for (size_t i = 1; i < shapes.size(); ++i)
      if (shapes[i] != shapes[0])
        throw ShapeError(where() + "input " + std::to_string(i) + " has shape " +
                         shapes[i].batched_str() + ", input 0 has shape " +
                         shapes[0].batched_str() + "; Add needs equal shapes");
    for (int d = 0; d < shapes[0].rank(); ++d)
      if (shapes[0][d] == 0)
        throw ShapeError(where() + "input shape " + shapes[0].str() +
                         " has a zero-sized dimension");
    if (built_) {
      if (shapes != input_shapes_)
        throw ShapeError(where() + "already built for " + std::to_string(input_shapes_.size()) +
                         " inputs of shape " + output_shape_.batched_str() +
                         ", cannot rebuild for " + std::to_string(shapes.size()) + " of shape " +
                         shapes[0].batched_str());
      return output_shape_;
    }
    input_shapes_ = shapes;
    output_shape_ = shapes[0];
    built_ = true;
    return output_shape_;
  }

  const Tensor<T>& forward(const std::vector<ConstView<T>>& inputs) {
    return forward_n(inputs.data(), inputs.size());
  }
  // Two-input form (the residual case) that builds no vector.
  const Tensor<T>& forward(ConstView<T> a, ConstView<T> b) {
    ConstView<T> in[2] = {a, b};
    return forward_n(in, 2);
  }

  // See the header: the gradient of every input is dy; returns a view of dy.
  ConstView<T> backward(ConstView<T> dy) const {
    if (!built_ || batch_ == 0) throw Error(where() + "backward called before forward");
    Shape expect = output_shape_.with_leading(batch_);
    if (dy.shape() != expect)
      throw ShapeError(where() + "gradient has shape " + dy.shape().str() + ", expected " +
                       expect.str() + " (the output of the last forward)");
    return dy;
  }

  void summary_rows(std::vector<SummaryRow>& rows, int depth = 0) const {
    rows.push_back({name_, type(), output_shape_, 0, depth});
  }

 public:
  // The output's buffer back to an inference pass's pool (layers/activation_pool.hpp).
  void release_activations(ActivationPoolT<T>& pool) { pool.put(std::move(output_)); }

 private:
  std::string where() const { return "Add '" + name_ + "': "; }

  const Tensor<T>& forward_n(const ConstView<T>* in, size_t n) {
    if (n < 2) throw ShapeError(where() + "needs at least 2 inputs, got " + std::to_string(n));
    for (size_t i = 0; i < n; ++i) {
      if (in[i].rank() == 0)
        throw ShapeError(where() + "input " + std::to_string(i) + " is a scalar");
      if (in[i].shape() != in[0].shape())
        throw ShapeError(where() + "input " + std::to_string(i) + " has shape " +
                         in[i].shape().str() + ", input 0 has shape " + in[0].shape().str() +
                         "; Add needs equal shapes");
    }
    if (!built_) {
      std::vector<Shape> shapes(n, in[0].shape().sample());
      build(shapes);
    }
    if (n != input_shapes_.size() || in[0].shape().sample() != output_shape_)
      throw ShapeError(where() + "got " + std::to_string(n) + " inputs of shape " +
                       in[0].shape().str() + ", built for " + std::to_string(input_shapes_.size()) +
                       " of shape " + output_shape_.batched_str());
    if (in[0].shape()[0] == 0)
      throw ShapeError(where() + "input batch is empty " + in[0].shape().str());
    batch_ = in[0].shape()[0];
    if (output_.capacity() == 0)
      if (auto* pool = ActivationPoolT<T>::current()) output_ = pool->take(in[0].size());
    output_.resize(in[0].shape());
    T* y = output_.data();
    const int64_t size = output_.size();
    const T* a = in[0].data();
    const T* b = in[1].data();
    const int nt = plan_threads(double(size) * double(n), size, kMinElementsPerThread);
    parallel_ranges(size, nt, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) y[i] = a[i] + b[i];
      for (size_t k = 2; k < n; ++k) {
        const T* c = in[k].data();
        for (int64_t i = lo; i < hi; ++i) y[i] += c[i];
      }
    });
    return output_;
  }

  std::string name_;
  bool built_ = false;
  std::vector<Shape> input_shapes_;
  Shape output_shape_;
  int64_t batch_ = 0;
  Tensor<T> output_;
};

using Add = AddT<float>;

}  // namespace minicnn
