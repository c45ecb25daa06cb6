// History: what model.fit() returns, Keras' History: one list per log key with a value
// per epoch ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", ...), the
// 0-based epoch indices, and, beyond Keras, each epoch's wall seconds and why training
// ended. Saved in checkpoints (to_json) so that a resumed run continues the same lists.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "logs.hpp"

namespace minicnn {

struct History {
  std::vector<std::string> keys;            // in first-seen order
  std::vector<std::vector<double>> values;  // values[k][i]: key k at the i-th recorded epoch
  std::vector<int> epoch;                   // 0-based epoch of each record
  std::vector<double> seconds;              // wall time of each epoch (with validation)
  nlohmann::json params = nlohmann::json::object();  // {"epochs", "steps", "verbose"}
  std::string stop_reason;  // "", "early stopping", "interrupted", "non-finite loss", ...

  size_t size() const { return epoch.size(); }
  bool has(const std::string& key) const { return index(key) >= 0; }
  // The values of `key`, one per recorded epoch (NaN where an epoch lacked it).
  const std::vector<double>& operator[](const std::string& key) const {
    int k = index(key);
    if (k < 0) throw Error("History has no '" + key + "'");
    return values[size_t(k)];
  }
  std::vector<double> get(const std::string& key) const {
    int k = index(key);
    return k < 0 ? std::vector<double>(size(), std::numeric_limits<double>::quiet_NaN())
                 : values[size_t(k)];
  }

  void record(int e, const Logs& logs, double secs) {
    const size_t n = size();
    for (const auto& [key, v] : logs.items()) {
      int k = index(key);
      if (k < 0) {
        keys.push_back(key);
        values.emplace_back(n, std::numeric_limits<double>::quiet_NaN());
        k = int(keys.size()) - 1;
      }
      (void)v;
    }
    for (size_t k = 0; k < keys.size(); ++k) {
      auto v = logs.get(keys[k]);
      values[k].push_back(v ? *v : std::numeric_limits<double>::quiet_NaN());
    }
    epoch.push_back(e);
    seconds.push_back(secs);
  }

  // CSVLogger's layout: "epoch" (0-based) then the sorted keys, one row per epoch; values
  // in the shortest text that reads back exactly, empty where an epoch lacks a key.
  std::string to_csv(char sep = ',') const {
    std::vector<size_t> order(keys.size());
    for (size_t k = 0; k < order.size(); ++k) order[k] = k;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return keys[a] < keys[b]; });
    std::string out = "epoch";
    for (size_t k : order) out += sep + keys[k];
    out += "\n";
    char buf[40];
    for (size_t i = 0; i < size(); ++i) {
      out += std::to_string(epoch[i]);
      for (size_t k : order) {
        out += sep;
        const double v = values[k][i];
        if (std::isnan(v)) continue;
        for (int p = 1; p <= 17; ++p) {
          std::snprintf(buf, sizeof buf, "%.*g", p, v);
          if (std::strtod(buf, nullptr) == v) break;
        }
        out += buf;
      }
      out += "\n";
    }
    return out;
  }

  // NaN and infinities are stored as null (JSON has no NaN).
  nlohmann::json to_json() const {
    auto num = [](double v) {
      return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
    };
    nlohmann::json h = nlohmann::json::object();
    for (size_t k = 0; k < keys.size(); ++k) {
      nlohmann::json a = nlohmann::json::array();
      for (double v : values[k]) a.push_back(num(v));
      h[keys[k]] = a;
    }
    nlohmann::json order = keys;
    nlohmann::json secs = nlohmann::json::array();
    for (double s : seconds) secs.push_back(num(s));
    return {{"history", h},    {"keys", order},    {"epoch", epoch},
            {"seconds", secs}, {"params", params}, {"stop_reason", stop_reason}};
  }
  static History from_json(const nlohmann::json& j) {
    auto bad = [](const std::string& what) { return FormatError("history in file: " + what); };
    if (!j.is_object() || !j.contains("keys") || !j.contains("history") || !j.contains("epoch"))
      throw bad("expected {keys, history, epoch, ...}");
    History h;
    for (const auto& e : j["epoch"]) {
      if (!e.is_number_integer()) throw bad("epoch entries must be integers");
      h.epoch.push_back(e.get<int>());
    }
    for (const auto& k : j["keys"]) {
      if (!k.is_string()) throw bad("keys must be strings");
      const std::string key = k.get<std::string>();
      if (!j["history"].contains(key) || !j["history"][key].is_array() ||
          j["history"][key].size() != h.epoch.size())
        throw bad("'" + key + "' must be a list with one value per epoch");
      std::vector<double> v;
      for (const auto& x : j["history"][key])
        v.push_back(x.is_number() ? x.get<double>() : std::numeric_limits<double>::quiet_NaN());
      h.keys.push_back(key);
      h.values.push_back(std::move(v));
    }
    if (j.contains("seconds") && j["seconds"].is_array())
      for (const auto& s : j["seconds"])
        h.seconds.push_back(s.is_number() ? s.get<double>()
                                          : std::numeric_limits<double>::quiet_NaN());
    h.seconds.resize(h.epoch.size(), std::numeric_limits<double>::quiet_NaN());
    if (j.contains("params")) h.params = j["params"];
    if (j.contains("stop_reason") && j["stop_reason"].is_string())
      h.stop_reason = j["stop_reason"].get<std::string>();
    return h;
  }

 private:
  int index(const std::string& key) const {
    for (size_t k = 0; k < keys.size(); ++k)
      if (keys[k] == key) return int(k);
    return -1;
  }
};

}  // namespace minicnn
