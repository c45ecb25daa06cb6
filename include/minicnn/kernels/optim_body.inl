// The Adam update over one contiguous range for one instruction set; compiled once per ISA by
// kernels/for_each_isa.inl (no include guard), called through kernels/optim.hpp, whose
// header comment gives the formula.
namespace minicnn::kernels::MINICNN_ISA_NS {
namespace optim_isa {
using namespace ::minicnn::simd::MINICNN_SIMD_NS;

template <bool Tail>
inline void adam_vector(float* w, const float* g, float* m, float* v, Mask k, V b1, V c1, V b2,
                        V c2, V lr, V eps) {
  const V gv = ld<Tail>(g, k);
  const V mv = vfma(b1, ld<Tail>(m, k), vmul(c1, gv));
  const V vv = vfma(b2, ld<Tail>(v, k), vmul(vmul(c2, gv), gv));
  st<Tail>(m, mv, k);
  st<Tail>(v, vv, k);
  st<Tail>(w, vsub(ld<Tail>(w, k), vdiv(vmul(lr, mv), vadd(vsqrt(vv), eps))), k);
}
}  // namespace optim_isa

inline void adam_update(float* w, const float* g, float* m, float* v, int64_t n,
                        const AdamCoefficients& a) {
  using namespace optim_isa;
  const V b1 = vset(a.beta_1), c1 = vset(a.one_minus_beta_1), b2 = vset(a.beta_2),
          c2 = vset(a.one_minus_beta_2), lr = vset(a.lr_t), eps = vset(a.epsilon);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    adam_vector<false>(w + i, g + i, m + i, v + i, tail_mask(kLanes), b1, c1, b2, c2, lr, eps);
  if (i < n)
    adam_vector<true>(w + i, g + i, m + i, v + i, tail_mask(n - i), b1, c1, b2, c2, lr, eps);
}
}  // namespace minicnn::kernels::MINICNN_ISA_NS
