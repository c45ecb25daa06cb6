// Global average pooling over the spatial axes of NHWC input, seen as
// [n, hw, c] with hw = H*W: y[n, c] = mean over hw of x[n, :, c]. The inner loops
// run over contiguous channels and vectorise; threads split the batch when the
// work is large enough to pay for a thread team.
#pragma once
#include <cstdint>

#include "../core/parallel.hpp"

namespace minicnn {
namespace kernels {

template <typename T>
void global_avg_pool_nhwc(const T* x, int64_t n, int64_t hw, int64_t c, T* y) {
  const T inv = T(1) / T(hw);
  const bool par = n > 1 && n * hw * c > 65536 && !in_parallel();
  parallel_ranges(n, par ? num_threads() : 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const T* xb = x + b * hw * c;
      T* yb = y + b * c;
      for (int64_t k = 0; k < c; ++k) yb[k] = T(0);
      for (int64_t i = 0; i < hw; ++i)
        for (int64_t k = 0; k < c; ++k) yb[k] += xb[i * c + k];
      for (int64_t k = 0; k < c; ++k) yb[k] *= inv;
    }
  });
}

// dx[n, i, c] = dy[n, c] / hw for every spatial position i.
template <typename T>
void global_avg_pool_nhwc_backward(const T* dy, int64_t n, int64_t hw, int64_t c, T* dx) {
  const T inv = T(1) / T(hw);
  const bool par = n > 1 && n * hw * c > 65536 && !in_parallel();
  parallel_ranges(n, par ? num_threads() : 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const T* gb = dy + b * c;
      T* db = dx + b * hw * c;
      for (int64_t i = 0; i < hw; ++i)
        for (int64_t k = 0; k < c; ++k) db[i * c + k] = gb[k] * inv;
    }
  });
}

}  // namespace kernels
}  // namespace minicnn
