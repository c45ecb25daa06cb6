// Thread control. minicnn parallelises with OpenMP over the batch or over rows;
// Eigen's own threading stays off inside those regions (we never enable Eigen's
// thread pool), so one knob, set_num_threads, controls everything.
//
// run_threads / parallel_ranges are the one way kernels start threads. With a single
// thread they call the body directly: entering an OpenMP parallel region, even one that
// its if() clause makes serial, allocates a team structure in libgomp, and a training step
// would then allocate on every batch-norm or pooling call.
#pragma once
#include <algorithm>
#include <cstdint>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace minicnn {

inline int num_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

inline void set_num_threads(int n) {
#ifdef _OPENMP
  omp_set_num_threads(n < 1 ? 1 : n);
#else
  (void)n;
#endif
}

inline int thread_index() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

inline bool in_parallel() {
#ifdef _OPENMP
  return omp_in_parallel() != 0;
#else
  return false;
#endif
}

// The one thread planner of the kernels: threads worth starting for `work` (in any unit:
// flops, elements, outputs) that splits into at most `units` independent pieces, when each
// thread should get at least `grain` of it (waking a thread costs a few microseconds, so
// small work stays on the calling thread; grain 0: no minimum). One inside a parallel
// region (kernels never nest teams).
inline int plan_threads(double work, int64_t units, double grain) {
  if (in_parallel()) return 1;
  const int nt = num_threads();
  const double by_work = grain > 0 ? work / grain : double(nt);
  const int64_t lim =
      std::max<int64_t>(1, std::min<int64_t>(static_cast<int64_t>(std::min(by_work, 1e9)), units));
  return static_cast<int>(std::min<int64_t>(nt, lim));
}

// Grain of the passes that stream over a tensor element by element (batch-norm apply,
// residual Add): below it a second thread costs more than it saves.
constexpr double kMinElementsPerThread = 16384;

// Calls f(thread, thread_count) on up to nt threads; returns how many ran (OpenMP may give
// fewer than asked, inside another parallel region for instance).
template <class F>
inline int run_threads(int nt, F&& f) {
#ifdef _OPENMP
  if (nt > 1) {
    int used = 1;
#pragma omp parallel num_threads(nt)
    {
      const int t = omp_get_thread_num(), m = omp_get_num_threads();
      if (t == 0) used = m;
      f(t, m);
    }
    return used;
  }
#endif
  f(0, 1);
  return 1;
}

// body(begin, end) over [0, n) cut into at most nt contiguous ranges of near-equal size
// (OpenMP's schedule(static)), one per thread.
template <class F>
inline void parallel_ranges(int64_t n, int nt, F&& body) {
  if (n <= 0) return;
  nt = int(std::max<int64_t>(1, std::min<int64_t>(nt, n)));
  run_threads(nt, [&](int t, int m) {
    const int64_t b = n * t / m, e = n * (t + 1) / m;
    if (e > b) body(b, e);
  });
}

}  // namespace minicnn
