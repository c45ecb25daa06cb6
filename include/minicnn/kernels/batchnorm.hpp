// Fast batch-normalisation kernels over the last axis: the input is a [rows, C]
// matrix (rows = N*H*W for NHWC). Channels are contiguous, so every inner loop
// runs over c and vectorises; OpenMP splits the rows. Reductions keep one
// partial per thread chunk (in double, since rows reach ~10^5 in MobileNetV2)
// and combine them in a fixed order, so a result depends only on the chunk count.
// The float kernels are compiled once per instruction set (batchnorm_body.inl) and picked
// at run time like the others; double (gradient checks) runs the baseline copy.
// Specification: kernels/ref/batchnorm.hpp.
#pragma once
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../core/cpu.hpp"
#include "../core/parallel.hpp"
#include "activation.hpp"
#include "dispatch.hpp"
#include "simd.hpp"

namespace minicnn {
namespace kernels {

namespace bn_detail {
// Calls body(std::integral_constant<int, A>) with A = int(act), so that the per-element
// activation test is resolved at compile time and the inner loops still vectorise.
template <typename Body>
void with_activation(Activation act, Body body) {
  switch (act) {
    case Activation::ReLU: return body(std::integral_constant<int, int(Activation::ReLU)>());
    case Activation::ReLU6: return body(std::integral_constant<int, int(Activation::ReLU6)>());
    default: return body(std::integral_constant<int, int(Activation::Linear)>());
  }
}
// dL/d(pre-activation) from dL/dy and v, either the pre-activation or y = act(it): both are
// > 0 (and < 6) exactly where the activation passes. Branch-free.
template <int A, typename T>
inline T masked_grad(T y, T dy) {
  if constexpr (A == int(Activation::ReLU)) return y > T(0) ? dy : T(0);
  // `&`, not `&&`: a short-circuit is control flow, and GCC then leaves the loop scalar.
  if constexpr (A == int(Activation::ReLU6)) return ((y > T(0)) & (y < T(6))) ? dy : T(0);
  return dy;
}
template <int A, typename T>
inline T activated(T v) {
  if constexpr (A == int(Activation::ReLU)) return v < T(0) ? T(0) : v;
  if constexpr (A == int(Activation::ReLU6)) return std::min(std::max(v, T(0)), T(6));
  return v;
}

// Chunks for a [rows, C] pass: 0 = automatic (none for small work, never nested).
inline int bn_chunks(int64_t rows, int64_t C, int threads) {
  if (threads <= 0) return plan_threads(double(rows) * double(C), rows, kMinElementsPerThread);
  return int(std::max<int64_t>(1, std::min<int64_t>(threads, rows)));
}

// Runs body(r0, r1, acc) on `chunks` row ranges, each with its own zeroed
// accumulator of K*C doubles in `scratch`, then sums the partials into out[K*C].
template <typename Body>
void bn_reduce_rows(int64_t rows, int64_t C, int K, int chunks, std::vector<double>& scratch,
                    double* out, Body body) {
  const int64_t len = int64_t(K) * C;
  if (scratch.size() < size_t(len * chunks)) scratch.resize(size_t(len * chunks));
  double* base = scratch.data();
  parallel_ranges(chunks, chunks, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      double* acc = base + t * len;
      std::fill(acc, acc + len, 0.0);
      body(rows * t / chunks, rows * (t + 1) / chunks, acc);
    }
  });
  std::copy(base, base + len, out);
  for (int t = 1; t < chunks; ++t)
    for (int64_t i = 0; i < len; ++i) out[i] += base[t * len + i];
}
}  // namespace bn_detail

// The forward of a batch norm with a fused activation, y = act((x - mean) * scale + shift):
// its backward masks dy where the activation is flat. The mask is recomputed from x rather
// than read from y, so the backward passes read two tensors (dy, x), not three.
template <typename T>
struct BnForward {
  const T* mean = nullptr;
  const T* scale = nullptr;
  const T* shift = nullptr;
  Activation act = Activation::Linear;
};

namespace bn_detail {
// g = dy where the activation passes at pre-activation z (z recomputed as the forward
// computed it), else 0.
template <int A, typename T>
inline T grad_at(const BnForward<T>& f, int64_t c, T x, T dy) {
  if constexpr (A == int(Activation::Linear)) return dy;
  const T z = (x - f.mean[c]) * f.scale[c] + f.shift[c];
  return masked_grad<A>(z, dy);
}
}  // namespace bn_detail

}  // namespace kernels
}  // namespace minicnn

#if defined(__GNUC__)
#define MINICNN_BN_INLINE inline __attribute__((always_inline))
#else
#define MINICNN_BN_INLINE inline
#endif
#define MINICNN_ISA_BODY "batchnorm_body.inl"
#include "for_each_isa.inl"
#undef MINICNN_ISA_BODY

namespace minicnn {
namespace kernels {

// Per-channel mean and BIASED variance of x[rows, C] in one pass over x: sums of d = x - s
// and d^2 in double, with s[c] = x[0, c]. s is a sample of the same values, so the mean of d
// is a few standard deviations at most and var = E[d^2] - E[d]^2 keeps its digits (a plain
// E[x^2] - E[x]^2 would not when |mean| >> std). `scratch` grows once; `threads` = 0 picks
// automatically.
template <typename T>
void batchnorm_moments_nhwc(const T* x, int64_t rows, int64_t C, double* mean, double* var,
                            std::vector<double>& scratch, int threads = 0) {
  if constexpr (std::is_same_v<T, float>) {
    MINICNN_DISPATCH(active_isa(), bn_isa::moments(x, rows, C, mean, var, scratch, threads))
  } else {  // double (gradient checks): the baseline copy
    isa_portable::bn_isa::moments(x, rows, C, mean, var, scratch, threads);
  }
}

// y = act((x - mean[c]) * scale[c] + shift[c]): a BatchNormalization and the ReLU / ReLU6
// after it in one pass. Subtracting the mean before scaling (rather than folding it into
// shift) keeps float precision when |mean| >> std. y may alias x.
template <typename T>
void batchnorm_apply_nhwc(const T* x, int64_t rows, int64_t C, const T* mean, const T* scale,
                          const T* shift, T* y, Activation act, int threads = 0) {
  if constexpr (std::is_same_v<T, float>) {
    MINICNN_DISPATCH(active_isa(), bn_isa::apply(x, rows, C, mean, scale, shift, y, act, threads))
  } else {  // double (gradient checks): the baseline copy
    isa_portable::bn_isa::apply(x, rows, C, mean, scale, shift, y, act, threads);
  }
}
template <typename T>
void batchnorm_apply_nhwc(const T* x, int64_t rows, int64_t C, const T* mean, const T* scale,
                          const T* shift, T* y, int threads = 0) {
  batchnorm_apply_nhwc(x, rows, C, mean, scale, shift, y, Activation::Linear, threads);
}

// Per-channel sum_dy[c] = sum_r g and sum_dy_xc[c] = sum_r g * (x - mean[c]), where g is
// dy, or dL/d(pre-activation) when the layer applied fwd.act to its output (see BnForward):
// the two reductions of the batch-norm backward pass (for gamma, beta and dx). `mean` is
// the double batch mean; fwd is read only for a fused activation.
template <typename T>
void batchnorm_backward_sums_nhwc(const T* dy, const BnForward<T>& fwd, const T* x, int64_t rows,
                                  int64_t C, const double* mean, double* sum_dy, double* sum_dy_xc,
                                  std::vector<double>& scratch, int threads = 0) {
  if constexpr (std::is_same_v<T, float>) {
    MINICNN_DISPATCH(active_isa(), bn_isa::backward_sums(dy, fwd, x, rows, C, mean, sum_dy,
                                                         sum_dy_xc, scratch, threads))
  } else {  // double (gradient checks): the baseline copy
    isa_portable::bn_isa::backward_sums(dy, fwd, x, rows, C, mean, sum_dy, sum_dy_xc, scratch,
                                        threads);
  }
}
template <typename T>
void batchnorm_backward_sums_nhwc(const T* dy, const T* x, int64_t rows, int64_t C,
                                  const double* mean, double* sum_dy, double* sum_dy_xc,
                                  std::vector<double>& scratch, int threads = 0) {
  batchnorm_backward_sums_nhwc<T>(dy, BnForward<T>{}, x, rows, C, mean, sum_dy, sum_dy_xc, scratch,
                                  threads);
}

// Training mode: dx = a[c] * g + b[c] * (x - fwd.mean[c]) + d[c]. Inference mode (b and d
// null): dx = a[c] * g. g is dy, or dy masked by the fused activation (see BnForward), for
// which x is read. dx may alias dy.
template <typename T>
void batchnorm_backward_apply_nhwc(const T* dy, const BnForward<T>& fwd, const T* x, int64_t rows,
                                   int64_t C, const T* a, const T* b, const T* d, T* dx,
                                   int threads = 0) {
  if constexpr (std::is_same_v<T, float>) {
    MINICNN_DISPATCH(active_isa(),
                     bn_isa::backward_apply(dy, fwd, x, rows, C, a, b, d, dx, threads))
  } else {  // double (gradient checks): the baseline copy
    isa_portable::bn_isa::backward_apply(dy, fwd, x, rows, C, a, b, d, dx, threads);
  }
}
template <typename T>
void batchnorm_backward_apply_nhwc(const T* dy, const T* x, int64_t rows, int64_t C, const T* mean,
                                   const T* a, const T* b, const T* d, T* dx, int threads = 0) {
  BnForward<T> fwd;
  fwd.mean = mean;
  batchnorm_backward_apply_nhwc<T>(dy, fwd, x, rows, C, a, b, d, dx, threads);
}

// The gradient a BatchNormalization's backward hands the layer before it,
// dz = a * g + b * (x - mean) + d (g = dy masked by the fused activation; b and d null in
// inference mode), left for that layer's backward to make as it reads dz, a block of rows at
// a time, instead of being written out and read back (kernels/conv2d.hpp).
template <typename T>
struct BnInputGrad {
  const T* x = nullptr;  // the batch norm's input
  BnForward<T> fwd;
  const T* a = nullptr;
  const T* b = nullptr;
  const T* d = nullptr;
  // Rows [r0, r0 + rows) of dz, from the same rows of the batch norm's dy, into out.
  void make(const T* dy, int64_t r0, int64_t rows, int64_t C, T* out, int threads = 0) const {
    batchnorm_backward_apply_nhwc<T>(dy + r0 * C, fwd, x + r0 * C, rows, C, a, b, d, out, threads);
  }
};

}  // namespace kernels
}  // namespace minicnn
