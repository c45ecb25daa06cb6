// Model: Keras' Model API over a Sequential: compile(), fit(), evaluate(), predict(),
// save() and training checkpoints.
//
// The loss is categorical cross-entropy (Keras' categorical_crossentropy, mean over the
// batch); when the network ends in a softmax it is computed from the logits, as TF does.
// Reported loss and metrics are sample-weighted means over the epoch (Keras' Mean metric
// with sample_weight = batch size), so a smaller last batch counts for what it holds.
// fit() runs the model as a TrainingGraph (train/graph.hpp): the frozen part folded, its
// outputs cached when the input is not augmented, only the rest trained.
//
// Checkpoints: save_checkpoint() writes a model file (models/saved_model.hpp) that also
// holds the optimizer state, the epoch, the History, every Dropout's mask counter and the
// callbacks' state; load_checkpoint() restores all of it so that fit(initial_epoch = the
// returned epoch) continues exactly as the uninterrupted run would have (same thread count).
#pragma once
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../io/background_writer.hpp"
#include "../io/format.hpp"
#include "../io/weights.hpp"
#include "../losses/categorical_crossentropy.hpp"
#include "../models/saved_model.hpp"
#include "../models/sequential.hpp"
#include "../optim/adam.hpp"
#include "../optim/optimizer.hpp"
#include "../optim/sgd.hpp"
#include "batches.hpp"
#include "callback.hpp"
#include "graph.hpp"
#include "history.hpp"
#include "interrupt.hpp"
#include "metrics.hpp"
#include "progbar.hpp"

namespace minicnn {

struct CompileOptions {
  double label_smoothing = 0.0;
  // "accuracy" (categorical accuracy) and/or "top_k_categorical_accuracy" (with top_k).
  std::vector<std::string> metrics = {"accuracy"};
  int64_t top_k = 5;
};

struct FitOptions {
  int epochs = 1;
  int initial_epoch = 0;  // the first epoch to run (0-based): resume after a checkpoint
  int verbose = -1;       // 0 silent, 1 progress bar, 2 one line per epoch; -1: 1 on a terminal
  std::vector<std::shared_ptr<Callback>> callbacks;
  int validation_freq = 1;             // validate after every n-th epoch
  std::optional<bool> cache_features;  // default: cache the frozen part's outputs when possible
  bool handle_interrupt = true;        // Ctrl-C finishes the batch and returns the History
  std::ostream* out = nullptr;         // console output (default std::cout)
};

class Model {
 public:
  explicit Model(std::unique_ptr<SequentialT<float>> net, ModelInfo info = {})
      : net_(std::move(net)), info_(std::move(info)) {
    if (!net_) throw ConfigError("Model: the network is null");
  }
  Model(Model&&) = default;

  SequentialT<float>& net() { return *net_; }
  const SequentialT<float>& net() const { return *net_; }
  ModelInfo& info() { return info_; }
  const ModelInfo& info() const { return info_; }
  TrainingGraph& graph() { return graph_; }
  std::string summary() { return net_->summary(); }

  // Keras: stop after the current epoch (or batch, for batch-level callbacks).
  bool stop_training = false;

  void compile(std::unique_ptr<Optimizer> optimizer, CompileOptions options = {}) {
    if (!optimizer) throw ConfigError("Model.compile: the optimizer is null");
    for (const auto& m : options.metrics)
      if (m != "accuracy" && m != "top_k_categorical_accuracy")
        throw ConfigError("Model.compile: unknown metric '" + m +
                          "' (expected accuracy or top_k_categorical_accuracy)");
    if (options.top_k < 1)
      throw ConfigError("Model.compile: top_k must be >= 1, got " + std::to_string(options.top_k));
    optimizer_ = std::move(optimizer);
    options_ = std::move(options);
    loss_logits_ = std::make_unique<CategoricalCrossentropy>(true, options_.label_smoothing);
    loss_probs_ = std::make_unique<CategoricalCrossentropy>(false, options_.label_smoothing);
    batch_graph_ready_ = false;
  }
  bool compiled() const { return optimizer_ != nullptr; }
  Optimizer& optimizer() {
    require_compiled("optimizer()");
    return *optimizer_;
  }

  // Keras' train_on_batch: one optimisation step on inputs x (n, sample shape...) and
  // one-hot targets y (n, classes); returns the loss before the update. Which layers train
  // is read at the first call after compile() (as in Keras, compile again after changing
  // trainable). After the first call a step allocates no memory. Throws NumericError
  // (nothing updated) when the loss is not finite.
  double train_on_batch(ConstView<float> x, ConstView<float> y) {
    require_compiled("train_on_batch");
    if (x.rank() < 2 || y.rank() != 2 || x.dim(0) != y.dim(0) || x.dim(0) == 0)
      throw ShapeError("Model.train_on_batch: x " + x.shape().str() + " and y " + y.shape().str() +
                       " must be (n, ...) and (n, classes) with n >= 1");
    if (!net_->built()) net_->build(x.shape().sample());
    if (x.shape().sample() != net_->input_shape())
      throw ShapeError("Model '" + net_->name() + "': train_on_batch got samples of shape " +
                       x.shape().sample().batched_str() + ", the model takes " +
                       net_->input_shape().batched_str());
    if (Shape{y.dim(1)} != net_->output_shape())
      throw ShapeError("Model '" + net_->name() + "': train_on_batch got targets of shape " +
                       y.shape().str() + ", the model outputs " +
                       net_->output_shape().batched_str());
    if (!batch_graph_ready_) {
      prepare_graph();
      if (!graph_.trains())
        throw ConfigError("train_on_batch: model '" + net_->name() +
                          "' has no trainable parameters (every layer is frozen)");
      batch_graph_ready_ = true;
    }
    double loss = 0.0;
    if (!train_step(x, y, false, loss))
      throw NumericError("Model.train_on_batch: the loss is not finite; nothing was updated");
    return loss;
  }

  // ------------------------------------------------------------------------------ fit
  History fit(BatchSource& train, BatchSource* validation = nullptr, const FitOptions& o = {}) {
    require_compiled("fit");
    if (o.epochs < 1)
      throw ConfigError("fit: epochs must be >= 1, got " + std::to_string(o.epochs));
    if (o.initial_epoch < 0 || o.initial_epoch >= o.epochs)
      throw ConfigError("fit: initial_epoch " + std::to_string(o.initial_epoch) +
                        " must be in 0.." + std::to_string(o.epochs - 1) + " (epochs " +
                        std::to_string(o.epochs) + ")");
    if (o.validation_freq < 1)
      throw ConfigError("fit: validation_freq must be >= 1, got " +
                        std::to_string(o.validation_freq));
    if (train.size() == 0) throw ConfigError("fit: the training data is empty");
    check_source(train, "training data");
    if (validation) check_source(*validation, "validation data");

    std::ostream& out = o.out ? *o.out : std::cout;
    const int verbose = o.verbose >= 0 ? o.verbose : (::isatty(STDOUT_FILENO) ? 1 : 2);
    prepare_graph();
    if (!graph_.trains())
      throw ConfigError("fit: model '" + net_->name() +
                        "' has no trainable parameters (every layer is frozen)");

    // Cached outputs of the frozen part, when the inputs do not change between epochs.
    const bool want_cache = o.cache_features.value_or(true);
    if (o.cache_features.value_or(false) && (!graph_.has_prefix() || train.augmented()))
      throw ConfigError(
          std::string("fit: cache_features needs a frozen part at the start of the "
                      "model and training data without augmentation; ") +
          (train.augmented() ? "the training data is augmented" : "the first layer trains"));
    std::unique_ptr<FeatureSource> train_cache, val_cache;
    auto make_caches = [&] {
      train_cache.reset();
      val_cache.reset();
      if (!graph_.has_prefix() || !want_cache) return;
      const auto t0 = std::chrono::steady_clock::now();
      if (!train.augmented()) train_cache = cache_features(train);
      if (validation && !validation->augmented()) val_cache = cache_features(*validation);
      if (verbose && (train_cache || val_cache)) {
        char b[160];
        std::snprintf(
            b, sizeof b, "Computed the frozen layers' outputs once for %zu %s in %.1f s\n",
            (train_cache ? train.size() : 0) + (val_cache ? validation->size() : 0),
            train_cache ? (val_cache ? "training and validation images" : "training images")
                        : "validation images",
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        out << b;
        out.flush();
      }
    };
    make_caches();

    History history = resumed_history_ ? std::move(*resumed_history_) : History{};
    resumed_history_.reset();
    history.params = {{"epochs", o.epochs}, {"steps", train.steps()}, {"verbose", verbose}};

    std::vector<Callback*> callbacks;
    std::unique_ptr<ProgbarLogger> progbar;
    if (verbose > 0) {
      progbar = std::make_unique<ProgbarLogger>(out, verbose, o.epochs, train.steps());
      callbacks.push_back(progbar.get());
    }
    for (const auto& c : o.callbacks) {
      if (!c) throw ConfigError("fit: a callback is null");
      callbacks.push_back(c.get());
    }
    for (auto* c : callbacks) c->set_model(this);
    FitScope scope(*this, callbacks, history);

    stop_training = false;
    InterruptGuard interrupt(o.handle_interrupt);
    Logs none;
    for (auto* c : callbacks) c->on_train_begin(none);
    apply_pending_callback_states(callbacks);

    Logs logs;
    for (int epoch = o.initial_epoch; epoch < o.epochs; ++epoch) {
      current_epoch_ = epoch;
      if (prepare_graph() && (train_cache || val_cache)) make_caches();
      BatchSource& src = train_cache ? static_cast<BatchSource&>(*train_cache) : train;
      for (auto* c : callbacks) c->on_epoch_begin(epoch, none);
      const auto t0 = std::chrono::steady_clock::now();
      src.start_epoch(epoch);
      Accumulator acc(options_);
      const int64_t steps = src.steps();
      bool broke = false;
      for (int64_t step = 0; step < steps; ++step) {
        for (auto* c : callbacks) c->on_train_batch_begin(int(step), none);
        const Batch& b = src.next();
        double loss = 0;
        if (!train_step(b.x.view(), b.y.view(), static_cast<bool>(train_cache), loss)) {
          char msg[200];
          std::snprintf(msg, sizeof msg,
                        "Epoch %d/%d, batch %lld/%lld: the loss is %s; training stopped (the "
                        "weights are those after the last finite step)",
                        epoch + 1, o.epochs, static_cast<long long>(step + 1),
                        static_cast<long long>(steps), std::isnan(loss) ? "nan" : "infinite");
          if (verbose) out << "\n";
          std::cerr << msg << "\n";
          history.stop_reason = "non-finite loss";
          broke = true;
          break;
        }
        acc.add(loss, b, current_output_->view());
        acc.write(logs);
        for (auto* c : callbacks) c->on_train_batch_end(int(step), logs);
        if (interrupt_requested()) {
          if (verbose) out << "\n";
          out << "Training interrupted in epoch " << epoch + 1 << " after batch " << step + 1 << "/"
              << steps << "; files saved so far are kept.\n";
          out.flush();
          history.stop_reason = "interrupted";
          broke = true;
          break;
        }
        if (stop_training) break;
      }
      if (broke) {
        src.stop();
        break;
      }
      if (validation && (epoch + 1) % o.validation_freq == 0) {
        Logs v = evaluate_source(val_cache ? static_cast<BatchSource&>(*val_cache) : *validation,
                                 static_cast<bool>(val_cache));
        for (const auto& [k, val] : v.items()) logs.set("val_" + k, val);
      }
      logs.set("learning_rate", optimizer_->learning_rate());
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      for (auto* c : callbacks)
        if (!c->runs_last()) c->on_epoch_end(epoch, logs);
      history.record(epoch, logs, secs);
      last_completed_epoch_ = epoch;
      for (auto* c : callbacks)
        if (c->runs_last()) c->on_epoch_end(epoch, logs);
      if (stop_training) break;
    }
    for (auto* c : callbacks) c->on_train_end(logs);
    return history;
  }

  // ------------------------------------------------------------------- evaluate / predict
  // Loss and metrics over `data` in inference mode (Keras' evaluate).
  Logs evaluate(BatchSource& data) {
    require_compiled("evaluate");
    check_source(data, "evaluation data");
    prepare_graph();
    return evaluate_source(data, false);
  }

  // Output of the model (probabilities for a softmax head) for every sample, source order.
  Tensor<float> predict(BatchSource& data) {
    check_source(data, "prediction data", /*labels=*/false);
    prepare_graph();
    const int64_t n = static_cast<int64_t>(data.size()), bs = data.batch_size();
    Tensor<float> result(net_->output_shape().with_leading(n));
    const int64_t row = net_->output_shape().size();
    Tensor<float> x;
    for (int64_t i = 0; i < n; i += bs) {
      const int64_t m = std::min(bs, n - i);
      x.resize(data.sample_shape().with_leading(m));
      data.plain_samples(size_t(i), size_t(m), x.data());
      const Tensor<float>& y = graph_.forward(x.view(), false);
      std::copy(y.data(), y.data() + m * row, result.data() + i * row);
    }
    return result;
  }
  Tensor<float> predict(ConstView<float> x, int64_t batch_size = 32) {
    if (x.rank() < 1) throw ShapeError("predict: input is a scalar, expected a batch");
    std::vector<int> labels(size_t(x.dim(0)), 0);
    ArraySource src(Tensor<float>::from(x), labels, 1, batch_size, false);
    return predict(src);
  }

  // ------------------------------------------------------------------- files
  // A self-contained model file (architecture, weights, class names, preprocessing).
  void save(const std::string& path) { save_model_file(*net_, info_, path); }
  // What save() writes, as bytes (for writing elsewhere: io/background_writer.hpp).
  std::vector<char> model_bytes() { return model_file_bytes(*net_, info_); }
  // Only the weights (load them into the same architecture with load_weights()).
  void save_weights(const std::string& path) {
    minicnn::save_weights(*net_, path, {{"kind", "weights"}});
  }
  void load_weights(const std::string& path, const LoadOptions& o = {}) {
    minicnn::load_weights(*net_, path, o);
  }
  static Model load(const std::string& path) {
    LoadedNet l = load_model_file(path);
    return Model(std::move(l.net), std::move(l.info));
  }

  // The whole training state after epoch `epoch` (see the top of this file). Inside fit()
  // the History and callbacks of that run are included (BackupAndRestore calls this).
  void save_checkpoint(const std::string& path) {
    const std::vector<char> bytes = checkpoint_bytes();
    write_file_atomic(path, bytes.data(), bytes.size());
  }
  // What save_checkpoint() writes, as bytes.
  std::vector<char> checkpoint_bytes() {
    require_compiled("save_checkpoint");
    if (last_completed_epoch_ < 0)
      throw Error("save_checkpoint: no epoch has completed yet, nothing to resume from");
    McnnFile f = collect_weights(*net_, model_metadata(*net_, info_));
    nlohmann::json training = {{"epoch", last_completed_epoch_},
                               {"optimizer", optimizer_->config()},
                               {"iterations", optimizer_->iterations()}};
    for (auto& [name, t] : optimizer_->state_tensors())
      f.add(McnnTensor("optimizer/" + name, *t, TensorKind::training));
    nlohmann::json dropout = nlohmann::json::object();
    for (auto* d : graph_.dropouts()) dropout[d->name()] = d->masks_drawn();
    training["dropout_masks_drawn"] = dropout;
    if (fit_) {
      training["history"] = fit_->history.to_json();
      nlohmann::json cbs = nlohmann::json::object();
      for (const auto& [key, cb] : callback_keys(fit_->callbacks)) {
        cbs[key] = cb->get_state();
        for (const auto& [tname, t] : cb->state_tensors())
          f.add(McnnTensor("callbacks/" + key + "/" + tname, *t, TensorKind::training));
      }
      training["callbacks"] = cbs;
    }
    f.metadata["training"] = training;
    f.metadata["kind"] = kCheckpointKind;
    return serialize_mcnn(f);
  }

  // Restores what save_checkpoint() wrote into this (compiled, same architecture) model and
  // returns the epoch to continue from (pass it to fit as initial_epoch). The History and
  // the callbacks' state are handed to the next fit().
  int load_checkpoint(const std::string& path) {
    require_compiled("load_checkpoint");
    McnnFile f = read_mcnn(path);
    const std::string where = "'" + path + "'";
    if (!f.metadata.contains("training") || !f.metadata["training"].is_object())
      throw FormatError(where + " is not a training checkpoint (no 'training' metadata)");
    const nlohmann::json& tr = f.metadata["training"];
    if (!tr.contains("epoch") || !tr["epoch"].is_number_integer() || tr["epoch"].get<int>() < 0)
      throw FormatError(where + ": checkpoint lacks a valid epoch");
    const nlohmann::json mine = layer_config_node(*net_);
    if (f.metadata.contains("model_config") && f.metadata["model_config"] != mine)
      throw FormatError(where + ": the checkpoint's architecture differs from this model's");
    minicnn::load_weights(*net_, f);
    if (f.metadata.contains("frozen_layers") && f.metadata["frozen_layers"].is_array()) {
      std::vector<std::string> frozen;
      for (const auto& n : f.metadata["frozen_layers"])
        if (n.is_string()) frozen.push_back(n.get<std::string>());
      apply_frozen_layer_names(*net_, frozen);
    }
    // Optimizer: the same kind, its slots, its step count and learning rate.
    const std::string kind =
        tr.contains("optimizer") ? tr["optimizer"].value("name", std::string()) : "";
    if (kind != optimizer_->type())
      throw FormatError(where + ": checkpoint was trained with optimizer '" + kind +
                        "', this model is compiled with '" + optimizer_->type() + "'");
    optimizer_->build(net_->parameters());
    for (const auto& t : f.tensors) {
      if (t.kind != TensorKind::training || t.name.rfind("optimizer/", 0) != 0) continue;
      Tensor<float>* slot = optimizer_->find_state(t.name.substr(10));
      if (!slot)
        throw FormatError(where + ": optimizer slot '" + t.name.substr(10) +
                          "' belongs to no trainable parameter of this model");
      if (t.dtype != DType::float32 || t.shape() != slot->shape())
        throw FormatError(where + ": optimizer slot '" + t.name + "' has shape " + t.shape().str() +
                          ", expected " + slot->shape().str());
      slot->copy_from(t.value.view());
    }
    if (tr.contains("iterations") && tr["iterations"].is_number_integer())
      optimizer_->set_iterations(tr["iterations"].get<int64_t>());
    if (tr["optimizer"].contains("learning_rate") && tr["optimizer"]["learning_rate"].is_number())
      optimizer_->set_learning_rate(tr["optimizer"]["learning_rate"].get<double>());
    prepare_graph();
    if (tr.contains("dropout_masks_drawn") && tr["dropout_masks_drawn"].is_object())
      for (auto* d : graph_.dropouts())
        if (tr["dropout_masks_drawn"].contains(d->name()))
          d->set_masks_drawn(tr["dropout_masks_drawn"][d->name()].get<uint64_t>());
    if (tr.contains("history")) resumed_history_ = History::from_json(tr["history"]);
    pending_states_.clear();
    pending_tensors_.clear();
    if (tr.contains("callbacks") && tr["callbacks"].is_object())
      for (auto& [key, state] : tr["callbacks"].items()) pending_states_[key] = state;
    for (const auto& t : f.tensors) {
      if (t.kind != TensorKind::training || t.name.rfind("callbacks/", 0) != 0) continue;
      const std::string rest = t.name.substr(10);
      const size_t slash = rest.find('/');
      if (slash == std::string::npos || t.dtype != DType::float32) continue;
      pending_tensors_[rest.substr(0, slash)].emplace_back(rest.substr(slash + 1), t.value);
    }
    last_completed_epoch_ = tr["epoch"].get<int>();
    return last_completed_epoch_ + 1;
  }

  // Forgets the History and callback states that load_checkpoint() kept for the next fit()
  // (the weights, optimizer and Dropout counters it restored stay): for a caller that finds
  // the checkpoint's training finished and goes on with something else.
  void discard_resumed_training() {
    resumed_history_.reset();
    pending_states_.clear();
    pending_tensors_.clear();
  }

  // Values of the parameters fit() can change (those after the frozen part, BatchNormalization
  // statistics included), by name: what EarlyStopping keeps of its best epoch.
  std::vector<std::pair<std::string, Tensor<float>>> trainable_state() {
    prepare_graph();
    std::vector<std::pair<std::string, Tensor<float>>> out;
    const auto& units = graph_.units();
    for (size_t i = graph_.boundary(); i < units.size(); ++i)
      for (auto* p : units[i]->parameters()) out.emplace_back(p->name, p->value);
    return out;
  }
  void set_trainable_state(const std::vector<std::pair<std::string, Tensor<float>>>& state) {
    for (const auto& [name, value] : state) {
      ParameterT<float>* p = net_->find_parameter(name);
      if (!p || p->value.shape() != value.shape())
        throw Error("Model: cannot restore weight '" + name + "': " +
                    (p ? "shape " + p->value.shape().str() + " differs from " + value.shape().str()
                       : std::string("no such parameter")));
      p->value.copy_from(value.view());
    }
  }

  // The writer of the files that callbacks save in the background (ModelCheckpoint,
  // BackupAndRestore): one thread for all of them, so that their files reach the disk in the
  // order they were submitted and a checkpoint is never on disk before the model file it
  // says was saved. Destroying the Model finishes the pending writes.
  BackgroundWriter& file_writer() {
    if (!writer_) writer_ = std::make_unique<BackgroundWriter>();
    return *writer_;
  }

  // The epoch fit() is running (0-based), or the last one it completed.
  int current_epoch() const { return current_epoch_; }

 private:
  // Running sums of one epoch (Keras' Mean metrics with sample_weight = batch size).
  struct Accumulator {
    explicit Accumulator(const CompileOptions& o) : opt(&o) {}
    const CompileOptions* opt;
    double loss_sum = 0;
    int64_t samples = 0, correct = 0, top_k = 0;
    void add(double loss, const Batch& b, ConstView<float> out) {
      const int64_t n = b.size(), k = out.dim(1);
      loss_sum += loss * double(n);
      samples += n;
      for (int64_t i = 0; i < n; ++i) {
        const float* p = out.data() + i * k;
        const int64_t label = argmax_row(b.y.data() + i * k, k);
        correct += argmax_row(p, k) == label;
        top_k += in_top_k(p, k, label, opt->top_k);
      }
    }
    void write(Logs& logs) const {
      logs.clear();
      logs.set("loss", samples ? loss_sum / double(samples) : 0.0);
      for (const auto& m : opt->metrics) {
        const int64_t c = m == "accuracy" ? correct : top_k;
        logs.set(m, samples ? double(c) / double(samples) : 0.0);
      }
    }
  };

  // The callbacks and History of the fit() in progress (for save_checkpoint).
  struct FitState {
    std::vector<Callback*> callbacks;
    History& history;
  };
  struct FitScope {
    FitScope(Model& m, std::vector<Callback*> cbs, History& h) : model(m) {
      model.fit_ = std::make_unique<FitState>(FitState{std::move(cbs), h});
    }
    ~FitScope() { model.fit_.reset(); }
    Model& model;
  };

  void require_compiled(const char* what) const {
    if (!optimizer_)
      throw ConfigError(std::string("Model.") + what +
                        ": compile the model first (model.compile(optimizer))");
  }

  // True when the folded frozen part was (re)built.
  bool prepare_graph() { return graph_.prepare(*net_); }

  void check_source(const BatchSource& s, const std::string& what, bool labels = true) {
    if (!net_->built()) net_->build(s.sample_shape());
    if (s.sample_shape() != net_->input_shape())
      throw ShapeError("Model '" + net_->name() + "': " + what + " has samples of shape " +
                       s.sample_shape().batched_str() + ", the model takes " +
                       net_->input_shape().batched_str());
    const Shape out = net_->output_shape();
    if (labels && (out.rank() != 1 || out[0] != s.num_classes()))
      throw ShapeError("Model '" + net_->name() + "': " + what + " has " +
                       std::to_string(s.num_classes()) + " classes, the model outputs " +
                       out.batched_str());
  }

  std::unique_ptr<FeatureSource> cache_features(BatchSource& s) {
    const int64_t n = static_cast<int64_t>(s.size());
    Tensor<float> features(graph_.rest_input_shape().with_leading(n));
    const int64_t chunk = std::max<int64_t>(s.batch_size(), graph_.prefix_micro_batch());
    const int64_t row = graph_.rest_input_shape().size();
    Tensor<float> x;
    for (int64_t i = 0; i < n; i += chunk) {
      const int64_t m = std::min(chunk, n - i);
      x.resize(s.sample_shape().with_leading(m));
      s.plain_samples(size_t(i), size_t(m), x.data());
      graph_.prefix_forward(x.view(), TensorView<float>(features.data() + i * row,
                                                        graph_.rest_input_shape().with_leading(m)));
    }
    return std::make_unique<FeatureSource>(std::move(features), s);
  }

  // One optimisation step; false when the loss is not finite (nothing was updated).
  bool train_step(ConstView<float> x, ConstView<float> y, bool cached, double& loss) {
    const Tensor<float>& out = cached ? graph_.forward_rest(x, true) : graph_.forward(x, true);
    current_output_ = &out;
    const bool logits = graph_.softmax_head();
    CategoricalCrossentropy& cce = logits ? *loss_logits_ : *loss_probs_;
    try {
      loss = cce.forward(logits ? graph_.logits() : out.view(), y);
    } catch (const NumericError&) {
      loss = std::numeric_limits<double>::quiet_NaN();
      return false;
    }
    graph_.zero_grad();
    graph_.backward(cce.backward().view(), logits);
    optimizer_->step(graph_.trainable_parameters());
    return true;
  }

  Logs evaluate_source(BatchSource& data, bool cached) {
    Accumulator acc(options_);
    const int64_t n = static_cast<int64_t>(data.size()), bs = data.batch_size();
    std::vector<size_t> ids;
    Batch b;
    const bool logits = graph_.softmax_head();
    CategoricalCrossentropy& cce = logits ? *loss_logits_ : *loss_probs_;
    for (int64_t i = 0; i < n; i += bs) {
      const int64_t m = std::min(bs, n - i);
      ids.resize(size_t(m));
      for (int64_t j = 0; j < m; ++j) ids[size_t(j)] = size_t(i + j);
      data.fill_batch(ids.data(), m, 0, b);
      const Tensor<float>& out =
          cached ? graph_.forward_rest(b.x.view(), false) : graph_.forward(b.x.view(), false);
      double loss;
      try {
        loss = cce.forward(logits ? graph_.logits() : out.view(), b.y.view());
      } catch (const NumericError&) {
        loss = std::numeric_limits<double>::quiet_NaN();
      }
      acc.add(loss, b, out.view());
    }
    Logs logs;
    acc.write(logs);
    return logs;
  }

  // Callback state keys: the name, with "#2", "#3"... for further callbacks of one class.
  static std::vector<std::pair<std::string, Callback*>> callback_keys(
      const std::vector<Callback*>& cbs) {
    std::vector<std::pair<std::string, Callback*>> out;
    std::map<std::string, int> seen;
    for (auto* c : cbs) {
      if (c->name() == "ProgbarLogger") continue;
      const int k = ++seen[c->name()];
      out.emplace_back(k == 1 ? c->name() : c->name() + "#" + std::to_string(k), c);
    }
    return out;
  }
  void apply_pending_callback_states(const std::vector<Callback*>& cbs) {
    for (const auto& [key, cb] : callback_keys(cbs)) {
      auto s = pending_states_.find(key);
      if (s != pending_states_.end() && !s->second.is_null()) cb->set_state(s->second);
      auto t = pending_tensors_.find(key);
      if (t != pending_tensors_.end()) cb->set_state_tensors(std::move(t->second));
    }
    pending_states_.clear();
    pending_tensors_.clear();
  }

  std::unique_ptr<SequentialT<float>> net_;
  ModelInfo info_;
  std::unique_ptr<Optimizer> optimizer_;
  CompileOptions options_;
  std::unique_ptr<CategoricalCrossentropy> loss_logits_, loss_probs_;
  TrainingGraph graph_;
  bool batch_graph_ready_ = false;  // train_on_batch prepared the graph since compile()
  const Tensor<float>* current_output_ = nullptr;
  std::unique_ptr<FitState> fit_;
  int current_epoch_ = -1, last_completed_epoch_ = -1;
  std::optional<History> resumed_history_;
  std::map<std::string, nlohmann::json> pending_states_;
  std::map<std::string, std::vector<std::pair<std::string, Tensor<float>>>> pending_tensors_;
  std::unique_ptr<BackgroundWriter> writer_;  // last: destroyed first, finishing its writes
};

inline Model& Callback::model() const {
  if (!model_) throw Error(name() + ": not attached to a model (it is set by fit())");
  return *model_;
}

}  // namespace minicnn
