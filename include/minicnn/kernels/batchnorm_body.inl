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

// The two float reductions in explicit vectors. A tile of rows is read row after row, a
// block of G groups of kLanes channels at a time, each group's double sums in registers
// (two simd::D halves per group); the partial sums reach memory once per tile and block.
// Why this shape, measured on the 48x48x96 batch-32 tensor at 2 threads:
// - rows inner, ascending through memory: the hardware prefetchers follow it. Walking a
//   tile column group by column group (8 rows at a row's stride, then the next group)
//   ran at half the read bandwidth (1.0 against 0.57 ms for a bare sum);
// - doubles in native registers: a 16-double GCC vector is wider than any register, and
//   GCC kept such accumulators on the stack (a store-to-load round trip per add).
namespace sv = ::minicnn::simd::MINICNN_SIMD_NS;
constexpr int kLanes = int(sv::kLanes);
constexpr int kHalf = kLanes / 2;
// Groups per block: 4 double accumulators each, 3/4 of the register file (6 groups = 96
// channels with AVX-512, measured against 2, 3 and 4; 3 with AVX2; 1 in the portable path).
constexpr int kSumGroups = sv::kRegs * 3 / 16 > 0 ? sv::kRegs * 3 / 16 : 1;
constexpr int64_t kSumTileRows = 32;
MINICNN_BN_INLINE void add_to(double* p, sv::D v) {
  sv::dst(p, sv::dadd(v, sv::dld(p)));
}

// Channels [c0, c0 + G * kLanes) of rows [t0, t1): s1 += sum of d, s2 += sum of d^2,
// d = x - shift.
template <int G>
MINICNN_BN_INLINE void moment_block(const float* x, int64_t t0, int64_t t1, int64_t C, int64_t c0,
                                    const double* shift, double* s1, double* s2) {
  sv::D sh[2 * G], a1[2 * G], a2[2 * G];
#pragma GCC unroll 16
  for (int h = 0; h < 2 * G; ++h) {
    sh[h] = sv::dld(shift + c0 + h * kHalf);
    a1[h] = a2[h] = sv::dzero();
  }
  for (int64_t r = t0; r < t1; ++r) {
    const float* p = x + r * C + c0;
#pragma GCC unroll 16
    for (int h = 0; h < 2 * G; ++h) {
      const sv::D d = sv::dsub(sv::dwiden(p + h * kHalf), sh[h]);
      a1[h] = sv::dadd(a1[h], d);
      a2[h] = sv::dfma(d, d, a2[h]);
    }
  }
#pragma GCC unroll 16
  for (int h = 0; h < 2 * G; ++h) {
    add_to(s1 + c0 + h * kHalf, a1[h]);
    add_to(s2 + c0 + h * kHalf, a2[h]);
  }
}

// s1[c] += sum of d and s2[c] += sum of d^2, d = x - shift[c], over rows [r0, r1).
inline void moment_sums_f(const float* x, int64_t r0, int64_t r1, int64_t C, const double* shift,
                          double* s1, double* s2) {
  for (int64_t t0 = r0; t0 < r1; t0 += kSumTileRows) {
    const int64_t t1 = std::min(r1, t0 + kSumTileRows);
    int64_t c0 = 0;
    for (; c0 + kSumGroups * kLanes <= C; c0 += kSumGroups * kLanes)
      moment_block<kSumGroups>(x, t0, t1, C, c0, shift, s1, s2);
    for (; c0 + kLanes <= C; c0 += kLanes) moment_block<1>(x, t0, t1, C, c0, shift, s1, s2);
    for (int64_t r = t0; r < t1; ++r)
      for (int64_t c = c0; c < C; ++c) {
        const double d = double(x[r * C + c]) - shift[c];
        s1[c] += d;
        s2[c] += d * d;
      }
  }
}

// Channels [c0, c0 + G * kLanes) of rows [t0, t1): s1 += sum of g, s2 += sum of
// g * (x - mean), g = dy masked by the fused activation A, its pre-activation recomputed
// in float at full width as the forward computed it (bn_detail::grad_at).
template <int A, int G>
MINICNN_BN_INLINE void grad_block(const float* dy, const BnForward<float>& fwd, const float* x,
                                  int64_t t0, int64_t t1, int64_t C, int64_t c0, const double* mean,
                                  double* s1, double* s2) {
  sv::D a1[2 * G], a2[2 * G];
#pragma GCC unroll 16
  for (int h = 0; h < 2 * G; ++h) a1[h] = a2[h] = sv::dzero();
  for (int64_t r = t0; r < t1; ++r) {
    const float* xp = x + r * C + c0;
    const float* dp = dy + r * C + c0;
#pragma GCC unroll 16
    for (int k = 0; k < G; ++k) {
      sv::D g0, g1;
      if constexpr (A != int(Activation::Linear)) {
        const int64_t c = c0 + k * kLanes;
        const sv::Mask all = sv::tail_mask(kLanes);
        const sv::V z = sv::vfma(
            sv::vsub(sv::ld<false>(xp + k * kLanes, all), sv::ld<false>(fwd.mean + c, all)),
            sv::ld<false>(fwd.scale + c, all), sv::ld<false>(fwd.shift + c, all));
        const sv::V dv = sv::ld<false>(dp + k * kLanes, all);
        sv::V g;
        if constexpr (A == int(Activation::ReLU))
          g = sv::vpass_above(z, sv::vzero(), dv);
        else
          g = sv::vpass(z, sv::vzero(), sv::vset(6.f), dv);
        g0 = sv::dwiden_lo(g);
        g1 = sv::dwiden_hi(g);
      } else {
        g0 = sv::dwiden(dp + k * kLanes);
        g1 = sv::dwiden(dp + k * kLanes + kHalf);
      }
      const double* m = mean + c0 + k * kLanes;
      a1[2 * k] = sv::dadd(a1[2 * k], g0);
      a1[2 * k + 1] = sv::dadd(a1[2 * k + 1], g1);
      a2[2 * k] = sv::dfma(g0, sv::dsub(sv::dwiden(xp + k * kLanes), sv::dld(m)), a2[2 * k]);
      a2[2 * k + 1] = sv::dfma(
          g1, sv::dsub(sv::dwiden(xp + k * kLanes + kHalf), sv::dld(m + kHalf)), a2[2 * k + 1]);
    }
  }
#pragma GCC unroll 16
  for (int h = 0; h < 2 * G; ++h) {
    add_to(s1 + c0 + h * kHalf, a1[h]);
    add_to(s2 + c0 + h * kHalf, a2[h]);
  }
}

// s1[c] += sum of g and s2[c] += sum of g * (x - mean[c]) over rows [r0, r1), g as in
// grad_block.
template <int A>
inline void grad_sums_f(const float* dy, const BnForward<float>& fwd, const float* x, int64_t r0,
                        int64_t r1, int64_t C, const double* mean, double* s1, double* s2) {
  for (int64_t t0 = r0; t0 < r1; t0 += kSumTileRows) {
    const int64_t t1 = std::min(r1, t0 + kSumTileRows);
    int64_t c0 = 0;
    for (; c0 + kSumGroups * kLanes <= C; c0 += kSumGroups * kLanes)
      grad_block<A, kSumGroups>(dy, fwd, x, t0, t1, C, c0, mean, s1, s2);
    for (; c0 + kLanes <= C; c0 += kLanes)
      grad_block<A, 1>(dy, fwd, x, t0, t1, C, c0, mean, s1, s2);
    for (int64_t r = t0; r < t1; ++r)
      for (int64_t c = c0; c < C; ++c) {
        const float xv = x[r * C + c];
        const double g = double(bn_detail::grad_at<A>(fwd, c, xv, dy[r * C + c]));
        s1[c] += g;
        s2[c] += g * (double(xv) - mean[c]);
      }
  }
}

// The elementwise passes in explicit vectors too where V is a register (AVX2, AVX-512):
// they do not depend on the optimiser's auto-vectorisation, which GCC 12 does not do at
// -O2 (CMake's RelWithDebInfo, Debian's default flags), where the clamp's branches
// mispredicted and the ReLU6 apply ran 40x slower than at -O3. The portable path keeps
// the plain loops (its struct V went through the stack: 2x slower at -O3).
template <int A>
MINICNN_BN_INLINE sv::V activated_v(sv::V z) {
  // max(0, z) keeps a NaN z (simd vmax returns its second operand then), and so does the
  // min with 6 written as min(6, .), as the scalar std::min(std::max(z, 0), 6) does.
  if constexpr (A == int(Activation::ReLU)) return sv::vmax(sv::vzero(), z);
  if constexpr (A == int(Activation::ReLU6))
    return sv::vmin(sv::vset(6.f), sv::vmax(sv::vzero(), z));
  return z;
}
template <int A>
MINICNN_BN_INLINE sv::V grad_v(sv::V z, sv::V dy) {
  if constexpr (A == int(Activation::ReLU)) return sv::vpass_above(z, sv::vzero(), dy);
  if constexpr (A == int(Activation::ReLU6)) return sv::vpass(z, sv::vzero(), sv::vset(6.f), dy);
  return dy;
}

// y = act((x - mean) * scale + shift) over rows [r0, r1).
template <int A>
inline void apply_rows_f(const float* x, int64_t r0, int64_t r1, int64_t C, const float* mean,
                         const float* scale, const float* shift, float* y) {
  const sv::Mask tail = sv::tail_mask((C % kLanes) ? C % kLanes : kLanes),
                 all = sv::tail_mask(kLanes);
  const int64_t full = C - C % kLanes;
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * C;
    float* yr = y + r * C;
    for (int64_t c = 0; c < full; c += kLanes) {
      const sv::V z = sv::vfma(sv::vsub(sv::ld<false>(xr + c, all), sv::ld<false>(mean + c, all)),
                               sv::ld<false>(scale + c, all), sv::ld<false>(shift + c, all));
      sv::st<false>(yr + c, activated_v<A>(z), all);
    }
    if (full < C) {
      const sv::V z =
          sv::vfma(sv::vsub(sv::ld<true>(xr + full, tail), sv::ld<true>(mean + full, tail)),
                   sv::ld<true>(scale + full, tail), sv::ld<true>(shift + full, tail));
      sv::st<true>(yr + full, activated_v<A>(z), tail);
    }
  }
}

// dx = a * g + b * (x - fwd.mean) + d (training) or a * g (b null) over rows [r0, r1), g = dy
// masked by the fused activation A.
template <int A, bool Tail>
MINICNN_BN_INLINE void backward_apply_vector(const float* dy, const BnForward<float>& fwd,
                                             const float* x, int64_t c, const float* a,
                                             const float* b, const float* d, float* dx,
                                             sv::Mask k) {
  const sv::V xv = sv::ld<Tail>(x + c, k), dyv = sv::ld<Tail>(dy + c, k);
  const sv::V mean = sv::ld<Tail>(fwd.mean + c, k);
  sv::V g = dyv;
  if constexpr (A != int(Activation::Linear)) {
    const sv::V z = sv::vfma(sv::vsub(xv, mean), sv::ld<Tail>(fwd.scale + c, k),
                             sv::ld<Tail>(fwd.shift + c, k));
    g = grad_v<A>(z, dyv);
  }
  sv::V out = sv::vmul(sv::ld<Tail>(a + c, k), g);
  if (b)
    out =
        sv::vadd(sv::vfma(sv::ld<Tail>(b + c, k), sv::vsub(xv, mean), out), sv::ld<Tail>(d + c, k));
  sv::st<Tail>(dx + c, out, k);
}
template <int A>
inline void backward_apply_rows_f(const float* dy, const BnForward<float>& fwd, const float* x,
                                  int64_t r0, int64_t r1, int64_t C, const float* a, const float* b,
                                  const float* d, float* dx) {
  const sv::Mask tail = sv::tail_mask((C % kLanes) ? C % kLanes : kLanes),
                 all = sv::tail_mask(kLanes);
  const int64_t full = C - C % kLanes;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t o = r * C;
    for (int64_t c = 0; c < full; c += kLanes)
      backward_apply_vector<A, false>(dy + o, fwd, x + o, c, a, b, d, dx + o, all);
    if (full < C) backward_apply_vector<A, true>(dy + o, fwd, x + o, full, a, b, d, dx + o, tail);
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
      if constexpr (std::is_same_v<T, float> && sv::kInRegisters) {
        apply_rows_f<A>(x, r0, r1, C, mean, scale, shift, y);
        return;
      }
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
      if constexpr (std::is_same_v<T, float> && sv::kInRegisters) {
        backward_apply_rows_f<A>(dy, fwd, x, r0, r1, C, a, b, d, dx);
        return;
      }
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
