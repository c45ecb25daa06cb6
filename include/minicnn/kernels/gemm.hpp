// Row-major matrix products used by Conv2D and Dense, on raw pointers (no copies of
// the operands; Eigen::Map where Eigen runs them):
//   gemm_nn:  C[M,N] (+)= A[M,K] * B[K,N]      then optional epilogue C = act(C + bias)
//   gemm_nt:  C[M,N] (+)= A[M,K] * B[N,K]^T
//   gemm_tn:  C[M,N] (+)= A[K,M]^T * B[K,N]    (K is the long reduction: pixels), optional
//             column sums of B added to `colsum` (the bias gradient) in the same pass.
// All matrices are row-major with a leading dimension (elements between rows); float
// and double.
//
// Threading: a call uses up to minicnn::num_threads() OpenMP threads, each running a
// single-threaded product on its block: rows of C (or, for few rows and many columns,
// the column panels) for nn/nt; the reduction (private partial sums) or the rows of C
// for tn. Called inside a parallel region a call stays on the calling thread, and so
// does Eigen (it checks omp_get_num_threads() > 1). Measured at 2 threads on the
// MobileNetV2 1x1 shapes, row blocks through single-threaded Eigen beat Eigen's own
// OpenMP GEMM (e.g. 2031 vs 2850 us for [73728,16]x[16,96]) except when M is small
// against K and N (288 rows x 960 x 320: 1068 vs 757 us), where the Eigen path lets
// Eigen thread itself.
//
// float with AVX-512 (-march=native, MINICNN_NATIVE=ON): own micro-kernels instead of
// Eigen. Outer-product tiles (MR rows x 16-64 columns of C in zmm registers) read the
// tall operand in place and the small one (weights) from zero-padded column panels
// packed once per call; C is written once, bias + activation applied in registers.
// Eigen's GEMM zero-fills C, then packs and re-reads the tall operand, which costs
// these memory-bound shapes up to 2x. Products below one micro-tile use plain loops.
// float without AVX-512: Eigen as described above. double (the finite-difference
// gradient checks, small shapes): plain loops. Eigen's AVX-512 double code draws
// GCC 12 -Wmaybe-uninitialized false positives that no pragma here can silence once
// the tests use a precompiled minicnn.hpp, and would cost ~5 s of compile time in
// every file that instantiates a double layer.
#pragma once
// GCC 12 reports -W(maybe-)uninitialized inside Eigen's AVX-512 code (from
// _mm512_undefined_ps); the diagnostic state at the include is what counts.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <Eigen/Core>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "../core/parallel.hpp"
#include "../core/tensor.hpp"
#include "activation.hpp"

namespace minicnn {
namespace kernels {

// Applied to each row of C after the product: C[r, n] = act(C[r, n] + bias[n]).
template <typename T>
struct Epilogue {
  const T* bias = nullptr;
  Activation act = Activation::Linear;
  bool active() const { return bias != nullptr || act != Activation::Linear; }
};

namespace gemm_detail {

template <typename T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using CMap = Eigen::Map<const RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <typename T>
using MMap = Eigen::Map<RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

// Per-thread growable aligned buffers: layers must not allocate after their first
// step, and a thread that calls these kernels keeps its scratch for the next call.
template <typename T, int Slot>
T* scratch(std::size_t n) {
  struct Buf {
    std::unique_ptr<T[], detail::AlignedFree> p;
    std::size_t cap = 0;
  };
  thread_local Buf b;
  if (n > b.cap) {
    b.p.reset(static_cast<T*>(detail::aligned_bytes(n * sizeof(T))));
    b.cap = n;
  }
  return b.p.get();
}

// Threads worth using for `flops` of work split into at most `units` pieces. A parallel
// region costs a few microseconds, so small products stay on one thread.
inline int plan_threads(double flops, int64_t units) {
  if (in_parallel()) return 1;
  int nt = num_threads();
  int64_t by_work = static_cast<int64_t>(flops / 4.0e5);
  int64_t lim = std::max<int64_t>(1, std::min(by_work, units));
  return static_cast<int>(std::min<int64_t>(nt, lim));
}

// [begin, end) of part t of n parts of `total` items, in multiples of `align`.
inline void split_range(int64_t total, int t, int n, int64_t align, int64_t* b, int64_t* e) {
  int64_t units = (total + align - 1) / align;
  *b = std::min(total, units * t / n * align);
  *e = std::min(total, units * (t + 1) / n * align);
}

template <typename T>
void apply_epilogue_rows(T* C, int64_t ldc, int64_t rows, int64_t N, const Epilogue<T>& ep) {
  for (int64_t r = 0; r < rows; ++r) {
    T* c = C + r * ldc;
    if (ep.bias)
      for (int64_t n = 0; n < N; ++n) c[n] += ep.bias[n];
    activate_inplace(ep.act, c, N);
  }
}

// ---- Plain loops: double, and float products too small for the AVX-512 kernels ----
// (fewer rows than a micro-tile, or a few hundred thousand flops: a batch of a few
// feature vectors through Dense). With AVX-512, Eigen is then not instantiated at
// all: each Eigen GEMM form costs seconds of compile time in every file using a layer.

// C rows [r0, r1) (+)= A * op(B), then the epilogue. B is read once: its rows are the
// outer loop and the (few) rows of C stay in L1.
template <typename T>
void small_rows(int64_t r0, int64_t r1, int64_t N, int64_t K, const T* A, int64_t lda, const T* B,
                int64_t ldb, bool trans_b, T* C, int64_t ldc, bool accumulate,
                const Epilogue<T>& ep) {
  if (!accumulate)
    for (int64_t m = r0; m < r1; ++m) std::fill(C + m * ldc, C + m * ldc + N, T(0));
  if (trans_b) {
    for (int64_t n = 0; n < N; ++n) {
      const T* b = B + n * ldb;
      for (int64_t m = r0; m < r1; ++m) {
        const T* a = A + m * lda;
        T s = T(0);
        for (int64_t k = 0; k < K; ++k) s += a[k] * b[k];
        C[m * ldc + n] += s;
      }
    }
  } else {
    for (int64_t k = 0; k < K; ++k) {
      const T* b = B + k * ldb;
      for (int64_t m = r0; m < r1; ++m) {
        const T a = A[m * lda + k];
        T* c = C + m * ldc;
        for (int64_t n = 0; n < N; ++n) c[n] += a * b[n];
      }
    }
  }
  if (ep.active()) apply_epilogue_rows(C + r0 * ldc, ldc, r1 - r0, N, ep);
}

// C[M,N] += A[k0:k1, :]^T * B[k0:k1, :].
template <typename T>
void small_tn(int64_t k0, int64_t k1, int64_t M, int64_t N, const T* A, int64_t lda, const T* B,
              int64_t ldb, T* C, int64_t ldc) {
  for (int64_t k = k0; k < k1; ++k) {
    const T* b = B + k * ldb;
    for (int64_t i = 0; i < M; ++i) {
      const T a = A[k * lda + i];
      T* c = C + i * ldc;
      for (int64_t n = 0; n < N; ++n) c[n] += a * b[n];
    }
  }
}

// ---- Eigen paths (any T) -------------------------------------------------------
// Eigen's AVX-512 packets start from _mm512_undefined_ps; once inlined here GCC 12
// reports them as -W(maybe-)uninitialized, so the warning is off for this section.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

// Rows per Eigen call: C and A blocks of a few hundred KB stay in L2 between the
// product and the epilogue.
inline int64_t eigen_row_block(int64_t N, int64_t K) {
  int64_t w = std::max<int64_t>(1, std::max(N, K));
  return std::max<int64_t>(16, (96 * 1024) / w);
}

// C rows [r0, r1) of op(A)*op(B) on the calling thread.
template <typename T>
void eigen_rows(int64_t r0, int64_t r1, int64_t N, int64_t K, const T* A, int64_t lda, const T* B,
                int64_t ldb, bool trans_b, T* C, int64_t ldc, bool accumulate,
                const Epilogue<T>& ep) {
  int64_t blk = eigen_row_block(N, K);
  for (int64_t m = r0; m < r1; m += blk) {
    int64_t rows = std::min(blk, r1 - m);
    MMap<T> c(C + m * ldc, rows, N, Eigen::OuterStride<>(ldc));
    // Only "+=" products: "=" is setZero plus the same product inside Eigen anyway,
    // and every product form instantiated costs seconds of compile time.
    if (!accumulate) c.setZero();
    if (K > 0) {
      CMap<T> a(A + m * lda, rows, K, Eigen::OuterStride<>(lda));
      if (trans_b)
        c.noalias() += a * CMap<T>(B, N, K, Eigen::OuterStride<>(ldb)).transpose();
      else
        c.noalias() += a * CMap<T>(B, K, N, Eigen::OuterStride<>(ldb));
    }
    if (ep.active()) apply_epilogue_rows(C + m * ldc, ldc, rows, N, ep);
  }
}

template <typename T>
void eigen_rowmajor(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B,
                    int64_t ldb, bool trans_b, T* C, int64_t ldc, bool accumulate,
                    const Epilogue<T>& ep) {
  int nt = plan_threads(2.0 * M * N * K + M * N, M / 16);
  // Few rows against large operands (960x320 weights on 288 rows): Eigen's own OpenMP
  // GEMM, which also splits the columns, measured faster than row blocks. It follows
  // omp_get_max_threads() and stays serial inside a parallel region.
  if (nt <= 1 || M < std::max(N, K)) {
    eigen_rows(0, M, N, K, A, lda, B, ldb, trans_b, C, ldc, accumulate, ep);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    int64_t b, e;
    split_range(M, thread_index(), nt, 16, &b, &e);
    if (e > b) eigen_rows(b, e, N, K, A, lda, B, ldb, trans_b, C, ldc, accumulate, ep);
  }
}

// C[M,N] += A[k0:k1, :]^T * B[k0:k1, :] (and colsum += column sums of that B block).
template <typename T>
void eigen_tn_rows(int64_t k0, int64_t k1, int64_t M, int64_t N, const T* A, int64_t lda,
                   const T* B, int64_t ldb, T* C, int64_t ldc, T* colsum) {
  if (k1 <= k0) return;
  MMap<T> c(C, M, N, Eigen::OuterStride<>(ldc));
  int64_t blk = std::max<int64_t>(64, (128 * 1024) / std::max<int64_t>(1, M + N));
  for (int64_t k = k0; k < k1; k += blk) {
    int64_t rows = std::min(blk, k1 - k);
    CMap<T> a(A + k * lda, rows, M, Eigen::OuterStride<>(lda));
    CMap<T> b(B + k * ldb, rows, N, Eigen::OuterStride<>(ldb));
    if (M > 0) c.noalias() += a.transpose() * b;
    if (colsum)
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t n = 0; n < N; ++n) colsum[n] += B[(k + r) * ldb + n];
  }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// Rows are split between threads in multiples of this (lcm of the micro-tile heights).
constexpr int64_t kRowAlign = 48;

// ---- AVX-512 float path -------------------------------------------------------
#if defined(__AVX512F__)
#define MINICNN_GEMM_AVX512 1

#if defined(__GNUC__)
#define MINICNN_GEMM_INLINE inline __attribute__((always_inline))
#else
#define MINICNN_GEMM_INLINE inline
#endif

// Column panels of B: widths of 4 vectors (64 floats) where possible, never a lone
// 1-vector panel unless N <= 16 (that kernel is bound by the broadcasts of A); one
// 6-vector panel for 81..96 columns, so the memory-bound 16->96 expansion writes each
// output row in one pass (measured 1550 -> 1300 us at 2 threads).
template <typename F>
MINICNN_GEMM_INLINE void for_each_panel(int64_t nvec, F&& f) {
  if (nvec <= 4 || nvec == 6) {
    f(int64_t(0), static_cast<int>(nvec));
    return;
  }
  int64_t n4 = nvec / 4, rem = nvec % 4, v = 0;
  if (rem == 1) --n4;
  for (int64_t i = 0; i < n4; ++i, v += 4) f(v, 4);
  if (rem == 1) {
    f(v, 3);
    f(v + 3, 2);
  } else if (rem) {
    f(v, static_cast<int>(rem));
  }
}
// Which of `parts` threads handles the panel of vector columns [v0, v0 + nv) of nvec:
// contiguous runs of panels, balanced by vector count (the panel's midpoint decides).
inline int panel_owner(int64_t v0, int nv, int64_t nvec, int parts) {
  if (parts <= 1) return 0;
  return static_cast<int>(std::min<int64_t>(parts - 1, (2 * v0 + nv) * parts / (2 * nvec)));
}
// Number of panels for_each_panel makes of nvec vector columns.
inline int64_t panel_count(int64_t nvec) {
  int64_t n = 0;
  for_each_panel(nvec, [&](int64_t, int) { ++n; });
  return n;
}

// Rows per micro-tile for a panel of NV vectors: MR * NV accumulators (<= 24 of the 32
// zmm registers) and the broadcasts of A amortised over NV FMAs each.
template <int NV>
struct Tile;
template <>
struct Tile<1> {
  static constexpr int MR = 16;
};
template <>
struct Tile<2> {
  static constexpr int MR = 12;
};
template <>
struct Tile<3> {
  static constexpr int MR = 8;
};
template <>
struct Tile<4> {
  static constexpr int MR = 6;
};
template <>
struct Tile<6> {
  static constexpr int MR = 4;
};
constexpr int64_t kMaxMR = 16;

inline int64_t pad16(int64_t n) {
  return (n + 15) / 16 * 16;
}
inline __mmask16 tail_mask(int64_t cols_left) {
  return cols_left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << cols_left) - 1u);
}

// K is cut into blocks of kc rows so a B panel (kc x NV*16) stays in L1/L2.
inline int64_t nn_kc(int64_t K) {
  if (K <= 320) return K;
  int64_t nb = (K + 255) / 256;
  return (K + nb - 1) / nb;
}

// In-register transpose of a 16x16 block: r[i] holds row i, afterwards column i.
// (The maskz_ forms with full masks compile to the plain instructions; the plain
// intrinsics start from _mm512_undefined_ps, which GCC 12 flags as uninitialized.)
MINICNN_GEMM_INLINE void transpose16(__m512 r[16]) {
  __m512 t[16];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_maskz_unpacklo_ps(0xFFFF, r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_maskz_unpackhi_ps(0xFFFF, r[2 * i], r[2 * i + 1]);
  }
  __m512 u[16];
#pragma GCC unroll 8
  for (int g = 0; g < 4; ++g) {
    __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 1]);
    __m512d c = _mm512_castps_pd(t[4 * g + 2]), d = _mm512_castps_pd(t[4 * g + 3]);
    u[4 * g + 0] = _mm512_castpd_ps(_mm512_maskz_unpacklo_pd(0xFF, a, c));
    u[4 * g + 1] = _mm512_castpd_ps(_mm512_maskz_unpackhi_pd(0xFF, a, c));
    u[4 * g + 2] = _mm512_castpd_ps(_mm512_maskz_unpacklo_pd(0xFF, b, d));
    u[4 * g + 3] = _mm512_castpd_ps(_mm512_maskz_unpackhi_pd(0xFF, b, d));
  }
  // u[4g + j], 128-bit lane L = rows 4g..4g+3 of column 4L + j: transpose the lanes.
#pragma GCC unroll 8
  for (int j = 0; j < 4; ++j) {
    __m512 v0 = _mm512_maskz_shuffle_f32x4(0xFFFF, u[j], u[4 + j], 0x44);
    __m512 v1 = _mm512_maskz_shuffle_f32x4(0xFFFF, u[j], u[4 + j], 0xEE);
    __m512 v2 = _mm512_maskz_shuffle_f32x4(0xFFFF, u[8 + j], u[12 + j], 0x44);
    __m512 v3 = _mm512_maskz_shuffle_f32x4(0xFFFF, u[8 + j], u[12 + j], 0xEE);
    r[j] = _mm512_maskz_shuffle_f32x4(0xFFFF, v0, v2, 0x88);
    r[4 + j] = _mm512_maskz_shuffle_f32x4(0xFFFF, v0, v2, 0xDD);
    r[8 + j] = _mm512_maskz_shuffle_f32x4(0xFFFF, v1, v3, 0x88);
    r[12 + j] = _mm512_maskz_shuffle_f32x4(0xFFFF, v1, v3, 0xDD);
  }
}

// Packs rows [k_lo, k_hi) of B (element (k, n) at B[k*sk + n*sn]) into panels:
// for each k-block, for each panel, kc rows of nv*16 floats, zero-padded past N.
// Only the panels that panel_owner gives to `part` of `parts` (default: all).
inline void pack_b_rows(int64_t k_lo, int64_t k_hi, int64_t N, int64_t K, int64_t kc_blk,
                        const float* B, int64_t sk, int64_t sn, float* pb, int part = 0,
                        int parts = 1) {
  int64_t nvec = (N + 15) / 16, npad = nvec * 16;
  auto for_my_panels = [&](auto&& f) {
    for_each_panel(nvec, [&](int64_t v0, int nv) {
      if (panel_owner(v0, nv, nvec, parts) == part) f(v0, nv);
    });
  };
  if (sk == 1 && sn != 1) {
    // Transposed source (rows of B are columns in memory): 16x16 register transposes
    // keep both the reads and the writes contiguous.
    for (int64_t k0 = k_lo / kc_blk * kc_blk; k0 < k_hi; k0 += kc_blk) {
      int64_t kc = std::min(kc_blk, K - k0);
      int64_t ka = std::max(k_lo, k0), kb = std::min(k_hi, k0 + kc);
      for_my_panels([&](int64_t v0, int nv) {
        float* panel = pb + k0 * npad + v0 * 16 * kc;
        const int64_t w = nv * 16;
        for (int64_t k = ka; k < kb; k += 16) {
          int64_t kn = std::min<int64_t>(16, kb - k);
          __mmask16 km = tail_mask(kn);
          for (int v = 0; v < nv; ++v) {
            __m512 r[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; ++i) {
              int64_t n = (v0 + v) * 16 + i;
              r[i] = n < N ? _mm512_maskz_loadu_ps(km, B + n * sn + k) : _mm512_setzero_ps();
            }
            transpose16(r);
            for (int64_t i = 0; i < kn; ++i)
              _mm512_storeu_ps(panel + (k - k0 + i) * w + 16 * v, r[i]);
          }
        }
      });
    }
    return;
  }
  for (int64_t k = k_lo; k < k_hi; ++k) {
    int64_t k0 = k / kc_blk * kc_blk, kc = std::min(kc_blk, K - k0);
    for_my_panels([&](int64_t v0, int nv) {
      float* dst = pb + k0 * npad + v0 * 16 * kc + (k - k0) * nv * 16;
      int64_t n0 = v0 * 16, w = nv * 16;
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
  const float* bp = nullptr;        // packed panel: nseg*kc rows of NV*16 floats
  int64_t bstride = 0;              // floats between rows of B at bp (0: NV*16, a packed panel)
  __mmask16 mlast = 0xFFFF;         // valid columns of the panel's last vector
  __mmask16 bmask = 0xFFFF;         // columns of B's last vector to load (B read in place)
  int64_t rows = int64_t(1) << 40;  // rows r >= rows of the tile are neither read nor written in C
  bool load_c = false;              // accumulate into C (else overwrite)
  bool epi = false;                 // apply bias / activation before storing
  const float* bias = nullptr;
  Activation act = Activation::Linear;
};

// C tile [MR x NV*16] = (C if load_c) + A tile * B panel, then the epilogue.
// Rows r < skip belong to a previous tile (the last tile of a range is shifted back
// to stay in bounds) and are neither read nor written. PrefetchB (the few-row products,
// bound by reading B): prefetch B 16 rows ahead; a template flag so the large-product
// tiles carry no test for it in their inner loop.
template <int MR, int NV, bool PrefetchB = false>
MINICNN_GEMM_INLINE void ukr_nn(const float* a, float* c, int skip, const NNArgs& p) {
  const int64_t lda = p.lda, ldc = p.ldc;
  const __mmask16 mlast = p.mlast;
  __m512 acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      if (p.load_c && r >= skip && r < p.rows)
        acc[r][v] = v == NV - 1 ? _mm512_maskz_loadu_ps(mlast, c + r * ldc + 16 * v)
                                : _mm512_loadu_ps(c + r * ldc + 16 * v);
      else
        acc[r][v] = _mm512_setzero_ps();
    }
  const float* bp = p.bp;
  const int64_t bstep = p.bstride ? p.bstride : NV * 16;
  for (int64_t s = 0; s < p.nseg; ++s) {
    const float* as = a + s * p.seg_stride;
    for (int64_t k0 = 0; k0 < p.kc; k0 += 16) {
      // The next tile's rows of A: the hardware prefetchers lose track of MR streams.
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(as + (r + MR) * lda + k0), _MM_HINT_T0);
      int64_t k1 = std::min(p.kc, k0 + 16);
      for (int64_t k = k0; k < k1; ++k, bp += bstep) {
        // 16 rows ahead: measured best of 8/16/32 on the batch-1 3x3-map layers (B
        // streams from L3 there; +25-30% over the hardware prefetchers alone).
        if constexpr (PrefetchB)
#pragma GCC unroll 8
          for (int v = 0; v < NV; ++v)
            _mm_prefetch(reinterpret_cast<const char*>(bp + 16 * bstep + 16 * v), _MM_HINT_T0);
        __m512 b[NV];
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v)
          b[v] = v == NV - 1 ? _mm512_maskz_loadu_ps(p.bmask, bp + 16 * v)
                             : _mm512_loadu_ps(bp + 16 * v);
#pragma GCC unroll 16
        for (int r = 0; r < MR; ++r) {
          __m512 av = _mm512_set1_ps(as[r * lda + k]);
#pragma GCC unroll 8
          for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(av, b[v], acc[r][v]);
        }
      }
    }
  }
  if (p.epi) {
    if (p.bias) {
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        __m512 bv = v == NV - 1 ? _mm512_maskz_loadu_ps(mlast, p.bias + 16 * v)
                                : _mm512_loadu_ps(p.bias + 16 * v);
#pragma GCC unroll 16
        for (int r = 0; r < MR; ++r) acc[r][v] = _mm512_add_ps(acc[r][v], bv);
      }
    }
    if (p.act != Activation::Linear) {
      // maskz_ forms: the plain max/min intrinsics start from _mm512_undefined_ps,
      // which GCC 12 reports as uninitialized (same instructions).
      const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.f);
      const bool six_cap = p.act == Activation::ReLU6;
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) {
          // Constant first: the second operand wins when one is NaN, so NaN propagates.
          acc[r][v] = _mm512_maskz_max_ps(0xFFFF, zero, acc[r][v]);
          if (six_cap) acc[r][v] = _mm512_maskz_min_ps(0xFFFF, six, acc[r][v]);
        }
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    if (r < skip || r >= p.rows) continue;
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      if (v == NV - 1)
        _mm512_mask_storeu_ps(c + r * ldc + 16 * v, mlast, acc[r][v]);
      else
        _mm512_storeu_ps(c + r * ldc + 16 * v, acc[r][v]);
    }
  }
}

// Rows [m0, m1) of C for one panel and one k-block; needs m1 >= MR (rows before m0
// may be read from A, never written).
template <int NV>
void nn_panel(int64_t m0, int64_t m1, const float* A, float* C, const NNArgs& p) {
  constexpr int MR = Tile<NV>::MR;
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

template <typename F>
MINICNN_GEMM_INLINE void dispatch_panel(int nv, F&& f) {
  switch (nv) {
    case 1: f(std::integral_constant<int, 1>()); break;
    case 2: f(std::integral_constant<int, 2>()); break;
    case 3: f(std::integral_constant<int, 3>()); break;
    case 4: f(std::integral_constant<int, 4>()); break;
    default: f(std::integral_constant<int, 6>()); break;
  }
}

// Rows [r0, r1) of C = A * packed B on the calling thread (needs r1 >= kMaxMR), for
// the panels panel_owner gives to `part` of `parts` (default: all).
inline void nn_rows_avx512(int64_t r0, int64_t r1, int64_t N, int64_t K, const float* A,
                           int64_t lda, const float* pb, float* C, int64_t ldc, bool accumulate,
                           const Epilogue<float>& ep, int part = 0, int parts = 1) {
  const int64_t nvec = (N + 15) / 16, npad = nvec * 16, kc_blk = nn_kc(K);
  // Row blocks: the A block (rows x kc) stays in L2 while every panel of B passes over it.
  int64_t mc = std::max<int64_t>(
      kRowAlign, (256 * 1024 / (4 * std::max<int64_t>(kc_blk, 16))) / kRowAlign * kRowAlign);
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
        p.bp = pb + k0 * npad + v0 * 16 * p.kc;
        p.mlast = tail_mask(N - (v0 + nv - 1) * 16);
        p.bias = ep.bias ? ep.bias + v0 * 16 : nullptr;
        dispatch_panel(
            nv, [&](auto nvc) { nn_panel<decltype(nvc)::value>(m0, m1, A + k0, C + v0 * 16, p); });
      });
    }
  }
}

// ---- Fewer rows than a micro-tile (batch-1 inference on 3x3 maps, Dense on a few
// vectors). These products are bound by reading B, so one tile covers all M rows
// and every element of B is loaded once: A is copied into a zero-padded block of MP
// rows (4, 8, 12 or 16) and C gets only its M rows; the columns go in chunks of 2
// vectors (1 for 16 rows) so the MP x chunk accumulators stay in registers.
inline int small_rows_pad(int64_t M) {
  return M <= 4 ? 4 : M <= 8 ? 8 : M <= 12 ? 12 : 16;
}

MINICNN_GEMM_INLINE void small_chunk(int mp, int w, const float* a, float* c, const NNArgs& p) {
  switch (mp * 4 + w) {
    case 4 * 4 + 1: ukr_nn<4, 1, true>(a, c, 0, p); break;
    case 4 * 4 + 2: ukr_nn<4, 2, true>(a, c, 0, p); break;
    case 8 * 4 + 1: ukr_nn<8, 1, true>(a, c, 0, p); break;
    case 8 * 4 + 2: ukr_nn<8, 2, true>(a, c, 0, p); break;
    case 12 * 4 + 1: ukr_nn<12, 1, true>(a, c, 0, p); break;
    case 12 * 4 + 2: ukr_nn<12, 2, true>(a, c, 0, p); break;
    default: ukr_nn<16, 1, true>(a, c, 0, p); break;
  }
}

// C rows [0, M) (M < kMaxMR) (+)= A * B, then the epilogue, for `part` of `parts`
// equal shares of the vector columns. B is either packed panels (pack_b_rows, K
// blocked by nn_kc) or, with packed == false, row-major [K, N] with leading dimension
// ldb, read in place.
inline void nn_small_avx512(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                            const float* B, int64_t ldb, bool packed, float* C, int64_t ldc,
                            bool accumulate, const Epilogue<float>& ep, int part = 0,
                            int parts = 1) {
  const int mp = small_rows_pad(M), cw = mp == 16 ? 1 : 2;
  const int64_t nvec = (N + 15) / 16, npad = nvec * 16, kc_blk = packed ? nn_kc(K) : K;
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
    // Columns [v0 + c0, v0 + c0 + w) vectors, B rows of that chunk at b (bstride apart).
    auto chunk = [&](int64_t v, int w, const float* b) {
      p.bp = b;
      p.mlast = tail_mask(N - (v + w - 1) * 16);
      p.bmask = packed ? __mmask16(0xFFFF) : p.mlast;
      p.bias = ep.bias ? ep.bias + v * 16 : nullptr;
      small_chunk(mp, w, apad + k0, C + v * 16, p);
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
        const float* panel = B + k0 * npad + v0 * 16 * p.kc;
        p.bstride = nv * 16;
        run_chunks(v0, nv, [&](int c0) { return panel + c0 * 16; });
      });
    } else {
      p.bstride = ldb;
      run_chunks(0, static_cast<int>(nvec), [&](int c0) { return B + k0 * ldb + c0 * 16; });
    }
  }
}

// C[MR x NV*16] (rows r >= skip) += A[k, i..i+MR]^T B[k, panel] summed over kc rows k.
template <int MR, int NV>
MINICNN_GEMM_INLINE void ukr_tn(int64_t kc, const float* a, int64_t lda, const float* b,
                                int64_t ldb, float* c, int64_t ldc, int skip, __mmask16 mlast) {
  __m512 acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    __m512 bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v)
      bv[v] = v == NV - 1 ? _mm512_maskz_loadu_ps(mlast, b + k * ldb + 16 * v)
                          : _mm512_loadu_ps(b + k * ldb + 16 * v);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      __m512 av = _mm512_set1_ps(a[k * lda + r]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    if (r < skip) continue;
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      float* p = c + r * ldc + 16 * v;
      if (v == NV - 1)
        _mm512_mask_storeu_ps(p, mlast, _mm512_add_ps(_mm512_maskz_loadu_ps(mlast, p), acc[r][v]));
      else
        _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), acc[r][v]));
    }
  }
}

template <int NV>
void tn_panel(int64_t i0, int64_t i1, int64_t kc, const float* A, int64_t lda, const float* B,
              int64_t ldb, float* C, int64_t ldc, __mmask16 mlast) {
  constexpr int MR = Tile<NV>::MR;
  for (int64_t i = i0; i < i1; i += MR) {
    int64_t it = i;
    int skip = 0;
    if (i + MR > i1) {
      it = i1 - MR;
      skip = static_cast<int>(i - it);
    }
    ukr_tn<MR, NV>(kc, A + it, lda, B, ldb, C + it * ldc, ldc, skip, mlast);
  }
}

// C rows [i0, i1) (needs i1 >= MR) += A[k0:k1, i0:i1]^T * B[k0:k1, :]; colsum (may be
// null) += column sums of B[k0:k1, :], taken while each B block is in cache.
inline void tn_avx512(int64_t k0, int64_t k1, int64_t i0, int64_t i1, int64_t N, const float* A,
                      int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
                      float* colsum) {
  const int64_t nvec = (N + 15) / 16;
  // Short reduction blocks keep the B panel block (64 x 64 floats, 16 KB) in L1 while
  // all row tiles pass over it (measured: 64 beats 32..512 on the MobileNetV2 shapes).
  const int64_t kcb = 64;
  for (int64_t k = k0; k < k1; k += kcb) {
    int64_t kc = std::min(kcb, k1 - k);
    const float* a = A + k * lda;
    const float* b = B + k * ldb;
    for_each_panel(nvec, [&](int64_t v0, int nv) {
      __mmask16 mlast = tail_mask(N - (v0 + nv - 1) * 16);
      const float* bp = b + v0 * 16;
      float* c = C + v0 * 16;
      dispatch_panel(nv, [&](auto nvc) {
        tn_panel<decltype(nvc)::value>(i0, i1, kc, a, lda, bp, ldb, c, ldc, mlast);
      });
      if (colsum) {
        for (int v = 0; v < nv; ++v) {
          int64_t n = (v0 + v) * 16;
          __mmask16 m = tail_mask(N - n);
          __m512 s = _mm512_setzero_ps();
          for (int64_t r = 0; r < kc; ++r)
            s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(m, b + r * ldb + n));
          _mm512_mask_storeu_ps(colsum + n, m,
                                _mm512_add_ps(_mm512_maskz_loadu_ps(m, colsum + n), s));
        }
      }
    });
  }
}
// Relative cost of a tn product with C [rows x cols]: lanes computed, padding of the
// last tile of each panel included; 1-vector panels run at about 60% of the others.
inline double tn_cost(int64_t rows, int64_t cols) {
  double c = 0;
  for_each_panel((cols + 15) / 16, [&](int64_t, int nv) {
    int64_t mr = nv == 1   ? Tile<1>::MR
                 : nv == 2 ? Tile<2>::MR
                 : nv == 3 ? Tile<3>::MR
                 : nv == 4 ? Tile<4>::MR
                           : Tile<6>::MR;
    c += double((rows + mr - 1) / mr) * double(mr * nv) * (nv == 1 ? 1.6 : 1.0);
  });
  return c;
}
#endif  // __AVX512F__

}  // namespace gemm_detail

namespace gemm_detail {
template <typename T>
void gemm_rowmajor(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B,
                   int64_t ldb, bool trans_b, T* C, int64_t ldc, bool accumulate,
                   const Epilogue<T>& ep);
}  // namespace gemm_detail

// Packed form of the B operand of gemm_nn / gemm_nt, for callers that multiply many
// row blocks by the same B (the im2col convolution): pack once, then call
// multiply_rows from any thread. For types without a fast kernel it only records
// the pointer.
template <typename T>
class PackedB {
 public:
  // B(k, n) = trans_b ? B[n*ldb + k] : B[k*ldb + n].
  void pack(int64_t K, int64_t N, const T* B, int64_t ldb, bool trans_b) {
    K_ = K;
    N_ = N;
    B_ = B;
    ldb_ = ldb;
    trans_ = trans_b;
#if defined(MINICNN_GEMM_AVX512)
    if constexpr (std::is_same_v<T, float>) {
      std::size_t n = static_cast<std::size_t>(K * gemm_detail::pad16(N));
      if (n > cap_) {
        buf_.reset(static_cast<float*>(
            detail::aligned_bytes(std::max<std::size_t>(n, 1) * sizeof(float))));
        cap_ = n;
      }
      gemm_detail::pack_b_rows(0, K, N, K, gemm_detail::nn_kc(K), B, trans_b ? 1 : ldb,
                               trans_b ? ldb : 1, buf_.get());
    }
#endif
  }
  int64_t K() const {
    return K_;
  }
  int64_t N() const {
    return N_;
  }
  // The packed panels (AVX-512 float only; see gemm_detail::pack_b_rows).
  const float* panels() const {
    return buf_.get();
  }

  // C rows [0, M) (+)= A[M, K] * B, then the epilogue; runs on the calling thread.
  void multiply_rows(int64_t M, const T* A, int64_t lda, T* C, int64_t ldc, bool accumulate,
                     const Epilogue<T>& ep = {}) const {
#if defined(MINICNN_GEMM_AVX512)
    if constexpr (std::is_same_v<T, float>) {
      if (K_ <= 0)
        gemm_detail::small_rows(int64_t(0), M, N_, K_, A, lda, B_, ldb_, trans_, C, ldc, accumulate,
                                ep);
      else if (M >= gemm_detail::kMaxMR)
        gemm_detail::nn_rows_avx512(0, M, N_, K_, A, lda, buf_.get(), C, ldc, accumulate, ep);
      else if (M > 0)
        gemm_detail::nn_small_avx512(M, N_, K_, A, lda, buf_.get(), 0, true, C, ldc, accumulate,
                                     ep);
      return;
    } else
#endif
        if constexpr (std::is_same_v<T, float>) {
      gemm_detail::eigen_rows(int64_t(0), M, N_, K_, A, lda, B_, ldb_, trans_, C, ldc, accumulate,
                              ep);
    } else {
      gemm_detail::small_rows(int64_t(0), M, N_, K_, A, lda, B_, ldb_, trans_, C, ldc, accumulate,
                              ep);
    }
  }

  // As multiply_rows, split over up to num_threads() threads: by rows when there are
  // many, else by column panels (each thread then reads only its part of B, which
  // for batch-1 inference on small maps is most of the traffic).
  void multiply(int64_t M, const T* A, int64_t lda, T* C, int64_t ldc, bool accumulate,
                const Epilogue<T>& ep = {}) const {
    using namespace gemm_detail;
    if (M <= 0 || N_ <= 0) return;
#if defined(MINICNN_GEMM_AVX512)
    if constexpr (std::is_same_v<T, float>) {
      if (K_ <= 0) {
        multiply_rows(M, A, lda, C, ldc, accumulate, ep);
        return;
      }
      const int64_t nvec = (N_ + 15) / 16, panels = panel_count(nvec);
      const float* pb = buf_.get();
      const double flops = 2.0 * M * N_ * K_;
      if (M < kMaxMR) {
        int nt = plan_threads(flops, nvec);
        if (nt <= 1) {
          nn_small_avx512(M, N_, K_, A, lda, pb, 0, true, C, ldc, accumulate, ep);
          return;
        }
#pragma omp parallel num_threads(nt)
        nn_small_avx512(M, N_, K_, A, lda, pb, 0, true, C, ldc, accumulate, ep, thread_index(), nt);
        return;
      }
      // Rows in blocks of at least one micro-tile each, or whole panels: columns when
      // B outweighs A or rows are too few to share, and the panels split evenly enough.
      const bool by_columns = (N_ > 2 * M || M < 4 * kMaxMR) && panels >= 2;
      int nt = plan_threads(flops, by_columns ? panels : M / kMaxMR);
      if (nt <= 1) {
        nn_rows_avx512(0, M, N_, K_, A, lda, pb, C, ldc, accumulate, ep);
        return;
      }
      if (by_columns) {
#pragma omp parallel num_threads(nt)
        nn_rows_avx512(0, M, N_, K_, A, lda, pb, C, ldc, accumulate, ep, thread_index(), nt);
        return;
      }
      const int64_t align = M >= 4 * kRowAlign * nt ? kRowAlign : kMaxMR;
#pragma omp parallel num_threads(nt)
      {
        int64_t b, e;
        split_range(M, thread_index(), nt, align, &b, &e);
        // The last tile of a range may start in the previous range: reads only.
        if (e > b) nn_rows_avx512(b, e, N_, K_, A, lda, pb, C, ldc, accumulate, ep);
      }
      return;
    }
#endif
    gemm_rowmajor(M, N_, K_, A, lda, B_, ldb_, trans_, C, ldc, accumulate, ep);
  }

 private:
  int64_t K_ = 0, N_ = 0, ldb_ = 0;
  const T* B_ = nullptr;
  bool trans_ = false;
  std::unique_ptr<float[], detail::AlignedFree> buf_;
  std::size_t cap_ = 0;
};

namespace gemm_detail {

template <typename T>
void gemm_rowmajor(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B,
                   int64_t ldb, bool trans_b, T* C, int64_t ldc, bool accumulate,
                   const Epilogue<T>& ep) {
  if (M <= 0 || N <= 0) return;
#if defined(MINICNN_GEMM_AVX512)
  if constexpr (std::is_same_v<T, float>) {
    if (M >= kMaxMR && K > 0 && 2.0 * M * N * K >= 2.0e5) {
      int64_t npad = pad16(N), kc_blk = nn_kc(K);
      float* pb = scratch<float, 0>(static_cast<std::size_t>(K * npad));
      int nt = plan_threads(2.0 * M * N * K, (M + kRowAlign - 1) / kRowAlign);
      const int64_t sk = trans_b ? 1 : ldb, sn = trans_b ? ldb : 1;
      if (nt <= 1) {
        pack_b_rows(0, K, N, K, kc_blk, B, sk, sn, pb);
        nn_rows_avx512(0, M, N, K, A, lda, pb, C, ldc, accumulate, ep);
        return;
      }
      // Few rows and many columns (the 3x3-pixel layers): threads split the columns, so
      // each packs and keeps its own part of B in its L2 and reads all of the small A;
      // otherwise they split the rows and share B.
      const int64_t nvec = npad / 16;
      if (M < N && nvec >= 4 * nt) {
#pragma omp parallel num_threads(nt)
        {
          const int t = thread_index();
          pack_b_rows(0, K, N, K, kc_blk, B, sk, sn, pb, t, nt);
          nn_rows_avx512(0, M, N, K, A, lda, pb, C, ldc, accumulate, ep, t, nt);
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
        if (e > b) nn_rows_avx512(b, e, N, K, A, lda, pb, C, ldc, accumulate, ep);
      }
      return;
    }
    if (M < kMaxMR && !trans_b && K > 0 && 2.0 * M * N * K >= 2.0e4) {
      // B read in place, columns split between threads.
      const int64_t nvec = (N + 15) / 16;
      int nt = plan_threads(2.0 * M * N * K, nvec);
      if (nt <= 1) {
        nn_small_avx512(M, N, K, A, lda, B, ldb, false, C, ldc, accumulate, ep);
        return;
      }
#pragma omp parallel num_threads(nt)
      nn_small_avx512(M, N, K, A, lda, B, ldb, false, C, ldc, accumulate, ep, thread_index(), nt);
      return;
    }
    small_rows(int64_t(0), M, N, K, A, lda, B, ldb, trans_b, C, ldc, accumulate, ep);
    return;
  } else
#endif
      if constexpr (std::is_same_v<T, float>) {
    eigen_rowmajor(M, N, K, A, lda, B, ldb, trans_b, C, ldc, accumulate, ep);
  } else {
    small_rows(int64_t(0), M, N, K, A, lda, B, ldb, trans_b, C, ldc, accumulate, ep);
  }
}

}  // namespace gemm_detail

// C[M,N] = A[M,K] * B[K,N] (+ C when accumulate), then C = act(C + bias) if ep is set.
template <typename T>
void gemm_nn(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb,
             T* C, int64_t ldc, bool accumulate = false, const Epilogue<T>& ep = {}) {
  gemm_detail::gemm_rowmajor(M, N, K, A, lda, B, ldb, false, C, ldc, accumulate, ep);
}

// C[M,N] = A[M,K] * B^T with B stored [N,K] (+ C when accumulate), then the epilogue.
template <typename T>
void gemm_nt(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb,
             T* C, int64_t ldc, bool accumulate = false, const Epilogue<T>& ep = {}) {
  gemm_detail::gemm_rowmajor(M, N, K, A, lda, B, ldb, true, C, ldc, accumulate, ep);
}

// colsum[n] += sum over rows k of B[k, n] (B stored [K,N]); the bias gradient.
template <typename T>
void add_column_sums(int64_t K, int64_t N, const T* B, int64_t ldb, T* colsum) {
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < N; ++n) colsum[n] += B[k * ldb + n];
}

// On the calling thread: C[M,N] += A^T * B with A stored [K,M] and B stored [K,N];
// colsum (length N, may be null) += column sums of B.
template <typename T>
void gemm_tn_serial(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B,
                    int64_t ldb, T* C, int64_t ldc, T* colsum = nullptr) {
  if (N <= 0 || K <= 0) return;
#if defined(MINICNN_GEMM_AVX512)
  if constexpr (std::is_same_v<T, float>) {
    using namespace gemm_detail;
    const bool direct_ok = M >= kMaxMR, swap_ok = N >= kMaxMR;
    // C^T = B^T A has the same cost but other tiles; take it when C's columns fill
    // the vector panels badly (e.g. 24 columns: 1.5 vectors) and then add C^T's transpose.
    if (swap_ok && (!direct_ok || tn_cost(N, M) < 0.85 * tn_cost(M, N))) {
      float* ct = scratch<float, 6>(static_cast<std::size_t>(M * N));
      std::fill(ct, ct + M * N, 0.f);
      tn_avx512(0, K, 0, N, M, B, ldb, A, lda, ct, M, nullptr);
      for (int64_t i = 0; i < M; ++i)
        for (int64_t n = 0; n < N; ++n) C[i * ldc + n] += ct[n * M + i];
      if (colsum) add_column_sums(K, N, B, ldb, colsum);
      return;
    }
    if (direct_ok) {
      tn_avx512(0, K, 0, M, N, A, lda, B, ldb, C, ldc, colsum);
    } else {
      small_tn(int64_t(0), K, M, N, A, lda, B, ldb, C, ldc);
      if (colsum) add_column_sums(K, N, B, ldb, colsum);
    }
    return;
  } else
#endif
      if constexpr (std::is_same_v<T, float>) {
    gemm_detail::eigen_tn_rows(int64_t(0), K, M, N, A, lda, B, ldb, C, ldc, colsum);
  } else {
    gemm_detail::small_tn(int64_t(0), K, M, N, A, lda, B, ldb, C, ldc);
    if (colsum) add_column_sums(K, N, B, ldb, colsum);
  }
}

// C[M,N] += A^T * B with A stored [K,M] and B stored [K,N] (C is overwritten instead
// when !accumulate); colsum (length N, may be null) += column sums of B.
// Threads split the long reduction K (private partial sums, added at the end) or,
// when C is large compared with the inputs, the rows of C.
template <typename T>
void gemm_tn(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb,
             T* C, int64_t ldc, bool accumulate = true, T* colsum = nullptr) {
  using namespace gemm_detail;
  if (N <= 0) return;
  if (!accumulate)
    for (int64_t i = 0; i < M; ++i) std::fill(C + i * ldc, C + i * ldc + N, T(0));
  if (K <= 0) return;
  int nt = plan_threads(2.0 * M * N * K, std::max<int64_t>(1, K / 64));
  if (nt <= 1) {
    gemm_tn_serial(M, N, K, A, lda, B, ldb, C, ldc, colsum);
    return;
  }
  // Splitting the rows of C costs each extra thread a read of B; private partial sums
  // cost it a zero-fill, a write and a read of C.
  bool split_rows = 3 * M > K && M >= nt * kRowAlign;
  if (split_rows) {
#pragma omp parallel num_threads(nt)
    {
      int t = thread_index();
      int64_t b, e;
      split_range(M, t, nt, kRowAlign, &b, &e);
      if (e > b) gemm_tn_serial(e - b, N, K, A + b, lda, B, ldb, C + b * ldc, ldc);
      if (colsum && t == nt - 1) add_column_sums(K, N, B, ldb, colsum);
    }
    return;
  }
  int64_t part = M * N + (colsum ? N : 0);
  T* partials = scratch<T, 1>(static_cast<std::size_t>(std::max<int64_t>(1, part * (nt - 1))));
#pragma omp parallel num_threads(nt)
  {
    int t = thread_index();
    int64_t kb, ke;
    split_range(K, t, nt, 1, &kb, &ke);
    if (t == 0) {
      gemm_tn_serial(M, N, ke - kb, A + kb * lda, lda, B + kb * ldb, ldb, C, ldc, colsum);
    } else {
      T* p = partials + (t - 1) * part;
      std::fill(p, p + part, T(0));
      gemm_tn_serial(M, N, ke - kb, A + kb * lda, lda, B + kb * ldb, ldb, p, N,
                     colsum ? p + M * N : nullptr);
    }
#pragma omp barrier
    int64_t rb, re;
    split_range(M, t, nt, 1, &rb, &re);
    for (int u = 1; u < nt; ++u) {
      const T* p = partials + (u - 1) * part;
      for (int64_t i = rb; i < re; ++i)
        for (int64_t n = 0; n < N; ++n) C[i * ldc + n] += p[i * N + n];
      if (colsum && t == nt - 1)
        for (int64_t n = 0; n < N; ++n) colsum[n] += p[M * N + n];
    }
  }
}

}  // namespace kernels
}  // namespace minicnn
