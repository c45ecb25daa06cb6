// Shape of a tensor: rank 0..4, dimensions in NHWC order for images
// (batch, height, width, channels). Dimensions are int64 so products never overflow.
#pragma once
#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "error.hpp"

namespace minicnn {

class Shape {
 public:
  static constexpr int kMaxRank = 4;

  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) {
    if (dims.size() > kMaxRank)
      throw ShapeError("Shape: rank " + std::to_string(dims.size()) + " exceeds the maximum of 4");
    for (int64_t d : dims) {
      if (d < 0) throw ShapeError("Shape: negative dimension " + std::to_string(d));
      dims_[rank_++] = d;
    }
  }
  template <typename It>
  static Shape from_range(It first, It last) {
    Shape s;
    for (; first != last; ++first) {
      if (s.rank_ == kMaxRank) throw ShapeError("Shape: rank exceeds the maximum of 4");
      if (*first < 0) throw ShapeError("Shape: negative dimension " + std::to_string(*first));
      s.dims_[s.rank_++] = static_cast<int64_t>(*first);
    }
    return s;
  }

  int rank() const { return rank_; }
  int64_t operator[](int i) const { return dims_[i]; }
  int64_t& operator[](int i) { return dims_[i]; }
  // Negative index counts from the back, as in Python.
  int64_t dim(int i) const {
    int j = i < 0 ? rank_ + i : i;
    if (j < 0 || j >= rank_)
      throw ShapeError("Shape " + str() + ": no dimension " + std::to_string(i));
    return dims_[j];
  }
  int64_t size() const {
    int64_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= dims_[i];
    return n;
  }
  bool empty() const { return size() == 0; }
  const int64_t* begin() const { return dims_.data(); }
  const int64_t* end() const { return dims_.data() + rank_; }

  // The same shape with the leading (batch) dimension replaced.
  Shape with_batch(int64_t n) const {
    Shape s = *this;
    if (s.rank_ == 0) throw ShapeError("Shape (): has no batch dimension");
    s.dims_[0] = n;
    return s;
  }
  // Shape without the batch dimension, e.g. (96, 96, 3) for (32, 96, 96, 3).
  Shape sample() const { return Shape::from_range(begin() + (rank_ ? 1 : 0), end()); }
  Shape with_leading(int64_t n) const {
    if (rank_ == kMaxRank) throw ShapeError("Shape " + str() + ": cannot add a batch dimension");
    Shape s;
    s.rank_ = rank_ + 1;
    s.dims_[0] = n;
    for (int i = 0; i < rank_; ++i) s.dims_[i + 1] = dims_[i];
    return s;
  }

  friend bool operator==(const Shape& a, const Shape& b) {
    if (a.rank_ != b.rank_) return false;
    for (int i = 0; i < a.rank_; ++i)
      if (a.dims_[i] != b.dims_[i]) return false;
    return true;
  }
  friend bool operator!=(const Shape& a, const Shape& b) { return !(a == b); }

  // "(32, 96, 96, 3)"; Python tuple style so messages read like Keras'.
  std::string str() const {
    std::string s = "(";
    for (int i = 0; i < rank_; ++i) {
      if (i) s += ", ";
      s += std::to_string(dims_[i]);
    }
    if (rank_ == 1) s += ",";
    return s + ")";
  }
  // For a shape without batch dimension, Keras' summary style: "(None, 48, 48, 32)".
  std::string batched_str() const {
    std::string s = "(None";
    for (int i = 0; i < rank_; ++i) s += ", " + std::to_string(dims_[i]);
    return s + ")";
  }

 private:
  std::array<int64_t, kMaxRank> dims_{};
  int rank_ = 0;
};

}  // namespace minicnn
