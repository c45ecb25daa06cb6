// Row-major matrix products used by Conv2D and Dense, on raw pointers (no copies of
// the operands):
//   gemm_nn:  C[M,N] (+)= A[M,K] * B[K,N]      then optional epilogue C = act(C + bias)
//   gemm_nt:  C[M,N] (+)= A[M,K] * B[N,K]^T
//   gemm_tn:  C[M,N] (+)= A[K,M]^T * B[K,N]    (K is the long reduction: pixels), optional
//             column sums of B added to `colsum` (the bias gradient) in the same pass.
// All matrices are row-major with a leading dimension (elements between rows); float
// and double.
//
// float: SIMD micro-kernels (kernels/gemm_body.inl), compiled for every instruction set
// (AVX-512, AVX2 + FMA, portable/NEON) and picked at run time by core/cpu.hpp's
// active_isa(); products below one micro-tile use plain loops. double (the
// finite-difference gradient checks, small shapes): plain loops.
//
// Threading: a call uses up to minicnn::num_threads() OpenMP threads, each running a
// single-threaded product on its block: rows of C (or, for few rows and many columns,
// the column panels) for nn/nt; the reduction (private partial sums) or the rows of C
// for tn. Called inside a parallel region a call stays on the calling thread.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>

#include "../core/cpu.hpp"
#include "../core/parallel.hpp"
#include "../core/tensor.hpp"
#include "activation.hpp"
#include "dispatch.hpp"
#include "simd.hpp"

#if defined(__GNUC__)
#define MINICNN_GEMM_INLINE inline __attribute__((always_inline))
#else
#define MINICNN_GEMM_INLINE inline
#endif

namespace minicnn {
namespace kernels {

// Applied to each row of C after the product: C[r, n] = act(C[r, n] + bias[n]).
template <typename T>
struct Epilogue {
  const T* bias = nullptr;
  Activation act = Activation::Linear;
  bool active() const { return bias != nullptr || act != Activation::Linear; }
};

// colsum[n] += sum over rows k of B[k, n] (B stored [K,N]); the bias gradient.
template <typename T>
void add_column_sums(int64_t K, int64_t N, const T* B, int64_t ldb, T* colsum) {
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < N; ++n) colsum[n] += B[k * ldb + n];
}

namespace gemm_detail {

using kernels::add_column_sums;

// Rows are split between threads in multiples of this: whole micro-tiles on every
// instruction set (tile heights 16/12/8/6/4 with AVX-512, 8/6/4/3/2 with AVX2).
constexpr int64_t kRowAlign = 48;

// Per-thread growable aligned buffers, one per Slot: layers must not allocate after their
// first step, and a thread that calls these kernels keeps its scratch for the next call.
template <typename T, int Slot>
T* scratch(std::size_t n) {
  thread_local ScratchBuffer<T> b;
  return b.get(n);
}

// Flops a thread should get at least: a parallel region costs a few microseconds, so small
// products stay on one thread.
constexpr double kMinFlopsPerThread = 4.0e5;
// Threads worth using for `flops` of work split into at most `units` pieces.
inline int plan_threads(double flops, int64_t units) {
  return minicnn::plan_threads(flops, units, kMinFlopsPerThread);
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

// ---- Plain loops: double, and float products too small for the SIMD kernels ----
// (fewer rows than a micro-tile, or a few hundred thousand flops: a batch of a few
// feature vectors through Dense).

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

// ---- Panel layout shared by every instruction set (in vectors of its width) ----

// Column panels of B: widths of 4 vectors where possible, never a lone
// 1-vector panel unless N fits one (that kernel is bound by the broadcasts of A); one
// 6-vector panel for 6 vectors (81..96 columns with AVX-512), so the memory-bound 16->96 expansion
// writes each output row in one pass (measured 1550 -> 1300 us at 2 threads).
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

// K is cut into blocks of kc rows so a B panel (kc x NV vectors) stays in L1/L2.
inline int64_t nn_kc(int64_t K) {
  if (K <= 320) return K;
  int64_t nb = (K + 255) / 256;
  return (K + nb - 1) / nb;
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

}  // namespace gemm_detail
}  // namespace kernels
}  // namespace minicnn

#define MINICNN_ISA_BODY "gemm_body.inl"
#include "for_each_isa.inl"
#undef MINICNN_ISA_BODY

namespace minicnn {
namespace kernels {

// Packed form of the B operand of gemm_nn / gemm_nt, for callers that multiply many
// row blocks by the same B (the im2col convolution): pack once, then call
// multiply_rows from any thread. The panels follow the instruction set active when
// pack() ran; that set keeps multiplying them. For double it only records the pointer.
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
    if constexpr (std::is_same_v<T, float>) {
      isa_ = active_isa();
      std::size_t n = static_cast<std::size_t>(packed_floats(isa_, K, N));
      if (n > cap_) {
        buf_.reset(static_cast<float*>(
            detail::aligned_bytes(std::max<std::size_t>(n, 1) * sizeof(float))));
        cap_ = n;
      }
      pack_into(isa_, K, N, B, ldb, trans_b, buf_.get());
    }
  }
  int64_t K() const { return K_; }
  int64_t N() const { return N_; }
  // The packed panels (float; layout of gemm_body.inl's pack_b_rows for isa()).
  const float* panels() const { return buf_.get(); }
  Isa isa() const { return isa_; }

  // C rows [0, M) (+)= A[M, K] * B, then the epilogue; runs on the calling thread.
  void multiply_rows(int64_t M, const T* A, int64_t lda, T* C, int64_t ldc, bool accumulate,
                     const Epilogue<T>& ep = {}) const {
    if constexpr (std::is_same_v<T, float>) {
      MINICNN_DISPATCH(isa_, gemm_packed_rows(M, N_, K_, A, lda, buf_.get(), B_, ldb_, trans_, C,
                                              ldc, accumulate, ep))
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
    if constexpr (std::is_same_v<T, float>) {
      MINICNN_DISPATCH(isa_, gemm_packed(M, N_, K_, A, lda, buf_.get(), B_, ldb_, trans_, C, ldc,
                                         accumulate, ep))
    } else {
      if (M <= 0 || N_ <= 0) return;
      gemm_detail::small_rows(int64_t(0), M, N_, K_, A, lda, B_, ldb_, trans_, C, ldc, accumulate,
                              ep);
    }
  }

 private:
  static int64_t packed_floats(Isa isa, int64_t K, int64_t N) {
    MINICNN_DISPATCH(isa, gemm_packed_floats(K, N))
  }
  static void pack_into(Isa isa, int64_t K, int64_t N, const float*B, int64_t ldb, bool trans,
                        float*buf){MINICNN_DISPATCH(isa, gemm_pack(K, N, B, ldb, trans, buf))}

  int64_t K_ = 0,
          N_ = 0, ldb_ = 0;
  const T* B_ = nullptr;
  bool trans_ = false;
  Isa isa_ = Isa::portable;
  std::unique_ptr<float[], detail::AlignedFree> buf_;
  std::size_t cap_ = 0;
};

namespace gemm_detail {

template <typename T>
void gemm_rowmajor(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B,
                   int64_t ldb, bool trans_b, T* C, int64_t ldc, bool accumulate,
                   const Epilogue<T>& ep) {
  if constexpr (std::is_same_v<T, float>) {
    MINICNN_DISPATCH(active_isa(),
                     gemm_rowmajor(M, N, K, A, lda, B, ldb, trans_b, C, ldc, accumulate, ep))
  } else {
    if (M <= 0 || N <= 0) return;
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

// On the calling thread: C[M,N] += A^T * B with A stored [K,M] and B stored [K,N];
// colsum (length N, may be null) += column sums of B.
template <typename T>
void gemm_tn_serial(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B,
                    int64_t ldb, T* C, int64_t ldc, T* colsum = nullptr) {
  if constexpr (std::is_same_v<T, float>) {
    MINICNN_DISPATCH(active_isa(), gemm_tn_serial(M, N, K, A, lda, B, ldb, C, ldc, colsum))
  } else {
    if (N <= 0 || K <= 0) return;
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
