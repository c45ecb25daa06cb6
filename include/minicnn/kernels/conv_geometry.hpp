// Geometry of a 2-D convolution / depthwise convolution in NHWC, shared by the
// reference and fast kernels and by the layers.
// Padding "same" follows TensorFlow exactly: out = ceil(in / stride), total padding
// = max((out - 1) * stride + k - in, 0), with the smaller half on top/left and the
// extra row/column on bottom/right (asymmetric for stride 2 on even inputs).
// "valid": out = floor((in - k) / stride) + 1, no padding.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>

#include "../core/error.hpp"
#include "../core/shape.hpp"

namespace minicnn {

enum class Padding { Valid, Same };

inline std::string to_string(Padding p) {
  return p == Padding::Same ? "same" : "valid";
}
inline Padding padding_from_string(const std::string& s) {
  if (s == "same") return Padding::Same;
  if (s == "valid") return Padding::Valid;
  throw ConfigError("padding must be 'same' or 'valid', got '" + s + "'");
}

struct ConvGeometry {
  int64_t n = 0;                 // batch
  int64_t in_h = 0, in_w = 0;    // input spatial size
  int64_t in_c = 0;              // input channels
  int64_t out_h = 0, out_w = 0;  // output spatial size
  int64_t out_c = 0;             // output channels (== in_c for depthwise)
  int64_t k_h = 0, k_w = 0;      // kernel size
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
};

// One spatial axis: returns out size and writes the leading/trailing padding.
inline int64_t conv_out_size(int64_t in, int64_t k, int64_t stride, Padding pad, int64_t* pad_lo,
                             int64_t* pad_hi) {
  if (pad == Padding::Same) {
    int64_t out = (in + stride - 1) / stride;
    int64_t total = std::max<int64_t>((out - 1) * stride + k - in, 0);
    *pad_lo = total / 2;
    *pad_hi = total - total / 2;
    return out;
  }
  *pad_lo = *pad_hi = 0;
  if (in < k) return 0;
  return (in - k) / stride + 1;
}

// True when explicit zero padding (top, bottom, left, right) of an h x w input followed
// by a 'valid' convolution is exactly TF 'same' padding of that input: inference
// folding then drops the ZeroPadding2D (Keras MobileNetV2 pads before every stride-2
// convolution, and the copy costs as much as the depthwise convolution after it).
inline bool same_padding_equals(int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t sh,
                                int64_t sw, int64_t top, int64_t bottom, int64_t left,
                                int64_t right) {
  int64_t pt, pb, pl, pr;
  conv_out_size(h, kh, sh, Padding::Same, &pt, &pb);
  conv_out_size(w, kw, sw, Padding::Same, &pl, &pr);
  return pt == top && pb == bottom && pl == left && pr == right;
}

// Whether ZeroPadding2D(top, bottom, left, right) on `in` (H, W, C) followed by a 'valid'
// convolution built on `padded` is one 'same' convolution on `in` (absorb_zero_padding of
// Conv2D and DepthwiseConv2D).
inline bool zero_padding_folds(const Shape& in, const Shape& padded, int64_t kh, int64_t kw,
                               int64_t sh, int64_t sw, int64_t top, int64_t bottom, int64_t left,
                               int64_t right) {
  return in.rank() == 3 && padded.rank() == 3 && in[2] == padded[2] &&
         in[0] + top + bottom == padded[0] && in[1] + left + right == padded[1] &&
         same_padding_equals(in[0], in[1], kh, kw, sh, sw, top, bottom, left, right);
}

inline ConvGeometry make_conv_geometry(int64_t n, int64_t h, int64_t w, int64_t cin, int64_t cout,
                                       int64_t kh, int64_t kw, int64_t stride_h, int64_t stride_w,
                                       Padding pad) {
  ConvGeometry g;
  g.n = n;
  g.in_h = h;
  g.in_w = w;
  g.in_c = cin;
  g.out_c = cout;
  g.k_h = kh;
  g.k_w = kw;
  g.stride_h = stride_h;
  g.stride_w = stride_w;
  g.out_h = conv_out_size(h, kh, stride_h, pad, &g.pad_top, &g.pad_bottom);
  g.out_w = conv_out_size(w, kw, stride_w, pad, &g.pad_left, &g.pad_right);
  return g;
}

}  // namespace minicnn
