// Saving a model's parameters to a .mcnn file and loading them back by name.
//
// Tensors are matched by the parameter's full name "<layer>/<weight>" (Keras names, e.g.
// "block_3_expand_BN/moving_mean"); only tensors of kind `model` take part, so a training
// checkpoint (which adds optimizer state etc. as kind `training`) loads as weights too.
// A strict load (the default) checks every tensor before touching the model and throws ONE
// FormatError that lists every missing, unexpected and wrong-shaped tensor; the model is left
// unchanged. A non-strict load copies what matches and reports the rest, which is what a
// model with a replaced classification head needs.
#pragma once
#include <string>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../layers/layer.hpp"
#include "format.hpp"

namespace minicnn {

// Every parameter of `model` (BatchNormalization moving statistics included), in model order,
// as float32 tensors of kind `model`, with the given metadata.
template <typename T>
McnnFile collect_weights(LayerT<T>& model, nlohmann::json metadata = nlohmann::json::object()) {
  McnnFile f;
  f.metadata = std::move(metadata);
  if (f.metadata.is_null()) f.metadata = nlohmann::json::object();
  if (!f.metadata.is_object())
    throw ConfigError("collect_weights: metadata must be a JSON object, got " +
                      std::string(f.metadata.type_name()));
  for (auto* p : model.parameters()) {
    if (f.find(p->name))
      throw ConfigError(model.type() + " '" + model.name() + "': two parameters are named '" +
                        p->name + "'; names must be unique to be saved");
    if constexpr (std::is_same_v<T, float>)
      f.tensors.emplace_back(p->name, p->value);
    else
      f.tensors.emplace_back(p->name, Tensor<float>::template cast_from<T>(p->value.cview()));
  }
  return f;
}

template <typename T>
void save_weights(LayerT<T>& model, const std::string& path,
                  nlohmann::json metadata = nlohmann::json::object()) {
  write_mcnn(path, collect_weights(model, std::move(metadata)));
}

struct LoadOptions {
  bool strict = true;
  // Names starting with any of these are ignored on both sides (neither loaded nor reported
  // as a problem), e.g. {"Logits/"} to keep a strict check on the base while the head differs.
  std::vector<std::string> skip_prefixes;
};

struct TensorMismatch {
  std::string name;
  Shape expected;           // the model's parameter shape
  Shape found;              // the file's tensor shape
  std::string found_dtype;  // "float32" unless the file stores another type under that name
  std::string str() const {
    return name + ": model expects " + expected.str() + " float32, file has " + found.str() + " " +
           found_dtype;
  }
};

struct NamedShape {
  std::string name;
  Shape shape;
  std::string str() const { return name + " " + shape.str(); }
};

struct LoadReport {
  std::vector<std::string> loaded;  // parameter names copied from the file
  std::vector<NamedShape> missing;  // model parameters the file lacks (with the model's shape)
  std::vector<NamedShape>
      unexpected;  // file tensors (kind model) the model lacks (with the file's shape)
  std::vector<TensorMismatch> wrong_shape;
  std::vector<std::string> skipped;  // matched a skip prefix (model or file side)

  bool complete() const { return missing.empty() && unexpected.empty() && wrong_shape.empty(); }
  std::size_t problems() const { return missing.size() + unexpected.size() + wrong_shape.size(); }
  // One line per problem, grouped; empty when complete().
  std::string problems_str() const {
    std::string s;
    if (!missing.empty()) {
      s += "\n  missing from the file (" + std::to_string(missing.size()) + "):";
      for (const auto& n : missing) s += "\n    " + n.str();
    }
    if (!unexpected.empty()) {
      s += "\n  not in the model (" + std::to_string(unexpected.size()) + "):";
      for (const auto& n : unexpected) s += "\n    " + n.str();
    }
    if (!wrong_shape.empty()) {
      s += "\n  wrong shape (" + std::to_string(wrong_shape.size()) + "):";
      for (const auto& m : wrong_shape) s += "\n    " + m.str();
    }
    return s;
  }
  std::string str() const {
    return "loaded " + std::to_string(loaded.size()) + " tensors, " +
           std::to_string(missing.size()) + " missing, " + std::to_string(unexpected.size()) +
           " unexpected, " + std::to_string(wrong_shape.size()) + " wrong shape, " +
           std::to_string(skipped.size()) + " skipped" + problems_str();
  }
};

template <typename T>
LoadReport load_weights(LayerT<T>& model, const McnnFile& file, const LoadOptions& opt = {}) {
  auto skip = [&](const std::string& name) {
    for (const auto& p : opt.skip_prefixes)
      if (name.compare(0, p.size(), p) == 0) return true;
    return false;
  };
  const std::string where = file.source.empty() ? std::string("<in-memory .mcnn>") : file.source;
  if (model.inference_only())
    throw ConfigError(
        model.type() + " '" + model.name() + "': cannot load " + where +
        " into a model folded for inference (its BatchNormalization is merged into the "
        "convolutions); load the weights first, then fold");

  std::unordered_map<std::string, const McnnTensor*> in_file;
  for (const auto& t : file.tensors)
    if (t.kind == TensorKind::model) in_file.emplace(t.name, &t);

  LoadReport rep;
  std::vector<std::pair<ParameterT<T>*, const McnnTensor*>> plan;
  std::unordered_set<std::string> used;
  auto params = model.parameters();
  for (auto* p : params) {
    if (!used.insert(p->name).second)
      throw ConfigError(model.type() + " '" + model.name() + "': two parameters are named '" +
                        p->name + "'");
    if (skip(p->name)) {
      rep.skipped.push_back(p->name);
      continue;
    }
    auto it = in_file.find(p->name);
    if (it == in_file.end()) {
      rep.missing.push_back({p->name, p->value.shape()});
      continue;
    }
    const McnnTensor& t = *it->second;
    if (t.dtype != DType::float32 || t.shape() != p->value.shape()) {
      rep.wrong_shape.push_back({p->name, p->value.shape(), t.shape(), dtype_name(t.dtype)});
      continue;
    }
    plan.emplace_back(p, &t);
  }
  for (const auto& t : file.tensors) {
    if (t.kind != TensorKind::model || used.count(t.name)) continue;
    if (skip(t.name))
      rep.skipped.push_back(t.name);
    else
      rep.unexpected.push_back({t.name, t.shape()});
  }

  if (opt.strict && !rep.complete()) {
    std::string hint =
        params.empty() ? " (the model has no parameters: build it before loading)" : "";
    throw FormatError("load_weights from " + where + " into " + model.type() + " '" + model.name() +
                      "': " + std::to_string(rep.problems()) + " problem(s), nothing was loaded" +
                      hint + ":" + rep.problems_str());
  }
  // Shapes were all checked above, so copying cannot fail halfway.
  for (auto& [p, t] : plan) {
    const float* src = t->value.data();
    T* dst = p->value.data();
    for (int64_t i = 0, n = p->value.size(); i < n; ++i) dst[i] = static_cast<T>(src[i]);
    rep.loaded.push_back(p->name);
  }
  return rep;
}

template <typename T>
LoadReport load_weights(LayerT<T>& model, const std::string& path, const LoadOptions& opt = {}) {
  return load_weights(model, read_mcnn(path), opt);
}

}  // namespace minicnn
