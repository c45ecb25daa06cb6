// Weight initializers with Keras' defaults: glorot_uniform for kernels
// (limit sqrt(6 / (fan_in + fan_out))), zeros for biases, ones for BN gamma.
// Fans follow Keras: for a kernel of shape (kh, kw, in, out), fan_in = kh*kw*in,
// fan_out = kh*kw*out; for a depthwise kernel (kh, kw, c, 1), fan_in = kh*kw*c, fan_out = kh*kw.
#pragma once
#include <cmath>

#include "../core/random.hpp"
#include "../core/tensor.hpp"

namespace minicnn {

template <typename T>
void glorot_uniform(Tensor<T>& w, double fan_in, double fan_out, Rng& rng = global_rng()) {
  double limit = std::sqrt(6.0 / (fan_in + fan_out));
  for (int64_t i = 0; i < w.size(); ++i) w[i] = static_cast<T>(rng.uniform(-limit, limit));
}

}  // namespace minicnn
