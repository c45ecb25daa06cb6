// Direct (im2col-free) Conv2D forward for one instruction set; compiled once per ISA by
// kernels/for_each_isa.inl (no include guard) after gemm_body.inl, called through
// conv2d.hpp. The GEMM micro-kernel reads the windows straight from x: a window row is
// kw*Cin contiguous floats, so kernel rows are segments of the tile's k range.
namespace minicnn::kernels::MINICNN_ISA_NS {
namespace conv_isa {
using gemm_isa::L;
using gemm_isa::tail;

// Whether conv2d_forward reads windows straight from x: the packed weights must be one
// k-block (kernel rows are consecutive segments of it) and an output row must hold
// enough interior pixels for full micro-tiles.
inline bool direct_forward_ok(const ConvGeometry& g) {
  int64_t K = g.k_h * g.k_w * g.in_c;
  return gemm_detail::nn_kc(K) == K && g.out_w >= 2 * gemm_isa::kMaxMR;
}

// Output rows [row_b, row_e) (row = n*out_h + oh) of the forward, without im2col: a
// window row is kw*Cin contiguous floats of x, so the micro-kernel reads A(pixel, kh, j)
// = x[pixel start + kh*in_w*Cin + j] with pixels sw*Cin apart. Pixels whose window
// leaves the image (TF "same" borders) are gathered with im2col, multiplied together
// and scattered back.
inline void conv_direct_rows(const ConvGeometry& g, const float* x, const float* pb,
                             const Epilogue<float>& ep, float* y, int64_t row_b, int64_t row_e) {
  using namespace gemm_isa;
  using conv_detail::im2col;
  using conv_detail::interior_cols;
  using conv_detail::kColSlack;
  const int64_t C = g.in_c, N = g.out_c, K = g.k_h * g.k_w * C, nvec = (N + L - 1) / L;
  int64_t ow_lo, ow_hi;
  interior_cols(g, &ow_lo, &ow_hi);
  const bool wide = ow_hi - ow_lo >= kMaxMR;
  constexpr int64_t kGather = 192;  // border pixels multiplied together
  float* col = scratch<float, 2>(static_cast<std::size_t>(kGather * K + kColSlack));
  float* tmp = scratch<float, 5>(static_cast<std::size_t>(kGather * N));
  int64_t pix[kGather];
  int64_t ng = 0;
  auto flush = [&] {
    if (ng == 0) return;
    if (ng >= kMaxMR) {
      nn_rows(0, ng, N, K, col, K, pb, tmp, N, false, ep);
    } else {  // too few rows for a micro-tile: pad the block with zero rows
      std::fill(col + ng * K, col + kMaxMR * K, 0.f);
      nn_rows(0, kMaxMR, N, K, col, K, pb, tmp, N, false, ep);
    }
    for (int64_t i = 0; i < ng; ++i) std::memcpy(y + pix[i] * N, tmp + i * N, sizeof(float) * N);
    ng = 0;
  };
  auto gather = [&](int64_t p) {
    im2col(g, x, p, 1, col + ng * K);
    pix[ng++] = p;
    if (ng == kGather) flush();
  };
  NNArgs a;
  a.kc = g.k_w * C;
  a.nseg = g.k_h;
  a.seg_stride = g.in_w * C;
  a.lda = g.stride_w * C;
  a.ldc = N;
  a.epi = ep.active();
  a.act = ep.act;
  for (int64_t row = row_b; row < row_e; ++row) {
    int64_t n = row / g.out_h, oh = row % g.out_h, ih0 = oh * g.stride_h - g.pad_top;
    int64_t p0 = row * g.out_w;
    if (!wide || ih0 < 0 || ih0 + g.k_h > g.in_h) {
      for (int64_t ow = 0; ow < g.out_w; ++ow) gather(p0 + ow);
      continue;
    }
    for (int64_t ow = 0; ow < ow_lo; ++ow) gather(p0 + ow);
    for (int64_t ow = ow_hi; ow < g.out_w; ++ow) gather(p0 + ow);
    const float* arow = x + ((n * g.in_h + ih0) * g.in_w + ow_lo * g.stride_w - g.pad_left) * C;
    float* yrow = y + (p0 + ow_lo) * N;
    for_each_panel(nvec, [&](int64_t v0, int nv) {
      const int64_t left = N - (v0 + nv - 1) * L;
      a.bp = pb + v0 * L * K;
      a.mlast = tail(left);
      a.ctail = left < L;
      a.bias = ep.bias ? ep.bias + v0 * L : nullptr;
      dispatch_panel(nv, [&](auto nvc) {
        nn_panel<decltype(nvc)::value>(0, ow_hi - ow_lo, arow, yrow + v0 * L, a);
      });
    });
  }
  flush();
}

}  // namespace conv_isa

inline bool conv_direct_ok(const ConvGeometry& g) {
  return conv_isa::direct_forward_ok(g);
}

// y = act(conv(x, w) + b) with w packed by gemm_pack (K = kh*kw*Cin rows, one k-block);
// threads split the output rows.
inline void conv_direct_forward(const ConvGeometry& g, const float* x, const float* panels,
                                const Epilogue<float>& ep, float* y) {
  const int64_t M = g.n * g.out_h * g.out_w, K = g.k_h * g.k_w * g.in_c, N = g.out_c;
  const int64_t rows = g.n * g.out_h;
  int nt = gemm_detail::plan_threads(2.0 * M * N * K, rows);
  if (nt <= 1) {
    conv_isa::conv_direct_rows(g, x, panels, ep, y, 0, rows);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    int64_t b, e;
    gemm_detail::split_range(rows, thread_index(), nt, 1, &b, &e);
    if (e > b) conv_isa::conv_direct_rows(g, x, panels, ep, y, b, e);
  }
}

}  // namespace minicnn::kernels::MINICNN_ISA_NS
