// Fast float depthwise 3x3 kernels (stride 1 and 2, forward and backward) for one
// instruction set; compiled once per ISA by kernels/for_each_isa.inl (no include guard),
// called through dwconv2d.hpp, whose header comment describes them.
namespace minicnn::kernels::MINICNN_ISA_NS {
namespace dw_isa {
using namespace ::minicnn::simd::MINICNN_SIMD_NS;
using namespace ::minicnn::kernels::dw_detail;

// Out-of-image taps read this instead (selected by pointer, so edge columns stay branch-free).
alignas(64) inline constexpr float kZeros[16] = {};

// Activation as a template constant so the epilogue is branch-free.
template <int A>
inline V act(V v) {
  // The constant goes first: x86 max/min return their second operand when one is NaN, so a
  // NaN (a diverged network) propagates as in TF instead of turning into 0 or 6.
  if constexpr (A == 1)
    return vmax(vzero(), v);
  else if constexpr (A == 2)
    return vmin(vset(6.f), vmax(vzero(), v));
  else
    return v;
}
template <class F>
inline void with_act(Activation a, F&& f) {
  switch (a) {
    case Activation::ReLU: f(std::integral_constant<int, 1>{}); break;
    case Activation::ReLU6: f(std::integral_constant<int, 2>{}); break;
    default: f(std::integral_constant<int, 0>{}); break;
  }
}

// Calls f(c0, integral_constant<bool, Tail>, mask) for each kLanes-channel block of C.
// Tails = false: C is known to be a multiple of kLanes (no tail code is instantiated).
template <bool Tails = true, class F>
inline void for_channel_blocks(int64_t C, F&& f) {
  int64_t c0 = 0;
  for (; c0 + kLanes <= C; c0 += kLanes) f(c0, std::false_type{}, tail_mask(kLanes));
  if constexpr (Tails)
    if (c0 < C) f(c0, std::true_type{}, tail_mask(C - c0));
}

// Large outputs are written with streaming stores (see stream_stores.hpp). Measured at
// batch 32, 2 threads (separate processes, alternating), summed over the MobileNetV2
// depthwise shapes at 96x96: 12% less time forward, 10% backward; a whole training step is
// not slower.
// Every full vector must be a whole aligned line: C a multiple of kLanes, an aligned base.
inline bool stream_output(const float* out, int64_t C, int64_t count, int threads) {
  return kCanStream && C % kLanes == 0 && aligned_to(out, kLanes * sizeof(float)) &&
         (stream_outputs_override() ||
          output_exceeds_caches(count * static_cast<int64_t>(sizeof(float)), threads));
}
template <bool Tail, bool NT>
inline void st_out(float* p, V v, Mask m) {
  if constexpr (NT && !Tail)
    st_stream(p, v);
  else
    st<Tail>(p, v, m);
}
// Calls f(std::true_type) when stream, else f(std::false_type).
template <class F>
inline void with_stream(bool stream, F&& f) {
  if (stream)
    f(std::true_type{});
  else
    f(std::false_type{});
}

// Output columns [lo, hi) whose 3 taps ow*S - pl + {0,1,2} all lie inside [0, in_w).
template <int S>
inline void interior_cols(int64_t in_w, int64_t out_w, int64_t pl, int64_t& lo, int64_t& hi) {
  lo = std::min<int64_t>((pl + S - 1) / S, out_w);
  int64_t last = in_w - 3 + pl;  // largest ow*S with all taps inside
  hi = last < 0 ? 0 : std::min<int64_t>(last / S + 1, out_w);
  if (hi < lo) hi = lo;
}

struct Cols {
  int64_t C, in_w, out_w, pl, lo, hi;
};

// ---------------------------------------------------------------- 3x3 forward

// R outputs of one row and one channel block from NR input rows (3, or 2 where padding
// hides one). rows[kh] point at the tile's first tap column; wk holds NR rows of 3 taps.
template <int S, int R, int A, bool Tail, int NR, bool NT>
inline void fwd_tile(const float* const* rows, int64_t C, const V* wk, V b, float* yp, Mask m) {
  constexpr int NC = (R - 1) * S + 3;
  V acc[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) acc[r] = b;
#pragma GCC unroll 3
  for (int kh = 0; kh < NR; ++kh) {
    const float* p = rows[kh];
#pragma GCC unroll 32
    for (int j = 0; j < NC; ++j) {
      const V xv = ld<Tail>(p + j * C, m);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const int kw = j - r * S;
        if (kw >= 0 && kw < 3) acc[r] = vfma(xv, wk[kh * 3 + kw], acc[r]);
      }
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) st_out<Tail, NT>(yp + r * C, act<A>(acc[r]), m);
}

// Output columns [a, e) of one row and one channel block: rows / yp carry the channel offset,
// wk the NR x 3 taps in registers. Columns whose taps leave the image take the checked path.
template <int S, int A, bool Tail, int NR, bool NT>
inline void fwd_span(const float* const* rows, const V* wk, V b, float* yp, const Cols& g,
                     int64_t a, int64_t e, Mask m) {
  const int64_t C = g.C;
  const int64_t lo = std::min(std::max(g.lo, a), e), hi = std::min(std::max(g.hi, lo), e);
  auto checked = [&](int64_t ow) {
    V acc = b;
#pragma GCC unroll 3
    for (int kw = 0; kw < 3; ++kw) {
      const int64_t iw = ow * S + kw - g.pl;
      const bool in = iw >= 0 && iw < g.in_w;
#pragma GCC unroll 3
      for (int kh = 0; kh < NR; ++kh)
        acc = vfma(ld<Tail>(in ? rows[kh] + iw * C : kZeros, m), wk[kh * 3 + kw], acc);
    }
    st_out<Tail, NT>(yp + ow * C, act<A>(acc), m);
  };
  for (int64_t ow = a; ow < lo; ++ow) checked(ow);
  int64_t ow = lo;
  auto tile = [&](auto R_) {
    constexpr int R = decltype(R_)::value;
    const int64_t off = (ow * S - g.pl) * C;
    const float* r3[NR];
    for (int kh = 0; kh < NR; ++kh) r3[kh] = rows[kh] + off;
    fwd_tile<S, R, A, Tail, NR, NT>(r3, C, wk, b, yp + ow * C, m);
    ow += R;
  };
  // 8-output tiles need 9 taps + bias + 8 accumulators + a load: 19 registers, which only
  // AVX-512's 32 hold; with 16 (AVX2) the tile is 4 wide.
  if constexpr (kRegs >= 32)
    while (ow + 8 <= hi) tile(std::integral_constant<int, 8>{});
  while (ow + 4 <= hi) tile(std::integral_constant<int, 4>{});
  if (ow + 2 <= hi) tile(std::integral_constant<int, 2>{});
  if (ow < hi) tile(std::integral_constant<int, 1>{});
  for (ow = hi; ow < e; ++ow) checked(ow);
}

// One output row, in chunks of output columns; within a chunk, every channel block with its
// 9 taps (and bias) in registers. Walking all channels of a few columns
// before moving on keeps the reads nearly sequential; against sweeping the whole row per
// channel block it measured ~25% faster for stride 2 (whose input rows are 4x the output)
// and the same or slightly better for stride 1, despite reloading the taps per chunk.
template <int S>
constexpr int64_t kFwdChunk = S == 1 ? 8 : 4;

template <int S, int A, int NR, bool NT>
inline void fwd_row_rows(const float* const* rows_in, int k0, const float* w, const float* bias,
                         float* y, const Cols& g) {
  // Chunks end at lo + k*chunk so the interior splits into whole tiles.
  for (int64_t a = 0, e; a < g.out_w; a = e) {
    e = std::min((a == 0 ? g.lo : a) + kFwdChunk<S>, g.out_w);
    for_channel_blocks<!NT>(g.C, [&](int64_t c0, auto tail, Mask m) {
      constexpr bool Tail = decltype(tail)::value;
      V wk[NR * 3];
      for (int i = 0; i < NR * 3; ++i) wk[i] = ld<Tail>(w + (k0 * 3 + i) * g.C + c0, m);
      const V b = bias ? ld<Tail>(bias + c0, m) : vzero();
      const float* rows[NR];
      for (int kh = 0; kh < NR; ++kh) rows[kh] = rows_in[k0 + kh] + c0;
      fwd_span<S, A, Tail, NR, NT>(rows, wk, b, y + c0, g, a, e, m);
    });
  }
}

// rows_in[kh] is an input row, or `zero` where padding hides it (only at the top or the
// bottom, so the valid rows are consecutive); hidden rows are skipped rather than multiplied.
template <int S, int A, bool NT>
inline void fwd_row(const float* const* rows_in, const float* zero, const float* w,
                    const float* bias, float* y, const Cols& g) {
  int k0 = 0, k1 = 3;
  while (k0 < 3 && rows_in[k0] == zero) ++k0;
  while (k1 > k0 && rows_in[k1 - 1] == zero) --k1;
  if (k1 - k0 == 3)
    fwd_row_rows<S, A, 3, NT>(rows_in, 0, w, bias, y, g);
  else if (k1 - k0 == 2)
    fwd_row_rows<S, A, 2, NT>(rows_in, k0, w, bias, y, g);
  else  // one row: pair it with a zero row
    fwd_row_rows<S, A, 2, NT>(rows_in, std::min(k0, 1), w, bias, y, g);
}

template <int S>
inline void fwd_3x3(const ConvGeometry& g, const float* x, const float* w, const float* bias,
                    Activation activation, float* y) {
  const int64_t C = g.in_c, rows = g.n * g.out_h;
  if (rows == 0 || g.out_w == 0 || C == 0) return;
  const float* zero = zero_row<float>(g.in_w * C);
  Cols cols{C, g.in_w, g.out_w, g.pad_left, 0, 0};
  interior_cols<S>(g.in_w, g.out_w, g.pad_left, cols.lo, cols.hi);
  const int64_t in_row = g.in_w * C, out_row = g.out_w * C;
  const int nt_plan = plan_threads_fwd(rows, rows * out_row);
  const bool stream = stream_output(y, C, rows * out_row, nt_plan);
  with_act(activation, [&](auto A_) {
    constexpr int A = decltype(A_)::value;
    with_stream(stream, [&](auto NT_) {
      constexpr bool NT = decltype(NT_)::value;
      run_threads(nt_plan, [&](int t, int nt) {
        int64_t r0, r1;
        band(rows, t, nt, r0, r1);
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t n = r / g.out_h, oh = r % g.out_h;
          const float* rp[3];
          for (int kh = 0; kh < 3; ++kh) {
            const int64_t ih = oh * S + kh - g.pad_top;
            rp[kh] = (ih < 0 || ih >= g.in_h) ? zero : x + (n * g.in_h + ih) * in_row;
          }
          float* yr = y + r * out_row;
          fwd_row<S, A, NT>(rp, zero, w, bias, yr, cols);
        }
        if constexpr (NT) stream_fence();  // other threads read y after the join
      });
    });
  });
}

// ---------------------------------------------------------------- 3x3 backward

// dW for one input row and one channel block, from NK (dy row, kh) pairs:
// acc[k][kw] = sum_ow dy_k[ow] * x[ow*S + kw - pl], added into the thread's partial pw.
// Bit k of dbmask set: pair k's dy row also goes into the bias gradient.
// Plain loops over scalars-of-vectors so GCC keeps all accumulators in registers; with fewer
// than 3 pairs two accumulator sets alternate to hide the FMA latency.
template <int S, int NK, bool Tail>
inline void dw_block(const float* xrow, const float* const* dz_in, const int* khs, unsigned dbmask,
                     float* pw, const Cols& g, int64_t c0, Mask m, int64_t ow_a, int64_t ow_e) {
  constexpr int NA = NK < 3 ? 2 : 1;
  const int64_t C = g.C;
  const float* xp = xrow + c0;
  const float* dz[NK];
  for (int k = 0; k < NK; ++k) dz[k] = dz_in[k] + c0;
  V acc[NA][NK][3];
#pragma GCC unroll 2
  for (int a = 0; a < NA; ++a)
#pragma GCC unroll 3
    for (int k = 0; k < NK; ++k)
#pragma GCC unroll 3
      for (int kw = 0; kw < 3; ++kw) acc[a][k][kw] = vzero();
  // Edge columns: taps outside the row read zeros.
  auto edge = [&](int64_t ow) {
    V xv[3];
#pragma GCC unroll 3
    for (int kw = 0; kw < 3; ++kw) {
      const int64_t iw = ow * S + kw - g.pl;
      xv[kw] = ld<Tail>(iw >= 0 && iw < g.in_w ? xp + iw * C : kZeros, m);
    }
#pragma GCC unroll 3
    for (int k = 0; k < NK; ++k) {
      const V d = ld<Tail>(dz[k] + ow * C, m);
#pragma GCC unroll 3
      for (int kw = 0; kw < 3; ++kw) acc[0][k][kw] = vfma(d, xv[kw], acc[0][k][kw]);
    }
  };
  const int64_t lo = std::min(std::max(g.lo, ow_a), ow_e), hi = std::min(std::max(g.hi, lo), ow_e);
  for (int64_t ow = ow_a; ow < lo; ++ow) edge(ow);
  for (int64_t ow = hi; ow < ow_e; ++ow) edge(ow);
  // Interior columns: all three taps valid.
  int64_t ow = lo;
  const float* q = xp + (ow * S - g.pl) * C;
  for (; ow + NA <= hi; ow += NA, q += NA * S * C) {
#pragma GCC unroll 2
    for (int a = 0; a < NA; ++a) {
      const float* qa = q + a * S * C;
      const V x0 = ld<Tail>(qa, m), x1 = ld<Tail>(qa + C, m), x2 = ld<Tail>(qa + 2 * C, m);
#pragma GCC unroll 3
      for (int k = 0; k < NK; ++k) {
        const V d = ld<Tail>(dz[k] + (ow + a) * C, m);
        acc[a][k][0] = vfma(d, x0, acc[a][k][0]);
        acc[a][k][1] = vfma(d, x1, acc[a][k][1]);
        acc[a][k][2] = vfma(d, x2, acc[a][k][2]);
      }
    }
  }
  if (ow < hi) {  // NA == 2 leftover
    const V x0 = ld<Tail>(q, m), x1 = ld<Tail>(q + C, m), x2 = ld<Tail>(q + 2 * C, m);
#pragma GCC unroll 3
    for (int k = 0; k < NK; ++k) {
      const V d = ld<Tail>(dz[k] + ow * C, m);
      acc[0][k][0] = vfma(d, x0, acc[0][k][0]);
      acc[0][k][1] = vfma(d, x1, acc[0][k][1]);
      acc[0][k][2] = vfma(d, x2, acc[0][k][2]);
    }
  }
#pragma GCC unroll 3
  for (int k = 0; k < NK; ++k)
#pragma GCC unroll 3
    for (int kw = 0; kw < 3; ++kw) {
      V t = acc[0][k][kw];
      if constexpr (NA == 2) t = vadd(t, acc[NA - 1][k][kw]);
      float* p = pw + (khs[k] * 3 + kw) * C + c0;
      st<Tail>(p, vadd(ld<Tail>(p, m), t), m);
    }
  for (int k = 0; k < NK; ++k) {
    if (!((dbmask >> k) & 1u)) continue;
    V s0 = vzero(), s1 = vzero();
    int64_t i = ow_a;
    for (; i + 2 <= ow_e; i += 2) {
      s0 = vadd(s0, ld<Tail>(dz[k] + i * C, m));
      s1 = vadd(s1, ld<Tail>(dz[k] + (i + 1) * C, m));
    }
    if (i < ow_e) s0 = vadd(s0, ld<Tail>(dz[k] + i * C, m));
    float* p = pw + 9 * C + c0;
    st<Tail>(p, vadd(ld<Tail>(p, m), vadd(s0, s1)), m);
  }
}

// One input row of the stride-1 fused pass: x (null without W), its three dy rows (kh = 0,
// 1, 2; a zero row where that is padding), dx, and which dy rows go into the bias gradient.
struct S1Row {
  const float* x;
  const float* dy[3];
  float* dx;
  unsigned dbmask;
};
// At most this many rows per group (s1_group_rows).
constexpr int kS1MaxGroup = 16;
// Rows per group: enough for ~48 pixels, so the per-call cost (loading the nine taps, adding
// the nine dW sums into the thread's partials) is spread over as many FMAs on small maps as
// on the 48x48 one, which keeps one row per call. Paired A/B against one row per call:
// 960@3 1.56x, 384@6 1.30x, 576@6 1.13x, 144@24 1.05x faster, 192@12 unchanged (0.99).
inline int s1_group_rows(int64_t in_w) {
  return static_cast<int>(
      std::clamp<int64_t>((48 + in_w - 1) / std::max<int64_t>(in_w, 1), 1, kS1MaxGroup));
}

// Stride-1 dx AND dW/db for a group of input rows and one channel block, one sweep per row. Input
// pixel iw meets the nine values dy[kh][iw + pl - kw] (dy row kh = ih + pad_top - kh, a zero row
// where that is padding): dx[iw] is their sum weighted by w[kh][kw], and each of them adds
// x[iw] * dy into its tap's dW. A 3x3 window of dy vectors slides along the row, so every
// dy, x and w value is loaded once per row and channel block instead of once per tap in two
// separate sweeps: 4 loads per 18 FMAs instead of ~15. Without W (frozen layer) only dx,
// with the same summation order, so dx does not depend on whether the layer trains.
template <bool Tail, bool W, bool NT>
inline void s1_fused_block(const S1Row* rows, int nr, const float* w, float* pw, const Cols& g,
                           int64_t c0, Mask m) {
  const int64_t C = g.C;
  V wk[3][3], acc[3][3], win[3][3];
#pragma GCC unroll 3
  for (int kh = 0; kh < 3; ++kh)
#pragma GCC unroll 3
    for (int kw = 0; kw < 3; ++kw) {
      wk[kh][kw] = ld<Tail>(w + (kh * 3 + kw) * C + c0, m);
      acc[kh][kw] = vzero();
    }
  for (int i = 0; i < nr; ++i) {
    const S1Row& row = rows[i];
    const float* dz[3] = {row.dy[0] + c0, row.dy[1] + c0, row.dy[2] + c0};
    const float* xp = W ? row.x + c0 : nullptr;
    float* dxp = row.dx + c0;
    // Before pixel 0 the window holds columns pl - 1 (slot 0) and pl - 2 (slot 1).
    auto column = [&](int kh, int64_t ow) {
      return ow >= 0 && ow < g.out_w ? ld<Tail>(dz[kh] + ow * C, m) : vzero();
    };
#pragma GCC unroll 3
    for (int kh = 0; kh < 3; ++kh) {
      win[kh][0] = column(kh, g.pl - 1);
      win[kh][1] = column(kh, g.pl - 2);
      win[kh][2] = vzero();
    }
    auto step = [&](int64_t iw, bool inside) {
#pragma GCC unroll 3
      for (int kh = 0; kh < 3; ++kh) {
        win[kh][2] = win[kh][1];
        win[kh][1] = win[kh][0];
        win[kh][0] = inside ? ld<Tail>(dz[kh] + (iw + g.pl) * C, m) : vzero();
      }
      // x may be null without W (dx only): it is not read then.
      const V xv = W ? ld<Tail>(xp + iw * C, m) : vzero();
      // One chain for dx (consecutive pixels overlap): fewer registers than three partial sums.
      V d = vzero();
#pragma GCC unroll 3
      for (int kh = 0; kh < 3; ++kh) {
#pragma GCC unroll 3
        for (int kw = 0; kw < 3; ++kw) {
          d = vfma(win[kh][kw], wk[kh][kw], d);
          if constexpr (W) acc[kh][kw] = vfma(xv, win[kh][kw], acc[kh][kw]);
        }
      }
      st_out<Tail, NT>(dxp + iw * C, d, m);
    };
    // Column iw + pl of dy exists for iw < out_w - pl.
    const int64_t split = std::clamp<int64_t>(g.out_w - g.pl, 0, g.in_w);
    for (int64_t iw = 0; iw < split; ++iw) step(iw, true);
    for (int64_t iw = split; iw < g.in_w; ++iw) step(iw, false);
    if constexpr (W) {
      for (int kh = 0; kh < 3; ++kh) {
        if (!((row.dbmask >> kh) & 1u)) continue;
        V s0 = vzero(), s1 = vzero();
        int64_t j = 0;
        for (; j + 2 <= g.out_w; j += 2) {
          s0 = vadd(s0, ld<Tail>(dz[kh] + j * C, m));
          s1 = vadd(s1, ld<Tail>(dz[kh] + (j + 1) * C, m));
        }
        if (j < g.out_w) s0 = vadd(s0, ld<Tail>(dz[kh] + j * C, m));
        // Added per row: a bias sum kept in a register across the group cost 6% (one more
        // live vector beside the 27 of taps, sums and window).
        float* pb = pw + 9 * C + c0;
        st<Tail>(pb, vadd(ld<Tail>(pb, m), vadd(s0, s1)), m);
      }
    }
  }
  if constexpr (!W) return;
#pragma GCC unroll 3
  for (int kh = 0; kh < 3; ++kh)
#pragma GCC unroll 3
    for (int kw = 0; kw < 3; ++kw) {
      float* p = pw + (kh * 3 + kw) * C + c0;
      st<Tail>(p, vadd(ld<Tail>(p, m), acc[kh][kw]), m);
    }
}

// Stride-2 dx for one input row and one channel block, from NK (dy row, kh) pairs.
// Along the row, dx[2j - pl] takes taps kw=0 (ow=j) and kw=2 (ow=j-1); dx[2j - pl + 1] takes kw=1
// (ow=j).
template <int NK, bool Tail, bool NT>
inline void dxs2_block(const float* const* dz_in, const int* khs, const float* w, float* dxrow,
                       const Cols& g, int64_t c0, Mask m, int64_t iw_a, int64_t iw_e) {
  const int64_t C = g.C;
  V wk[NK][3];
  const float* dz[NK];
  for (int k = 0; k < NK; ++k) {
    dz[k] = dz_in[k] + c0;
    for (int kw = 0; kw < 3; ++kw) wk[k][kw] = ld<Tail>(w + (khs[k] * 3 + kw) * C + c0, m);
  }
  float* dxp = dxrow + c0;
  auto checked = [&](int64_t iw) {
    V acc = vzero();
#pragma GCC unroll 3
    for (int kw = 0; kw < 3; ++kw) {
      const int64_t t = iw + g.pl - kw;
      const bool in = t >= 0 && !(t & 1) && (t >> 1) < g.out_w;
#pragma GCC unroll 2
      for (int k = 0; k < NK; ++k)
        acc = vfma(ld<Tail>(in ? dz[k] + (t >> 1) * C : kZeros, m), wk[k][kw], acc);
    }
    st_out<Tail, NT>(dxp + iw * C, acc, m);
  };
  // Interior j: 1 <= j < out_w, and both 2j - pl and 2j - pl + 1 inside [iw_a, iw_e) (which
  // lies inside the row).
  const int64_t jlo = std::max<int64_t>({1, (g.pl + 1) / 2, (iw_a + g.pl + 1) / 2});
  const int64_t lastj = iw_e - 2 + g.pl;  // 2j <= iw_e - 2 + pl
  int64_t jhi = lastj < 0 ? 0 : std::min<int64_t>(lastj / 2 + 1, g.out_w);
  if (jhi < jlo) jhi = jlo;
  const int64_t iw_lo = jhi > jlo ? 2 * jlo - g.pl : iw_e;
  const int64_t iw_hi = jhi > jlo ? 2 * jhi - g.pl : iw_e;
  for (int64_t iw = iw_a; iw < iw_lo; ++iw) checked(iw);
  if (jhi > jlo) {
    V prev[NK];
    for (int k = 0; k < NK; ++k) prev[k] = ld<Tail>(dz[k] + (jlo - 1) * C, m);
    float* out = dxp + (2 * jlo - g.pl) * C;
    for (int64_t j = jlo; j < jhi; ++j, out += 2 * C) {
      V e = vzero(), o = vzero();
#pragma GCC unroll 2
      for (int k = 0; k < NK; ++k) {
        const V cur = ld<Tail>(dz[k] + j * C, m);
        e = vfma(cur, wk[k][0], vfma(prev[k], wk[k][2], e));
        o = vfma(cur, wk[k][1], o);
        prev[k] = cur;
      }
      st_out<Tail, NT>(out, e, m);
      st_out<Tail, NT>(out + C, o, m);
    }
  }
  for (int64_t iw = std::max(iw_hi, iw_lo); iw < iw_e; ++iw) checked(iw);
}

// One pass over input rows: row ih receives dy rows oh with oh*S = ih + pad_top - kh.
// Each (oh, kh) pair with ih inside the image is seen exactly once, so dW is exact. The bias
// gradient must take each dy row exactly once: from its pair with kh == 0 when that row of x
// exists, else (top padding) from its first valid pair, which is the one with ih == 0.
// So at ih == 0 every valid pair counts, elsewhere only kh == 0.
// Stride 2 walks each row in chunks of 8 outputs (16 inputs), all channel blocks per chunk,
// as the forward does (measured ~15% faster: its input rows dominate the traffic). A row of
// at most 12 outputs is one chunk: 8-10% faster on 144@24 than two calls per row and channel
// block (a chunk of 12 on 96@48's 24 outputs measured 1-3% slower, so 8 stays there).
// Stride-1 dW sweeps whole rows per channel block: chunking it cost ~5% (the 9 partial sums
// are reloaded per chunk) for no gain.
inline int64_t bwd_chunk_s2(int64_t out_w) {
  return out_w <= 12 ? out_w : 8;
}

template <int S>
inline void bwd_3x3(const ConvGeometry& g, const float* x, const float* dy, const float* w,
                    float* dx, float* dw, float* db) {
  const int64_t C = g.in_c, rows = g.n * g.in_h;
  if (rows == 0 || C == 0 || (!dx && !dw && !db)) return;
  if (g.n * g.out_h * g.out_w == 0) {  // no outputs: dx is all zero, no weight gradient
    if (dx)
      std::memset(static_cast<void*>(dx), 0,
                  sizeof(float) * static_cast<std::size_t>(rows * g.in_w * C));
    return;
  }
  const bool wgrad = dw || db;
  const float* zero = zero_row<float>(std::max(g.in_w, g.out_w) * C);
  const int nt_plan = plan_threads(rows);
  const int64_t pstride = partial_stride(10 * C);
  float* part = wgrad ? partial_buffer<float>(pstride * nt_plan) : nullptr;
  Cols dwc{C, g.in_w, g.out_w, g.pad_left, 0, 0};
  interior_cols<S>(g.in_w, g.out_w, g.pad_left, dwc.lo, dwc.hi);
  const int64_t in_row = g.in_w * C, out_row = g.out_w * C;
  const bool stream = dx && stream_output(dx, C, rows * in_row, nt_plan);

  const int used = run_threads(nt_plan, [&](int t, int nt) {
    float* pw = wgrad ? part + t * pstride : nullptr;
    if (pw)
      std::memset(static_cast<void*>(pw), 0, sizeof(float) * static_cast<std::size_t>(10 * C));
    int64_t r0, r1;
    band(rows, t, nt, r0, r1);
    if constexpr (S == 1) {
      if (dx) {  // dx (and dW): groups of consecutive rows per call, see s1_group_rows
        const int G = s1_group_rows(g.in_w);
        S1Row grp[kS1MaxGroup];
        for (int64_t r = r0; r < r1; r += G) {
          const int nr = static_cast<int>(std::min<int64_t>(G, r1 - r));
          for (int i = 0; i < nr; ++i) {
            const int64_t n = (r + i) / g.in_h, ih = (r + i) % g.in_h;
            S1Row& row = grp[i];
            row.x = x ? x + (r + i) * in_row : nullptr;
            row.dx = dx + (r + i) * in_row;
            row.dbmask = 0;
            for (int kh = 0; kh < 3; ++kh) {  // dy row ih + pt - kh
              const int64_t oh = ih + g.pad_top - kh;
              row.dy[kh] = (oh < 0 || oh >= g.out_h) ? zero : dy + (n * g.out_h + oh) * out_row;
              if (db && row.dy[kh] != zero && (kh == 0 || ih == 0)) row.dbmask |= 1u << kh;
            }
          }
          with_stream(stream, [&](auto NT_) {
            constexpr bool NT = decltype(NT_)::value;
            for_channel_blocks<!NT>(C, [&](int64_t c0, auto tail, Mask m) {
              constexpr bool Tail = decltype(tail)::value;
              if (pw)
                s1_fused_block<Tail, true, NT>(grp, nr, w, pw, dwc, c0, m);
              else
                s1_fused_block<Tail, false, NT>(grp, nr, w, nullptr, dwc, c0, m);
            });
          });
        }
        if (stream) stream_fence();
        return;
      }
    }
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / g.in_h, ih = r % g.in_h;
      auto dyrow = [&](int64_t oh) {
        return (oh < 0 || oh >= g.out_h) ? zero : dy + (n * g.out_h + oh) * out_row;
      };
      const float* xr = x ? x + r * in_row : nullptr;
      float* dxr = dx ? dx + r * in_row : nullptr;
      if constexpr (S == 1) {
        // pairs kh = 0, 1, 2 use dy rows ih + pt - kh.
        const float* pr[3] = {dyrow(ih + g.pad_top), dyrow(ih + g.pad_top - 1),
                              dyrow(ih + g.pad_top - 2)};
        static constexpr int khs[3] = {0, 1, 2};
        if (pw) {  // dW only (dx took the grouped pass above)
          // Only the pairs whose dy row exists (consecutive kh).
          int k0 = 0, k1 = 3;
          while (k0 < 3 && pr[k0] == zero) ++k0;
          while (k1 > k0 && pr[k1 - 1] == zero) --k1;
          unsigned dbm = 0;
          if (db)
            for (int k = k0; k < k1; ++k)
              if (k == 0 || ih == 0) dbm |= 1u << (k - k0);
          auto go = [&](auto NK_) {
            constexpr int NK = decltype(NK_)::value;
            for_channel_blocks(C, [&](int64_t c0, auto tail, Mask m) {
              dw_block<1, NK, decltype(tail)::value>(xr, pr + k0, khs + k0, dbm, pw, dwc, c0, m, 0,
                                                     g.out_w);
            });
          };
          if (k1 - k0 == 3)
            go(std::integral_constant<int, 3>{});
          else if (k1 - k0 == 2)
            go(std::integral_constant<int, 2>{});
          else if (k1 - k0 == 1)
            go(std::integral_constant<int, 1>{});
        }
      } else {
        const int64_t tt = ih + g.pad_top;
        const int64_t chunk = bwd_chunk_s2(g.out_w),
                      chunk_in = chunk == g.out_w ? g.in_w : 2 * chunk;
        auto go = [&](auto NK_, const float* const* pr, const int* khs) {
          constexpr int NK = decltype(NK_)::value;
          unsigned dbm = 0;
          if (db)
            for (int k = 0; k < NK; ++k)
              if (pr[k] != zero && (khs[k] == 0 || ih == 0)) dbm |= 1u << k;
          if (dxr)
            with_stream(stream, [&](auto NT_) {
              constexpr bool NT = decltype(NT_)::value;
              for (int64_t a = 0, e; a < g.in_w; a = e) {
                e = std::min(a + chunk_in, g.in_w);
                for_channel_blocks<!NT>(C, [&](int64_t c0, auto tail, Mask m) {
                  dxs2_block<NK, decltype(tail)::value, NT>(pr, khs, w, dxr, dwc, c0, m, a, e);
                });
              }
            });
          if (pw)
            for (int64_t a = 0, e; a < g.out_w; a = e) {
              e = std::min((a == 0 ? dwc.lo : a) + chunk, g.out_w);
              for_channel_blocks(C, [&](int64_t c0, auto tail, Mask m) {
                dw_block<2, NK, decltype(tail)::value>(xr, pr, khs, dbm, pw, dwc, c0, m, a, e);
              });
            }
        };
        if ((tt & 1) == 0) {
          static constexpr int khs[2] = {0, 2};
          const float* pr[2] = {dyrow(tt / 2), dyrow(tt / 2 - 1)};
          // Skip a pair whose dy row is padding (first / last rows); dx is still written.
          if (pr[0] != zero && pr[1] != zero)
            go(std::integral_constant<int, 2>{}, pr, khs);
          else if (pr[0] == zero && pr[1] != zero)
            go(std::integral_constant<int, 1>{}, pr + 1, khs + 1);
          else
            go(std::integral_constant<int, 1>{}, pr, khs);
        } else {
          static constexpr int khs[1] = {1};
          const float* pr[1] = {dyrow((tt - 1) / 2)};
          go(std::integral_constant<int, 1>{}, pr, khs);
        }
      }
    }
    if (stream) stream_fence();  // other threads and the caller read dx after the join
  });
  if (wgrad) reduce_partials(part, pstride, used, 9 * C, C, dw, db);
}

}  // namespace dw_isa

// Forward, 3x3 stride 1 / stride 2, float, fused bias + activation.
inline void dwconv2d_nhwc_3x3_s1(const ConvGeometry& g, const float* x, const float* w,
                                 const float* bias, Activation act, float* y) {
  dw_isa::fwd_3x3<1>(g, x, w, bias, act, y);
}
inline void dwconv2d_nhwc_3x3_s2(const ConvGeometry& g, const float* x, const float* w,
                                 const float* bias, Activation act, float* y) {
  dw_isa::fwd_3x3<2>(g, x, w, bias, act, y);
}
// Backward in one pass: dx (written, skipped when null), dw and db (added, skipped when null).
inline void dwconv2d_nhwc_3x3_s1_backward(const ConvGeometry& g, const float* x, const float* dy,
                                          const float* w, float* dx, float* dw, float* db) {
  dw_isa::bwd_3x3<1>(g, x, dy, w, dx, dw, db);
}
inline void dwconv2d_nhwc_3x3_s2_backward(const ConvGeometry& g, const float* x, const float* dy,
                                          const float* w, float* dx, float* dw, float* db) {
  dw_isa::bwd_3x3<2>(g, x, dy, w, dx, dw, db);
}
inline void dwconv2d_nhwc_3x3_s1_backward_input(const ConvGeometry& g, const float* dy,
                                                const float* w, float* dx) {
  dw_isa::bwd_3x3<1>(g, nullptr, dy, w, dx, nullptr, nullptr);
}
inline void dwconv2d_nhwc_3x3_s2_backward_input(const ConvGeometry& g, const float* dy,
                                                const float* w, float* dx) {
  dw_isa::bwd_3x3<2>(g, nullptr, dy, w, dx, nullptr, nullptr);
}
inline void dwconv2d_nhwc_3x3_s1_backward_weight(const ConvGeometry& g, const float* x,
                                                 const float* dy, float* dw, float* db) {
  dw_isa::bwd_3x3<1>(g, x, dy, nullptr, nullptr, dw, db);
}
inline void dwconv2d_nhwc_3x3_s2_backward_weight(const ConvGeometry& g, const float* x,
                                                 const float* dy, float* dw, float* db) {
  dw_isa::bwd_3x3<2>(g, x, dy, nullptr, nullptr, dw, db);
}

// What the tests and benchmarks ask of this path.
inline int64_t dw_vector_lanes() {
  return dw_isa::kLanes;
}
inline bool dw_can_stream() {
  return dw_isa::kCanStream;
}
inline bool dw_stream_output(const float* out, int64_t C, int64_t count, int threads) {
  return dw_isa::stream_output(out, C, count, threads);
}
inline int dw_s1_group_rows(int64_t in_w) {
  return dw_isa::s1_group_rows(in_w);
}

}  // namespace minicnn::kernels::MINICNN_ISA_NS
