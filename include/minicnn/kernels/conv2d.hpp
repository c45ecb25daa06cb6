// Fast 2-D convolution, NHWC activations and HWIO weights (Keras' Conv2D layout);
// same signatures and semantics as kernels/ref/conv2d.hpp, which specifies them:
//   forward:          y = act(conv(x, w) + b)                    (WRITES y)
//   backward_input:   dx = conv^T(dz, w)                         (WRITES dx)
//   backward_weight:  dw += x (*) dz, db += sum(dz)              (ADDS)
// where dz = dL/d(pre-activation output). Geometry (TF "same" padding) from ConvGeometry.
//
// 1x1 stride-1 (pointwise, most of MobileNetV2's FLOPs): the NHWC tensors already are
// the matrices X[N*H*W, Cin] and Y[N*H*W, Cout] and HWIO weights are W[Cin, Cout], so
// forward is one GEMM on the caller's memory with bias + activation in its epilogue;
// backward is dX = dZ * W^T and dW += X^T * dZ, computed in ONE pass over dZ (row blocks
// that stay in L2 feed both products; these shapes are memory-bound).
// Other kernels / strides, forward: with kh*kw*Cin <= 320 (the stem: 27)
// the GEMM micro-kernel reads the windows straight from x (a window row is kw*Cin
// contiguous floats), only border pixels of TF "same" padding go through im2col;
// otherwise im2col of a block of output pixels into a per-thread buffer that stays in
// L2, then a GEMM against the weights packed once. Backward turns dZ blocks into
// column gradients (GEMM with W^T) and scatters them (col2im), and accumulates dW from
// im2col blocks of the same pixels.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "../core/parallel.hpp"
#include "activation.hpp"
#include "batchnorm.hpp"
#include "conv_geometry.hpp"
#include "gemm.hpp"

namespace minicnn {
namespace kernels {
namespace conv_detail {

inline bool is_pointwise(const ConvGeometry& g) {
  return g.k_h == 1 && g.k_w == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_top == 0 &&
         g.pad_left == 0 && g.pad_bottom == 0 && g.pad_right == 0 && g.out_h == g.in_h &&
         g.out_w == g.in_w;
}

// Short contiguous runs (a window row: kw * Cin values, 9 for the 3-channel stem).
template <typename T>
inline void copy_run(T* d, const T* s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = s[i];
}
template <typename T>
inline void add_run(T* d, const T* s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] += s[i];
}

// Output columns [*lo, *hi) whose windows lie inside the image horizontally.
inline void interior_cols(const ConvGeometry& g, int64_t* lo, int64_t* hi) {
  *lo = std::min(g.out_w, (g.pad_left + g.stride_w - 1) / g.stride_w);
  int64_t last = g.in_w + g.pad_left >= g.k_w ? (g.in_w + g.pad_left - g.k_w) / g.stride_w + 1 : 0;
  *hi = std::max(*lo, std::min(g.out_w, last));
}

// Splits output pixels [p0, p0 + cnt) into runs within one output row and calls
// f(i0, n, oh, ow0, ow1) for each (i0: index of the run's first pixel in the range).
template <typename F>
inline void for_each_row_run(const ConvGeometry& g, int64_t p0, int64_t cnt, F&& f) {
  int64_t p = p0, end = p0 + cnt;
  while (p < end) {
    int64_t row = p / g.out_w, ow0 = p % g.out_w;
    int64_t ow1 = std::min(g.out_w, ow0 + (end - p));
    f(p - p0, row / g.out_h, row % g.out_h, ow0, ow1);
    p += ow1 - ow0;
  }
}

// col[i, (kh*kw_size + kw)*Cin + c] = x at the window of output pixel p0 + i (0 outside).
// Loops run along output rows so that interior windows are plain copies of kw*Cin floats.
// col needs kColSlack floats of room past its end.
constexpr int64_t kColSlack = 16;
template <typename T>
void im2col(const ConvGeometry& g, const T* x, int64_t p0, int64_t cnt, T* col) {
  const int64_t C = g.in_c, run = g.k_w * C, K = g.k_h * run;
  int64_t in_lo, in_hi;
  interior_cols(g, &in_lo, &in_hi);
  for_each_row_run(g, p0, cnt, [&](int64_t i0, int64_t n, int64_t oh, int64_t ow0, int64_t ow1) {
    for (int64_t kh = 0; kh < g.k_h; ++kh) {
      int64_t ih = oh * g.stride_h - g.pad_top + kh;
      T* dst = col + i0 * K + kh * run;
      if (ih < 0 || ih >= g.in_h) {
        for (int64_t ow = ow0; ow < ow1; ++ow)
          std::fill(dst + (ow - ow0) * K, dst + (ow - ow0) * K + run, T(0));
        continue;
      }
      const T* xrow = x + (n * g.in_h + ih) * g.in_w * C;
      for (int64_t ow = ow0; ow < ow1; ++ow) {
        T* d = dst + (ow - ow0) * K;
        int64_t iw0 = ow * g.stride_w - g.pad_left;
        if (ow >= in_lo && ow < in_hi) {
          copy_run(d, xrow + iw0 * C, run);
          continue;
        }
        int64_t kw_lo = std::max<int64_t>(0, -iw0),
                kw_hi = std::max(kw_lo, std::min(g.k_w, g.in_w - iw0));
        std::fill(d, d + kw_lo * C, T(0));
        if (kw_hi > kw_lo) copy_run(d + kw_lo * C, xrow + (iw0 + kw_lo) * C, (kw_hi - kw_lo) * C);
        std::fill(d + kw_hi * C, d + run, T(0));
      }
    }
  });
}

// dx at the windows of output pixels p0.. += col rows (the adjoint of im2col).
template <typename T>
void col2im_add(const ConvGeometry& g, const T* col, int64_t p0, int64_t cnt, T* dx) {
  const int64_t C = g.in_c, run = g.k_w * C, K = g.k_h * run;
  const int64_t phases = (g.k_w + g.stride_w - 1) / g.stride_w + 1;
  int64_t in_lo, in_hi;
  interior_cols(g, &in_lo, &in_hi);
  for_each_row_run(g, p0, cnt, [&](int64_t i0, int64_t n, int64_t oh, int64_t ow0, int64_t ow1) {
    for (int64_t kh = 0; kh < g.k_h; ++kh) {
      int64_t ih = oh * g.stride_h - g.pad_top + kh;
      if (ih < 0 || ih >= g.in_h) continue;
      const T* src = col + i0 * K + kh * run;
      T* xrow = dx + (n * g.in_h + ih) * g.in_w * C;
      // Windows of neighbouring pixels overlap when stride < kernel; visiting every
      // phase-th pixel keeps each read-modify-write clear of the stores just before
      // it (a load that overlaps a pending masked store waits for it to retire).
      for (int64_t ph = 0; ph < phases; ++ph)
        for (int64_t ow = ow0 + ph; ow < ow1; ow += phases) {
          const T* s = src + (ow - ow0) * K;
          int64_t iw0 = ow * g.stride_w - g.pad_left;
          if (ow >= in_lo && ow < in_hi) {
            add_run(xrow + iw0 * C, s, run);
            continue;
          }
          int64_t kw_lo = std::max<int64_t>(0, -iw0), kw_hi = std::min(g.k_w, g.in_w - iw0);
          if (kw_hi > kw_lo) add_run(xrow + (iw0 + kw_lo) * C, s + kw_lo * C, (kw_hi - kw_lo) * C);
        }
    }
  });
}

// Output pixels per im2col block: the block (pixels x K) stays in L2 next to its output.
inline int64_t block_pixels(int64_t K) {
  constexpr int64_t a = gemm_detail::kRowAlign;
  int64_t p = (32 * 1024) / std::max<int64_t>(1, K) / a * a;
  return std::clamp<int64_t>(p, a, 32 * a);
}
// Rows per block of the fused pointwise backward: dZ, X and dX blocks in L2 together.
inline int64_t block_rows_pointwise(int64_t cin, int64_t cout) {
  constexpr int64_t a = gemm_detail::kRowAlign;
  int64_t r = (64 * 1024) / std::max<int64_t>(1, cin + cout) / a * a;
  return std::clamp<int64_t>(r, 2 * a, 48 * a);
}

// Weight (and bias) gradients accumulated by several threads: thread 0 adds into the
// caller's dw/db, the others into zeroed private copies that reduce() then adds in.
template <typename T>
struct GradPartials {
  T* dw = nullptr;
  T* db = nullptr;
  int64_t size_w = 0, size_b = 0;
  T* buf = nullptr;

  GradPartials(T* dw_, T* db_, int64_t size_w_, int64_t size_b_, int nt)
      : dw(dw_), db(db_), size_w(dw_ ? size_w_ : 0), size_b(db_ ? size_b_ : 0) {
    if (nt > 1)
      buf = gemm_detail::scratch<T, 3>(
          static_cast<std::size_t>(std::max<int64_t>(1, (size_w + size_b) * (nt - 1))));
  }
  T* w_of(int t) const { return !dw ? nullptr : t == 0 ? dw : buf + (t - 1) * (size_w + size_b); }
  T* b_of(int t) const {
    return !db ? nullptr : t == 0 ? db : buf + (t - 1) * (size_w + size_b) + size_w;
  }
  void zero(int t) const {
    if (t > 0) std::fill(buf + (t - 1) * (size_w + size_b), buf + t * (size_w + size_b), T(0));
  }
  // Every thread t of nt, after a barrier.
  void reduce(int t, int nt) const {
    if (nt <= 1) return;
    int64_t b, e;
    gemm_detail::split_range(size_w, t, nt, 16, &b, &e);
    for (int u = 1; u < nt; ++u) {
      const T* p = buf + (u - 1) * (size_w + size_b);
      for (int64_t i = b; i < e; ++i) dw[i] += p[i];
      if (db && t == 0)
        for (int64_t i = 0; i < size_b; ++i) db[i] += p[size_w + i];
    }
  }
};

}  // namespace conv_detail
}  // namespace kernels
}  // namespace minicnn

#define MINICNN_ISA_BODY "conv2d_body.inl"
#include "for_each_isa.inl"
#undef MINICNN_ISA_BODY

namespace minicnn {
namespace kernels {
namespace conv_detail {

// Whether conv2d_forward reads windows straight from x with weights packed for `isa`.
inline bool conv_direct_ok(Isa isa, const ConvGeometry& g) {
  MINICNN_DISPATCH(isa, conv_direct_ok(g))
}
inline void conv_direct_forward(Isa isa, const ConvGeometry& g, const float* x, const float* panels,
                                const Epilogue<float>& ep, float* y) {
  MINICNN_DISPATCH(isa, conv_direct_forward(g, x, panels, ep, y))
}

}  // namespace conv_detail

// `prepacked` (optional): w already packed as PackedB (K = kh*kw*Cin rows, N = Cout
// columns), as an inference-only layer keeps it; saves packing on every call.
template <typename T>
void conv2d_forward(const ConvGeometry& g, const T* x, const T* w, const T* bias, Activation act,
                    T* y, const PackedB<T>* prepacked = nullptr) {
  using namespace conv_detail;
  const int64_t M = g.n * g.out_h * g.out_w, K = g.k_h * g.k_w * g.in_c, N = g.out_c;
  if (M == 0 || N == 0) return;
  Epilogue<T> ep{bias, act};
  if (prepacked && (prepacked->K() != K || prepacked->N() != N))
    throw Error("conv2d_forward: prepacked weights are " + std::to_string(prepacked->K()) + "x" +
                std::to_string(prepacked->N()) + ", the convolution needs " + std::to_string(K) +
                "x" + std::to_string(N));
  if (is_pointwise(g)) {
    if (prepacked)
      prepacked->multiply(M, x, K, y, N, false, ep);
    else
      gemm_nn(M, N, K, x, K, w, N, y, N, false, ep);
    return;
  }
  // Worker threads must see the caller's packed weights, hence the reference.
  thread_local PackedB<T> tl_packed;
  if (!prepacked) tl_packed.pack(K, N, w, N, false);
  const PackedB<T>& packed = prepacked ? *prepacked : tl_packed;
  if constexpr (std::is_same_v<T, float>) {
    if (conv_direct_ok(packed.isa(), g)) {
      conv_direct_forward(packed.isa(), g, x, packed.panels(), ep, y);
      return;
    }
  }
  const int64_t blk = block_pixels(K);
  auto run = [&](int64_t pb, int64_t pe) {
    T* col = gemm_detail::scratch<T, 2>(static_cast<std::size_t>(blk * K + kColSlack));
    for (int64_t p = pb; p < pe; p += blk) {
      int64_t cnt = std::min(blk, pe - p);
      im2col(g, x, p, cnt, col);
      packed.multiply_rows(cnt, col, K, y + p * N, N, false, ep);
    }
  };
  int nt = gemm_detail::plan_threads(2.0 * M * N * K,
                                     (M + gemm_detail::kRowAlign - 1) / gemm_detail::kRowAlign);
  if (nt <= 1) {
    run(0, M);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    int64_t b, e;
    gemm_detail::split_range(M, thread_index(), nt, gemm_detail::kRowAlign, &b, &e);
    if (e > b) run(b, e);
  }
}

namespace conv_detail {
// dz rows [r0, r0 + n): the caller's, or made from a batch norm's dy into `buf` (a block of
// at most `cap` rows, per thread).
template <typename T>
struct DzRows {
  const T* dz;
  const BnInputGrad<T>* bn;
  int64_t N;
  const T* rows(int64_t r0, int64_t n, T* buf) const {
    if (!bn) return dz + r0 * N;
    bn->make(dz, r0, n, N, buf, 1);
    return buf;
  }
  T* buffer(int64_t cap) const {
    thread_local ScratchBuffer<T> s;
    return bn ? s.get(static_cast<std::size_t>(cap * N)) : nullptr;
  }
};
}  // namespace conv_detail

// dx (may be null) = conv^T(dz, w); dw, db (may be null) += gradients. x is needed
// when dw is set, w when dx is set.
// With `bn`, dz is a BatchNormalization's dy and the gradient of this convolution's output
// is that batch norm's dx (kernels::BnInputGrad), made a block at a time as the products
// read it; the block paths use it so, the others make it whole first.
template <typename T>
void conv2d_backward(const ConvGeometry& g, const T* x, const T* w, const T* dz, T* dx, T* dw,
                     T* db, const BnInputGrad<T>* bn = nullptr) {
  using namespace conv_detail;
  const int64_t M = g.n * g.out_h * g.out_w, K = g.k_h * g.k_w * g.in_c, N = g.out_c;
  const int64_t in_size = g.n * g.in_h * g.in_w * g.in_c;
  if (M == 0 || N == 0) {
    if (dx) std::fill(dx, dx + in_size, T(0));
    return;
  }
  const double flops = 2.0 * M * N * K * ((dx ? 1 : 0) + (dw ? 1 : 0));
  int nt_pw = 1;
  bool fused = false;
  if (is_pointwise(g)) {
    // One pass over dZ only pays when the private dW copies of the threads are cheap.
    nt_pw =
        gemm_detail::plan_threads(flops, (M + gemm_detail::kRowAlign - 1) / gemm_detail::kRowAlign);
    fused = dx && dw && (nt_pw <= 1 || 3 * K < M);
  }
  if (bn && ((!dw && db) || (is_pointwise(g) && !fused))) {
    thread_local ScratchBuffer<T> whole;
    T* all = whole.get(static_cast<std::size_t>(M * N));
    bn->make(dz, 0, M, N, all);
    dz = all;
    bn = nullptr;
  }
  if (!dw && db) {
    add_column_sums(M, N, dz, N, db);
    db = nullptr;
  }
  const DzRows<T> dzr{dz, bn, N};

  if (is_pointwise(g)) {
    const int nt = nt_pw;
    if (!fused) {
      if (dx) gemm_nt(M, K, N, dz, N, w, N, dx, K);
      if (dw) gemm_tn(K, N, M, x, K, dz, N, dw, N, true, db);
      return;
    }
    thread_local PackedB<T> tl_packed_t;
    PackedB<T>& packed_t = tl_packed_t;
    packed_t.pack(N, K, w, N, true);  // B(k=co, n=ci) = w[ci, co]
    const int64_t blk = block_rows_pointwise(K, N);
    GradPartials<T> parts(dw, db, K * N, N, nt);
    auto run = [&](int t, int64_t rb, int64_t re) {
      parts.zero(t);
      T* pw = parts.w_of(t);
      T* pb = parts.b_of(t);
      T* buf = dzr.buffer(blk);
      for (int64_t r = rb; r < re; r += blk) {
        int64_t cnt = std::min(blk, re - r);
        const T* dzb = dzr.rows(r, cnt, buf);
        packed_t.multiply_rows(cnt, dzb, N, dx + r * K, K, false);
        gemm_tn_serial(K, N, cnt, x + r * K, K, dzb, N, pw, N, pb);
      }
    };
    if (nt <= 1) {
      run(0, 0, M);
      return;
    }
#pragma omp parallel num_threads(nt)
    {
      int t = thread_index();
      int64_t b, e;
      gemm_detail::split_range(M, t, nt, gemm_detail::kRowAlign, &b, &e);
      run(t, b, e);
#pragma omp barrier
      parts.reduce(t, nt);
    }
    return;
  }

  // im2col path. With dx, threads own whole images, so their col2im scatters never
  // overlap; without, they split the pixels.
  thread_local PackedB<T> tl_packed_t;
  PackedB<T>& packed_t = tl_packed_t;
  if (dx) packed_t.pack(N, K, w, N, true);
  const int64_t blk = block_pixels(K);
  const int64_t hw = g.out_h * g.out_w, img_in = g.in_h * g.in_w * g.in_c;
  int nt = gemm_detail::plan_threads(
      flops, dx ? g.n : (M + gemm_detail::kRowAlign - 1) / gemm_detail::kRowAlign);
  GradPartials<T> parts(dw, db, K * N, N, nt);
  auto run = [&](int t, int64_t pb, int64_t pe) {
    parts.zero(t);
    T* pw = parts.w_of(t);
    T* pbias = parts.b_of(t);
    T* col = gemm_detail::scratch<T, 2>(static_cast<std::size_t>(blk * K + kColSlack));
    T* dcol = dx ? gemm_detail::scratch<T, 4>(static_cast<std::size_t>(blk * K)) : nullptr;
    T* buf = dzr.buffer(blk);
    if (dx) std::fill(dx + (pb / hw) * img_in, dx + (pe / hw) * img_in, T(0));
    for (int64_t p = pb; p < pe; p += blk) {
      int64_t cnt = std::min(blk, pe - p);
      const T* dzb = dzr.rows(p, cnt, buf);
      if (dw) {
        im2col(g, x, p, cnt, col);
        gemm_tn_serial(K, N, cnt, col, K, dzb, N, pw, N, pbias);
      }
      if (dx) {
        packed_t.multiply_rows(cnt, dzb, N, dcol, K, false);
        col2im_add(g, dcol, p, cnt, dx);
      }
    }
  };
  if (nt <= 1) {
    run(0, 0, M);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    int t = thread_index();
    int64_t b, e;
    if (dx) {
      gemm_detail::split_range(g.n, t, nt, 1, &b, &e);
      b *= hw;
      e *= hw;
    } else {
      gemm_detail::split_range(M, t, nt, gemm_detail::kRowAlign, &b, &e);
    }
    run(t, b, e);
#pragma omp barrier
    parts.reduce(t, nt);
  }
}

template <typename T>
void conv2d_backward_input(const ConvGeometry& g, const T* dz, const T* w, T* dx) {
  conv2d_backward<T>(g, nullptr, w, dz, dx, nullptr, nullptr);
}

template <typename T>
void conv2d_backward_weight(const ConvGeometry& g, const T* x, const T* dz, T* dw, T* db) {
  conv2d_backward<T>(g, x, nullptr, dz, nullptr, dw, db);
}

}  // namespace kernels
}  // namespace minicnn
