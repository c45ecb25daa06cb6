// Which SIMD instruction set the float kernels run with, chosen at run time.
//
// The kernels are compiled once per instruction set the compiler can target (see
// kernels/isa_targets.hpp); at the first kernel call the best one this CPU supports is
// picked. MINICNN_ISA=avx512|avx2|neon|portable in the environment caps the choice (a
// value above what the CPU has is capped to the CPU; an unknown value is an error), and
// set_isa_cap() does the same from code (tests run every path through it).
#pragma once
#include <atomic>
#include <cstdlib>
#include <string>
#include <vector>

#include "error.hpp"

// Instruction sets compiled in. GCC on x86-64 compiles AVX-512 and AVX2 kernels beside
// the portable ones whatever -march says (function-level target pragmas, see
// kernels/for_each_isa.inl). Other compilers (clang does not give OpenMP regions the
// target of their enclosing function) compile only what the command-line flags enable.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(MINICNN_NO_ISA_DISPATCH)
#define MINICNN_ISA_DISPATCH 1
#define MINICNN_ISA_AVX512 1
#define MINICNN_ISA_AVX2 1
#elif defined(__x86_64__)
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && \
    defined(__AVX512VL__) && defined(__FMA__)
#define MINICNN_ISA_AVX512 1
#elif defined(__AVX2__) && defined(__FMA__)
#define MINICNN_ISA_AVX2 1
#endif
#elif defined(__aarch64__)
#define MINICNN_ISA_NEON 1
#endif

namespace minicnn {

// Ordered: a higher value runs everything a lower one does (on its architecture).
enum class Isa { portable = 0, neon = 1, avx2 = 2, avx512 = 3 };

inline const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    case Isa::neon: return "neon";
    default: return "portable";
  }
}

inline Isa parse_isa(const std::string& s) {
  for (Isa i : {Isa::portable, Isa::neon, Isa::avx2, Isa::avx512})
    if (s == isa_name(i)) return i;
  if (s == "scalar") return Isa::portable;  // the non-vector-extension name users expect
  throw Error("MINICNN_ISA: unknown instruction set '" + s +
              "', expected one of avx512, avx2, neon, portable");
}

namespace cpu_detail {
// Whether kernels for `isa` are compiled into this program (kernels/isa_targets.hpp
// defines these macros before including this header's users).
inline bool compiled(Isa isa) {
  switch (isa) {
    case Isa::avx512:
#if defined(MINICNN_ISA_AVX512)
      return true;
#else
      return false;
#endif
    case Isa::avx2:
#if defined(MINICNN_ISA_AVX2)
      return true;
#else
      return false;
#endif
    case Isa::neon:
#if defined(MINICNN_ISA_NEON)
      return true;
#else
      return false;
#endif
    default: return true;
  }
}

// What the CPU itself supports (OS support for the wide registers included: GCC's
// __builtin_cpu_supports checks XGETBV).
inline bool cpu_has(Isa isa) {
  switch (isa) {
#if defined(__x86_64__) && defined(__GNUC__)
    case Isa::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    case Isa::avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    case Isa::avx512:
    case Isa::avx2: return false;
#endif
    case Isa::neon:
#if defined(__aarch64__)
      return true;  // Advanced SIMD is mandatory on AArch64
#else
      return false;
#endif
    default: return true;
  }
}

inline Isa best_available(Isa cap) {
  for (Isa i : {Isa::avx512, Isa::avx2, Isa::neon, Isa::portable})
    if (static_cast<int>(i) <= static_cast<int>(cap) && compiled(i) && cpu_has(i)) return i;
  return Isa::portable;
}

inline std::atomic<int>& cap_slot() {
  static std::atomic<int> cap{-1};  // -1: not yet read from the environment
  return cap;
}
inline std::atomic<int>& active_slot() {
  static std::atomic<int> active{-1};
  return active;
}
}  // namespace cpu_detail

// The instruction set the kernels use now.
inline Isa active_isa() {
  using namespace cpu_detail;
  int a = active_slot().load(std::memory_order_relaxed);
  if (a >= 0) return static_cast<Isa>(a);
  Isa cap = Isa::avx512;
  if (const char* env = std::getenv("MINICNN_ISA"); env && *env) cap = parse_isa(env);
  Isa best = best_available(cap);
  active_slot().store(static_cast<int>(best));
  return best;
}

// The best instruction set this program and CPU support, ignoring any cap.
inline Isa best_isa() {
  return cpu_detail::best_available(Isa::avx512);
}

// Caps the instruction set from now on (e.g. to compare paths in one process); returns
// what will run. Not to be called while kernels run on other threads.
inline Isa set_isa_cap(Isa cap) {
  Isa best = cpu_detail::best_available(cap);
  cpu_detail::active_slot().store(static_cast<int>(best));
  return best;
}

// Every instruction set that can run here, best first (tests loop over them).
inline std::vector<Isa> runnable_isas() {
  std::vector<Isa> out;
  for (Isa i : {Isa::avx512, Isa::avx2, Isa::neon, Isa::portable})
    if (cpu_detail::compiled(i) && cpu_detail::cpu_has(i)) out.push_back(i);
  return out;
}

}  // namespace minicnn
