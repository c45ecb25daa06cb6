// Logs: the named numbers a training step or epoch reports (Keras' `logs` dict), in the
// order Keras fills it: loss, the compiled metrics, then val_loss and the val_ metrics,
// then learning_rate. A small ordered vector: a handful of entries, looked up by name.
#pragma once
#include <cmath>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"

namespace minicnn {

class Logs {
 public:
  void set(const std::string& key, double value) {
    for (auto& kv : items_)
      if (kv.first == key) {
        kv.second = value;
        return;
      }
    items_.emplace_back(key, value);
  }
  std::optional<double> get(const std::string& key) const {
    for (const auto& kv : items_)
      if (kv.first == key) return kv.second;
    return std::nullopt;
  }
  bool has(const std::string& key) const { return get(key).has_value(); }
  double at(const std::string& key) const {
    if (auto v = get(key)) return *v;
    throw Error("logs have no '" + key + "'; they have: " + keys_str());
  }
  void erase(const std::string& key) {
    for (auto it = items_.begin(); it != items_.end(); ++it)
      if (it->first == key) {
        items_.erase(it);
        return;
      }
  }
  void clear() { items_.clear(); }
  const std::vector<std::pair<std::string, double>>& items() const { return items_; }
  std::string keys_str() const {
    std::string s;
    for (const auto& kv : items_) s += (s.empty() ? "" : ", ") + kv.first;
    return s.empty() ? "(none)" : s;
  }

 private:
  std::vector<std::pair<std::string, double>> items_;
};

}  // namespace minicnn
