// Callback: Keras' callback interface. fit() calls, in order: on_train_begin, then per
// epoch on_epoch_begin, per batch on_train_batch_begin / on_train_batch_end (logs: the
// running epoch means so far), on_epoch_end (logs: the epoch's loss and metrics, val_*
// after validation, learning_rate), and on_train_end. A callback stops training by setting
// model().stop_training = true, as in Keras.
// Callbacks that must survive a resumed run (EarlyStopping's best value and patience
// count, ModelCheckpoint's best, ReduceLROnPlateau's counters, the best weights) expose
// their state: get_state() as JSON and state_tensors() as named tensors; a checkpoint
// stores both under the callback's name() and fit() restores them after on_train_begin.
#pragma once
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/tensor.hpp"
#include "logs.hpp"

namespace minicnn {

class Model;

class Callback {
 public:
  virtual ~Callback() = default;
  // Keras class name; also the key of this callback's state in a checkpoint (a suffix
  // tells apart two callbacks of one class).
  virtual std::string name() const = 0;

  virtual void on_train_begin(const Logs&) {}
  virtual void on_train_end(const Logs&) {}
  virtual void on_epoch_begin(int /*epoch*/, const Logs&) {}
  virtual void on_epoch_end(int /*epoch*/, Logs&) {}
  virtual void on_train_batch_begin(int /*batch*/, const Logs&) {}
  virtual void on_train_batch_end(int /*batch*/, const Logs&) {}

  // Resumable state (see the top of this file). Default: none.
  virtual nlohmann::json get_state() const { return nullptr; }
  virtual void set_state(const nlohmann::json&) {}
  virtual std::vector<std::pair<std::string, const Tensor<float>*>> state_tensors() const {
    return {};
  }
  virtual void set_state_tensors(std::vector<std::pair<std::string, Tensor<float>>>) {}
  // Runs after the epoch has been recorded in the History and after every other
  // callback's on_epoch_end (a callback that saves the whole training state).
  virtual bool runs_last() const { return false; }

  void set_model(Model* m) { model_ = m; }
  Model& model() const;

 protected:
  Model* model_ = nullptr;
};

// Keras' LambdaCallback: a function per event, any of them empty.
class LambdaCallback : public Callback {
 public:
  std::function<void(const Logs&)> on_train_begin_fn, on_train_end_fn;
  std::function<void(int, const Logs&)> on_epoch_begin_fn;
  std::function<void(int, Logs&)> on_epoch_end_fn;
  std::function<void(int, const Logs&)> on_batch_begin_fn, on_batch_end_fn;

  std::string name() const override { return "LambdaCallback"; }
  void on_train_begin(const Logs& l) override {
    if (on_train_begin_fn) on_train_begin_fn(l);
  }
  void on_train_end(const Logs& l) override {
    if (on_train_end_fn) on_train_end_fn(l);
  }
  void on_epoch_begin(int e, const Logs& l) override {
    if (on_epoch_begin_fn) on_epoch_begin_fn(e, l);
  }
  void on_epoch_end(int e, Logs& l) override {
    if (on_epoch_end_fn) on_epoch_end_fn(e, l);
  }
  void on_train_batch_begin(int b, const Logs& l) override {
    if (on_batch_begin_fn) on_batch_begin_fn(b, l);
  }
  void on_train_batch_end(int b, const Logs& l) override {
    if (on_batch_end_fn) on_batch_end_fn(b, l);
  }
};

}  // namespace minicnn
