// MINICNN_DISPATCH(isa, call...): `return isa_<isa>::call;` for the instruction set the
// kernels run with (core/cpu.hpp), among those compiled in (kernels/for_each_isa.inl).
// NEON shares the portable body (vector extensions with fused multiply-add on AArch64).
#pragma once
#include "../core/cpu.hpp"

#if defined(MINICNN_ISA_AVX512)
#define MINICNN_DISPATCH_AVX512(...) \
  case ::minicnn::Isa::avx512:       \
    return isa_avx512::__VA_ARGS__;
#else
#define MINICNN_DISPATCH_AVX512(...)
#endif
#if defined(MINICNN_ISA_AVX2)
#define MINICNN_DISPATCH_AVX2(...) \
  case ::minicnn::Isa::avx2:       \
    return isa_avx2::__VA_ARGS__;
#else
#define MINICNN_DISPATCH_AVX2(...)
#endif

#define MINICNN_DISPATCH(isa, ...)             \
  switch (isa) {                               \
    MINICNN_DISPATCH_AVX512(__VA_ARGS__)       \
    MINICNN_DISPATCH_AVX2(__VA_ARGS__)         \
    default: return isa_portable::__VA_ARGS__; \
  }
