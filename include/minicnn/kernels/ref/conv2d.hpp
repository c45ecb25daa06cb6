// Reference 2-D convolution in NHWC with HWIO weights (Keras' Conv2D layout), the
// specification the fast kernels in kernels/conv2d.hpp are tested against.
// Geometry (output size, TF "same" asymmetric padding) comes from ConvGeometry.
//   y[n,oh,ow,co] = act(b[co] + sum_{kh,kw,ci} x[n, oh*sh - pad_top + kh, ow*sw - pad_left + kw,
//   ci]
//                                              * w[kh,kw,ci,co])      (x is zero outside the image)
// Backward functions take dz = dL/d(pre-activation output); apply
// kernels::activate_backward to dL/dy first. backward_input WRITES dx; backward_weight
// ADDS into dw and db (db may be null).
#pragma once
#include <algorithm>
#include <cstdint>

#include "../activation.hpp"
#include "../conv_geometry.hpp"

namespace minicnn {
namespace kernels {
namespace ref {

template <typename T>
void conv2d_forward(const ConvGeometry& g, const T* x, const T* w, const T* bias, Activation act,
                    T* y) {
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t oh = 0; oh < g.out_h; ++oh)
      for (int64_t ow = 0; ow < g.out_w; ++ow)
        for (int64_t co = 0; co < g.out_c; ++co) {
          T s = bias ? bias[co] : T(0);
          for (int64_t kh = 0; kh < g.k_h; ++kh) {
            int64_t ih = oh * g.stride_h - g.pad_top + kh;
            if (ih < 0 || ih >= g.in_h) continue;
            for (int64_t kw = 0; kw < g.k_w; ++kw) {
              int64_t iw = ow * g.stride_w - g.pad_left + kw;
              if (iw < 0 || iw >= g.in_w) continue;
              for (int64_t ci = 0; ci < g.in_c; ++ci)
                s += x[((n * g.in_h + ih) * g.in_w + iw) * g.in_c + ci] *
                     w[((kh * g.k_w + kw) * g.in_c + ci) * g.out_c + co];
            }
          }
          y[((n * g.out_h + oh) * g.out_w + ow) * g.out_c + co] = activate(act, s);
        }
}

template <typename T>
void conv2d_backward_input(const ConvGeometry& g, const T* dz, const T* w, T* dx) {
  std::fill(dx, dx + g.n * g.in_h * g.in_w * g.in_c, T(0));
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t oh = 0; oh < g.out_h; ++oh)
      for (int64_t ow = 0; ow < g.out_w; ++ow)
        for (int64_t co = 0; co < g.out_c; ++co) {
          T d = dz[((n * g.out_h + oh) * g.out_w + ow) * g.out_c + co];
          for (int64_t kh = 0; kh < g.k_h; ++kh) {
            int64_t ih = oh * g.stride_h - g.pad_top + kh;
            if (ih < 0 || ih >= g.in_h) continue;
            for (int64_t kw = 0; kw < g.k_w; ++kw) {
              int64_t iw = ow * g.stride_w - g.pad_left + kw;
              if (iw < 0 || iw >= g.in_w) continue;
              for (int64_t ci = 0; ci < g.in_c; ++ci)
                dx[((n * g.in_h + ih) * g.in_w + iw) * g.in_c + ci] +=
                    d * w[((kh * g.k_w + kw) * g.in_c + ci) * g.out_c + co];
            }
          }
        }
}

template <typename T>
void conv2d_backward_weight(const ConvGeometry& g, const T* x, const T* dz, T* dw, T* db) {
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t oh = 0; oh < g.out_h; ++oh)
      for (int64_t ow = 0; ow < g.out_w; ++ow)
        for (int64_t co = 0; co < g.out_c; ++co) {
          T d = dz[((n * g.out_h + oh) * g.out_w + ow) * g.out_c + co];
          if (db) db[co] += d;
          for (int64_t kh = 0; kh < g.k_h; ++kh) {
            int64_t ih = oh * g.stride_h - g.pad_top + kh;
            if (ih < 0 || ih >= g.in_h) continue;
            for (int64_t kw = 0; kw < g.k_w; ++kw) {
              int64_t iw = ow * g.stride_w - g.pad_left + kw;
              if (iw < 0 || iw >= g.in_w) continue;
              for (int64_t ci = 0; ci < g.in_c; ++ci)
                dw[((kh * g.k_w + kw) * g.in_c + ci) * g.out_c + co] +=
                    d * x[((n * g.in_h + ih) * g.in_w + iw) * g.in_c + ci];
            }
          }
        }
}

}  // namespace ref
}  // namespace kernels
}  // namespace minicnn
