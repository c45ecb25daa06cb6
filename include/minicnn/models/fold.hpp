// Inference folding. A convolution followed by an inference-mode BatchNormalization
// computes y = (W*x - mean) * gamma / sqrt(var + eps) + beta = (W*scale)*x + shift,
// so the BN disappears into the kernel (scaled per output channel) and a bias; a
// following ReLU / ReLU6 then runs in the convolution's epilogue while the output is
// still in cache. That removes two full passes over every activation tensor.
#pragma once
#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <vector>

#include "../layers/activation.hpp"
#include "../layers/batch_norm.hpp"
#include "../layers/conv2d.hpp"
#include "../layers/depthwise_conv2d.hpp"
#include "../layers/zero_padding2d.hpp"

namespace minicnn {

namespace detail {
template <typename T, typename Conv>
void fold_bn_into(Conv& conv, BatchNormalizationT<T>& bn) {
  auto [scale, shift] = bn.folded_scale_shift();
  const int64_t c = scale.size();
  Tensor<T>& k = conv.kernel().value;
  // Kernels are HWIO (Conv2D) or HWC1 (DepthwiseConv2D): the output channel varies fastest.
  for (int64_t i = 0; i < k.size(); ++i) k[i] *= scale[i % c];
  if (!conv.use_bias()) conv.enable_bias();
  Tensor<T>& b = conv.bias().value;
  for (int64_t j = 0; j < c; ++j) b[j] = b[j] * scale[j] + shift[j];
}
}  // namespace detail

// Folds `bn` into `prev` when prev is a Conv2D / DepthwiseConv2D without an
// activation and with as many output channels as bn normalises. True when folded.
template <typename T>
bool try_fold_batchnorm(LayerT<T>& prev, LayerT<T>& next) {
  auto* bn = dynamic_cast<BatchNormalizationT<T>*>(&next);
  if (!bn || !bn->built() || !prev.built()) return false;
  if (prev.output_shape() != bn->input_shape() || prev.output_shape().rank() != 3) return false;
  if (auto* c = dynamic_cast<Conv2DT<T>*>(&prev)) {
    if (c->activation() != Activation::Linear) return false;
    detail::fold_bn_into(*c, *bn);
    return true;
  }
  if (auto* d = dynamic_cast<DepthwiseConv2DT<T>*>(&prev)) {
    if (d->activation() != Activation::Linear) return false;
    detail::fold_bn_into(*d, *bn);
    return true;
  }
  return false;
}

// Moves a ReLU (max_value infinite) or ReLU6 (max_value 6) into prev's epilogue.
template <typename T>
bool try_fuse_activation(LayerT<T>& prev, LayerT<T>& next) {
  const std::optional<Activation> fused = fusable_activation(next);
  if (!fused) return false;
  const Activation a = *fused;
  if (auto* c = dynamic_cast<Conv2DT<T>*>(&prev); c && c->activation() == Activation::Linear) {
    c->set_activation(a);
    return true;
  }
  if (auto* d = dynamic_cast<DepthwiseConv2DT<T>*>(&prev);
      d && d->activation() == Activation::Linear) {
    d->set_activation(a);
    return true;
  }
  return false;
}

// Drops `pad` when the 'valid' convolution after it can pad the same way itself
// (TF 'same' padding). True when dropped.
template <typename T>
bool try_absorb_padding(LayerT<T>& pad, LayerT<T>& next) {
  auto* zp = dynamic_cast<ZeroPadding2DT<T>*>(&pad);
  if (!zp || !zp->built() || !next.built() || zp->output_shape() != next.input_shape())
    return false;
  const Shape& in = zp->input_shape();
  if (auto* c = dynamic_cast<Conv2DT<T>*>(&next))
    return c->absorb_zero_padding(in, zp->top(), zp->bottom(), zp->left(), zp->right());
  if (auto* d = dynamic_cast<DepthwiseConv2DT<T>*>(&next))
    return d->absorb_zero_padding(in, zp->top(), zp->bottom(), zp->left(), zp->right());
  return false;
}

// Folds a run of layers in place: ZeroPadding2D + 'valid' convolution pairs become one
// 'same' convolution where that is exact, conv+BN(+ReLU) triples collapse into the
// conv. Layers are then folded recursively (containers fold their insides).
template <typename T>
void fold_layer_sequence(std::vector<std::unique_ptr<LayerT<T>>>& layers) {
  for (size_t i = 0; i + 1 < layers.size();) {
    if (try_absorb_padding(*layers[i], *layers[i + 1])) {
      layers.erase(layers.begin() + static_cast<std::ptrdiff_t>(i));
      continue;
    }
    ++i;
  }
  for (size_t i = 0; i + 1 < layers.size();) {
    if (try_fold_batchnorm(*layers[i], *layers[i + 1])) {
      layers.erase(layers.begin() + static_cast<std::ptrdiff_t>(i) + 1);
      if (i + 1 < layers.size() && try_fuse_activation(*layers[i], *layers[i + 1]))
        layers.erase(layers.begin() + static_cast<std::ptrdiff_t>(i) + 1);
      continue;
    }
    ++i;
  }
  for (auto& l : layers) l->fold_for_inference();
}

template <typename T>
void fold_for_inference(LayerT<T>& model) {
  model.fold_for_inference();
}

}  // namespace minicnn
