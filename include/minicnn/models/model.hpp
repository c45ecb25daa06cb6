// Loading a MobileNetV2 (with or without its classification head) from a .mcnn
// file: the architecture comes from the file's metadata, the weights are loaded
// strictly by name, and the network is folded for inference unless asked not to.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../data/image.hpp"
#include "../io/format.hpp"
#include "../io/weights.hpp"
#include "fold.hpp"
#include "mobilenet_v2.hpp"

namespace minicnn {

struct ModelLoadOptions {
  int64_t input_height = 0, input_width = 0;  // 0: the size recorded in the file
  std::optional<bool> include_top;            // default: whatever the file holds
  std::optional<std::string> pooling;  // without top: "", "avg" or "max"; default: the file's
  bool fold_for_inference = true;      // fold BatchNormalization + ReLU6 into the convolutions
};

struct LoadedModel {
  std::unique_ptr<Sequential> net;
  MobileNetV2Options options;
  std::vector<std::string> class_names;
  Preprocess preprocess = Preprocess::Tf;
  nlohmann::json metadata;
  LoadReport report;
};

// The MobileNetV2 options a .mcnn file's metadata describes.
inline MobileNetV2Options mobilenet_v2_options_from_metadata(const nlohmann::json& meta,
                                                             const std::string& where) {
  auto bad = [&](const std::string& what) { return FormatError(where + ": metadata " + what); };
  if (!meta.contains("architecture") || !meta["architecture"].is_object())
    throw bad("has no 'architecture' object");
  const auto& a = meta["architecture"];
  std::string name = a.value("name", std::string());
  if (name != "mobilenet_v2") throw bad("architecture is '" + name + "', expected 'mobilenet_v2'");
  MobileNetV2Options o;
  if (!a.contains("alpha") || !a["alpha"].is_number())
    throw bad("lacks a numeric architecture.alpha");
  o.alpha = a["alpha"].get<double>();
  if (a.contains("input_size")) {
    const auto& s = a["input_size"];
    if (s.is_number_integer()) {
      o.input_height = o.input_width = s.get<int64_t>();
    } else if (s.is_array() && s.size() == 2 && s[0].is_number_integer() &&
               s[1].is_number_integer()) {
      o.input_height = s[0].get<int64_t>();
      o.input_width = s[1].get<int64_t>();
    } else {
      throw bad("has an architecture.input_size that is neither N nor [H, W]");
    }
  }
  o.include_top = a.value("include_top", false);
  if (o.include_top) {
    if (!a.contains("classes") || !a["classes"].is_number_integer())
      throw bad("lacks architecture.classes");
    o.classes = a["classes"].get<int64_t>();
  }
  if (a.contains("pooling") && a["pooling"].is_string())
    o.pooling = a["pooling"].get<std::string>();
  return o;
}

inline LoadedModel load_mobilenet_v2(const std::string& path, const ModelLoadOptions& opt = {}) {
  LoadedModel m;
  McnnFile file = read_mcnn(path);
  const std::string where = "'" + path + "'";
  m.metadata = file.metadata;
  m.options = mobilenet_v2_options_from_metadata(file.metadata, where);
  const bool file_has_top = m.options.include_top;
  if (opt.include_top) m.options.include_top = *opt.include_top;
  if (m.options.include_top && !file_has_top)
    throw ConfigError(where +
                      " holds no classification head (converted without --top); "
                      "it can only give features");
  if (opt.input_height > 0) m.options.input_height = opt.input_height;
  if (opt.input_width > 0) m.options.input_width = opt.input_width;
  if (opt.pooling) m.options.pooling = *opt.pooling;
  if (m.options.include_top) m.options.pooling.clear();
  if (file.metadata.contains("class_names") && file.metadata["class_names"].is_array())
    for (const auto& c : file.metadata["class_names"])
      if (c.is_string()) m.class_names.push_back(c.get<std::string>());
  if (file.metadata.contains("preprocessing") && file.metadata["preprocessing"].is_string())
    m.preprocess = preprocess_from_string(file.metadata["preprocessing"].get<std::string>());

  m.net = mobilenet_v2<float>(m.options);
  LoadOptions lo;
  if (file_has_top && !m.options.include_top) lo.skip_prefixes.push_back("Logits/");
  m.report = load_weights(*m.net, file, lo);
  if (opt.fold_for_inference) fold_for_inference(*m.net);
  return m;
}

}  // namespace minicnn
