// Optimizer update kernels on the SIMD layer (kernels/simd.hpp), one copy per instruction
// set, picked at run time like the convolution kernels. Adam, per element (Keras' and TF's
// ApplyAdam with the bias correction folded into lr_t, see optim/adam.hpp):
//   m = beta_1 * m + (1 - beta_1) * g
//   v = beta_2 * v + (1 - beta_2) * g * g
//   w -= lr_t * m / (sqrt(v) + epsilon)
// Compiled scalar code cannot vectorise this loop: std::sqrt must set errno for negative
// arguments (C's math_errno, on by default), so GCC emits one sqrtss and a branch per
// element; vsqrt has no such duty and is correctly rounded, so the result is the same.
#pragma once
#include <cstdint>

#include "../core/cpu.hpp"
#include "dispatch.hpp"
#include "simd.hpp"

namespace minicnn {
namespace kernels {

struct AdamCoefficients {
  float beta_1, one_minus_beta_1, beta_2, one_minus_beta_2, lr_t, epsilon;
};

}  // namespace kernels
}  // namespace minicnn

#define MINICNN_ISA_BODY "optim_body.inl"
#include "for_each_isa.inl"
#undef MINICNN_ISA_BODY

namespace minicnn {
namespace kernels {

// Adam over w[0, n) with its gradient g and slots m, v (updated in place).
inline void adam_update(float* w, const float* g, float* m, float* v, int64_t n,
                        const AdamCoefficients& a) {
  MINICNN_DISPATCH(active_isa(), adam_update(w, g, m, v, n, a))
}

}  // namespace kernels
}  // namespace minicnn
