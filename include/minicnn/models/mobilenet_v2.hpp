// MobileNetV2 exactly as keras_applications/mobilenet_v2.py builds it: the same
// layer names, channel rounding, BatchNormalization settings (epsilon 1e-3,
// momentum 0.999), ReLU6 activations, Conv1_pad + 'valid' stride-2 stem and
// ZeroPadding2D before every stride-2 depthwise convolution (Keras' correct_pad:
// ((0,1),(0,1)) for even sizes, ((1,1),(1,1)) for odd), so that converted Keras
// weights load by name and produce Keras' outputs.
#pragma once
#include <cmath>
#include <memory>
#include <sstream>
#include <string>

#include "../core/error.hpp"
#include "../layers/activation.hpp"
#include "../layers/batch_norm.hpp"
#include "../layers/conv2d.hpp"
#include "../layers/dense.hpp"
#include "../layers/global_max_pooling2d.hpp"
#include "../layers/pooling.hpp"
#include "../layers/zero_padding2d.hpp"
#include "inverted_residual.hpp"
#include "sequential.hpp"

namespace minicnn {

struct MobileNetV2Options {
  double alpha = 1.0;          // width multiplier: 0.35, 0.5, 0.75, 1.0, 1.3 or 1.4
  int64_t input_height = 224;  // any size >= 32
  int64_t input_width = 224;
  bool include_top = false;  // GlobalAveragePooling2D + Dense 'Logits' + softmax
  int64_t classes = 1000;    // only with include_top
  std::string pooling;       // without top: "" (feature map), "avg" or "max"

  MobileNetV2Options& size(int64_t s) {
    input_height = input_width = s;
    return *this;
  }
};

// Keras' _make_divisible: round to the nearest multiple of `divisor`, never
// below `divisor` and never more than 10% below v.
inline int64_t make_divisible(double v, int64_t divisor = 8) {
  int64_t new_v =
      std::max<int64_t>(divisor, static_cast<int64_t>(v + divisor / 2.0) / divisor * divisor);
  if (new_v < 0.9 * v) new_v += divisor;
  return new_v;
}

// (expansion, filters, stride) of blocks 0..16, unrolled from Keras' (t, c, n, s) table.
struct MobileNetV2Block {
  int64_t expansion, filters, stride;
};
inline const std::vector<MobileNetV2Block>& mobilenet_v2_blocks() {
  static const std::vector<MobileNetV2Block> blocks = {
      {1, 16, 1}, {6, 24, 2},  {6, 24, 1},  {6, 32, 2},  {6, 32, 1}, {6, 32, 1},
      {6, 64, 2}, {6, 64, 1},  {6, 64, 1},  {6, 64, 1},  {6, 96, 1}, {6, 96, 1},
      {6, 96, 1}, {6, 160, 2}, {6, 160, 1}, {6, 160, 1}, {6, 320, 1}};
  return blocks;
}

inline void validate(const MobileNetV2Options& o) {
  static const double alphas[] = {0.35, 0.5, 0.75, 1.0, 1.3, 1.4};
  bool ok = false;
  for (double a : alphas) ok |= std::abs(a - o.alpha) < 1e-9;
  if (!ok)
    throw ConfigError(
        "mobilenet_v2: alpha " + std::to_string(o.alpha) +
        " is not one of 0.35, 0.5, 0.75, 1.0, 1.3, 1.4 (the widths Keras ships weights for)");
  if (o.input_height < 32 || o.input_width < 32)
    throw ConfigError("mobilenet_v2: input size " + std::to_string(o.input_height) + "x" +
                      std::to_string(o.input_width) + " is too small, expected at least 32x32");
  if (o.include_top && o.classes < 1)
    throw ConfigError("mobilenet_v2: classes must be >= 1, got " + std::to_string(o.classes));
  if (!o.pooling.empty() && o.pooling != "avg" && o.pooling != "max")
    throw ConfigError("mobilenet_v2: pooling must be '', 'avg' or 'max', got '" + o.pooling + "'");
}

// Keras model name, e.g. "mobilenetv2_1.00_224".
inline std::string mobilenet_v2_name(const MobileNetV2Options& o) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "mobilenetv2_%.2f_%lld", o.alpha,
                static_cast<long long>(o.input_height));
  return buf;
}

inline int64_t mobilenet_v2_last_filters(double alpha) {
  return alpha > 1.0 ? make_divisible(1280 * alpha, 8) : 1280;
}

template <typename T = float>
std::unique_ptr<SequentialT<T>> mobilenet_v2(const MobileNetV2Options& o = {}) {
  validate(o);
  auto model = std::make_unique<SequentialT<T>>(mobilenet_v2_name(o));
  auto pad_lo = [](int64_t n) { return n % 2 == 0 ? 0 : 1; };  // Keras correct_pad for kernel 3
  const int64_t first = make_divisible(32 * o.alpha, 8);
  model->template add<ZeroPadding2DT<T>>("Conv1_pad", pad_lo(o.input_height), 1,
                                         pad_lo(o.input_width), 1);
  model->template add<Conv2DT<T>>("Conv1", first, 3, 2, Padding::Valid, false);
  model->template add<BatchNormalizationT<T>>("bn_Conv1", 0.999, 1e-3);
  model->template add<ReLU6T<T>>("Conv1_relu");
  int64_t id = 0;
  for (const auto& b : mobilenet_v2_blocks()) {
    int64_t pointwise =
        make_divisible(static_cast<double>(static_cast<int64_t>(b.filters * o.alpha)), 8);
    model->template add<InvertedResidualT<T>>(id++, b.expansion, pointwise, b.stride);
  }
  model->template add<Conv2DT<T>>("Conv_1", mobilenet_v2_last_filters(o.alpha), 1, 1,
                                  Padding::Valid, false);
  model->template add<BatchNormalizationT<T>>("Conv_1_bn", 0.999, 1e-3);
  model->template add<ReLU6T<T>>("out_relu");
  if (o.include_top) {
    model->template add<GlobalAveragePooling2DT<T>>("global_average_pooling2d");
    model->template add<DenseT<T>>("Logits", o.classes, true);
    model->template add<SoftmaxT<T>>("Logits_softmax");
  } else if (o.pooling == "avg") {
    model->template add<GlobalAveragePooling2DT<T>>("global_average_pooling2d");
  } else if (o.pooling == "max") {
    model->template add<GlobalMaxPooling2DT<T>>("global_max_pooling2d");
  }
  model->build(Shape{o.input_height, o.input_width, 3});
  return model;
}

}  // namespace minicnn
