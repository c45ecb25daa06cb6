// Reference depthwise 2-D convolution, NHWC, depth_multiplier 1: the specification
// the fast kernels in kernels/dwconv2d.hpp are tested against.
// Conventions: x is (n, in_h, in_w, C); y and dy are (n, out_h, out_w, C); the kernel w
// is Keras' (k_h, k_w, C, 1) read as (k_h, k_w, C); bias is (C,) or null. Padding and
// output size come from ConvGeometry (TF "same"/"valid", possibly asymmetric):
//   y[n,oh,ow,c] = act(bias[c] + sum_{kh,kw} x[n, oh*sh+kh-pad_top, ow*sw+kw-pad_left, c] *
//   w[kh,kw,c])
// with out-of-range x taken as 0. The backward functions take dy as dL/d(pre-activation):
// callers apply the activation gradient first. backward_input WRITES dx;
// backward_weight ADDS into dw (and db when non-null), as the Layer contract wants.
// Sums accumulate in double (for float) so the reference is as exact as we can cheaply make it.
#pragma once
#include <cstdint>
#include <type_traits>

#include "../activation.hpp"
#include "../conv_geometry.hpp"

namespace minicnn::kernels::ref {

namespace dw_ref_detail {
template <typename T>
using Acc = std::conditional_t<std::is_same_v<T, float>, double, T>;
// Keeps T out of deduction so a literal nullptr works for the optional pointers.
template <typename T>
struct Same {
  using type = T;
};
template <typename T>
using Ptr = typename Same<T>::type*;
}  // namespace dw_ref_detail

template <typename T>
void dwconv2d_nhwc_forward(const ConvGeometry& g, const T* x, const T* w,
                           dw_ref_detail::Ptr<const T> bias, Activation act, T* y) {
  using A = dw_ref_detail::Acc<T>;
  const int64_t C = g.in_c;
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t oh = 0; oh < g.out_h; ++oh)
      for (int64_t ow = 0; ow < g.out_w; ++ow)
        for (int64_t c = 0; c < C; ++c) {
          A s = bias ? A(bias[c]) : A(0);
          for (int64_t kh = 0; kh < g.k_h; ++kh) {
            int64_t ih = oh * g.stride_h + kh - g.pad_top;
            if (ih < 0 || ih >= g.in_h) continue;
            for (int64_t kw = 0; kw < g.k_w; ++kw) {
              int64_t iw = ow * g.stride_w + kw - g.pad_left;
              if (iw < 0 || iw >= g.in_w) continue;
              s +=
                  A(x[((n * g.in_h + ih) * g.in_w + iw) * C + c]) * A(w[(kh * g.k_w + kw) * C + c]);
            }
          }
          y[((n * g.out_h + oh) * g.out_w + ow) * C + c] = activate(act, T(s));
        }
}

// dx = dL/dx given dy = dL/d(pre-activation). Writes every element of dx.
template <typename T>
void dwconv2d_nhwc_backward_input(const ConvGeometry& g, const T* dy, const T* w, T* dx) {
  using A = dw_ref_detail::Acc<T>;
  const int64_t C = g.in_c;
  // Gather form: each dx element sums the outputs whose window covers it.
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t ih = 0; ih < g.in_h; ++ih)
      for (int64_t iw = 0; iw < g.in_w; ++iw)
        for (int64_t c = 0; c < C; ++c) {
          A s = 0;
          for (int64_t kh = 0; kh < g.k_h; ++kh) {
            int64_t th = ih + g.pad_top - kh;
            if (th < 0 || th % g.stride_h) continue;
            int64_t oh = th / g.stride_h;
            if (oh >= g.out_h) continue;
            for (int64_t kw = 0; kw < g.k_w; ++kw) {
              int64_t tw = iw + g.pad_left - kw;
              if (tw < 0 || tw % g.stride_w) continue;
              int64_t ow = tw / g.stride_w;
              if (ow >= g.out_w) continue;
              s += A(dy[((n * g.out_h + oh) * g.out_w + ow) * C + c]) *
                   A(w[(kh * g.k_w + kw) * C + c]);
            }
          }
          dx[((n * g.in_h + ih) * g.in_w + iw) * C + c] = T(s);
        }
}

// dw += dL/dw (shape k_h, k_w, C), db += dL/dbias (C) when db is non-null.
template <typename T>
void dwconv2d_nhwc_backward_weight(const ConvGeometry& g, const T* x, const T* dy, T* dw,
                                   dw_ref_detail::Ptr<T> db) {
  using A = dw_ref_detail::Acc<T>;
  const int64_t C = g.in_c;
  for (int64_t kh = 0; kh < g.k_h; ++kh)
    for (int64_t kw = 0; kw < g.k_w; ++kw)
      for (int64_t c = 0; c < C; ++c) {
        A s = 0;
        for (int64_t n = 0; n < g.n; ++n)
          for (int64_t oh = 0; oh < g.out_h; ++oh) {
            int64_t ih = oh * g.stride_h + kh - g.pad_top;
            if (ih < 0 || ih >= g.in_h) continue;
            for (int64_t ow = 0; ow < g.out_w; ++ow) {
              int64_t iw = ow * g.stride_w + kw - g.pad_left;
              if (iw < 0 || iw >= g.in_w) continue;
              s += A(dy[((n * g.out_h + oh) * g.out_w + ow) * C + c]) *
                   A(x[((n * g.in_h + ih) * g.in_w + iw) * C + c]);
            }
          }
        dw[(kh * g.k_w + kw) * C + c] += T(s);
      }
  if (db) {
    for (int64_t c = 0; c < C; ++c) {
      A s = 0;
      for (int64_t i = 0; i < g.n * g.out_h * g.out_w; ++i) s += A(dy[i * C + c]);
      db[c] += T(s);
    }
  }
}

}  // namespace minicnn::kernels::ref
