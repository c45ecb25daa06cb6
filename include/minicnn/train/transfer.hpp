// Transfer learning from ImageNet MobileNetV2, the origin notebook's recipe:
//   base = MobileNetV2(input_shape=(H, W, 3), include_top=False, weights=<converted file>),
//          frozen (base.trainable = False: inference mode, as Keras since TF 2.0);
//   head = GlobalAveragePooling2D -> Dense(128, relu) -> Dropout(0.5) -> Dense(n, softmax),
// with Keras' layer names (global_average_pooling2d, dense, dropout, dense_1) and Keras'
// initialisation (glorot_uniform kernels, zero biases) drawn from the global seed.
// Any input size >= 32 works with the 224 weights (Keras loads them with a warning), alpha
// 1.0 and 0.35 as the converted files provide. unfreeze_top_blocks() is the fine-tuning
// phase: the top N inverted residual blocks (with the last 1x1 convolution above them), or
// all of the base, train again; the rest of the base stays frozen in inference mode.
#pragma once
#include <memory>
#include <string>

#include "../core/error.hpp"
#include "../core/random.hpp"
#include "../io/format.hpp"
#include "../io/weights.hpp"
#include "../layers/dense.hpp"
#include "../layers/dropout.hpp"
#include "../layers/pooling.hpp"
#include "../models/inverted_residual.hpp"
#include "../models/mobilenet_v2.hpp"
#include "../models/model.hpp"
#include "../models/sequential.hpp"

namespace minicnn {

struct ClassifierOptions {
  std::string base_weights;  // converted ImageNet MobileNetV2 .mcnn (weights/README.md)
  int64_t input_height = 96, input_width = 96;
  int64_t classes = 0;
  int64_t dense_units = 128;  // 0: no hidden Dense layer
  std::string dense_activation = "relu";
  double dropout = 0.5;  // 0: no Dropout layer
  bool freeze_base = true;
  uint64_t seed = 0;  // head initialisation and dropout masks
  std::string name = "sequential";
};

// The base network inside a classifier made by mobilenet_v2_classifier (its first layer).
inline SequentialT<float>& classifier_base(SequentialT<float>& model) {
  for (auto* l : model.layers())
    if (auto* s = dynamic_cast<SequentialT<float>*>(l);
        s && s->name().rfind("mobilenetv2_", 0) == 0)
      return *s;
  throw ConfigError("model '" + model.name() +
                    "' has no MobileNetV2 base (a layer named mobilenetv2_*)");
}

inline std::unique_ptr<SequentialT<float>> mobilenet_v2_classifier(const ClassifierOptions& o) {
  if (o.classes < 2)
    throw ConfigError("mobilenet_v2_classifier: classes must be >= 2, got " +
                      std::to_string(o.classes));
  if (o.dense_units < 0)
    throw ConfigError("mobilenet_v2_classifier: dense_units must be >= 0, got " +
                      std::to_string(o.dense_units));
  if (!(o.dropout >= 0.0 && o.dropout < 1.0))
    throw ConfigError("mobilenet_v2_classifier: dropout must be in [0, 1), got " +
                      std::to_string(o.dropout));
  McnnFile weights = read_mcnn(o.base_weights);
  const std::string where = "'" + o.base_weights + "'";
  MobileNetV2Options mo = mobilenet_v2_options_from_metadata(weights.metadata, where);
  const bool file_has_top = mo.include_top;
  mo.include_top = false;
  mo.pooling.clear();
  mo.input_height = o.input_height;
  mo.input_width = o.input_width;
  auto base = mobilenet_v2<float>(mo);
  LoadOptions lo;
  if (file_has_top) lo.skip_prefixes = {"Logits/", "predictions/"};
  load_weights(*base, weights, lo);
  base->set_trainable(!o.freeze_base);

  auto model = std::make_unique<SequentialT<float>>(o.name);
  model->add(std::move(base));
  model->add<GlobalAveragePooling2DT<float>>("global_average_pooling2d");
  set_global_seed(o.seed);
  std::string last = "dense";
  if (o.dense_units > 0)
    model->add<DenseT<float>>("dense", o.dense_units, DenseOptions{o.dense_activation, true});
  if (o.dropout > 0) model->add<DropoutT<float>>("dropout", o.dropout, o.seed);
  model->add<DenseT<float>>(o.dense_units > 0 ? "dense_1" : "dense", o.classes,
                            DenseOptions{"softmax", true});
  model->build(Shape{o.input_height, o.input_width, 3});
  return model;
}

// Makes the top `blocks` inverted residual blocks of the base trainable again, with the
// layers above them (Conv_1, its BatchNormalization); blocks < 0 or >= 17 unfreezes the
// whole base. With train_batchnorm = false the unfrozen BatchNormalization layers stay in
// inference mode (Keras' advice for small datasets). Returns a one-line description.
inline std::string unfreeze_top_blocks(SequentialT<float>& model, int blocks,
                                       bool train_batchnorm = true) {
  SequentialT<float>& base = classifier_base(model);
  auto layers = base.layers();
  int total_blocks = 0;
  for (auto* l : layers) total_blocks += dynamic_cast<InvertedResidualT<float>*>(l) != nullptr;
  const bool all = blocks < 0 || blocks >= total_blocks;
  size_t start = 0;
  if (!all) {
    int seen = 0;
    for (size_t i = 0; i < layers.size(); ++i)
      if (dynamic_cast<InvertedResidualT<float>*>(layers[i]) &&
          ++seen == total_blocks - blocks + 1) {
        start = i;
        break;
      }
    if (blocks == 0) start = layers.size();
    // With zero blocks nothing of the base trains, not even Conv_1.
  }
  for (size_t i = start; i < layers.size(); ++i) {
    layers[i]->set_trainable(true);
    if (!train_batchnorm) {
      auto walk = [&](auto& self, LayerT<float>* l) -> void {
        if (l->type() == "BatchNormalization") l->set_trainable(false);
        for (auto* c : l->children()) self(self, c);
      };
      walk(walk, layers[i]);
    }
  }
  const int64_t trainable = model.count_params(true);
  std::string what = all           ? "the whole base"
                     : blocks == 0 ? "nothing of the base"
                                   : "the top " + std::to_string(blocks) + " blocks and Conv_1";
  return "Unfroze " + what + ": " + std::to_string(trainable) + " trainable parameters";
}

}  // namespace minicnn
