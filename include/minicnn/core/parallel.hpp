// Thread control. minicnn parallelises with OpenMP over the batch or over rows;
// Eigen's own threading stays off inside those regions (we never enable Eigen's
// thread pool), so one knob, set_num_threads, controls everything.
#pragma once
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

}  // namespace minicnn
