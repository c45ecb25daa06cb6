// Self-contained model files: a trained model saved as one .mcnn whose metadata holds
// everything needed to classify an image with it and nothing else:
//   "kind": "model" ("checkpoint" for a training checkpoint, which is a model file with
//   more in it), "model_config" (the layer tree, models/layer_config.hpp),
//   "input_shape" [H, W, 3], "frozen_layers", "class_names", "preprocessing" ("tf" for
//   x/127.5-1, "unit" for x/255), "interpolation" (how images were resized in training),
//   "exif_orientation", "library_version", and "extra" (free-form: training settings).
// The tensors are every parameter, BatchNormalization statistics included (kind `model`),
// plus, in a training checkpoint, optimizer and callback state (kind `training`, which
// loading a model ignores). load_model_file() also reads the converted ImageNet MobileNetV2
// weight files (metadata "architecture": "mobilenet_v2"), so one loader serves both.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../data/image.hpp"
#include "../io/format.hpp"
#include "../io/weights.hpp"
#include "layer_config.hpp"
#include "model.hpp"
#include "sequential.hpp"

namespace minicnn {

// What a model file says besides its layers and weights.
struct ModelInfo {
  std::vector<std::string> class_names;
  Preprocess preprocess = Preprocess::Tf;
  Interpolation interpolation = Interpolation::Nearest;
  bool exif_orientation = true;
  nlohmann::json extra = nlohmann::json::object();
};

inline constexpr const char* kModelKind = "model";
inline constexpr const char* kCheckpointKind = "checkpoint";

// The metadata of a model file for `net` (built) and `info`.
inline nlohmann::json model_metadata(LayerT<float>& net, const ModelInfo& info) {
  if (!net.built()) throw Error(net.type() + " '" + net.name() + "': cannot save an unbuilt model");
  if (net.inference_only())
    throw ConfigError(net.type() + " '" + net.name() +
                      "': cannot save a model folded for inference (its layers changed); save "
                      "the model it was folded from");
  const Shape in = net.input_shape();
  nlohmann::json shape = nlohmann::json::array();
  for (int i = 0; i < in.rank(); ++i) shape.push_back(in[i]);
  return {{"kind", kModelKind},
          {"library_version", kMcnnLibraryVersion},
          {"model_config", layer_config_node(net)},
          {"input_shape", shape},
          {"frozen_layers", frozen_layer_names(net)},
          {"class_names", info.class_names},
          {"preprocessing", to_string(info.preprocess)},
          {"interpolation", to_string(info.interpolation)},
          {"exif_orientation", info.exif_orientation},
          {"extra", info.extra.is_null() ? nlohmann::json::object() : info.extra}};
}

// The bytes of a self-contained model file (nothing else is needed to use it).
inline std::vector<char> model_file_bytes(LayerT<float>& net, const ModelInfo& info) {
  return serialize_mcnn(collect_weights(net, model_metadata(net, info)));
}
// Writes a self-contained model file atomically.
inline void save_model_file(LayerT<float>& net, const ModelInfo& info, const std::string& path) {
  const std::vector<char> bytes = model_file_bytes(net, info);
  write_file_atomic(path, bytes.data(), bytes.size());
}

struct LoadedNet {
  std::unique_ptr<SequentialT<float>> net;
  ModelInfo info;
  McnnFile file;  // as read (training tensors included)
};

// Whether a .mcnn's metadata describes a saved model (not converted ImageNet weights).
inline bool is_model_metadata(const nlohmann::json& meta) {
  if (!meta.is_object() || !meta.contains("model_config")) return false;
  const std::string kind = meta.value("kind", std::string());
  return kind == kModelKind || kind == kCheckpointKind;
}

// Reads the model info fields of `meta`; `where` names the file in errors.
inline ModelInfo model_info_from_metadata(const nlohmann::json& meta, const std::string& where) {
  ModelInfo info;
  if (meta.contains("class_names")) {
    if (!meta["class_names"].is_array()) throw FormatError(where + ": class_names must be a list");
    for (const auto& c : meta["class_names"]) {
      if (!c.is_string()) throw FormatError(where + ": class_names must be strings");
      info.class_names.push_back(c.get<std::string>());
    }
  }
  try {
    if (meta.contains("preprocessing") && meta["preprocessing"].is_string())
      info.preprocess = preprocess_from_string(meta["preprocessing"].get<std::string>());
    if (meta.contains("interpolation") && meta["interpolation"].is_string())
      info.interpolation = interpolation_from_string(meta["interpolation"].get<std::string>());
  } catch (const ConfigError& e) {
    throw FormatError(where + ": " + e.what());
  }
  if (meta.contains("exif_orientation") && meta["exif_orientation"].is_boolean())
    info.exif_orientation = meta["exif_orientation"].get<bool>();
  if (meta.contains("extra")) info.extra = meta["extra"];
  return info;
}

// Largest input a saved model may declare, in values per sample (H * W * C): 64 Mi, a
// 4096 x 4096 x 4 image. Every frame is resized to it, so a crafted file must not ask for more.
inline constexpr int64_t kMaxModelInputElements = int64_t(1) << 26;

// Rebuilds a saved model (architecture, weights, frozen layers) from a file already read.
inline LoadedNet load_model_file(McnnFile file) {
  const std::string where = file.source.empty() ? "<in-memory .mcnn>" : file.source;
  const nlohmann::json& meta = file.metadata;
  LoadedNet out;
  if (!is_model_metadata(meta)) {
    if (meta.is_object() && meta.contains("architecture")) {
      // Converted ImageNet weights: MobileNetV2 as the file describes it, unfolded.
      MobileNetV2Options o = mobilenet_v2_options_from_metadata(meta, where);
      {
        ParameterBudget budget(file.count_values(TensorKind::model), where);
        out.net = mobilenet_v2<float>(o);
      }
      load_weights(*out.net, file);
      out.info = model_info_from_metadata(meta, where);
      // ImageNet references resize with PIL's antialiased bilinear filter, not Keras' nearest.
      if (!meta.contains("interpolation")) out.info.interpolation = Interpolation::Bilinear;
      out.file = std::move(file);
      return out;
    }
    throw FormatError(where +
                      ": not a minicnn model (its metadata has neither kind 'model' "
                      "with a model_config nor a MobileNetV2 architecture)");
  }
  if (!meta.contains("model_config")) throw FormatError(where + ": metadata lacks model_config");
  if (!meta.contains("input_shape") || !meta["input_shape"].is_array() ||
      meta["input_shape"].size() < 1 || meta["input_shape"].size() > 3)
    throw FormatError(where + ": metadata lacks an input_shape [H, W, C]");
  std::vector<int64_t> dims;
  for (const auto& d : meta["input_shape"]) {
    if (!d.is_number_integer() || d.get<int64_t>() < 1 || d.get<int64_t>() > 65536)
      throw FormatError(where + ": input_shape entries must be integers in 1..65536, got " +
                        meta["input_shape"].dump());
    dims.push_back(d.get<int64_t>());
  }
  std::unique_ptr<LayerT<float>> root;
  try {
    root = layer_from_config<float>(meta["model_config"]);
  } catch (const FormatError& e) {
    throw FormatError(where + ": " + e.what());
  }
  auto* seq = dynamic_cast<SequentialT<float>*>(root.get());
  if (!seq) {
    auto s = std::make_unique<SequentialT<float>>("model");
    s->add(std::move(root));
    out.net = std::move(s);
  } else {
    root.release();
    out.net.reset(seq);
  }
  Shape in;
  if (dims.size() == 1)
    in = Shape{dims[0]};
  else if (dims.size() == 2)
    in = Shape{dims[0], dims[1]};
  else
    in = Shape{dims[0], dims[1], dims[2]};
  int64_t input_elements = 1;
  for (int64_t d : dims) input_elements *= d;
  if (input_elements > kMaxModelInputElements)
    throw FormatError(where + ": input_shape " + meta["input_shape"].dump() + " has " +
                      std::to_string(input_elements) +
                      " values per sample, more than the limit of " +
                      std::to_string(kMaxModelInputElements));
  try {
    // Every parameter must come from the file: the build may not allocate more than it holds.
    ParameterBudget budget(file.count_values(TensorKind::model), where);
    out.net->build(in);
  } catch (const FormatError&) {
    throw;
  } catch (const Error& e) {
    throw FormatError(where + ": the model config does not build for input " + in.batched_str() +
                      ": " + e.what());
  }
  load_weights(*out.net, file);
  std::vector<std::string> frozen;
  if (meta.contains("frozen_layers") && meta["frozen_layers"].is_array())
    for (const auto& n : meta["frozen_layers"])
      if (n.is_string()) frozen.push_back(n.get<std::string>());
  apply_frozen_layer_names(*out.net, frozen);
  out.info = model_info_from_metadata(meta, where);
  const Shape outs = out.net->output_shape();
  if (!out.info.class_names.empty() &&
      (outs.rank() != 1 || outs[0] != static_cast<int64_t>(out.info.class_names.size())))
    throw FormatError(where + ": the model outputs " + outs.batched_str() + " but the file names " +
                      std::to_string(out.info.class_names.size()) + " classes");
  out.file = std::move(file);
  return out;
}

inline LoadedNet load_model_file(const std::string& path) {
  return load_model_file(read_mcnn(path));
}

}  // namespace minicnn
