// Fast batch-normalisation kernels over the last axis: the input is a [rows, C]
// matrix (rows = N*H*W for NHWC). Channels are contiguous, so every inner loop
// runs over c and vectorises; OpenMP splits the rows. Reductions keep one
// partial per thread chunk (in double, since rows reach ~10^5 in MobileNetV2)
// and combine them in a fixed order, so a result depends only on the chunk count.
// Specification: kernels/ref/batchnorm.hpp.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "../core/parallel.hpp"

namespace minicnn {
namespace kernels {

namespace bn_detail {
// Chunks for a [rows, C] pass: 0 = automatic (none for small work, never nested).
inline int bn_chunks(int64_t rows, int64_t C, int threads) {
  if (threads <= 0) {
    if (in_parallel()) return 1;
    int64_t by_work = rows * C / 16384;
    threads = int(std::min<int64_t>(by_work, num_threads()));
  }
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
#pragma omp parallel for schedule(static, 1) num_threads(chunks) if (chunks > 1)
  for (int t = 0; t < chunks; ++t) {
    double* acc = base + t * len;
    std::fill(acc, acc + len, 0.0);
    body(rows * t / chunks, rows * (t + 1) / chunks, acc);
  }
  std::copy(base, base + len, out);
  for (int t = 1; t < chunks; ++t)
    for (int64_t i = 0; i < len; ++i) out[i] += base[t * len + i];
}
}  // namespace bn_detail

// Per-channel mean and BIASED variance of x[rows, C] (two passes: the second sums
// squared deviations, which stays accurate when |mean| >> std).
// `scratch` grows once; `threads` = 0 picks automatically.
template <typename T>
void batchnorm_moments_nhwc(const T* x, int64_t rows, int64_t C, double* mean, double* var,
                            std::vector<double>& scratch, int threads = 0) {
  const int chunks = bn_detail::bn_chunks(rows, C, threads);
  bn_detail::bn_reduce_rows(rows, C, 1, chunks, scratch, mean,
                            [&](int64_t r0, int64_t r1, double* acc) {
                              for (int64_t r = r0; r < r1; ++r) {
                                const T* xr = x + r * C;
                                for (int64_t c = 0; c < C; ++c) acc[c] += double(xr[c]);
                              }
                            });
  const double inv_rows = 1.0 / double(rows);
  for (int64_t c = 0; c < C; ++c) mean[c] *= inv_rows;
  bn_detail::bn_reduce_rows(rows, C, 1, chunks, scratch, var,
                            [&](int64_t r0, int64_t r1, double* acc) {
                              for (int64_t r = r0; r < r1; ++r) {
                                const T* xr = x + r * C;
                                for (int64_t c = 0; c < C; ++c) {
                                  double d = double(xr[c]) - mean[c];
                                  acc[c] += d * d;
                                }
                              }
                            });
  for (int64_t c = 0; c < C; ++c) var[c] *= inv_rows;
}

// y = (x - mean[c]) * scale[c] + shift[c]. Subtracting the mean before scaling
// (rather than folding it into shift) keeps float precision when |mean| >> std.
// y may alias x.
template <typename T>
void batchnorm_apply_nhwc(const T* x, int64_t rows, int64_t C, const T* mean, const T* scale,
                          const T* shift, T* y, int threads = 0) {
  const int chunks = bn_detail::bn_chunks(rows, C, threads);
#pragma omp parallel for schedule(static) num_threads(chunks) if (chunks > 1)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * C;
    T* yr = y + r * C;
    for (int64_t c = 0; c < C; ++c) yr[c] = (xr[c] - mean[c]) * scale[c] + shift[c];
  }
}

// Per-channel sum_dy[c] = sum_r dy and sum_dy_xc[c] = sum_r dy * (x - mean[c]):
// the two reductions of the batch-norm backward pass (for gamma, beta and dx).
template <typename T>
void batchnorm_backward_sums_nhwc(const T* dy, const T* x, int64_t rows, int64_t C,
                                  const double* mean, double* sum_dy, double* sum_dy_xc,
                                  std::vector<double>& scratch, int threads = 0) {
  const int chunks = bn_detail::bn_chunks(rows, C, threads);
  // The combined [2, C] result lives in scratch past the per-chunk partials; sizing
  // it first means bn_reduce_rows never reallocates under `out`.
  const int64_t len = 2 * C;
  if (scratch.size() < size_t(len * (chunks + 1))) scratch.resize(size_t(len * (chunks + 1)));
  double* out = scratch.data() + len * chunks;
  bn_detail::bn_reduce_rows(rows, C, 2, chunks, scratch, out,
                            [&](int64_t r0, int64_t r1, double* acc) {
                              double* a1 = acc;
                              double* a2 = acc + C;
                              for (int64_t r = r0; r < r1; ++r) {
                                const T* dyr = dy + r * C;
                                const T* xr = x + r * C;
                                for (int64_t c = 0; c < C; ++c) {
                                  double d = double(dyr[c]);
                                  a1[c] += d;
                                  a2[c] += d * (double(xr[c]) - mean[c]);
                                }
                              }
                            });
  std::copy(out, out + C, sum_dy);
  std::copy(out + C, out + len, sum_dy_xc);
}

// dx = a[c] * dy + b[c] * (x - mean[c]) + d[c]; with x == nullptr, dx = a[c] * dy
// (inference mode). dx may alias dy.
template <typename T>
void batchnorm_backward_apply_nhwc(const T* dy, const T* x, int64_t rows, int64_t C, const T* mean,
                                   const T* a, const T* b, const T* d, T* dx, int threads = 0) {
  const int chunks = bn_detail::bn_chunks(rows, C, threads);
  if (!x) {
#pragma omp parallel for schedule(static) num_threads(chunks) if (chunks > 1)
    for (int64_t r = 0; r < rows; ++r) {
      const T* dyr = dy + r * C;
      T* dxr = dx + r * C;
      for (int64_t c = 0; c < C; ++c) dxr[c] = a[c] * dyr[c];
    }
    return;
  }
#pragma omp parallel for schedule(static) num_threads(chunks) if (chunks > 1)
  for (int64_t r = 0; r < rows; ++r) {
    const T* dyr = dy + r * C;
    const T* xr = x + r * C;
    T* dxr = dx + r * C;
    for (int64_t c = 0; c < C; ++c) dxr[c] = a[c] * dyr[c] + b[c] * (xr[c] - mean[c]) + d[c];
  }
}

}  // namespace kernels
}  // namespace minicnn
