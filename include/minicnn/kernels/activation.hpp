// Element-wise activations shared by layers and by the fused epilogues of the
// convolution / dense kernels. Gradients are taken from the activation OUTPUT y
// (valid for these piecewise-linear functions): ReLU passes where y > 0, ReLU6
// where 0 < y < 6. At the kinks (x == 0, x == 6) the gradient is 0, as in Keras/TF.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>

#include "../core/error.hpp"

namespace minicnn {

enum class Activation { Linear, ReLU, ReLU6 };

inline std::string to_string(Activation a) {
  switch (a) {
    case Activation::ReLU: return "relu";
    case Activation::ReLU6: return "relu6";
    default: return "linear";
  }
}
inline Activation activation_from_string(const std::string& s) {
  if (s == "linear" || s.empty()) return Activation::Linear;
  if (s == "relu") return Activation::ReLU;
  if (s == "relu6") return Activation::ReLU6;
  throw ConfigError("unknown activation '" + s + "' (expected linear, relu or relu6)");
}

namespace kernels {

template <typename T>
inline T activate(Activation a, T x) {
  switch (a) {
    case Activation::ReLU: return x < T(0) ? T(0) : x;  // NaN stays NaN, as in TF
    case Activation::ReLU6: return std::min(std::max(x, T(0)), T(6));
    default: return x;
  }
}

// dL/dx given dL/dy and y = activate(a, x).
template <typename T>
inline T activate_grad_from_output(Activation a, T y, T dy) {
  switch (a) {
    case Activation::ReLU: return y > T(0) ? dy : T(0);
    case Activation::ReLU6: return (y > T(0) && y < T(6)) ? dy : T(0);
    default: return dy;
  }
}

// In place over n values; the compiler vectorises these loops.
template <typename T>
inline void activate_inplace(Activation a, T* y, int64_t n) {
  if (a == Activation::ReLU) {
    for (int64_t i = 0; i < n; ++i) y[i] = y[i] < T(0) ? T(0) : y[i];
  } else if (a == Activation::ReLU6) {
    for (int64_t i = 0; i < n; ++i) y[i] = std::min(std::max(y[i], T(0)), T(6));
  }
}

// dx[i] = dL/dx from dy and the activation output y (dx may alias dy).
template <typename T>
inline void activate_backward(Activation a, const T* y, const T* dy, T* dx, int64_t n) {
  if (a == Activation::ReLU) {
    for (int64_t i = 0; i < n; ++i) dx[i] = y[i] > T(0) ? dy[i] : T(0);
  } else if (a == Activation::ReLU6) {
    for (int64_t i = 0; i < n; ++i) dx[i] = (y[i] > T(0) && y[i] < T(6)) ? dy[i] : T(0);
  } else if (dx != dy) {
    std::copy(dy, dy + n, dx);
  }
}

}  // namespace kernels
}  // namespace minicnn
