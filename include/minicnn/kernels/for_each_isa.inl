// Compiles one kernel body once per instruction set (no include guard: included by each
// kernel header that has a body). Before including, define MINICNN_ISA_BODY as the body's
// file name. The body opens namespace minicnn::kernels::MINICNN_ISA_NS and uses
// minicnn::simd::MINICNN_SIMD_NS as its vectors; each copy lives in its own namespace, so
// no inline function has two definitions in one program, whatever flags each
// translation unit was compiled with.
#if !defined(MINICNN_ISA_BODY)
#error "define MINICNN_ISA_BODY before including for_each_isa.inl"
#endif

#if defined(MINICNN_ISA_AVX512)
#if defined(MINICNN_ISA_DISPATCH)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,bmi2")
#endif
#define MINICNN_ISA_NS isa_avx512
#define MINICNN_SIMD_NS avx512
#include MINICNN_ISA_BODY
#undef MINICNN_ISA_NS
#undef MINICNN_SIMD_NS
#if defined(MINICNN_ISA_DISPATCH)
#pragma GCC pop_options
#endif
#endif

#if defined(MINICNN_ISA_AVX2)
#if defined(MINICNN_ISA_DISPATCH)
#pragma GCC push_options
#pragma GCC target("avx2,fma,bmi2")
#endif
#define MINICNN_ISA_NS isa_avx2
#define MINICNN_SIMD_NS avx2
#include MINICNN_ISA_BODY
#undef MINICNN_ISA_NS
#undef MINICNN_SIMD_NS
#if defined(MINICNN_ISA_DISPATCH)
#pragma GCC pop_options
#endif
#endif

#define MINICNN_ISA_NS isa_portable
#define MINICNN_SIMD_NS portable
#include MINICNN_ISA_BODY
#undef MINICNN_ISA_NS
#undef MINICNN_SIMD_NS
