// One vocabulary of float vectors for every instruction set the kernels run on.
//
// Each namespace minicnn::simd::<isa> holds the same names, so a kernel body written
// once (kernels/*_body.inl) compiles for each of them:
//   V, Mask, kLanes        a vector of kLanes floats; Mask selects the valid lanes of a tail
//   kRegs                  vector registers there are room for (picks GEMM tile sizes)
//   kCanStream             whether non-temporal stores pay (whole cache lines per vector)
//   kInRegisters           whether V is one register (false: a struct of parts, which GCC
//                          often moves through the stack; plain loops it vectorises itself
//                          can then be faster)
//   tail_mask(n)           lanes [0, n) valid, 0 <= n <= kLanes
//   ld<Tail>(p, m), st<Tail>(p, v, m)   unaligned load/store; Tail: only the masked lanes
//                          (masked-off lanes load as 0 and are not written)
//   st_stream, stream_fence, vzero, vset, vfma (a*b+c, fused where the ISA has it),
//   vadd, vsub, vmul, vdiv, vsqrt (correctly rounded, as IEEE 754 asks), vmax, vmin (x86 semantics:
//   the SECOND operand is returned when one is NaN, so act(v) = max(0, v) propagates NaN),
//   vpass(z, lo, hi, g): g where lo < z < hi, else 0; vpass_above(z, lo, g): g where lo < z,
//   else 0 (a NaN z gives 0; an activation's gradient mask),
//   transpose (kLanes x kLanes block in registers), prefetch.
//   D: kLanes / 2 doubles, one native register (double sums of float data, as in the
//   batch-norm reductions): dwiden(p) loads kLanes / 2 floats and widens them,
//   dwiden_lo / dwiden_hi widen a half of a V, dld / dst load and store, dzero, dadd,
//   dsub, dfma (a*b+c).
// With MINICNN_ISA_DISPATCH (GCC, x86-64) the avx512 and avx2 namespaces are compiled
// with function-level target options, so their code is emitted whatever -march says;
// nothing here runs unless core/cpu.hpp's active_isa() selected it.
#pragma once
#include <cstdint>
#include <cstring>

#include "../core/cpu.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#endif

// ------------------------------------------------------------------ AVX-512
#if defined(MINICNN_ISA_AVX512)
#if defined(MINICNN_ISA_DISPATCH)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,bmi2")
#endif
namespace minicnn::simd::avx512 {
using V = __m512;
using Mask = __mmask16;
constexpr int64_t kLanes = 16;
constexpr int kRegs = 32;
constexpr bool kCanStream = true;
constexpr bool kInRegisters = true;
constexpr const char* kName = "avx512";
inline Mask tail_mask(int64_t n) {
  return static_cast<Mask>((1u << n) - 1u);
}
template <bool Tail>
inline V ld(const float* p, Mask m) {
  if constexpr (Tail)
    return _mm512_maskz_loadu_ps(m, p);
  else
    return (void)m, _mm512_loadu_ps(p);
}
template <bool Tail>
inline void st(float* p, V v, Mask m) {
  if constexpr (Tail)
    _mm512_mask_storeu_ps(p, m, v);
  else
    (void)m, _mm512_storeu_ps(p, v);
}
inline void st_stream(float* p, V v) {
  _mm512_stream_ps(p, v);
}
inline void stream_fence() {
  _mm_sfence();
}
inline V vzero() {
  return _mm512_setzero_ps();
}
inline V vset(float a) {
  return _mm512_set1_ps(a);
}
inline V vfma(V a, V b, V c) {
  return _mm512_fmadd_ps(a, b, c);
}
inline V vadd(V a, V b) {
  return _mm512_add_ps(a, b);
}
inline V vmul(V a, V b) {
  return _mm512_mul_ps(a, b);
}
// The maskz forms (all lanes) dodge GCC 12's false -Wmaybe-uninitialized in _mm512_max_ps.
inline V vsub(V a, V b) {
  return _mm512_sub_ps(a, b);
}
inline V vdiv(V a, V b) {
  return _mm512_div_ps(a, b);
}
inline V vsqrt(V a) {  // maskz_: GCC 12's plain form warns about its undefined passthrough
  return _mm512_maskz_sqrt_ps(static_cast<Mask>(0xFFFF), a);
}
inline V vmax(V a, V b) {
  return _mm512_maskz_max_ps(static_cast<Mask>(0xFFFF), a, b);
}
inline V vmin(V a, V b) {
  return _mm512_maskz_min_ps(static_cast<Mask>(0xFFFF), a, b);
}
inline V vpass(V z, V lo, V hi, V g) {
  return _mm512_maskz_mov_ps(
      _mm512_cmp_ps_mask(z, lo, _CMP_GT_OQ) & _mm512_cmp_ps_mask(z, hi, _CMP_LT_OQ), g);
}
inline V vpass_above(V z, V lo, V g) {
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(z, lo, _CMP_GT_OQ), g);
}
inline void prefetch(const void* p) {
  _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0);
}
// r[i] holds row i; afterwards r[i] holds column i. (maskz_ forms: as vmax.)
inline void transpose(V r[16]) {
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
using D = __m512d;
// Masked conversion with every lane set, and halves taken with __builtin_shufflevector:
// both compile to the plain instructions, while the plain intrinsics' "undefined"
// pass-through values draw false -Wmaybe-uninitialized warnings from GCC 12.
typedef float F16 __attribute__((vector_size(64)));
inline D dwiden_v(__m256 h) {
  return _mm512_mask_cvtps_pd(_mm512_setzero_pd(), static_cast<__mmask8>(0xFF), h);
}
inline D dwiden(const float* p) {
  return dwiden_v(_mm256_loadu_ps(p));
}
inline D dwiden_lo(V v) {
  const F16 f = (F16)v;
  return dwiden_v((__m256)__builtin_shufflevector(f, f, 0, 1, 2, 3, 4, 5, 6, 7));
}
inline D dwiden_hi(V v) {
  const F16 f = (F16)v;
  return dwiden_v((__m256)__builtin_shufflevector(f, f, 8, 9, 10, 11, 12, 13, 14, 15));
}
inline D dld(const double* p) {
  return _mm512_loadu_pd(p);
}
inline void dst(double* p, D v) {
  _mm512_storeu_pd(p, v);
}
inline D dzero() {
  return _mm512_setzero_pd();
}
inline D dadd(D a, D b) {
  return _mm512_add_pd(a, b);
}
inline D dsub(D a, D b) {
  return _mm512_sub_pd(a, b);
}
inline D dfma(D a, D b, D c) {
  return _mm512_fmadd_pd(a, b, c);
}
}  // namespace minicnn::simd::avx512
#if defined(MINICNN_ISA_DISPATCH)
#pragma GCC pop_options
#endif
#endif  // MINICNN_ISA_AVX512

// ------------------------------------------------------------------ AVX2 + FMA
#if defined(MINICNN_ISA_AVX2)
#if defined(MINICNN_ISA_DISPATCH)
#pragma GCC push_options
#pragma GCC target("avx2,fma,bmi2")
#endif
namespace minicnn::simd::avx2 {
using V = __m256;
using Mask = __m256i;  // lane i valid when its int is -1
constexpr int64_t kLanes = 8;
constexpr int kRegs = 16;
// No streaming stores: a vector is half a cache line, and the two halves of a line are
// often written far apart in time (different channel blocks), so the write-combining
// buffer would flush partial lines. Measured 6.5x slower on the 32@48 depthwise forward.
constexpr bool kCanStream = false;
constexpr bool kInRegisters = true;
constexpr const char* kName = "avx2";
inline Mask tail_mask(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
template <bool Tail>
inline V ld(const float* p, Mask m) {
  if constexpr (Tail)
    return _mm256_maskload_ps(p, m);
  else
    return (void)m, _mm256_loadu_ps(p);
}
template <bool Tail>
inline void st(float* p, V v, Mask m) {
  if constexpr (Tail)
    _mm256_maskstore_ps(p, m, v);
  else
    (void)m, _mm256_storeu_ps(p, v);
}
inline void st_stream(float* p, V v) {
  _mm256_storeu_ps(p, v);
}
inline void stream_fence() {}
inline V vzero() {
  return _mm256_setzero_ps();
}
inline V vset(float a) {
  return _mm256_set1_ps(a);
}
inline V vfma(V a, V b, V c) {
  return _mm256_fmadd_ps(a, b, c);
}
inline V vadd(V a, V b) {
  return _mm256_add_ps(a, b);
}
inline V vmul(V a, V b) {
  return _mm256_mul_ps(a, b);
}
inline V vsub(V a, V b) {
  return _mm256_sub_ps(a, b);
}
inline V vdiv(V a, V b) {
  return _mm256_div_ps(a, b);
}
inline V vsqrt(V a) {
  return _mm256_sqrt_ps(a);
}
inline V vmax(V a, V b) {
  return _mm256_max_ps(a, b);
}
inline V vmin(V a, V b) {
  return _mm256_min_ps(a, b);
}
inline V vpass(V z, V lo, V hi, V g) {
  return _mm256_and_ps(
      g, _mm256_and_ps(_mm256_cmp_ps(z, lo, _CMP_GT_OQ), _mm256_cmp_ps(z, hi, _CMP_LT_OQ)));
}
inline V vpass_above(V z, V lo, V g) {
  return _mm256_and_ps(g, _mm256_cmp_ps(z, lo, _CMP_GT_OQ));
}
inline void prefetch(const void* p) {
  _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0);
}
inline void transpose(V r[8]) {
  __m256 t[8], u[8];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
#pragma GCC unroll 2
  for (int g = 0; g < 2; ++g) {
    u[4 * g + 0] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
    u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
  }
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    r[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
    r[4 + j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
  }
}
using D = __m256d;
inline D dwiden(const float* p) {
  return _mm256_cvtps_pd(_mm_loadu_ps(p));
}
inline D dwiden_lo(V v) {
  return _mm256_cvtps_pd(_mm256_castps256_ps128(v));
}
inline D dwiden_hi(V v) {
  return _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
}
inline D dld(const double* p) {
  return _mm256_loadu_pd(p);
}
inline void dst(double* p, D v) {
  _mm256_storeu_pd(p, v);
}
inline D dzero() {
  return _mm256_setzero_pd();
}
inline D dadd(D a, D b) {
  return _mm256_add_pd(a, b);
}
inline D dsub(D a, D b) {
  return _mm256_sub_pd(a, b);
}
inline D dfma(D a, D b, D c) {
  return _mm256_fmadd_pd(a, b, c);
}
}  // namespace minicnn::simd::avx2
#if defined(MINICNN_ISA_DISPATCH)
#pragma GCC pop_options
#endif
#endif  // MINICNN_ISA_AVX2

// ------------------------------------------------------------------ portable / NEON
// GCC/Clang vector extensions, 8 lanes in 16-byte parts (SSE2 on x86-64, NEON q registers
// on AArch64, where vfma uses the fused instruction), so values pass in registers without
// ABI surprises. The same code is the "neon" path on AArch64 and "portable" elsewhere.
namespace minicnn::simd::portable_impl {
typedef float Part __attribute__((vector_size(16)));
constexpr int64_t kLanes = 8;
constexpr int kParts = 2;
struct V {
  Part p[kParts];
};
using Mask = int;  // number of valid lanes in a tail vector
#if defined(__aarch64__)
constexpr int kRegs = 16;  // 32 q registers, two per V
constexpr const char* kName = "neon";
#else
constexpr int kRegs = 8;  // 16 xmm registers, two per V
constexpr const char* kName = "portable";
#endif
constexpr bool kCanStream = false;
constexpr bool kInRegisters = false;
inline Mask tail_mask(int64_t n) {
  return static_cast<Mask>(n);
}
template <bool Tail>
inline V ld(const float* p, Mask m) {
  V v = {};
  std::memcpy(&v, p, Tail ? sizeof(float) * static_cast<std::size_t>(m) : sizeof(V));
  return v;
}
template <bool Tail>
inline void st(float* p, V v, Mask m) {
  std::memcpy(p, &v, Tail ? sizeof(float) * static_cast<std::size_t>(m) : sizeof(V));
}
inline void st_stream(float* p, V v) {
  st<false>(p, v, Mask{});
}
inline void stream_fence() {}
template <class F>
inline V vmap(V a, V b, F f) {
  V r;
  for (int i = 0; i < kParts; ++i) r.p[i] = f(a.p[i], b.p[i]);
  return r;
}
inline V vzero() {
  return V{};
}
inline V vset(float a) {
  V r;
  for (int i = 0; i < kParts; ++i) r.p[i] = Part{} + a;
  return r;
}
inline V vfma(V a, V b, V c) {
  V r;
#if defined(__aarch64__)
  for (int i = 0; i < kParts; ++i)
    r.p[i] = (Part)vfmaq_f32((float32x4_t)c.p[i], (float32x4_t)a.p[i], (float32x4_t)b.p[i]);
#else
  for (int i = 0; i < kParts; ++i) r.p[i] = a.p[i] * b.p[i] + c.p[i];
#endif
  return r;
}
inline V vadd(V a, V b) {
  return vmap(a, b, [](Part x, Part y) { return x + y; });
}
inline V vmul(V a, V b) {
  return vmap(a, b, [](Part x, Part y) { return x * y; });
}
inline V vsub(V a, V b) {
  return vmap(a, b, [](Part x, Part y) { return x - y; });
}
inline V vdiv(V a, V b) {
  return vmap(a, b, [](Part x, Part y) { return x / y; });
}
// Correctly rounded, as the scalar std::sqrt (IEEE 754 requires it of both).
inline V vsqrt(V a) {
  V r;
  for (int i = 0; i < kParts; ++i) {
#if defined(__aarch64__)
    r.p[i] = (Part)vsqrtq_f32((float32x4_t)a.p[i]);
#elif defined(__SSE2__)
    r.p[i] = (Part)_mm_sqrt_ps((__m128)a.p[i]);
#else
    for (int k = 0; k < 4; ++k) r.p[i][k] = __builtin_sqrtf(a.p[i][k]);
#endif
  }
  return r;
}
inline V vmax(V a, V b) {
  return vmap(a, b, [](Part x, Part y) { return x > y ? x : y; });
}
inline V vmin(V a, V b) {
  return vmap(a, b, [](Part x, Part y) { return x < y ? x : y; });
}
inline V vpass(V z, V lo, V hi, V g) {
  typedef int IPart __attribute__((vector_size(16)));
  V r;
  for (int i = 0; i < kParts; ++i) {
    const IPart keep = (z.p[i] > lo.p[i]) & (z.p[i] < hi.p[i]);
    r.p[i] = (Part)((IPart)g.p[i] & keep);
  }
  return r;
}
inline V vpass_above(V z, V lo, V g) {
  typedef int IPart __attribute__((vector_size(16)));
  V r;
  for (int i = 0; i < kParts; ++i) r.p[i] = (Part)((IPart)g.p[i] & (z.p[i] > lo.p[i]));
  return r;
}
inline void prefetch(const void* p) {
  __builtin_prefetch(p, 0, 3);
}
inline void transpose(V r[8]) {
  float m[8][8], t[8][8];
  std::memcpy(m, r, sizeof(m));
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 8; ++j) t[j][i] = m[i][j];
  std::memcpy(r, t, sizeof(t));
}
// Four doubles in two 16-byte parts, as V holds its floats.
typedef double DPart __attribute__((vector_size(16)));
struct D {
  DPart p[2];
};
typedef float FPair __attribute__((vector_size(8)));
inline D dwiden_part(Part f) {
  FPair lo, hi;
  std::memcpy(&lo, &f, sizeof(lo));
  std::memcpy(&hi, reinterpret_cast<const float*>(&f) + 2, sizeof(hi));
  return D{{__builtin_convertvector(lo, DPart), __builtin_convertvector(hi, DPart)}};
}
inline D dwiden(const float* p) {
  Part f;
  std::memcpy(&f, p, sizeof(f));
  return dwiden_part(f);
}
inline D dwiden_lo(V v) {
  return dwiden_part(v.p[0]);
}
inline D dwiden_hi(V v) {
  return dwiden_part(v.p[1]);
}
inline D dld(const double* p) {
  D d;
  std::memcpy(&d, p, sizeof(d));
  return d;
}
inline void dst(double* p, D v) {
  std::memcpy(p, &v, sizeof(v));
}
inline D dzero() {
  return D{};
}
inline D dadd(D a, D b) {
  return D{{a.p[0] + b.p[0], a.p[1] + b.p[1]}};
}
inline D dsub(D a, D b) {
  return D{{a.p[0] - b.p[0], a.p[1] - b.p[1]}};
}
// Fused or not as the compiler contracts it: the sums it serves are in double, where one
// rounding more is far below what float data carries.
inline D dfma(D a, D b, D c) {
  return D{{a.p[0] * b.p[0] + c.p[0], a.p[1] * b.p[1] + c.p[1]}};
}
}  // namespace minicnn::simd::portable_impl

namespace minicnn::simd {
#if defined(__aarch64__)
namespace neon = portable_impl;
#endif
namespace portable = portable_impl;
}  // namespace minicnn::simd
