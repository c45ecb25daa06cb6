// Fast fully-connected layer over the GEMM helpers; same signatures and semantics as
// kernels/ref/dense.hpp: x [n, in], w [in, out] (Keras' layout), row-major.
//   forward:  y = act(x * w + b)                        (WRITES y; bias/act fused)
//   backward: dx = dz * w^T (WRITES), dw += x^T * dz, db += column sums of dz (ADD)
// with dz = dL/d(pre-activation output); dx, dw, db may each be null.
#pragma once
#include <cstdint>

#include "activation.hpp"
#include "gemm.hpp"

namespace minicnn {
namespace kernels {

template <typename T>
void dense_forward(int64_t n, int64_t in, int64_t out, const T* x, const T* w, const T* bias,
                   Activation act, T* y) {
  gemm_nn(n, out, in, x, in, w, out, y, out, false, Epilogue<T>{bias, act});
}

template <typename T>
void dense_backward(int64_t n, int64_t in, int64_t out, const T* x, const T* w, const T* dz, T* dx,
                    T* dw, T* db) {
  if (dx) gemm_nt(n, in, out, dz, out, w, out, dx, in);
  if (dw)
    gemm_tn(in, out, n, x, in, dz, out, dw, out, true, db);
  else if (db)
    add_column_sums(n, out, dz, out, db);
}

}  // namespace kernels
}  // namespace minicnn
