// One build of minicnn's depthwise kernels for ab_dwconv2d.sh, compiled twice: with
// -DVARIANT=A from tree A's include/, and with -DVARIANT=B -Ddw_avx512=dw_avx512_b from tree
// B's (the kernels' inline namespace renamed, so both builds link into one program).
#include <minicnn/kernels/dwconv2d.hpp>

#define MINICNN_AB_CAT2(a, b) a##b
#define MINICNN_AB_CAT(a, b) MINICNN_AB_CAT2(a, b)

void MINICNN_AB_CAT(bwd_, VARIANT)(const minicnn::ConvGeometry& g, const float* x, const float* dy,
                                   const float* w, float* dx, float* dw) {
  minicnn::kernels::dwconv2d_nhwc_backward<float>(g, x, dy, w, dx, dw, nullptr);
}
void MINICNN_AB_CAT(fwd_, VARIANT)(const minicnn::ConvGeometry& g, const float* x, const float* w,
                                   float* y) {
  minicnn::kernels::dwconv2d_nhwc_forward<float>(g, x, w, nullptr, minicnn::Activation::Linear, y);
}
