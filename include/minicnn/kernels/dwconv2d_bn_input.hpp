// Depthwise convolution of a batch norm's output that was never stored: the kernels take the
// batch norm's INPUT x and its forward (BnForward: mean, scale, shift and fused activation),
// and make the depthwise input y = act((x - mean) * scale + shift) a few images at a time
// (about 1 MB), in a per-thread scratch, just before the depthwise kernels read it.
//
// Why: in a MobileNetV2 block, expand -> BN -> ReLU6 -> depthwise, the BN output y is the
// largest tensor of the block (48x48x96 per image in block 1). Storing it costs a pass that
// reads x and writes y, and the depthwise forward and backward then read y back from memory.
// Here x is read instead, and y lives only in cache: on the full fine-tune step at batch 32
// (2 threads, AVX-512) the forward lost 4.6 ms of ~39 and the peak memory 72 MiB; the
// backward, which makes y again, stayed as fast (docs/benchmarks.md).
//
// Conventions as kernels/dwconv2d.hpp: NHWC, x (n, in_h, in_w, C); forward writes y; the
// backward writes dx = dL/dy_bn (the gradient the batch norm's backward takes) and ADDS into
// dw and db; a null pointer skips that output. The y made here is bit for bit what
// batchnorm_apply_nhwc writes (the same kernel makes it).
//
// Threads: whole images per thread (contiguous bands, weight-gradient partials summed in
// thread order, so a result depends only on the thread count), the depthwise and batch-norm
// kernels running serially inside. With fewer than two images per thread the work would not
// split evenly, so the whole batch's y is made first into one scratch tensor and the usual
// parallel kernels run on it (the same results, without the saving).
#pragma once
#include <algorithm>
#include <cstdint>

#include "../core/parallel.hpp"
#include "../core/tensor.hpp"
#include "activation.hpp"
#include "batchnorm.hpp"
#include "conv_geometry.hpp"
#include "dwconv2d.hpp"
#include "stream_stores.hpp"

namespace minicnn::kernels {
namespace dw_bn_detail {

// One image's (or, on the fallback, the batch's) activations. Its own thread_local buffer:
// the depthwise kernels called inside keep theirs in other ones.
template <typename T>
inline T* activation_scratch(int64_t n) {
  thread_local ScratchBuffer<T> s;
  return s.get(static_cast<std::size_t>(n));
}
// Per-thread weight-gradient partials of the backward, likewise apart from the depthwise
// kernels' own.
template <typename T>
inline T* gradient_partials(int64_t n) {
  thread_local ScratchBuffer<T> s;
  return s.get(static_cast<std::size_t>(n));
}

// y = act((x - mean) * scale + shift) over `pixels` rows of C channels; `threads` as the
// batch-norm kernels take it (1: serial).
template <typename T>
inline void activate(const T* x, const BnForward<T>& bn, int64_t pixels, int64_t C, T* y,
                     int threads) {
  batchnorm_apply_nhwc<T>(x, pixels, C, bn.mean, bn.scale, bn.shift, y, bn.act, threads);
}

// Images made and convolved per kernel call: as many as fill about half a core's L2 (the
// activations are read back from there), at least one. Whole small maps per call keep the
// per-call costs of the late 6x6 and 3x3 layers down.
constexpr int64_t kChunkBytes = int64_t(1) << 20;
inline int64_t images_per_chunk(int64_t image_bytes) {
  return std::max<int64_t>(1, kChunkBytes / std::max<int64_t>(1, image_bytes));
}

// Threads for a batch of n images, and whether whole images per thread pay (see the top).
inline int image_threads(int64_t n, int64_t outputs, bool& per_image) {
  const int nt = dw_detail::plan_threads_fwd(n, outputs);
  per_image = nt <= 1 || n >= 2 * int64_t(nt);
  return nt;
}

}  // namespace dw_bn_detail

// y = depthwise(act((x - bn.mean) * bn.scale + bn.shift)) + bias, then `act`.
template <typename T>
void dwconv2d_nhwc_forward_bn_input(const ConvGeometry& g, const T* x, const BnForward<T>& bn,
                                    const T* w, dw_detail::Ptr<const T> bias, Activation act,
                                    T* y) {
  const int64_t C = g.in_c, in_px = g.in_h * g.in_w, img_in = in_px * C,
                img_out = g.out_h * g.out_w * C;
  if (g.n == 0 || C == 0) return;
  bool per_image = false;
  const int nt = dw_bn_detail::image_threads(g.n, g.n * img_out, per_image);
  if (!per_image) {
    T* all = dw_bn_detail::activation_scratch<T>(g.n * img_in);
    dw_bn_detail::activate(x, bn, g.n * in_px, C, all, 0);
    dwconv2d_nhwc_forward<T>(g, all, w, bias, act, y);
    return;
  }
  const int64_t chunk = dw_bn_detail::images_per_chunk(img_in * int64_t(sizeof(T)));
  const bool stream = output_exceeds_caches(g.n * img_out * int64_t(sizeof(T)), nt);
  run_threads(nt, [&](int t, int m) {
    StreamOutputsScope streaming(stream);
    T* img = dw_bn_detail::activation_scratch<T>(chunk * img_in);
    int64_t i0, i1;
    dw_detail::band(g.n, t, m, i0, i1);
    for (int64_t i = i0; i < i1; i += chunk) {
      ConvGeometry part = g;
      part.n = std::min(chunk, i1 - i);
      dw_bn_detail::activate(x + i * img_in, bn, part.n * in_px, C, img, 1);
      dwconv2d_nhwc_forward<T>(part, img, w, bias, act, y + i * img_out);
    }
  });
}

// The backward of dwconv2d_nhwc_forward_bn_input with the convolution's activation already
// applied to dy (dy = dL/d(pre-activation), as dwconv2d_nhwc_backward takes it): dx is
// dL/dy_bn, written; dw and db are added to.
template <typename T>
void dwconv2d_nhwc_backward_bn_input(const ConvGeometry& g, const T* x, const BnForward<T>& bn,
                                     const T* dy, const T* w, dw_detail::Ptr<T> dx,
                                     dw_detail::Ptr<T> dw, dw_detail::Ptr<T> db) {
  const int64_t C = g.in_c, in_px = g.in_h * g.in_w, img_in = in_px * C,
                img_out = g.out_h * g.out_w * C, nw = g.k_h * g.k_w * C;
  if (g.n == 0 || C == 0) return;
  if (!dw && !db) {  // dx does not depend on the input
    dwconv2d_nhwc_backward<T>(g, nullptr, dy, w, dx, nullptr, nullptr);
    return;
  }
  bool per_image = false;
  const int nt = dw_bn_detail::image_threads(g.n, g.n * img_out, per_image);
  if (!per_image) {
    T* all = dw_bn_detail::activation_scratch<T>(g.n * img_in);
    dw_bn_detail::activate(x, bn, g.n * in_px, C, all, 0);
    dwconv2d_nhwc_backward<T>(g, all, dy, w, dx, dw, db);
    return;
  }
  const int64_t chunk = dw_bn_detail::images_per_chunk(img_in * int64_t(sizeof(T)));
  const bool stream = output_exceeds_caches(g.n * img_in * int64_t(sizeof(T)), nt);
  const int64_t stride = dw_detail::partial_stride(nw + C);
  T* part = dw_bn_detail::gradient_partials<T>(stride * nt);
  const int used = run_threads(nt, [&](int t, int m) {
    StreamOutputsScope streaming(stream);
    T* img = dw_bn_detail::activation_scratch<T>(chunk * img_in);
    T* pw = part + t * stride;
    std::fill(pw, pw + nw + C, T(0));
    int64_t i0, i1;
    dw_detail::band(g.n, t, m, i0, i1);
    for (int64_t i = i0; i < i1; i += chunk) {
      ConvGeometry piece = g;
      piece.n = std::min(chunk, i1 - i);
      dw_bn_detail::activate(x + i * img_in, bn, piece.n * in_px, C, img, 1);
      dwconv2d_nhwc_backward<T>(piece, img, dy + i * img_out, w, dx ? dx + i * img_in : nullptr,
                                dw ? pw : nullptr, db ? pw + nw : nullptr);
    }
  });
  dw_detail::reduce_partials(part, stride, used, nw, C, dw, db);
}

}  // namespace minicnn::kernels
