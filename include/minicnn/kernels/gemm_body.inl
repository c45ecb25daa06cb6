// Float GEMM micro-kernels and drivers for one instruction set; compiled once per ISA by
// kernels/for_each_isa.inl (no include guard), called through gemm.hpp's dispatchers.
//
// Outer-product tiles (MR rows x NV vectors of C in registers) read the tall operand in
// place and the small one (weights) from zero-padded column panels packed once per call;
// C is written once, bias + activation applied in registers. Eigen's GEMM zero-fills C,
// then packs and re-reads the tall operand, which costs these memory-bound shapes up to
// 2x. Tile heights follow the register file: MR * NV accumulators use at most 3/4 of it
// (AVX-512: 24 of 32 zmm; AVX2: 12 of 16 ymm), the rest holds B and a broadcast of A.
namespace minicnn::kernels::MINICNN_ISA_NS {
namespace vec = ::minicnn::simd::MINICNN_SIMD_NS;
namespace gemm_isa {

using gemm_detail::dispatch_panel;
using gemm_detail::for_each_panel;
using gemm_detail::nn_kc;
using gemm_detail::panel_owner;
using gemm_detail::scratch;

constexpr int64_t L = vec::kLanes;

// Rows per micro-tile for a panel of NV vectors.
constexpr int mr_for(int nv) {
  if (vec::kRegs >= 32) return nv == 1 ? 16 : nv == 2 ? 12 : nv == 3 ? 8 : nv == 4 ? 6 : 4;
  if (vec::kRegs >= 16) return nv == 1 ? 8 : nv == 2 ? 6 : nv == 3 ? 4 : nv == 4 ? 3 : 2;
  return nv == 1 ? 4 : nv == 2 ? 3 : 2;
}
constexpr int64_t kMaxMR = mr_for(1);
static_assert(gemm_detail::kRowAlign % mr_for(1) == 0 && gemm_detail::kRowAlign % mr_for(2) == 0 &&
                  gemm_detail::kRowAlign % mr_for(3) == 0 &&
                  gemm_detail::kRowAlign % mr_for(4) == 0 &&
                  gemm_detail::kRowAlign % mr_for(6) == 0,
              "row splits must be whole tiles");

inline int64_t pad_lanes(int64_t n) {
  return (n + L - 1) / L * L;
}
inline vec::Mask tail(int64_t cols_left) {
  return vec::tail_mask(std::min(cols_left, L));
}
// The last vector of a panel: masked only when the panel ends inside it.
inline vec::V ld_last(const float* p, vec::Mask m, bool masked) {
  return masked ? vec::ld<true>(p, m) : vec::ld<false>(p, m);
}
inline void st_last(float* p, vec::V v, vec::Mask m, bool masked) {
  if (masked)
    vec::st<true>(p, v, m);
  else
    vec::st<false>(p, v, m);
}

// Floats of a packed B [K x N].
inline int64_t packed_floats(int64_t K, int64_t N) {
  return K * pad_lanes(N);
}

// Packs rows [k_lo, k_hi) of B (element (k, n) at B[k*sk + n*sn]) into panels:
// for each k-block, for each panel, kc rows of nv*L floats, zero-padded past N.
// Only the panels that panel_owner gives to `part` of `parts` (default: all).
inline void pack_b_rows(int64_t k_lo, int64_t k_hi, int64_t N, int64_t K, int64_t kc_blk,
                        const float* B, int64_t sk, int64_t sn, float* pb, int part = 0,
                        int parts = 1) {
  const int64_t nvec = (N + L - 1) / L, npad = nvec * L;
  auto for_my_panels = [&](auto&& f) {
    for_each_panel(nvec, [&](int64_t v0, int nv) {
      if (panel_owner(v0, nv, nvec, parts) == part) f(v0, nv);
    });
  };
  if (sk == 1 && sn != 1) {
    // Transposed source (rows of B are columns in memory): L x L register transposes
    // keep both the reads and the writes contiguous.
    for (int64_t k0 = k_lo / kc_blk * kc_blk; k0 < k_hi; k0 += kc_blk) {
      int64_t kc = std::min(kc_blk, K - k0);
      int64_t ka = std::max(k_lo, k0), kb = std::min(k_hi, k0 + kc);
      for_my_panels([&](int64_t v0, int nv) {
        float* panel = pb + k0 * npad + v0 * L * kc;
        const int64_t w = nv * L;
        for (int64_t k = ka; k < kb; k += L) {
          const int64_t kn = std::min<int64_t>(L, kb - k);
          const vec::Mask km = tail(kn);
          for (int v = 0; v < nv; ++v) {
            vec::V r[L];
            for (int64_t i = 0; i < L; ++i) {
              int64_t n = (v0 + v) * L + i;
              r[i] = n < N ? ld_last(B + n * sn + k, km, kn < L) : vec::vzero();
            }
            vec::transpose(r);
            for (int64_t i = 0; i < kn; ++i)
              vec::st<false>(panel + (k - k0 + i) * w + L * v, r[i], km);
          }
        }
      });
    }
    return;
  }
  for (int64_t k = k_lo; k < k_hi; ++k) {
    int64_t k0 = k / kc_blk * kc_blk, kc = std::min(kc_blk, K - k0);
    for_my_panels([&](int64_t v0, int nv) {
      float* dst = pb + k0 * npad + v0 * L * kc + (k - k0) * nv * L;
      int64_t n0 = v0 * L, w = nv * L;
      int64_t valid = std::max<int64_t>(0, std::min(w, N - n0));
      const float* src = B + k * sk + n0 * sn;
      if (sn == 1) {
        std::memcpy(dst, src, sizeof(float) * valid);
      } else {
        for (int64_t j = 0; j < valid; ++j) dst[j] = src[j * sn];
      }
      for (int64_t j = valid; j < w; ++j) dst[j] = 0.f;
    });
  }
}

// What a micro-tile of C = A * packed B needs besides its position. A's k index runs
// over nseg segments of kc values: element (r, s, k) at a[r*lda + s*seg_stride + k]
// (one segment for a plain matrix; one per kernel row for a direct convolution).
struct NNArgs {
  int64_t kc = 0, nseg = 1, seg_stride = 0, lda = 0, ldc = 0;
  const float* bp = nullptr;        // packed panel: nseg*kc rows of NV*L floats
  int64_t bstride = 0;              // floats between rows of B at bp (0: NV*L, a packed panel)
  vec::Mask mlast{};                // valid columns of the panel's last vector
  bool ctail = false;               // the panel's last vector is partial (mlast not full)
  int64_t rows = int64_t(1) << 40;  // rows r >= rows of the tile are neither read nor written in C
  bool load_c = false;              // accumulate into C (else overwrite)
  bool epi = false;                 // apply bias / activation before storing
  const float* bias = nullptr;
  Activation act = Activation::Linear;
};

// C tile [MR x NV*L] = (C if load_c) + A tile * B panel, then the epilogue.
// Rows r < skip belong to a previous tile (the last tile of a range is shifted back
// to stay in bounds) and are neither read nor written. PrefetchB (the few-row products,
// bound by reading B): prefetch B 16 rows ahead. MaskB: B is read in place and its last
// vector may end past N (else B is a zero-padded panel and loads need no mask).
template <int MR, int NV, bool PrefetchB = false, bool MaskB = false>
MINICNN_GEMM_INLINE void ukr_nn(const float* a, float* c, int skip, const NNArgs& p) {
  const int64_t lda = p.lda, ldc = p.ldc;
  const vec::Mask mlast = p.mlast;
  vec::V acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      if (p.load_c && r >= skip && r < p.rows)
        acc[r][v] = v == NV - 1 ? ld_last(c + r * ldc + L * v, mlast, p.ctail)
                                : vec::ld<false>(c + r * ldc + L * v, mlast);
      else
        acc[r][v] = vec::vzero();
    }
  const float* bp = p.bp;
  const int64_t bstep = p.bstride ? p.bstride : NV * L;
  for (int64_t s = 0; s < p.nseg; ++s) {
    const float* as = a + s * p.seg_stride;
    for (int64_t k0 = 0; k0 < p.kc; k0 += 16) {
      // The next tile's rows of A: the hardware prefetchers lose track of MR streams.
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) vec::prefetch(as + (r + MR) * lda + k0);
      int64_t k1 = std::min(p.kc, k0 + 16);
      for (int64_t k = k0; k < k1; ++k, bp += bstep) {
        // 16 rows ahead: measured best of 8/16/32 on the batch-1 3x3-map layers (B
        // streams from L3 there; +25-30% over the hardware prefetchers alone).
        if constexpr (PrefetchB)
#pragma GCC unroll 8
          for (int v = 0; v < NV; ++v) vec::prefetch(bp + 16 * bstep + L * v);
        vec::V b[NV];
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v)
          b[v] = MaskB && v == NV - 1 ? vec::ld<true>(bp + L * v, mlast)
                                      : vec::ld<false>(bp + L * v, mlast);
#pragma GCC unroll 16
        for (int r = 0; r < MR; ++r) {
          const vec::V av = vec::vset(as[r * lda + k]);
#pragma GCC unroll 8
          for (int v = 0; v < NV; ++v) acc[r][v] = vec::vfma(av, b[v], acc[r][v]);
        }
      }
    }
  }
  if (p.epi) {
    if (p.bias) {
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        vec::V bv = v == NV - 1 ? ld_last(p.bias + L * v, mlast, p.ctail)
                                : vec::ld<false>(p.bias + L * v, mlast);
#pragma GCC unroll 16
        for (int r = 0; r < MR; ++r) acc[r][v] = vec::vadd(acc[r][v], bv);
      }
    }
    if (p.act != Activation::Linear) {
      const vec::V zero = vec::vzero(), six = vec::vset(6.f);
      const bool six_cap = p.act == Activation::ReLU6;
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) {
          // Constant first: the second operand wins when one is NaN, so NaN propagates.
          acc[r][v] = vec::vmax(zero, acc[r][v]);
          if (six_cap) acc[r][v] = vec::vmin(six, acc[r][v]);
        }
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    if (r < skip || r >= p.rows) continue;
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      if (v == NV - 1)
        st_last(c + r * ldc + L * v, acc[r][v], mlast, p.ctail);
      else
        vec::st<false>(c + r * ldc + L * v, acc[r][v], mlast);
    }
  }
}

// Rows [m0, m1) of C for one panel and one k-block; needs m1 >= MR (rows before m0
// may be read from A, never written).
template <int NV>
void nn_panel(int64_t m0, int64_t m1, const float* A, float* C, const NNArgs& p) {
  constexpr int MR = mr_for(NV);
  for (int64_t m = m0; m < m1; m += MR) {
    int64_t mt = m;
    int skip = 0;
    if (m + MR > m1) {
      mt = m1 - MR;
      skip = static_cast<int>(m - mt);
    }
    ukr_nn<MR, NV>(A + mt * p.lda, C + mt * p.ldc, skip, p);
  }
}

// Rows [r0, r1) of C = A * packed B on the calling thread (needs r1 >= kMaxMR), for
// the panels panel_owner gives to `part` of `parts` (default: all).
inline void nn_rows(int64_t r0, int64_t r1, int64_t N, int64_t K, const float* A, int64_t lda,
                    const float* pb, float* C, int64_t ldc, bool accumulate,
                    const Epilogue<float>& ep, int part = 0, int parts = 1) {
  const int64_t nvec = (N + L - 1) / L, npad = nvec * L, kc_blk = nn_kc(K);
  const int64_t align = gemm_detail::kRowAlign;
  // Row blocks: the A block (rows x kc) stays in L2 while every panel of B passes over it.
  int64_t mc =
      std::max<int64_t>(align, (256 * 1024 / (4 * std::max<int64_t>(kc_blk, 16))) / align * align);
  for (int64_t m0 = r0; m0 < r1; m0 += mc) {
    int64_t m1 = std::min(r1, m0 + mc);
    for (int64_t k0 = 0; k0 < K; k0 += kc_blk) {
      NNArgs p;
      p.kc = std::min(kc_blk, K - k0);
      p.lda = lda;
      p.ldc = ldc;
      p.load_c = accumulate || k0 > 0;
      bool last = k0 + p.kc == K;
      p.epi = last && ep.active();
      p.act = ep.act;
      for_each_panel(nvec, [&](int64_t v0, int nv) {
        if (panel_owner(v0, nv, nvec, parts) != part) return;
        const int64_t left = N - (v0 + nv - 1) * L;
        p.bp = pb + k0 * npad + v0 * L * p.kc;
        p.mlast = tail(left);
        p.ctail = left < L;
        p.bias = ep.bias ? ep.bias + v0 * L : nullptr;
        dispatch_panel(
            nv, [&](auto nvc) { nn_panel<decltype(nvc)::value>(m0, m1, A + k0, C + v0 * L, p); });
      });
    }
  }
}

// ---- Fewer rows than a micro-tile (batch-1 inference on 3x3 maps, Dense on a few
// vectors). These products are bound by reading B, so one tile covers all M rows
// and every element of B is loaded once: A is copied into a zero-padded block of MP
// rows (multiples of 4 up to kMaxMR) and C gets only its M rows; the columns go in
// chunks of up to 2 vectors so the MP x chunk accumulators stay in registers.
constexpr int kSmallAcc = vec::kRegs * 3 / 4;
inline int small_rows_pad(int64_t M) {
  int mp = static_cast<int>((M + 3) / 4 * 4);
  return std::min<int>(std::max(mp, 4), static_cast<int>(kMaxMR));
}

template <bool MaskB>
MINICNN_GEMM_INLINE void small_chunk(int mp, int w, const float* a, float* c, const NNArgs& p) {
  // MP x W accumulators within kSmallAcc (constexpr-pruned per ISA).
  switch (mp * 4 + w) {
    case 4 * 4 + 1: ukr_nn<4, 1, true, MaskB>(a, c, 0, p); break;
    case 4 * 4 + 2: ukr_nn<4, 2, true, MaskB>(a, c, 0, p); break;
    case 8 * 4 + 1:
      if constexpr (kMaxMR >= 8) ukr_nn<8, 1, true, MaskB>(a, c, 0, p);
      break;
    case 8 * 4 + 2:
      if constexpr (kMaxMR >= 8 && kSmallAcc >= 16) ukr_nn<8, 2, true, MaskB>(a, c, 0, p);
      break;
    case 12 * 4 + 1:
      if constexpr (kMaxMR >= 12) ukr_nn<12, 1, true, MaskB>(a, c, 0, p);
      break;
    case 12 * 4 + 2:
      if constexpr (kMaxMR >= 12 && kSmallAcc >= 24) ukr_nn<12, 2, true, MaskB>(a, c, 0, p);
      break;
    default:
      if constexpr (kMaxMR >= 16) ukr_nn<16, 1, true, MaskB>(a, c, 0, p);
      break;
  }
}
// Column vectors per chunk for MP padded rows.
inline int small_chunk_width(int mp) {
  return mp * 2 <= kSmallAcc ? 2 : 1;
}

// C rows [0, M) (M < kMaxMR) (+)= A * B, then the epilogue, for `part` of `parts`
// equal shares of the vector columns. B is either packed panels (pack_b_rows, K
// blocked by nn_kc) or, with packed == false, row-major [K, N] with leading dimension
// ldb, read in place.
inline void nn_small(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
                     int64_t ldb, bool packed, float* C, int64_t ldc, bool accumulate,
                     const Epilogue<float>& ep, int part = 0, int parts = 1) {
  const int mp = small_rows_pad(M), cw = small_chunk_width(mp);
  const int64_t nvec = (N + L - 1) / L, npad = nvec * L, kc_blk = packed ? nn_kc(K) : K;
  float* apad = scratch<float, 7>(static_cast<std::size_t>(mp * K));
  for (int64_t r = 0; r < mp; ++r) {
    if (r < M)
      std::memcpy(apad + r * K, A + r * lda, sizeof(float) * K);
    else
      std::fill(apad + r * K, apad + (r + 1) * K, 0.f);
  }
  for (int64_t k0 = 0; k0 < K; k0 += kc_blk) {
    NNArgs p;
    p.kc = std::min(kc_blk, K - k0);
    p.lda = K;
    p.ldc = ldc;
    p.rows = M;
    p.load_c = accumulate || k0 > 0;
    p.epi = k0 + p.kc == K && ep.active();
    p.act = ep.act;
    // Columns [v, v + w) vectors, B rows of that chunk at b (bstride apart).
    auto chunk = [&](int64_t v, int w, const float* b) {
      const int64_t left = N - (v + w - 1) * L;
      p.bp = b;
      p.mlast = tail(left);
      p.ctail = left < L;
      p.bias = ep.bias ? ep.bias + v * L : nullptr;
      if (!packed && p.ctail)
        small_chunk<true>(mp, w, apad + k0, C + v * L, p);
      else
        small_chunk<false>(mp, w, apad + k0, C + v * L, p);
    };
    // Threads own single vector columns (finer than panels: balance matters when a
    // layer has only a few panels); runs of them within a panel form the chunks.
    auto owner = [&](int64_t v) { return static_cast<int>(v * parts / nvec); };
    auto run_chunks = [&](int64_t v0, int nv, auto&& b_of) {
      for (int c0 = 0; c0 < nv;) {
        const int own = owner(v0 + c0);
        int w = 1;
        while (w < cw && c0 + w < nv && owner(v0 + c0 + w) == own) ++w;
        if (own == part) chunk(v0 + c0, w, b_of(c0));
        c0 += w;
      }
    };
    if (packed) {
      for_each_panel(nvec, [&](int64_t v0, int nv) {
        const float* panel = B + k0 * npad + v0 * L * p.kc;
        p.bstride = nv * L;
        run_chunks(v0, nv, [&](int c0) { return panel + c0 * L; });
      });
    } else {
      p.bstride = ldb;
      run_chunks(0, static_cast<int>(nvec), [&](int c0) { return B + k0 * ldb + c0 * L; });
    }
  }
}

// C[MR x NV*L] (rows r >= skip) += A[k, i..i+MR]^T B[k, panel] summed over kc rows k.
template <int MR, int NV, bool Tail>
MINICNN_GEMM_INLINE void ukr_tn(int64_t kc, const float* a, int64_t lda, const float* b,
                                int64_t ldb, float* c, int64_t ldc, int skip, vec::Mask mlast) {
  vec::V acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[r][v] = vec::vzero();
  for (int64_t k = 0; k < kc; ++k) {
    vec::V bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v)
      bv[v] = Tail && v == NV - 1 ? vec::ld<true>(b + k * ldb + L * v, mlast)
                                  : vec::ld<false>(b + k * ldb + L * v, mlast);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const vec::V av = vec::vset(a[k * lda + r]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = vec::vfma(av, bv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    if (r < skip) continue;
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      float* p = c + r * ldc + L * v;
      if (Tail && v == NV - 1)
        vec::st<true>(p, vec::vadd(vec::ld<true>(p, mlast), acc[r][v]), mlast);
      else
        vec::st<false>(p, vec::vadd(vec::ld<false>(p, mlast), acc[r][v]), mlast);
    }
  }
}

template <int NV, bool Tail>
void tn_panel(int64_t i0, int64_t i1, int64_t kc, const float* A, int64_t lda, const float* B,
              int64_t ldb, float* C, int64_t ldc, vec::Mask mlast) {
  constexpr int MR = mr_for(NV);
  for (int64_t i = i0; i < i1; i += MR) {
    int64_t it = i;
    int skip = 0;
    if (i + MR > i1) {
      it = i1 - MR;
      skip = static_cast<int>(i - it);
    }
    ukr_tn<MR, NV, Tail>(kc, A + it, lda, B, ldb, C + it * ldc, ldc, skip, mlast);
  }
}

// C rows [i0, i1) (needs i1 >= MR) += A[k0:k1, i0:i1]^T * B[k0:k1, :]; colsum (may be
// null) += column sums of B[k0:k1, :], taken while each B block is in cache.
inline void tn_rows(int64_t k0, int64_t k1, int64_t i0, int64_t i1, int64_t N, const float* A,
                    int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
                    float* colsum) {
  const int64_t nvec = (N + L - 1) / L;
  // Short reduction blocks keep the B panel block (64 rows x 4 vectors) in L1 while all
  // row tiles pass over it (measured with AVX-512: 64 beats 32..512 on MobileNetV2).
  const int64_t kcb = 64;
  for (int64_t k = k0; k < k1; k += kcb) {
    int64_t kc = std::min(kcb, k1 - k);
    const float* a = A + k * lda;
    const float* b = B + k * ldb;
    for_each_panel(nvec, [&](int64_t v0, int nv) {
      const int64_t left = N - (v0 + nv - 1) * L;
      const vec::Mask mlast = tail(left);
      const float* bp = b + v0 * L;
      float* c = C + v0 * L;
      dispatch_panel(nv, [&](auto nvc) {
        if (left < L)
          tn_panel<decltype(nvc)::value, true>(i0, i1, kc, a, lda, bp, ldb, c, ldc, mlast);
        else
          tn_panel<decltype(nvc)::value, false>(i0, i1, kc, a, lda, bp, ldb, c, ldc, mlast);
      });
      if (colsum) {
        for (int v = 0; v < nv; ++v) {
          const int64_t n = (v0 + v) * L;
          const vec::Mask m = tail(N - n);
          const bool part_vec = N - n < L;
          vec::V s = vec::vzero();
          for (int64_t r = 0; r < kc; ++r) s = vec::vadd(s, ld_last(b + r * ldb + n, m, part_vec));
          st_last(colsum + n, vec::vadd(ld_last(colsum + n, m, part_vec), s), m, part_vec);
        }
      }
    });
  }
}
// Relative cost of a tn product with C [rows x cols]: lanes computed, padding of the
// last tile of each panel included; 1-vector panels run at about 60% of the others.
inline double tn_cost(int64_t rows, int64_t cols) {
  double c = 0;
  for_each_panel((cols + L - 1) / L, [&](int64_t, int nv) {
    const int64_t mr = mr_for(nv);
    c += double((rows + mr - 1) / mr) * double(mr * nv) * (nv == 1 ? 1.6 : 1.0);
  });
  return c;
}

}  // namespace gemm_isa

// ---- Entry points called by gemm.hpp's dispatchers (float only) ----

inline int64_t gemm_packed_floats(int64_t K, int64_t N) {
  return gemm_isa::packed_floats(K, N);
}

// buf (gemm_packed_floats(K, N) floats) = B packed, B(k, n) = trans_b ? B[n*ldb + k] : B[k*ldb +
// n].
inline void gemm_pack(int64_t K, int64_t N, const float* B, int64_t ldb, bool trans_b, float* buf) {
  gemm_isa::pack_b_rows(0, K, N, K, gemm_detail::nn_kc(K), B, trans_b ? 1 : ldb, trans_b ? ldb : 1,
                        buf);
}

// C rows [0, M) (+)= A[M, K] * packed B, then the epilogue; on the calling thread.
// B / ldb / trans_b: the unpacked B, for products without a K dimension.
inline void gemm_packed_rows(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                             const float* panels, const float* B, int64_t ldb, bool trans_b,
                             float* C, int64_t ldc, bool accumulate, const Epilogue<float>& ep) {
  using namespace gemm_isa;
  if (K <= 0)
    gemm_detail::small_rows(int64_t(0), M, N, K, A, lda, B, ldb, trans_b, C, ldc, accumulate, ep);
  else if (M >= kMaxMR)
    nn_rows(0, M, N, K, A, lda, panels, C, ldc, accumulate, ep);
  else if (M > 0)
    nn_small(M, N, K, A, lda, panels, 0, true, C, ldc, accumulate, ep);
}

// As gemm_packed_rows, split over up to num_threads() threads: by rows when there are
// many, else by column panels (each thread then reads only its part of B, which for
// batch-1 inference on small maps is most of the traffic).
inline void gemm_packed(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                        const float* pb, const float* B, int64_t ldb, bool trans_b, float* C,
                        int64_t ldc, bool accumulate, const Epilogue<float>& ep) {
  using namespace gemm_isa;
  using gemm_detail::kRowAlign;
  using gemm_detail::plan_threads;
  using gemm_detail::split_range;
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    gemm_packed_rows(M, N, K, A, lda, pb, B, ldb, trans_b, C, ldc, accumulate, ep);
    return;
  }
  const int64_t nvec = (N + L - 1) / L, panels = gemm_detail::panel_count(nvec);
  const double flops = 2.0 * M * N * K;
  if (M < kMaxMR) {
    int nt = plan_threads(flops, nvec);
    if (nt <= 1) {
      nn_small(M, N, K, A, lda, pb, 0, true, C, ldc, accumulate, ep);
      return;
    }
#pragma omp parallel num_threads(nt)
    nn_small(M, N, K, A, lda, pb, 0, true, C, ldc, accumulate, ep, thread_index(), nt);
    return;
  }
  // Rows in blocks of at least one micro-tile each, or whole panels: columns when
  // B outweighs A or rows are too few to share, and the panels split evenly enough.
  const bool by_columns = (N > 2 * M || M < 4 * kMaxMR) && panels >= 2;
  int nt = plan_threads(flops, by_columns ? panels : M / kMaxMR);
  if (nt <= 1) {
    nn_rows(0, M, N, K, A, lda, pb, C, ldc, accumulate, ep);
    return;
  }
  if (by_columns) {
#pragma omp parallel num_threads(nt)
    nn_rows(0, M, N, K, A, lda, pb, C, ldc, accumulate, ep, thread_index(), nt);
    return;
  }
  const int64_t align = M >= 4 * kRowAlign * nt ? kRowAlign : kMaxMR;
#pragma omp parallel num_threads(nt)
  {
    int64_t b, e;
    split_range(M, thread_index(), nt, align, &b, &e);
    // The last tile of a range may start in the previous range: reads only.
    if (e > b) nn_rows(b, e, N, K, A, lda, pb, C, ldc, accumulate, ep);
  }
}

// C[M,N] (+)= A[M,K] * op(B), then the epilogue; threads as gemm.hpp describes.
inline void gemm_rowmajor(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                          const float* B, int64_t ldb, bool trans_b, float* C, int64_t ldc,
                          bool accumulate, const Epilogue<float>& ep) {
  using namespace gemm_isa;
  using gemm_detail::kRowAlign;
  using gemm_detail::plan_threads;
  using gemm_detail::split_range;
  if (M <= 0 || N <= 0) return;
  if (M >= kMaxMR && K > 0 && 2.0 * M * N * K >= 2.0e5) {
    int64_t npad = pad_lanes(N), kc_blk = nn_kc(K);
    float* pb = scratch<float, 0>(static_cast<std::size_t>(K * npad));
    int nt = plan_threads(2.0 * M * N * K, (M + kRowAlign - 1) / kRowAlign);
    const int64_t sk = trans_b ? 1 : ldb, sn = trans_b ? ldb : 1;
    if (nt <= 1) {
      pack_b_rows(0, K, N, K, kc_blk, B, sk, sn, pb);
      nn_rows(0, M, N, K, A, lda, pb, C, ldc, accumulate, ep);
      return;
    }
    // Few rows and many columns (the 3x3-pixel layers): threads split the columns, so
    // each packs and keeps its own part of B in its L2 and reads all of the small A;
    // otherwise they split the rows and share B.
    const int64_t nvec = npad / L;
    if (M < N && nvec >= 4 * nt) {
#pragma omp parallel num_threads(nt)
      {
        const int t = thread_index();
        pack_b_rows(0, K, N, K, kc_blk, B, sk, sn, pb, t, nt);
        nn_rows(0, M, N, K, A, lda, pb, C, ldc, accumulate, ep, t, nt);
      }
      return;
    }
#pragma omp parallel num_threads(nt)
    {
      int t = thread_index();
      int64_t kb, ke;
      split_range(K, t, nt, 1, &kb, &ke);
      pack_b_rows(kb, ke, N, K, kc_blk, B, sk, sn, pb);
#pragma omp barrier
      int64_t b, e;
      split_range(M, t, nt, kRowAlign, &b, &e);
      // The last tile of a range may start in the previous range: reads only.
      if (e > b) nn_rows(b, e, N, K, A, lda, pb, C, ldc, accumulate, ep);
    }
    return;
  }
  if (M < kMaxMR && !trans_b && K > 0 && 2.0 * M * N * K >= 2.0e4) {
    // B read in place, columns split between threads.
    const int64_t nvec = (N + L - 1) / L;
    int nt = plan_threads(2.0 * M * N * K, nvec);
    if (nt <= 1) {
      nn_small(M, N, K, A, lda, B, ldb, false, C, ldc, accumulate, ep);
      return;
    }
#pragma omp parallel num_threads(nt)
    nn_small(M, N, K, A, lda, B, ldb, false, C, ldc, accumulate, ep, thread_index(), nt);
    return;
  }
  gemm_detail::small_rows(int64_t(0), M, N, K, A, lda, B, ldb, trans_b, C, ldc, accumulate, ep);
}

// On the calling thread: C[M,N] += A^T * B with A stored [K,M] and B stored [K,N];
// colsum (length N, may be null) += column sums of B.
inline void gemm_tn_serial(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                           const float* B, int64_t ldb, float* C, int64_t ldc, float* colsum) {
  using namespace gemm_isa;
  if (N <= 0 || K <= 0) return;
  const bool direct_ok = M >= kMaxMR, swap_ok = N >= kMaxMR;
  // C^T = B^T A has the same cost but other tiles; take it when C's columns fill
  // the vector panels badly (e.g. 24 columns: 1.5 zmm vectors) and then add C^T's transpose.
  if (swap_ok && (!direct_ok || tn_cost(N, M) < 0.85 * tn_cost(M, N))) {
    float* ct = scratch<float, 6>(static_cast<std::size_t>(M * N));
    std::fill(ct, ct + M * N, 0.f);
    tn_rows(0, K, 0, N, M, B, ldb, A, lda, ct, M, nullptr);
    for (int64_t i = 0; i < M; ++i)
      for (int64_t n = 0; n < N; ++n) C[i * ldc + n] += ct[n * M + i];
    if (colsum) gemm_detail::add_column_sums(K, N, B, ldb, colsum);
    return;
  }
  if (direct_ok) {
    tn_rows(0, K, 0, M, N, A, lda, B, ldb, C, ldc, colsum);
  } else {
    gemm_detail::small_tn(int64_t(0), K, M, N, A, lda, B, ldb, C, ldc);
    if (colsum) gemm_detail::add_column_sums(K, N, B, ldb, colsum);
  }
}

inline int64_t gemm_max_mr() {
  return gemm_isa::kMaxMR;
}

}  // namespace minicnn::kernels::MINICNN_ISA_NS
