// Keras' training callbacks, with current Keras semantics (TF >= 2.16 / Keras 3; see
// ../shared/docs/keras-semantics.md sections 2 and 3 and docs/training.md for where the
// versions differ):
//   EarlyStopping      monitor, min_delta, patience, mode, baseline, restore_best_weights
//                      (restored at the end of fit whether or not it stopped early),
//                      start_from_epoch.
//   ModelCheckpoint    monitor, save_best_only, save_weights_only, mode,
//                      initial_value_threshold; the path may hold {epoch} and log values
//                      with Python format specs ({epoch:02d}, {val_loss:.2f}).
//   ReduceLROnPlateau  monitor, factor, patience, min_delta, cooldown, min_lr.
//   CSVLogger          one row per epoch, Keras' columns (epoch, then the sorted log keys).
//   TerminateOnNaN     stops at a batch whose loss is NaN or infinite.
//   BackupAndRestore   the whole training state after every epoch (Model::save_checkpoint),
//                      written last, so it includes what the other callbacks decided.
// mode "auto": "min" for a loss (val_loss, loss), "max" for accuracies (names ending in
// acc, accuracy or auc), as Keras 3 resolves it from the metric's direction.
// A file that cannot be written (disk full, permissions) is reported with its path; the
// previous file stays intact (atomic writes) and training stops, or goes on with
// on_write_error = "continue".
#pragma once
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../io/background_writer.hpp"
#include "callback.hpp"
#include "model.hpp"

namespace minicnn {

namespace callback_detail {
inline bool ends_with(const std::string& s, const std::string& t) {
  return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
}
// "min" or "max" for a monitored quantity; mode is "auto", "min" or "max".
inline std::string resolve_mode(const std::string& mode, const std::string& monitor,
                                const std::string& who) {
  if (mode == "min" || mode == "max") return mode;
  if (mode != "auto")
    throw ConfigError(who + ": mode must be 'auto', 'min' or 'max', got '" + mode + "'");
  std::string m = monitor.rfind("val_", 0) == 0 ? monitor.substr(4) : monitor;
  if (m == "loss" || ends_with(m, "_loss") || ends_with(m, "crossentropy")) return "min";
  if (ends_with(m, "acc") || ends_with(m, "accuracy") || ends_with(m, "auc")) return "max";
  throw ConfigError(who + ": cannot tell whether '" + monitor +
                    "' should go up or down; set mode to 'min' or 'max'");
}
inline nlohmann::json num(double v) {
  if (std::isfinite(v)) return v;
  if (std::isnan(v)) return "nan";
  return v > 0 ? "inf" : "-inf";
}
inline double from_num(const nlohmann::json& j) {
  if (j.is_number()) return j.get<double>();
  if (j.is_string()) {
    const std::string s = j.get<std::string>();
    if (s == "inf") return std::numeric_limits<double>::infinity();
    if (s == "-inf") return -std::numeric_limits<double>::infinity();
  }
  return std::numeric_limits<double>::quiet_NaN();
}
// Python's str(float): the shortest text that reads back to the same double.
inline std::string shortest(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char b[40];
  for (int p = 1; p <= 17; ++p) {
    std::snprintf(b, sizeof b, "%.*g", p, v);
    if (std::strtod(b, nullptr) == v) break;
  }
  std::string s = b;
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}
inline void check_write_policy(const std::string& policy, const std::string& who) {
  if (policy != "stop" && policy != "continue")
    throw ConfigError(who + ": on_write_error must be 'stop' or 'continue', got '" + policy + "'");
}
}  // namespace callback_detail

// Formats a ModelCheckpoint path: {epoch} (1-based, as Keras) and any log value, each with
// an optional Python format spec: [0][width][.precision][d|f|e|g].
inline std::string format_checkpoint_path(const std::string& pattern, int epoch1,
                                          const Logs& logs) {
  std::string out;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char ch = pattern[i];
    if (ch == '{' && i + 1 < pattern.size() && pattern[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    if (ch == '}' && i + 1 < pattern.size() && pattern[i + 1] == '}') {
      out += '}';
      ++i;
      continue;
    }
    if (ch != '{') {
      out += ch;
      continue;
    }
    const size_t close = pattern.find('}', i);
    if (close == std::string::npos)
      throw ConfigError("checkpoint path '" + pattern + "': '{' without a closing '}'");
    const std::string field = pattern.substr(i + 1, close - i - 1);
    const size_t colon = field.find(':');
    const std::string key = field.substr(0, colon);
    const std::string spec = colon == std::string::npos ? "" : field.substr(colon + 1);
    double value;
    bool integer = false;
    if (key == "epoch") {
      value = epoch1;
      integer = true;
    } else if (auto v = logs.get(key)) {
      value = *v;
    } else {
      throw ConfigError("checkpoint path '" + pattern + "': no value named '" + key +
                        "' (available: epoch, " + logs.keys_str() + ")");
    }
    // Parse the spec.
    size_t p = 0;
    std::string flags, width, precision;
    char type = 0;
    if (p < spec.size() && spec[p] == '0') flags = "0", ++p;
    while (p < spec.size() && std::isdigit(static_cast<unsigned char>(spec[p]))) width += spec[p++];
    if (p < spec.size() && spec[p] == '.') {
      ++p;
      while (p < spec.size() && std::isdigit(static_cast<unsigned char>(spec[p])))
        precision += spec[p++];
    }
    if (p < spec.size()) type = spec[p++];
    if (p != spec.size() || (type && std::string("dfeg").find(type) == std::string::npos))
      throw ConfigError("checkpoint path '" + pattern + "': unsupported format spec '" + spec +
                        "' (use [0][width][.precision][d|f|e|g])");
    char buf[96];
    if (type == 'd' || (!type && integer && precision.empty())) {
      std::snprintf(buf, sizeof buf, ("%" + flags + width + "lld").c_str(),
                    static_cast<long long>(std::llround(value)));
    } else if (type) {
      std::snprintf(
          buf, sizeof buf,
          ("%" + flags + width + (precision.empty() ? "" : "." + precision) + type).c_str(), value);
    } else {
      std::snprintf(buf, sizeof buf, "%s", callback_detail::shortest(value).c_str());
    }
    out += buf;
    i = close;
  }
  return out;
}

// ------------------------------------------------------------------------- EarlyStopping
struct EarlyStoppingOptions {
  std::string monitor = "val_loss";
  double min_delta = 0.0;
  int patience = 0;
  int verbose = 0;
  std::string mode = "auto";
  std::optional<double> baseline = std::nullopt;
  bool restore_best_weights = false;
  int start_from_epoch = 0;
};

class EarlyStopping : public Callback {
 public:
  explicit EarlyStopping(EarlyStoppingOptions o = {}) : o_(std::move(o)) {
    if (o_.patience < 0)
      throw ConfigError("EarlyStopping: patience must be >= 0, got " + std::to_string(o_.patience));
    if (o_.start_from_epoch < 0) throw ConfigError("EarlyStopping: start_from_epoch must be >= 0");
    if (!std::isfinite(o_.min_delta)) throw ConfigError("EarlyStopping: min_delta must be finite");
    mode_ = callback_detail::resolve_mode(o_.mode, o_.monitor, "EarlyStopping");
    delta_ = std::abs(o_.min_delta);
  }
  std::string name() const override { return "EarlyStopping"; }
  const EarlyStoppingOptions& options() const { return o_; }
  int stopped_epoch() const { return stopped_epoch_; }
  int best_epoch() const { return best_epoch_; }
  double best() const { return best_; }
  int wait() const { return wait_; }

  void on_train_begin(const Logs&) override {
    wait_ = 0;
    stopped_epoch_ = 0;
    best_ = initial_best();
    best_epoch_ = 0;
    best_weights_.clear();
    warned_ = false;
  }
  void on_epoch_end(int epoch, Logs& logs) override {
    auto cur = logs.get(o_.monitor);
    if (!cur) {
      if (!warned_)
        std::cerr << "EarlyStopping: the monitored metric '" << o_.monitor
                  << "' is not available; available metrics are: " << logs.keys_str() << "\n";
      warned_ = true;
      return;
    }
    if (epoch < o_.start_from_epoch) return;
    if (o_.restore_best_weights && best_weights_.empty()) {
      best_weights_ = model().trainable_state();
      best_epoch_ = epoch;
    }
    ++wait_;
    if (improved(*cur, best_)) {
      best_ = *cur;
      best_epoch_ = epoch;
      if (o_.restore_best_weights) best_weights_ = model().trainable_state();
      if (!o_.baseline || improved(*cur, *o_.baseline)) wait_ = 0;
      return;
    }
    if (wait_ >= o_.patience && epoch > 0) {
      stopped_epoch_ = epoch;
      model().stop_training = true;
    }
  }
  void on_train_end(const Logs&) override {
    if (stopped_epoch_ > 0 && o_.verbose > 0)
      std::cout << "Epoch " << stopped_epoch_ + 1 << ": early stopping\n";
    if (o_.restore_best_weights && !best_weights_.empty()) {
      if (o_.verbose > 0)
        std::cout << "Restoring model weights from the end of the best epoch: " << best_epoch_ + 1
                  << ".\n";
      model().set_trainable_state(best_weights_);
    }
    std::cout.flush();
  }

  nlohmann::json get_state() const override {
    return {{"wait", wait_},
            {"stopped_epoch", stopped_epoch_},
            {"best", callback_detail::num(best_)},
            {"best_epoch", best_epoch_},
            {"has_best_weights", !best_weights_.empty()}};
  }
  void set_state(const nlohmann::json& s) override {
    wait_ = s.value("wait", 0);
    stopped_epoch_ = s.value("stopped_epoch", 0);
    best_ = s.contains("best") ? callback_detail::from_num(s["best"]) : initial_best();
    best_epoch_ = s.value("best_epoch", 0);
  }
  std::vector<std::pair<std::string, const Tensor<float>*>> state_tensors() const override {
    std::vector<std::pair<std::string, const Tensor<float>*>> out;
    for (const auto& [n, t] : best_weights_) out.emplace_back("best/" + n, &t);
    return out;
  }
  void set_state_tensors(std::vector<std::pair<std::string, Tensor<float>>> t) override {
    best_weights_.clear();
    for (auto& [n, v] : t)
      if (n.rfind("best/", 0) == 0) best_weights_.emplace_back(n.substr(5), std::move(v));
  }

 private:
  double initial_best() const {
    return mode_ == "min" ? std::numeric_limits<double>::infinity()
                          : -std::numeric_limits<double>::infinity();
  }
  bool improved(double current, double reference) const {
    return mode_ == "min" ? current + delta_ < reference : current - delta_ > reference;
  }

  EarlyStoppingOptions o_;
  std::string mode_;
  double delta_ = 0;
  int wait_ = 0, stopped_epoch_ = 0, best_epoch_ = 0;
  double best_ = 0;
  bool warned_ = false;
  std::vector<std::pair<std::string, Tensor<float>>> best_weights_;
};

// ----------------------------------------------------------------------- ModelCheckpoint
struct ModelCheckpointOptions {
  std::string filepath;  // may contain {epoch} and log values
  std::string monitor = "val_loss";
  int verbose = 0;
  bool save_best_only = false;
  bool save_weights_only = false;  // false: a self-contained model file
  std::string mode = "auto";
  std::optional<double> initial_value_threshold = std::nullopt;
  std::string on_write_error = "stop";  // or "continue"
  // minicnn's addition: model files are written by a background thread (the weights as they
  // were at the end of the epoch), so training does not wait for the disk. A missing or
  // read-only folder is still reported at once; a write that fails later (a full disk) is
  // reported at the next epoch's end or when training ends. Weights-only files are written
  // at once.
  bool background = true;
};

class ModelCheckpoint : public Callback {
 public:
  explicit ModelCheckpoint(ModelCheckpointOptions o) : o_(std::move(o)) {
    if (o_.filepath.empty()) throw ConfigError("ModelCheckpoint: filepath is empty");
    mode_ = callback_detail::resolve_mode(o_.mode, o_.monitor, "ModelCheckpoint");
    callback_detail::check_write_policy(o_.on_write_error, "ModelCheckpoint");
  }
  std::string name() const override { return "ModelCheckpoint"; }
  double best() const { return best_; }
  // Path of the last file written ("" before the first save).
  const std::string& last_saved() const { return last_saved_; }
  int last_saved_epoch() const { return last_saved_epoch_; }
  // Files that could not be written so far (each reported on stderr with its path).
  int write_errors() const { return write_errors_; }

  void on_train_begin(const Logs&) override {
    // What a killed earlier run left while writing this file (a fixed name only).
    if (o_.filepath.find('{') == std::string::npos) remove_stale_temporaries(o_.filepath);
    best_ = o_.initial_value_threshold
                ? *o_.initial_value_threshold
                : (mode_ == "min" ? std::numeric_limits<double>::infinity()
                                  : -std::numeric_limits<double>::infinity());
  }
  // Every file is on disk when fit() returns.
  void on_train_end(const Logs&) override {
    try {
      model().file_writer().wait(this);
    } catch (const Error& e) {
      write_failed(e.what());
    }
  }
  void on_epoch_end(int epoch, Logs& logs) override {
    // A background write that failed since the last epoch stops training now, whether or not
    // this epoch saves.
    for (const auto& e : model().file_writer().take_errors(this)) write_failed(e);
    const std::string path = format_checkpoint_path(o_.filepath, epoch + 1, logs);
    if (!o_.save_best_only) {
      save(path, epoch);
      return;
    }
    auto cur = logs.get(o_.monitor);
    if (!cur) {
      // Keras >= 3.10 saves anyway.
      std::cerr << "ModelCheckpoint: can save best model only with " << o_.monitor
                << " available (have: " << logs.keys_str() << ")\n";
      save(path, epoch);
      return;
    }
    const bool better = mode_ == "min" ? *cur < best_ : *cur > best_;
    char b[64];
    if (better) {
      if (o_.verbose > 0) {
        std::snprintf(b, sizeof b, "%.5f to %.5f", best_, *cur);
        std::cout << "Epoch " << epoch + 1 << ": " << o_.monitor << " improved from " << b
                  << ", saving model to " << path << "\n";
      }
      best_ = *cur;
      save(path, epoch);
    } else if (o_.verbose > 0) {
      std::snprintf(b, sizeof b, "%.5f", best_);
      std::cout << "Epoch " << epoch + 1 << ": " << o_.monitor << " did not improve from " << b
                << "\n";
    }
    std::cout.flush();
  }
  nlohmann::json get_state() const override {
    return {{"best", callback_detail::num(best_)},
            {"last_saved", last_saved_},
            {"last_saved_epoch", last_saved_epoch_}};
  }
  void set_state(const nlohmann::json& s) override {
    if (s.contains("best")) best_ = callback_detail::from_num(s["best"]);
    last_saved_ = s.value("last_saved", std::string());
    last_saved_epoch_ = s.value("last_saved_epoch", -1);
  }

 private:
  void save(const std::string& path, int epoch) {
    try {
      if (o_.save_weights_only)
        model().save_weights(path);
      else if (o_.background)
        model().file_writer().submit(path, model().model_bytes(), this);
      else
        model().save(path);
      last_saved_ = path;
      last_saved_epoch_ = epoch;
    } catch (const Error& e) {
      write_failed(e.what());
    }
  }
  void write_failed(const std::string& what) {
    ++write_errors_;
    std::cerr << "ModelCheckpoint: " << what << "\n";
    if (o_.on_write_error == "stop") {
      std::cerr << "Training stops (on_write_error = stop); the previous file is intact.\n";
      model().stop_training = true;
    }
  }

  ModelCheckpointOptions o_;
  std::string mode_;
  double best_ = 0;
  std::string last_saved_;
  int last_saved_epoch_ = -1, write_errors_ = 0;
};

// --------------------------------------------------------------------- ReduceLROnPlateau
struct ReduceLROnPlateauOptions {
  std::string monitor = "val_loss";
  double factor = 0.1;
  int patience = 10;
  int verbose = 0;
  std::string mode = "auto";
  double min_delta = 1e-4;
  int cooldown = 0;
  double min_lr = 0.0;
};

class ReduceLROnPlateau : public Callback {
 public:
  explicit ReduceLROnPlateau(ReduceLROnPlateauOptions o = {}) : o_(std::move(o)) {
    if (!(o_.factor >= 0.0 && o_.factor < 1.0))
      throw ConfigError("ReduceLROnPlateau: factor must be in [0, 1), got " +
                        std::to_string(o_.factor));
    if (o_.patience < 0 || o_.cooldown < 0 || !(o_.min_lr >= 0.0))
      throw ConfigError("ReduceLROnPlateau: patience, cooldown and min_lr must be >= 0");
    mode_ = callback_detail::resolve_mode(o_.mode, o_.monitor, "ReduceLROnPlateau");
  }
  std::string name() const override { return "ReduceLROnPlateau"; }

  void on_train_begin(const Logs&) override {
    wait_ = 0;
    cooldown_counter_ = 0;
    best_ = mode_ == "min" ? std::numeric_limits<double>::infinity()
                           : -std::numeric_limits<double>::infinity();
  }
  void on_epoch_end(int epoch, Logs& logs) override {
    Optimizer& opt = model().optimizer();
    logs.set("learning_rate", opt.learning_rate());
    auto cur = logs.get(o_.monitor);
    if (!cur) {
      std::cerr << "ReduceLROnPlateau: the monitored metric '" << o_.monitor
                << "' is not available; available metrics are: " << logs.keys_str() << "\n";
      return;
    }
    if (cooldown_counter_ > 0) {
      --cooldown_counter_;
      wait_ = 0;
    }
    const bool better = mode_ == "min" ? *cur < best_ - o_.min_delta : *cur > best_ + o_.min_delta;
    if (better) {
      best_ = *cur;
      wait_ = 0;
    } else if (cooldown_counter_ <= 0) {
      ++wait_;
      if (wait_ >= o_.patience) {
        // Keras compares in float32.
        const double old_lr = opt.learning_rate();
        if (static_cast<float>(old_lr) > static_cast<float>(o_.min_lr)) {
          const double new_lr = std::max(old_lr * o_.factor, o_.min_lr);
          opt.set_learning_rate(new_lr);
          if (o_.verbose > 0) {
            char b[96];
            std::snprintf(b, sizeof b,
                          "Epoch %05d: ReduceLROnPlateau reducing learning rate to %s.", epoch + 1,
                          callback_detail::shortest(new_lr).c_str());
            std::cout << b << "\n";
          }
          cooldown_counter_ = o_.cooldown;
          wait_ = 0;
        }
      }
    }
  }
  nlohmann::json get_state() const override {
    return {{"wait", wait_},
            {"cooldown_counter", cooldown_counter_},
            {"best", callback_detail::num(best_)}};
  }
  void set_state(const nlohmann::json& s) override {
    wait_ = s.value("wait", 0);
    cooldown_counter_ = s.value("cooldown_counter", 0);
    if (s.contains("best")) best_ = callback_detail::from_num(s["best"]);
  }

 private:
  ReduceLROnPlateauOptions o_;
  std::string mode_;
  int wait_ = 0, cooldown_counter_ = 0;
  double best_ = 0;
};

// ------------------------------------------------------------------------------ CSVLogger
class CSVLogger : public Callback {
 public:
  explicit CSVLogger(std::string filename, char separator = ',', bool append = false)
      : filename_(std::move(filename)), sep_(separator), append_(append) {}
  std::string name() const override { return "CSVLogger"; }

  void on_train_begin(const Logs&) override {
    keys_.clear();
    bool exists = false;
    if (append_) {
      std::ifstream in(filename_);
      std::string header;
      exists = static_cast<bool>(std::getline(in, header)) && !header.empty();
      if (exists) {
        // Keep the columns of the file being continued.
        size_t p = 0;
        bool first = true;
        while (p <= header.size()) {
          size_t q = header.find(sep_, p);
          if (q == std::string::npos) q = header.size();
          if (!first) keys_.push_back(header.substr(p, q - p));
          first = false;
          p = q + 1;
        }
      }
    }
    file_.open(filename_, append_ ? std::ios::app : std::ios::trunc);
    if (!file_) throw IoError("CSVLogger: cannot open '" + filename_ + "' for writing");
    header_written_ = exists;
  }
  void on_epoch_end(int epoch, Logs& logs) override {
    if (keys_.empty()) {
      for (const auto& kv : logs.items()) keys_.push_back(kv.first);
      std::sort(keys_.begin(), keys_.end());
    }
    if (!header_written_) {
      file_ << "epoch";
      for (const auto& k : keys_) file_ << sep_ << k;
      file_ << "\n";
      header_written_ = true;
    }
    file_ << epoch;
    for (const auto& k : keys_) {
      file_ << sep_;
      if (auto v = logs.get(k)) file_ << callback_detail::shortest(*v);
    }
    file_ << "\n";
    file_.flush();
    if (!file_) std::cerr << "CSVLogger: error while writing '" << filename_ << "'\n";
  }
  void on_train_end(const Logs&) override { file_.close(); }

 private:
  std::string filename_;
  char sep_;
  bool append_;
  std::ofstream file_;
  std::vector<std::string> keys_;
  bool header_written_ = false;
};

// ------------------------------------------------------------------------- TerminateOnNaN
class TerminateOnNaN : public Callback {
 public:
  std::string name() const override { return "TerminateOnNaN"; }
  void on_train_batch_end(int batch, const Logs& logs) override {
    auto loss = logs.get("loss");
    if (loss && !std::isfinite(*loss)) {
      std::cout << "Batch " << batch << ": Invalid loss, terminating training\n";
      model().stop_training = true;
    }
  }
};

// ------------------------------------------------------------------------ BackupAndRestore
// Writes the whole training state to `path` after every epoch (atomically: a kill leaves
// the previous epoch's file). Resume with Model::load_checkpoint(path) and
// fit(initial_epoch = its result).
class BackupAndRestore : public Callback {
 public:
  // background: written by a background thread (as ModelCheckpointOptions::background).
  explicit BackupAndRestore(std::string path, std::string on_write_error = "stop",
                            bool background = true)
      : path_(std::move(path)), policy_(std::move(on_write_error)), background_(background) {
    if (path_.empty()) throw ConfigError("BackupAndRestore: path is empty");
    callback_detail::check_write_policy(policy_, "BackupAndRestore");
  }
  std::string name() const override { return "BackupAndRestore"; }
  bool runs_last() const override { return true; }
  const std::string& path() const { return path_; }
  // Checkpoints that could not be written so far (each reported on stderr with its path).
  int write_errors() const { return write_errors_; }
  // What a killed earlier run left while writing the checkpoint.
  void on_train_begin(const Logs&) override {
    remove_stale_temporaries(path_);
    model().file_writer().begin(this);
  }
  void on_epoch_end(int, Logs&) override {
    for (const auto& e : model().file_writer().take_errors(this)) write_failed(e);
    try {
      if (background_)
        // With "stop", a checkpoint whose epoch's model file failed is not written either:
        // it would say that file was saved.
        model().file_writer().submit(path_, model().checkpoint_bytes(), this, policy_ == "stop");
      else {
        model().file_writer().wait(this);  // the files it describes go first
        model().save_checkpoint(path_);
      }
    } catch (const Error& e) {
      write_failed(e.what());
    }
  }
  void on_train_end(const Logs&) override {
    try {
      model().file_writer().wait(this);
    } catch (const Error& e) {
      write_failed(e.what());
    }
    model().file_writer().end(this);
  }

 private:
  void write_failed(const std::string& what) {
    ++write_errors_;
    std::cerr << "BackupAndRestore: " << what << "\n";
    if (policy_ == "stop") {
      std::cerr << "Training stops (on_write_error = stop); the previous checkpoint is intact.\n";
      model().stop_training = true;
    }
  }

  std::string path_, policy_;
  bool background_;
  int write_errors_ = 0;
};

}  // namespace minicnn
