// Fast depthwise 2-D convolution kernels, NHWC, depth_multiplier 1.
// Same conventions as kernels/ref/dwconv2d.hpp (the specification these are tested against):
// x (n, in_h, in_w, C), y / dy (n, out_h, out_w, C), w (k_h, k_w, C), bias (C) or null,
// geometry (padding, possibly asymmetric) from ConvGeometry. Backward functions take
// dy = dL/d(pre-activation); they WRITE dx and ADD into dw / db; a null pointer skips that output.
//
// - dwconv2d_nhwc_generic / _generic_backward: any T, kernel size and stride.
// - dwconv2d_nhwc_3x3_s1 / _3x3_s2 (+ _backward, _backward_input, _backward_weight): float.
//   Channels are contiguous in NHWC, so one vector holds that many channels of one pixel
//   (16 with AVX-512, 8 with AVX2 or the portable fallback); stride 2 is then just other
//   addresses (no gathers); a channel tail that does not fill a vector uses masked loads and
//   stores. The 9 taps stay in registers while a tile of outputs is accumulated; bias and
//   activation are applied before the single store. Rows are walked in chunks of a few
//   columns, all channel blocks per chunk, so reads stay nearly sequential. Padding rows and
//   columns are skipped or read from a zero vector, never branched on per element.
//   Backward makes one pass over input rows: each input row writes its dx and adds its dW/db
//   terms from the same dy rows while they are in cache (x and dy are read from memory once).
//   Stride 1 computes dx and dW in the same sweep along the row (a sliding 3x3 window of dy
//   in registers): 20-30% faster than separate dx and dW sweeps on the MobileNetV2 shapes;
//   on small maps one call sweeps a group of rows, so the taps and dW sums stay in registers.
// - dwconv2d_nhwc_forward / _backward: pick the fast path when it applies, else the generic one.
//
// Threads: OpenMP over contiguous bands of (batch, row), minicnn::num_threads() of them, and
// serial when already inside a parallel region. Weight gradients are summed per thread and then
// reduced in thread order, so results are deterministic for a fixed thread count.
// Scratch (per-thread partial sums, a row of zeros standing in for padding rows) lives in
// thread_local buffers of the calling thread that only grow: no allocation after the first call.
//
// Tried on the 2-core AVX-512 tuning machine and dropped (no gain or slower): software
// prefetch of the next rows, 8-lane ymm code instead of zmm, and processing bands of rows
// per channel block for L1 reuse across output rows (faster on 144@24, slower elsewhere), and
// for stride-2 backward the fused dx + dW sweep that stride 1 uses (10-25% slower on 144@24 s2
// and 192@12 s2, no gain on 96@48 s2).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>
#include <utility>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "../core/parallel.hpp"
#include "../core/tensor.hpp"
#include "activation.hpp"
#include "conv_geometry.hpp"
#include "dispatch.hpp"
#include "simd.hpp"
#include "stream_stores.hpp"

namespace minicnn::kernels {
namespace dw_detail {

// Keeps T out of deduction so a literal nullptr works for the optional pointers.
template <typename T>
struct Same {
  using type = T;
};
template <typename T>
using Ptr = typename Same<T>::type*;

// ---------------------------------------------------------------- threads and scratch

// Rows of the batch (or of the output) go to the threads; the forward needs at least this
// many outputs per thread: below it (batch-1 inference on 6x6 and 3x3 maps) waking a second
// thread costs more than it saves (measured at 2 threads).
constexpr double kMinForwardOutputsPerThread = 8192;
inline int plan_threads(int64_t rows) {
  return minicnn::plan_threads(double(rows), rows, 0);
}
inline int plan_threads_fwd(int64_t rows, int64_t outputs) {
  return minicnn::plan_threads(double(outputs), rows, kMinForwardOutputsPerThread);
}

inline void band(int64_t total, int t, int nt, int64_t& lo, int64_t& hi) {
  lo = total * t / nt;
  hi = total * (t + 1) / nt;
}

template <typename T>
inline T* zero_row(int64_t n) {
  thread_local ScratchBuffer<T> s;
  return s.get(static_cast<std::size_t>(std::max<int64_t>(n, 16)), true);
}
template <typename T>
inline T* partial_buffer(int64_t n) {
  thread_local ScratchBuffer<T> s;
  return s.get(static_cast<std::size_t>(n));
}
// Per-thread partial sums are padded to whole cache lines to avoid false sharing.
inline int64_t partial_stride(int64_t n) {
  return (n + 15) / 16 * 16;
}

// part[t][i] summed in thread order (into part[0]), then added to dw (first nw values) and
// db (next C values). Flat loops so they vectorise.
template <typename T>
inline void reduce_partials(T* part, int64_t stride, int nt, int64_t nw, int64_t C, T* dw, T* db) {
  T* __restrict p0 = part;
  for (int t = 1; t < nt; ++t) {
    const T* __restrict pt = part + t * stride;
    for (int64_t i = 0; i < nw + C; ++i) p0[i] += pt[i];
  }
  if (dw)
    for (int64_t i = 0; i < nw; ++i) dw[i] += p0[i];
  if (db)
    for (int64_t i = 0; i < C; ++i) db[i] += p0[nw + i];
}

}  // namespace dw_detail

// Whether the float fast path handles this geometry (3x3, equal strides 1 or 2, padding < 3).
inline bool dwconv2d_nhwc_has_fast_path(const ConvGeometry& g) {
  return g.k_h == 3 && g.k_w == 3 && g.stride_h == g.stride_w &&
         (g.stride_h == 1 || g.stride_h == 2) && g.pad_top >= 0 && g.pad_left >= 0 &&
         g.pad_top <= 2 && g.pad_left <= 2;
}

}  // namespace minicnn::kernels

#define MINICNN_ISA_BODY "dwconv2d_body.inl"
#include "for_each_isa.inl"
#undef MINICNN_ISA_BODY

namespace minicnn::kernels {

namespace dw_detail {
// The active path's vector width, streaming-store policy and row grouping (tests, bench).
inline int64_t vector_lanes() {
  MINICNN_DISPATCH(active_isa(), dw_vector_lanes())
}
inline bool can_stream() {
  MINICNN_DISPATCH(active_isa(), dw_can_stream())
}
inline bool stream_output(const float* out, int64_t C, int64_t count, int threads) {
  MINICNN_DISPATCH(active_isa(), dw_stream_output(out, C, count, threads))
}
inline int s1_group_rows(int64_t in_w) {
  MINICNN_DISPATCH(active_isa(), dw_s1_group_rows(in_w))
}
}  // namespace dw_detail

// ---------------------------------------------------------------- public kernels
// The float 3x3 kernels of the instruction set core/cpu.hpp's active_isa() selects.
// Forward, 3x3 stride 1 / stride 2, float, fused bias + activation.
inline void dwconv2d_nhwc_3x3_s1(const ConvGeometry& g, const float* x, const float* w,
                                 const float* bias, Activation act, float* y) {
  MINICNN_DISPATCH(active_isa(), dwconv2d_nhwc_3x3_s1(g, x, w, bias, act, y))
}
inline void dwconv2d_nhwc_3x3_s2(const ConvGeometry& g, const float* x, const float* w,
                                 const float* bias, Activation act, float* y) {
  MINICNN_DISPATCH(active_isa(), dwconv2d_nhwc_3x3_s2(g, x, w, bias, act, y))
}
// Backward in one pass: dx (written, skipped when null), dw and db (added, skipped when null).
inline void dwconv2d_nhwc_3x3_s1_backward(const ConvGeometry& g, const float* x, const float* dy,
                                          const float* w, float* dx, float* dw, float* db) {
  MINICNN_DISPATCH(active_isa(), dwconv2d_nhwc_3x3_s1_backward(g, x, dy, w, dx, dw, db))
}
inline void dwconv2d_nhwc_3x3_s2_backward(const ConvGeometry& g, const float* x, const float* dy,
                                          const float* w, float* dx, float* dw, float* db) {
  MINICNN_DISPATCH(active_isa(), dwconv2d_nhwc_3x3_s2_backward(g, x, dy, w, dx, dw, db))
}
inline void dwconv2d_nhwc_3x3_s1_backward_input(const ConvGeometry& g, const float* dy,
                                                const float* w, float* dx) {
  MINICNN_DISPATCH(active_isa(), dwconv2d_nhwc_3x3_s1_backward_input(g, dy, w, dx))
}
inline void dwconv2d_nhwc_3x3_s2_backward_input(const ConvGeometry& g, const float* dy,
                                                const float* w, float* dx) {
  MINICNN_DISPATCH(active_isa(), dwconv2d_nhwc_3x3_s2_backward_input(g, dy, w, dx))
}
inline void dwconv2d_nhwc_3x3_s1_backward_weight(const ConvGeometry& g, const float* x,
                                                 const float* dy, float* dw, float* db) {
  MINICNN_DISPATCH(active_isa(), dwconv2d_nhwc_3x3_s1_backward_weight(g, x, dy, dw, db))
}
inline void dwconv2d_nhwc_3x3_s2_backward_weight(const ConvGeometry& g, const float* x,
                                                 const float* dy, float* dw, float* db) {
  MINICNN_DISPATCH(active_isa(), dwconv2d_nhwc_3x3_s2_backward_weight(g, x, dy, dw, db))
}

// Generic forward: any T, kernel size, stride and padding. Inner loops run over contiguous
// channels so the compiler vectorises them.
template <typename T>
void dwconv2d_nhwc_generic(const ConvGeometry& g, const T* x, const T* w,
                           dw_detail::Ptr<const T> bias, Activation act, T* y) {
  const int64_t C = g.in_c, rows = g.n * g.out_h;
  if (rows == 0 || g.out_w == 0 || C == 0) return;
  run_threads(dw_detail::plan_threads(rows), [&](int t, int nt) {
    int64_t r0, r1;
    dw_detail::band(rows, t, nt, r0, r1);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / g.out_h, oh = r % g.out_h;
      for (int64_t ow = 0; ow < g.out_w; ++ow) {
        T* __restrict yp = y + (r * g.out_w + ow) * C;
        for (int64_t c = 0; c < C; ++c) yp[c] = bias ? bias[c] : T(0);
        for (int64_t kh = 0; kh < g.k_h; ++kh) {
          const int64_t ih = oh * g.stride_h + kh - g.pad_top;
          if (ih < 0 || ih >= g.in_h) continue;
          for (int64_t kw = 0; kw < g.k_w; ++kw) {
            const int64_t iw = ow * g.stride_w + kw - g.pad_left;
            if (iw < 0 || iw >= g.in_w) continue;
            const T* __restrict xp = x + ((n * g.in_h + ih) * g.in_w + iw) * C;
            const T* __restrict wp = w + (kh * g.k_w + kw) * C;
            for (int64_t c = 0; c < C; ++c) yp[c] += xp[c] * wp[c];
          }
        }
        activate_inplace(act, yp, C);
      }
    }
  });
}

// Generic backward: dx written (gather over the windows covering each input pixel),
// dw / db added via per-thread partial sums over output rows.
template <typename T>
void dwconv2d_nhwc_generic_backward(const ConvGeometry& g, dw_detail::Ptr<const T> x, const T* dy,
                                    const T* w, dw_detail::Ptr<T> dx, dw_detail::Ptr<T> dw,
                                    dw_detail::Ptr<T> db) {
  const int64_t C = g.in_c;
  if (C == 0 || g.n == 0) return;
  if (dx) {
    const int64_t rows = g.n * g.in_h;
    run_threads(dw_detail::plan_threads(rows), [&](int t, int nt) {
      int64_t r0, r1;
      dw_detail::band(rows, t, nt, r0, r1);
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t n = r / g.in_h, ih = r % g.in_h;
        for (int64_t iw = 0; iw < g.in_w; ++iw) {
          T* __restrict dxp = dx + (r * g.in_w + iw) * C;
          for (int64_t c = 0; c < C; ++c) dxp[c] = T(0);
          for (int64_t kh = 0; kh < g.k_h; ++kh) {
            const int64_t th = ih + g.pad_top - kh;
            if (th < 0 || th % g.stride_h) continue;
            const int64_t oh = th / g.stride_h;
            if (oh >= g.out_h) continue;
            for (int64_t kw = 0; kw < g.k_w; ++kw) {
              const int64_t tw = iw + g.pad_left - kw;
              if (tw < 0 || tw % g.stride_w) continue;
              const int64_t ow = tw / g.stride_w;
              if (ow >= g.out_w) continue;
              const T* __restrict dp = dy + ((n * g.out_h + oh) * g.out_w + ow) * C;
              const T* __restrict wp = w + (kh * g.k_w + kw) * C;
              for (int64_t c = 0; c < C; ++c) dxp[c] += dp[c] * wp[c];
            }
          }
        }
      }
    });
  }
  if (dw || db) {
    const int64_t rows = g.n * g.out_h, nw = g.k_h * g.k_w * C;
    if (rows == 0 || g.out_w == 0) return;
    const int nt_plan = dw_detail::plan_threads(rows);
    const int64_t pstride = dw_detail::partial_stride(nw + C);
    T* part = dw_detail::partial_buffer<T>(pstride * nt_plan);
    const int used = run_threads(nt_plan, [&](int t, int nt) {
      T* __restrict pw = part + t * pstride;
      T* __restrict pb = pw + nw;
      std::fill(pw, pw + nw + C, T(0));
      int64_t r0, r1;
      dw_detail::band(rows, t, nt, r0, r1);
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t n = r / g.out_h, oh = r % g.out_h;
        for (int64_t ow = 0; ow < g.out_w; ++ow) {
          const T* __restrict dp = dy + (r * g.out_w + ow) * C;
          for (int64_t c = 0; c < C; ++c) pb[c] += dp[c];
          for (int64_t kh = 0; kh < g.k_h; ++kh) {
            const int64_t ih = oh * g.stride_h + kh - g.pad_top;
            if (ih < 0 || ih >= g.in_h) continue;
            for (int64_t kw = 0; kw < g.k_w; ++kw) {
              const int64_t iw = ow * g.stride_w + kw - g.pad_left;
              if (iw < 0 || iw >= g.in_w) continue;
              const T* __restrict xp = x + ((n * g.in_h + ih) * g.in_w + iw) * C;
              T* __restrict q = pw + (kh * g.k_w + kw) * C;
              for (int64_t c = 0; c < C; ++c) q[c] += dp[c] * xp[c];
            }
          }
        }
      }
    });
    dw_detail::reduce_partials(part, pstride, used, nw, C, dw, db);
  }
}

// Dispatch: the float 3x3 stride-1/2 fast paths where they apply, else the generic kernels.
template <typename T>
void dwconv2d_nhwc_forward(const ConvGeometry& g, const T* x, const T* w,
                           dw_detail::Ptr<const T> bias, Activation act, T* y) {
  if constexpr (std::is_same_v<T, float>) {
    if (dwconv2d_nhwc_has_fast_path(g)) {
      if (g.stride_h == 1)
        dwconv2d_nhwc_3x3_s1(g, x, w, bias, act, y);
      else
        dwconv2d_nhwc_3x3_s2(g, x, w, bias, act, y);
      return;
    }
  }
  dwconv2d_nhwc_generic<T>(g, x, w, bias, act, y);
}
template <typename T>
void dwconv2d_nhwc_backward(const ConvGeometry& g, dw_detail::Ptr<const T> x, const T* dy,
                            const T* w, dw_detail::Ptr<T> dx, dw_detail::Ptr<T> dw,
                            dw_detail::Ptr<T> db) {
  if constexpr (std::is_same_v<T, float>) {
    if (dwconv2d_nhwc_has_fast_path(g)) {
      if (g.stride_h == 1)
        dwconv2d_nhwc_3x3_s1_backward(g, x, dy, w, dx, dw, db);
      else
        dwconv2d_nhwc_3x3_s2_backward(g, x, dy, w, dx, dw, db);
      return;
    }
  }
  dwconv2d_nhwc_generic_backward<T>(g, x, dy, w, dx, dw, db);
}

}  // namespace minicnn::kernels
