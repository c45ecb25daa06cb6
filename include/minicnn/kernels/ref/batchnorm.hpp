// Reference batch normalisation over the last axis: the input is seen as a
// [rows, C] matrix (rows = N*H*W for NHWC images, N for [N, C]). Plain per-channel
// loops with double accumulation; the specification the fast kernels in
// kernels/batchnorm.hpp are tested against. gamma / beta may be null (scale=False /
// center=False in Keras), meaning 1 / 0.
#pragma once
#include <cmath>
#include <cstdint>

namespace minicnn {
namespace kernels {
namespace ref {

// Per-channel mean and BIASED variance (divide by rows), two passes.
template <typename T>
void batchnorm_moments(const T* x, int64_t rows, int64_t C, double* mean, double* var) {
  for (int64_t c = 0; c < C; ++c) {
    double s = 0;
    for (int64_t r = 0; r < rows; ++r) s += double(x[r * C + c]);
    double m = s / double(rows);
    double q = 0;
    for (int64_t r = 0; r < rows; ++r) {
      double d = double(x[r * C + c]) - m;
      q += d * d;
    }
    mean[c] = m;
    var[c] = q / double(rows);
  }
}

// y = gamma * (x - mean) / sqrt(var + eps) + beta with the given statistics
// (batch statistics in training, moving statistics in inference).
template <typename T, typename S>
void batchnorm_forward(const T* x, int64_t rows, int64_t C, const T* gamma, const T* beta,
                       const S* mean, const S* var, double eps, T* y) {
  for (int64_t c = 0; c < C; ++c) {
    double g = gamma ? double(gamma[c]) : 1.0, b = beta ? double(beta[c]) : 0.0;
    double inv = 1.0 / std::sqrt(double(var[c]) + eps);
    for (int64_t r = 0; r < rows; ++r)
      y[r * C + c] = T((double(x[r * C + c]) - double(mean[c])) * inv * g + b);
  }
}

// Training-mode backward, where mean/var are the batch statistics (biased var) that
// normalised x, so dL/dx flows through them too:
//   xhat = (x - mean) / sqrt(var + eps)
//   dbeta = sum dy, dgamma = sum dy * xhat
//   dx = gamma / sqrt(var + eps) * (dy - dbeta / m - xhat * dgamma / m)
// dgamma / dbeta (nullable) are OVERWRITTEN.
template <typename T>
void batchnorm_backward_training(const T* dy, const T* x, int64_t rows, int64_t C, const T* gamma,
                                 const double* mean, const double* var, double eps, T* dx,
                                 T* dgamma, T* dbeta) {
  const double m = double(rows);
  for (int64_t c = 0; c < C; ++c) {
    double inv = 1.0 / std::sqrt(var[c] + eps);
    double sdy = 0, sdyxh = 0;
    for (int64_t r = 0; r < rows; ++r) {
      double xh = (double(x[r * C + c]) - mean[c]) * inv;
      sdy += double(dy[r * C + c]);
      sdyxh += double(dy[r * C + c]) * xh;
    }
    double g = gamma ? double(gamma[c]) : 1.0;
    if (dgamma) dgamma[c] = T(sdyxh);
    if (dbeta) dbeta[c] = T(sdy);
    if (dx)
      for (int64_t r = 0; r < rows; ++r) {
        double xh = (double(x[r * C + c]) - mean[c]) * inv;
        dx[r * C + c] = T(g * inv * (double(dy[r * C + c]) - sdy / m - xh * sdyxh / m));
      }
  }
}

// Inference-mode backward (statistics are constants):
//   dx = dy * gamma / sqrt(var + eps), dgamma = sum dy * xhat, dbeta = sum dy.
// dgamma / dbeta (nullable) are OVERWRITTEN.
template <typename T>
void batchnorm_backward_inference(const T* dy, const T* x, int64_t rows, int64_t C, const T* gamma,
                                  const T* mean, const T* var, double eps, T* dx, T* dgamma,
                                  T* dbeta) {
  for (int64_t c = 0; c < C; ++c) {
    double inv = 1.0 / std::sqrt(double(var[c]) + eps);
    double g = gamma ? double(gamma[c]) : 1.0;
    double sdy = 0, sdyxh = 0;
    for (int64_t r = 0; r < rows; ++r) {
      double d = double(dy[r * C + c]);
      sdy += d;
      sdyxh += d * (double(x[r * C + c]) - double(mean[c])) * inv;
      if (dx) dx[r * C + c] = T(d * g * inv);
    }
    if (dgamma) dgamma[c] = T(sdyxh);
    if (dbeta) dbeta[c] = T(sdy);
  }
}

}  // namespace ref
}  // namespace kernels
}  // namespace minicnn
