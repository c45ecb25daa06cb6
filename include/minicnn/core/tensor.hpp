// Tensor<T>: owning, 64-byte aligned, contiguous row-major storage of rank <= 4
// (NHWC for images). TensorView<T>: a non-owning pointer + shape over such data;
// TensorView<const T> is the read-only view that layers take as input.
// Convention: element (n, h, w, c) lives at ((n*H + h)*W + w)*C + c.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <ostream>
#include <string>
#include <type_traits>
#include <utility>

#include "error.hpp"
#include "shape.hpp"

namespace minicnn {

inline constexpr std::size_t kTensorAlignment = 64;

namespace detail {
struct AlignedFree {
  void operator()(void* p) const noexcept { std::free(p); }
};
inline void* aligned_bytes(std::size_t bytes) {
  std::size_t rounded = (bytes + kTensorAlignment - 1) / kTensorAlignment * kTensorAlignment;
  if (rounded == 0) rounded = kTensorAlignment;
  void* p = std::aligned_alloc(kTensorAlignment, rounded);
  if (!p) throw std::bad_alloc();
  return p;
}
}  // namespace detail

// A growable 64-byte aligned buffer that kernels keep (per thread, per use) between calls,
// so that a training loop allocates in its first step only. With `zeroed`, the contents are
// zero when it grows and the caller must leave them so.
template <typename T>
struct ScratchBuffer {
  std::unique_ptr<T[], detail::AlignedFree> p;
  std::size_t cap = 0;
  T* get(std::size_t n, bool zeroed = false) {
    if (n > cap) {
      p.reset(static_cast<T*>(detail::aligned_bytes(n * sizeof(T))));
      cap = n;
      if (zeroed) std::memset(static_cast<void*>(p.get()), 0, n * sizeof(T));
    }
    return p.get();
  }
};

template <typename T>
class TensorView {
 public:
  using value_type = std::remove_const_t<T>;

  TensorView() = default;
  TensorView(T* data, const Shape& shape) : data_(data), shape_(shape) {}
  // A mutable view converts to a read-only one.
  template <typename U,
            typename = std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>>>
  TensorView(const TensorView<U>& other) : data_(other.data()), shape_(other.shape()) {}

  T* data() const { return data_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  int64_t dim(int i) const { return shape_.dim(i); }
  int64_t size() const { return shape_.size(); }
  T* begin() const { return data_; }
  T* end() const { return data_ + size(); }
  T& operator[](int64_t i) const { return data_[i]; }
  // NHWC element access (rank 4).
  T& at(int64_t n, int64_t h, int64_t w, int64_t c) const {
    return data_[((n * shape_[1] + h) * shape_[2] + w) * shape_[3] + c];
  }
  // Rank-2 element access (rows, cols).
  T& at(int64_t r, int64_t c) const { return data_[r * shape_[1] + c]; }

  // The same memory seen with another shape of equal size.
  TensorView reshaped(const Shape& s) const {
    if (s.size() != size())
      throw ShapeError("reshape: cannot view " + shape_.str() + " as " + s.str());
    return TensorView(data_, s);
  }
  // Samples [first, first+count) of the leading dimension.
  TensorView batch_slice(int64_t first, int64_t count) const {
    if (rank() == 0 || first < 0 || count < 0 || first + count > shape_[0])
      throw ShapeError("batch_slice [" + std::to_string(first) + ", " +
                       std::to_string(first + count) + ") out of range for " + shape_.str());
    int64_t stride = shape_[0] ? size() / shape_[0] : 0;
    return TensorView(data_ + first * stride, shape_.with_batch(count));
  }

 private:
  T* data_ = nullptr;
  Shape shape_;
};

template <typename T>
using ConstView = TensorView<const T>;

template <typename T>
class Tensor {
  static_assert(std::is_trivially_copyable_v<T>, "Tensor holds plain numbers");

 public:
  using value_type = T;

  Tensor() = default;
  explicit Tensor(const Shape& shape) { resize(shape); }
  Tensor(const Shape& shape, T fill_value) {
    resize(shape);
    fill(fill_value);
  }
  Tensor(const Tensor& o) { copy_from(o.view()); }
  Tensor& operator=(const Tensor& o) {
    if (this != &o) copy_from(o.view());
    return *this;
  }
  // A moved-from tensor is empty with no capacity (a defaulted move would leave its
  // capacity behind without the storage, and the next resize would write through null).
  Tensor(Tensor&& o) noexcept
      : data_(std::move(o.data_)),
        capacity_(std::exchange(o.capacity_, 0)),
        shape_(std::exchange(o.shape_, Shape())) {}
  Tensor& operator=(Tensor&& o) noexcept {
    if (this != &o) {
      data_ = std::move(o.data_);
      capacity_ = std::exchange(o.capacity_, 0);
      shape_ = std::exchange(o.shape_, Shape());
    }
    return *this;
  }

  static Tensor from(ConstView<T> v) {
    Tensor t;
    t.copy_from(v);
    return t;
  }
  template <typename U>
  static Tensor cast_from(ConstView<U> v) {
    Tensor t(v.shape());
    for (int64_t i = 0; i < v.size(); ++i) t.data()[i] = static_cast<T>(v[i]);
    return t;
  }

  // Sets the shape; reallocates only when the capacity is too small, so layers
  // that call this every step allocate once. Contents are unspecified afterwards.
  void resize(const Shape& shape) {
    std::size_t n = static_cast<std::size_t>(shape.size());
    if (n > capacity_) {
      data_.reset(static_cast<T*>(detail::aligned_bytes(n * sizeof(T))));
      capacity_ = n;
    }
    shape_ = shape;
  }
  void reshape(const Shape& shape) {
    if (shape.size() != shape_.size())
      throw ShapeError("reshape: cannot reshape " + shape_.str() + " to " + shape.str());
    shape_ = shape;
  }
  void copy_from(ConstView<T> v) {
    if (!v.data()) {  // a default (rank 0, unallocated) tensor copies as one
      *this = Tensor();
      return;
    }
    resize(v.shape());
    if (v.size()) std::memcpy(data(), v.data(), sizeof(T) * v.size());
  }
  void fill(T value) { std::fill(data(), data() + size(), value); }
  void zero() {
    if (size()) std::memset(static_cast<void*>(data()), 0, sizeof(T) * size());
  }

  T* data() { return data_.get(); }
  const T* data() const { return data_.get(); }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  int64_t dim(int i) const { return shape_.dim(i); }
  int64_t size() const { return shape_.size(); }
  // Elements the storage holds without reallocating.
  std::size_t capacity() const { return capacity_; }
  bool empty() const { return shape_.rank() == 0 || size() == 0; }
  T* begin() { return data(); }
  T* end() { return data() + size(); }
  const T* begin() const { return data(); }
  const T* end() const { return data() + size(); }
  T& operator[](int64_t i) { return data_.get()[i]; }
  const T& operator[](int64_t i) const { return data_.get()[i]; }
  T& at(int64_t n, int64_t h, int64_t w, int64_t c) { return view().at(n, h, w, c); }
  const T& at(int64_t n, int64_t h, int64_t w, int64_t c) const { return view().at(n, h, w, c); }
  T& at(int64_t r, int64_t c) { return view().at(r, c); }
  const T& at(int64_t r, int64_t c) const { return view().at(r, c); }

  TensorView<T> view() { return TensorView<T>(data(), shape_); }
  ConstView<T> view() const { return ConstView<T>(data(), shape_); }
  ConstView<T> cview() const { return view(); }
  operator TensorView<T>() { return view(); }
  operator ConstView<T>() const { return view(); }

 private:
  std::unique_ptr<T[], detail::AlignedFree> data_;
  std::size_t capacity_ = 0;
  Shape shape_;
};

using TensorF = Tensor<float>;
using TensorD = Tensor<double>;

template <typename T>
std::ostream& operator<<(std::ostream& os, const Tensor<T>& t) {
  return os << "Tensor" << t.shape().str();
}
inline std::ostream& operator<<(std::ostream& os, const Shape& s) {
  return os << s.str();
}

}  // namespace minicnn
