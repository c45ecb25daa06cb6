// The batch-normalisation kernels for one instruction set; compiled once per ISA by
// kernels/for_each_isa.inl (no include guard) and called through kernels/batchnorm.hpp,
// which documents each. Plain loops over contiguous channels: compiled under each ISA's
// target options, GCC vectorises them for that ISA (AVX-512, AVX2 + FMA, or the baseline),
// so a default build runs them as fast as a -march=native one.
namespace minicnn::kernels::MINICNN_ISA_NS {
namespace bn_isa {
namespace bn_detail = ::minicnn::kernels::bn_detail;
// -Wpsabi: GCC notes that the vector helpers below pass vectors in registers the translation
// unit's own flags may lack; they are always inlined into callers of the same target, so no
// call crosses that boundary. -Wunknown-pragmas: clang has no `GCC ivdep` (it vectorises
// those loops without it).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
#pragma GCC diagnostic ignored "-Wunknown-pragmas"
using ::minicnn::kernels::BnForward;

// The two float reductions as explicit vectors (GCC vector extensions, so each ISA's copy
// uses its own registers): a group of kLanes channels keeps its double sums in registers
// over a tile of rows, instead of loading and storing two double accumulators in memory
// for every element as the plain loops did (those ran at a third of the speed of the
// passes that only read and write). Rows go in tiles of 8 (measured against 16, 32, 64: the
// fastest at 2 threads, 1.3-2x the plain loops) so that the partial sums reach memory once
// per tile.
constexpr int kLanes = int(::minicnn::simd::MINICNN_SIMD_NS::kLanes);
typedef float FV __attribute__((vector_size(4 * kLanes)));
typedef double DV __attribute__((vector_size(8 * kLanes)));
constexpr int64_t kSumTileRows = 8;

MINICNN_BN_INLINE FV load_fv(const float* p) {
  FV v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
MINICNN_BN_INLINE DV load_dv(const double* p) {
  DV v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
// `v` by reference: a 128-byte vector passed by value draws GCC's -Wpsabi note in a default
// build, which the pragma above does not silence.
MINICNN_BN_INLINE void add_to(double* p, const DV& v) {
  const DV s = v + load_dv(p);
  std::memcpy(p, &s, sizeof(s));
}

// s1[c] += sum of d and s2[c] += sum of d^2, d = x - shift[c], over rows [r0, r1).
inline void moment_sums_f(const float* x, int64_t r0, int64_t r1, int64_t C, const double* shift,
                          double* s1, double* s2) {
  for (int64_t t0 = r0; t0 < r1; t0 += kSumTileRows) {
    const int64_t t1 = std::min(r1, t0 + kSumTileRows);
    int64_t c0 = 0;
    for (; c0 + kLanes <= C; c0 += kLanes) {
      const DV sh = load_dv(shift + c0);
      DV a1 = {}, a2 = {};
      for (int64_t r = t0; r < t1; ++r) {
        const DV d = __builtin_convertvector(load_fv(x + r * C + c0), DV) - sh;
        a1 += d;
        a2 += d * d;
      }
      add_to(s1 + c0, a1);
      add_to(s2 + c0, a2);
    }
    for (int64_t r = t0; r < t1; ++r)
      for (int64_t c = c0; c < C; ++c) {
        const double d = double(x[r * C + c]) - shift[c];
        s1[c] += d;
        s2[c] += d * d;
      }
  }
}

// s1[c] += sum of g and s2[c] += sum of g * (x - mean[c]) over rows [r0, r1), g = dy masked
// by the fused activation A (bn_detail::grad_at).
template <int A>
inline void grad_sums_f(const float* dy, const BnForward<float>& fwd, const float* x, int64_t r0,
                        int64_t r1, int64_t C, const double* mean, double* s1, double* s2) {
  for (int64_t t0 = r0; t0 < r1; t0 += kSumTileRows) {
    const int64_t t1 = std::min(r1, t0 + kSumTileRows);
    int64_t c0 = 0;
    for (; c0 + kLanes <= C; c0 += kLanes) {
      const DV md = load_dv(mean + c0);
      FV fm = {}, fs = {}, fb = {};
      if constexpr (A != int(Activation::Linear)) {
        fm = load_fv(fwd.mean + c0);
        fs = load_fv(fwd.scale + c0);
        fb = load_fv(fwd.shift + c0);
      }
      DV a1 = {}, a2 = {};
      for (int64_t r = t0; r < t1; ++r) {
        const FV xv = load_fv(x + r * C + c0);
        FV g = load_fv(dy + r * C + c0);
        if constexpr (A != int(Activation::Linear)) {
          const FV z = (xv - fm) * fs + fb;
          const FV zero = {};
          if constexpr (A == int(Activation::ReLU))
            g = z > 0.f ? g : zero;
          else
            g = ((z > 0.f) & (z < 6.f)) ? g : zero;
        }
        const DV gd = __builtin_convertvector(g, DV);
        a1 += gd;
        a2 += gd * (__builtin_convertvector(xv, DV) - md);
      }
      add_to(s1 + c0, a1);
      add_to(s2 + c0, a2);
    }
    for (int64_t r = t0; r < t1; ++r)
      for (int64_t c = c0; c < C; ++c) {
        const float xv = x[r * C + c];
        const double g = double(bn_detail::grad_at<A>(fwd, c, xv, dy[r * C + c]));
        s1[c] += g;
        s2[c] += g * (double(xv) - mean[c]);
      }
  }
}

template <typename T>
void moments(const T* x, int64_t rows, int64_t C, double* mean, double* var,
             std::vector<double>& scratch, int threads) {
  const int chunks = bn_detail::bn_chunks(rows, C, threads);
  // The combined [2, C] sums live in scratch past the per-chunk partials (sized first, so
  // that bn_reduce_rows never reallocates under them); the shift waits in `mean`.
  const int64_t len = 2 * C;
  if (scratch.size() < size_t(len * (chunks + 1))) scratch.resize(size_t(len * (chunks + 1)));
  double* sums = scratch.data() + len * chunks;
  double* shift = mean;
  for (int64_t c = 0; c < C; ++c) shift[c] = rows > 0 ? double(x[c]) : 0.0;
  bn_detail::bn_reduce_rows(rows, C, 2, chunks, scratch, sums,
                            [&](int64_t r0, int64_t r1, double* acc) {
                              double* s1 = acc;
                              double* s2 = acc + C;
                              if constexpr (std::is_same_v<T, float>) {
                                moment_sums_f(x, r0, r1, C, shift, s1, s2);
                                return;
                              }
                              for (int64_t r = r0; r < r1; ++r) {
                                const T* xr = x + r * C;
#pragma GCC ivdep
                                for (int64_t c = 0; c < C; ++c) {
                                  const double d = double(xr[c]) - shift[c];
                                  s1[c] += d;
                                  s2[c] += d * d;
                                }
                              }
                            });
  const double inv_rows = rows > 0 ? 1.0 / double(rows) : 0.0;
  for (int64_t c = 0; c < C; ++c) {
    const double md = sums[c] * inv_rows;
    mean[c] = shift[c] + md;
    var[c] = std::max(0.0, sums[C + c] * inv_rows - md * md);
  }
}

template <typename T>
void apply(const T* x, int64_t rows, int64_t C, const T* mean, const T* scale, const T* shift, T* y,
           Activation act, int threads) {
  const int chunks = bn_detail::bn_chunks(rows, C, threads);
  bn_detail::with_activation(act, [&](auto a) {
    constexpr int A = decltype(a)::value;
    parallel_ranges(rows, chunks, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* xr = x + r * C;
        T* yr = y + r * C;
        for (int64_t c = 0; c < C; ++c)
          yr[c] = bn_detail::activated<A>((xr[c] - mean[c]) * scale[c] + shift[c]);
      }
    });
  });
}

template <typename T>
void backward_sums(const T* dy, const BnForward<T>& fwd, const T* x, int64_t rows, int64_t C,
                   const double* mean, double* sum_dy, double* sum_dy_xc,
                   std::vector<double>& scratch, int threads) {
  const int chunks = bn_detail::bn_chunks(rows, C, threads);
  // The combined [2, C] result lives in scratch past the per-chunk partials; sizing
  // it first means bn_reduce_rows never reallocates under `out`.
  const int64_t len = 2 * C;
  if (scratch.size() < size_t(len * (chunks + 1))) scratch.resize(size_t(len * (chunks + 1)));
  double* out = scratch.data() + len * chunks;
  bn_detail::with_activation(fwd.act, [&](auto a) {
    constexpr int A = decltype(a)::value;
    bn_detail::bn_reduce_rows(
        rows, C, 2, chunks, scratch, out, [&](int64_t r0, int64_t r1, double* acc) {
          double* a1 = acc;
          double* a2 = acc + C;
          if constexpr (std::is_same_v<T, float>) {
            grad_sums_f<A>(dy, fwd, x, r0, r1, C, mean, a1, a2);
            return;
          }
          for (int64_t r = r0; r < r1; ++r) {
            const T* dyr = dy + r * C;
            const T* xr = x + r * C;
            // Masking and the double sums in one loop stay scalar
            // (GCC turns the select into branches there), 6x slower:
            // mask a block into `g` first, then sum.
            constexpr int64_t kBlock = 256;
            T g[kBlock];
            for (int64_t c0 = 0; c0 < C; c0 += kBlock) {
              const int64_t nc = std::min(kBlock, C - c0);
              for (int64_t j = 0; j < nc; ++j)
                g[j] = bn_detail::grad_at<A>(fwd, c0 + j, xr[c0 + j], dyr[c0 + j]);
              double* s1 = a1 + c0;
              double* s2 = a2 + c0;
              const T* xc = xr + c0;
              const double* mc = mean + c0;
#pragma GCC ivdep
              for (int64_t j = 0; j < nc; ++j) {
                const double d = double(g[j]);
                s1[j] += d;
                s2[j] += d * (double(xc[j]) - mc[j]);
              }
            }
          }
        });
  });
  std::copy(out, out + C, sum_dy);
  std::copy(out + C, out + len, sum_dy_xc);
}

template <typename T>
void backward_apply(const T* dy, const BnForward<T>& fwd, const T* x, int64_t rows, int64_t C,
                    const T* a, const T* b, const T* d, T* dx, int threads) {
  const int chunks = bn_detail::bn_chunks(rows, C, threads);
  const T* mean = fwd.mean;
  bn_detail::with_activation(fwd.act, [&](auto tag) {
    constexpr int A = decltype(tag)::value;
    parallel_ranges(rows, chunks, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* dyr = dy + r * C;
        const T* xr = x + r * C;
        T* dxr = dx + r * C;
        if (!b) {
#pragma GCC ivdep
          for (int64_t c = 0; c < C; ++c)
            dxr[c] = a[c] * bn_detail::grad_at<A>(fwd, c, xr[c], dyr[c]);
          continue;
        }
#pragma GCC ivdep
        for (int64_t c = 0; c < C; ++c)
          dxr[c] =
              a[c] * bn_detail::grad_at<A>(fwd, c, xr[c], dyr[c]) + b[c] * (xr[c] - mean[c]) + d[c];
      }
    });
  });
}

#pragma GCC diagnostic pop
}  // namespace bn_isa
}  // namespace minicnn::kernels::MINICNN_ISA_NS
