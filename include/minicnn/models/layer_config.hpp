// Rebuilding layers from their Keras-style configs: layer_from_config({"class_name": ...,
// "config": {...}}) is the inverse of LayerT::config() for every layer type minicnn has
// (Sequential and InvertedResidual included, recursively). Model files store this tree as
// their architecture, so a saved model with any head loads again without code that knows
// it; clone_layer() uses it to make an independent copy (with the same weights) of a
// part of a model, e.g. the frozen base that training folds for speed.
// Configs come from files: every field is checked, and a bad one is a FormatError that
// names the layer and the field.
#pragma once
#include <memory>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../io/weights.hpp"
#include "../layers/activation.hpp"
#include "../layers/batch_norm.hpp"
#include "../layers/conv2d.hpp"
#include "../layers/dense.hpp"
#include "../layers/depthwise_conv2d.hpp"
#include "../layers/dropout.hpp"
#include "../layers/flatten.hpp"
#include "../layers/global_max_pooling2d.hpp"
#include "../layers/pooling.hpp"
#include "../layers/zero_padding2d.hpp"
#include "inverted_residual.hpp"
#include "sequential.hpp"

namespace minicnn {

namespace config_detail {

// Typed access to one field of a layer config, with errors that say where.
class Fields {
 public:
  Fields(const nlohmann::json& c, std::string where) : c_(c), where_(std::move(where)) {}
  const nlohmann::json& raw(const char* key) const {
    if (!c_.contains(key)) throw FormatError(where_ + ": config lacks '" + key + "'");
    return c_.at(key);
  }
  bool has(const char* key) const { return c_.contains(key) && !c_.at(key).is_null(); }
  int64_t integer(const char* key, int64_t lo, int64_t hi) const {
    const auto& v = raw(key);
    if (!v.is_number_integer())
      throw FormatError(where_ + ": '" + key + "' must be an integer, got " + v.dump());
    int64_t x = v.get<int64_t>();
    if (x < lo || x > hi)
      throw FormatError(where_ + ": '" + key + "' is " + std::to_string(x) + ", expected " +
                        std::to_string(lo) + ".." + std::to_string(hi));
    return x;
  }
  double number(const char* key) const {
    const auto& v = raw(key);
    if (!v.is_number())
      throw FormatError(where_ + ": '" + key + "' must be a number, got " + v.dump());
    return v.get<double>();
  }
  bool boolean(const char* key, bool fallback) const {
    if (!c_.contains(key)) return fallback;
    const auto& v = c_.at(key);
    if (!v.is_boolean())
      throw FormatError(where_ + ": '" + key + "' must be true or false, got " + v.dump());
    return v.get<bool>();
  }
  std::string string(const char* key, const std::string& fallback) const {
    if (!c_.contains(key)) return fallback;
    const auto& v = c_.at(key);
    if (!v.is_string())
      throw FormatError(where_ + ": '" + key + "' must be a string, got " + v.dump());
    return v.get<std::string>();
  }
  // [a, b] of positive integers, or one integer n meaning [n, n].
  std::pair<int64_t, int64_t> pair(const char* key) const {
    const auto& v = raw(key);
    auto ok = [](const nlohmann::json& x) {
      return x.is_number_integer() && x.get<int64_t>() >= 0 && x.get<int64_t>() <= (1 << 20);
    };
    if (ok(v)) return {v.get<int64_t>(), v.get<int64_t>()};
    if (v.is_array() && v.size() == 2 && ok(v[0]) && ok(v[1]))
      return {v[0].get<int64_t>(), v[1].get<int64_t>()};
    throw FormatError(where_ + ": '" + key + "' must be [a, b] of integers in 0..2^20, got " +
                      v.dump());
  }
  const std::string& where() const { return where_; }

 private:
  const nlohmann::json& c_;
  std::string where_;
};

inline Padding padding_of(const Fields& f) {
  try {
    return padding_from_string(f.string("padding", "valid"));
  } catch (const ConfigError& e) {
    throw FormatError(f.where() + ": " + e.what());
  }
}
inline Activation activation_of(const Fields& f) {
  try {
    return activation_from_string(f.string("activation", "linear"));
  } catch (const ConfigError& e) {
    throw FormatError(f.where() + ": " + e.what());
  }
}

}  // namespace config_detail

template <typename T>
std::unique_ptr<LayerT<T>> layer_from_config(const nlohmann::json& node, int depth = 0);

// Adds every layer of a Sequential config to `seq`.
template <typename T>
void add_layers_from_config(SequentialT<T>& seq, const nlohmann::json& layers, int depth) {
  if (!layers.is_array())
    throw FormatError("Sequential '" + seq.name() + "': config 'layers' must be a list");
  for (const auto& l : layers) seq.add(layer_from_config<T>(l, depth + 1));
}

template <typename T>
std::unique_ptr<LayerT<T>> layer_from_config(const nlohmann::json& node, int depth) {
  using namespace config_detail;
  // MobileNetV2 nests two levels; anything far deeper is a hostile or broken file.
  if (depth > 16) throw FormatError("model config nests deeper than 16 containers");
  if (!node.is_object() || !node.contains("class_name") || !node["class_name"].is_string() ||
      !node.contains("config") || !node["config"].is_object())
    throw FormatError("layer config must be {\"class_name\": ..., \"config\": {...}}, got " +
                      node.dump().substr(0, 200));
  const std::string cls = node["class_name"].get<std::string>();
  const nlohmann::json& c = node["config"];
  if (!c.contains("name") || !c["name"].is_string() || c["name"].get<std::string>().empty())
    throw FormatError(cls + " config lacks a non-empty 'name'");
  const std::string name = c["name"].get<std::string>();
  Fields f(c, cls + " '" + name + "'");
  try {
    if (cls == "Sequential") {
      auto s = std::make_unique<SequentialT<T>>(name);
      add_layers_from_config(*s, f.raw("layers"), depth);
      return s;
    }
    if (cls == "InvertedResidual")
      return std::make_unique<InvertedResidualT<T>>(
          f.integer("block_id", 0, 1000), f.integer("expansion", 1, 1000),
          f.integer("filters", 1, 1 << 20), f.integer("stride", 1, 2));
    if (cls == "Conv2D")
      return std::make_unique<Conv2DT<T>>(name, f.integer("filters", 1, 1 << 20),
                                          f.pair("kernel_size"), f.pair("strides"), padding_of(f),
                                          f.boolean("use_bias", true), activation_of(f));
    if (cls == "DepthwiseConv2D") {
      auto [kh, kw] = f.pair("kernel_size");
      auto [sh, sw] = f.pair("strides");
      return std::make_unique<DepthwiseConv2DT<T>>(
          name, kh, kw, sh, sw, padding_of(f), f.boolean("use_bias", true), activation_of(f),
          f.has("depth_multiplier") ? f.integer("depth_multiplier", 1, 1) : 1);
    }
    if (cls == "BatchNormalization")
      return std::make_unique<BatchNormalizationT<T>>(
          name, f.number("momentum"), f.number("epsilon"), f.boolean("center", true),
          f.boolean("scale", true));
    if (cls == "ReLU")
      return std::make_unique<ReLUT<T>>(name, f.has("max_value")
                                                  ? f.number("max_value")
                                                  : std::numeric_limits<double>::infinity());
    if (cls == "Softmax") return std::make_unique<SoftmaxT<T>>(name);
    if (cls == "Dense")
      return std::make_unique<DenseT<T>>(
          name, f.integer("units", 1, 1 << 24),
          DenseOptions{f.string("activation", "linear"), f.boolean("use_bias", true)});
    if (cls == "Dropout") {
      const auto& s = f.raw("seed");
      if (!s.is_number_unsigned() && !(s.is_number_integer() && s.get<int64_t>() >= 0))
        throw FormatError(f.where() + ": 'seed' must be a non-negative integer, got " + s.dump());
      return std::make_unique<DropoutT<T>>(name, f.number("rate"), s.get<uint64_t>());
    }
    if (cls == "ZeroPadding2D") {
      const auto& p = f.raw("padding");
      if (!p.is_array() || p.size() != 2)
        throw FormatError(f.where() + ": 'padding' must be [[top, bottom], [left, right]], got " +
                          p.dump());
      const nlohmann::json pads = {{"h", p[0]}, {"w", p[1]}};
      Fields rows(pads, f.where());
      auto [t, b] = rows.pair("h");
      auto [l, r] = rows.pair("w");
      return std::make_unique<ZeroPadding2DT<T>>(name, t, b, l, r);
    }
    if (cls == "GlobalAveragePooling2D") return std::make_unique<GlobalAveragePooling2DT<T>>(name);
    if (cls == "GlobalMaxPooling2D") return std::make_unique<GlobalMaxPooling2DT<T>>(name);
    if (cls == "Flatten") return std::make_unique<FlattenT<T>>(name);
  } catch (const ConfigError& e) {
    // A constructor refused a value from the file: that is the file's fault.
    throw FormatError(std::string("model config: ") + e.what());
  }
  throw FormatError("model config: unknown layer class '" + cls + "' (layer '" + name + "')");
}

// {"class_name": ..., "config": ...} of a layer (the node layer_from_config reads).
template <typename T>
nlohmann::json layer_config_node(const LayerT<T>& layer) {
  return {{"class_name", layer.type()}, {"config", layer.config()}};
}

// Names of the leaf layers (no children) that are frozen, model order: with the model
// config this restores which part trains (Keras saves `trainable` per layer).
template <typename T>
std::vector<std::string> frozen_layer_names(LayerT<T>& model) {
  std::vector<std::string> out;
  auto walk = [&](auto& self, LayerT<T>& l) -> void {
    auto kids = l.children();
    if (kids.empty()) {
      if (!l.trainable()) out.push_back(l.name());
      return;
    }
    for (auto* k : kids) self(self, *k);
  };
  walk(walk, model);
  return out;
}

// Makes every leaf trainable except the named ones (unknown names are an error).
template <typename T>
void apply_frozen_layer_names(LayerT<T>& model, const std::vector<std::string>& frozen) {
  model.set_trainable(true);
  for (const auto& n : frozen) {
    LayerT<T>* found = nullptr;
    auto walk = [&](auto& self, LayerT<T>& l) -> void {
      if (found) return;
      if (l.name() == n && l.children().empty()) {
        found = &l;
        return;
      }
      for (auto* k : l.children()) self(self, *k);
    };
    walk(walk, model);
    if (!found)
      throw FormatError("model file lists frozen layer '" + n + "', which the model lacks");
    found->set_trainable(false);
  }
}

// An independent copy of `layer` (built for the same input shape) holding the same weights
// and BatchNormalization statistics, trainable or frozen as asked (a frozen copy allocates no
// gradients).
template <typename T>
std::unique_ptr<LayerT<T>> clone_layer(LayerT<T>& layer, bool trainable = true) {
  if (layer.inference_only())
    throw ConfigError(layer.type() + " '" + layer.name() +
                      "': cannot clone a layer folded for inference");
  auto copy = layer_from_config<T>(layer_config_node(layer));
  if (!trainable) copy->set_trainable(false);
  if (layer.built()) {
    copy->build(layer.input_shape());
    auto src = layer.parameters();
    auto dst = copy->parameters();
    if (src.size() != dst.size())
      throw Error(layer.type() + " '" + layer.name() + "': clone has " +
                  std::to_string(dst.size()) + " parameters, the original " +
                  std::to_string(src.size()));
    for (size_t i = 0; i < src.size(); ++i) {
      if (src[i]->name != dst[i]->name || src[i]->value.shape() != dst[i]->value.shape())
        throw Error(layer.type() + " '" + layer.name() + "': clone parameter " + dst[i]->name +
                    " does not match " + src[i]->name);
      dst[i]->value.copy_from(src[i]->value.view());
    }
  }
  return copy;
}

}  // namespace minicnn
