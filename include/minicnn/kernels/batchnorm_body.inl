// The batch-normalisation kernels for one instruction set; compiled once per ISA by
// kernels/for_each_isa.inl (no include guard) and called through kernels/batchnorm.hpp,
// which documents each. Plain loops over contiguous channels: compiled under each ISA's
// target options, GCC vectorises them for that ISA (AVX-512, AVX2 + FMA, or the baseline),
// so a default build runs them as fast as a -march=native one.
namespace minicnn::kernels::MINICNN_ISA_NS {
namespace bn_isa {
namespace bn_detail = ::minicnn::kernels::bn_detail;
using ::minicnn::kernels::BnForward;

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

}  // namespace bn_isa
}  // namespace minicnn::kernels::MINICNN_ISA_NS
