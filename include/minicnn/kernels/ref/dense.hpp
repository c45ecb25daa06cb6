// Reference fully-connected layer: x [n, in] row-major, w [in, out] (Keras' layout),
//   y[i, o] = act(b[o] + sum_k x[i, k] * w[k, o]).
// Backward takes dz = dL/d(pre-activation output) (apply kernels::activate_backward
// first); it WRITES dx and ADDS into dw and db. Any of dx, dw, db may be null.
#pragma once
#include <cstdint>

#include "../activation.hpp"

namespace minicnn {
namespace kernels {
namespace ref {

template <typename T>
void dense_forward(int64_t n, int64_t in, int64_t out, const T* x, const T* w, const T* bias,
                   Activation act, T* y) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t o = 0; o < out; ++o) {
      T s = bias ? bias[o] : T(0);
      for (int64_t k = 0; k < in; ++k) s += x[i * in + k] * w[k * out + o];
      y[i * out + o] = activate(act, s);
    }
}

template <typename T>
void dense_backward(int64_t n, int64_t in, int64_t out, const T* x, const T* w, const T* dz, T* dx,
                    T* dw, T* db) {
  for (int64_t i = 0; i < n; ++i) {
    if (dx)
      for (int64_t k = 0; k < in; ++k) {
        T s = T(0);
        for (int64_t o = 0; o < out; ++o) s += dz[i * out + o] * w[k * out + o];
        dx[i * in + k] = s;
      }
    for (int64_t o = 0; o < out; ++o) {
      T d = dz[i * out + o];
      if (db) db[o] += d;
      if (dw)
        for (int64_t k = 0; k < in; ++k) dw[k * out + o] += x[i * in + k] * d;
    }
  }
}

}  // namespace ref
}  // namespace kernels
}  // namespace minicnn
