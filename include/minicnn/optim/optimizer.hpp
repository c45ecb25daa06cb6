// OptimizerT<T>: the base of Adam and SGD (Keras' update rules).
//
// step(params) applies one update to every parameter that is trainable and not state,
// reading p->grad (the caller zeroes gradients between steps; step does not). Frozen
// parameters and BatchNormalization moving statistics are never touched, whatever their
// grad holds. `iterations` counts steps, as Keras' optimizer.iterations does.
//
// Per-parameter state ("slots") is keyed by the parameter NAME, not its address, so a
// checkpoint can save it as named tensors "<param name>/<slot>" and restore it into a
// freshly built model: call build(params) to create the zero-initialised slots, then fill
// the tensors that state_tensors() points to, then set_iterations(). Slots are created in
// the order parameters are first seen (model order), so state_tensors() is deterministic.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/tensor.hpp"
#include "../layers/layer.hpp"

namespace minicnn {

template <typename T>
class OptimizerT {
 public:
  OptimizerT(std::string type, double learning_rate) : type_(std::move(type)) {
    set_learning_rate(learning_rate);
  }
  virtual ~OptimizerT() = default;
  OptimizerT(const OptimizerT&) = delete;
  OptimizerT& operator=(const OptimizerT&) = delete;

  // Keras class name: "Adam", "SGD".
  const std::string& type() const { return type_; }
  // Keras-style get_config(): {"name": ..., "learning_rate": ..., ...}.
  virtual nlohmann::json config() const = 0;

  // One update of every trainable, non-state parameter from its grad; then iterations += 1.
  // Everything is validated before the first parameter changes, so a throwing step
  // leaves parameters and state as they were.
  // The updatable parameters and their slots form one flat list, built when `params`
  // differs from the previous call's list and reused otherwise (a training loop passes
  // the same list every step, so a step looks nothing up and allocates nothing); the
  // update then runs over the list's elements split evenly between the threads.
  void step(const std::vector<ParameterT<T>*>& params) {
    const int64_t t = iterations_ + 1;
    bool same = params == last_params_;
    // A parameter frozen or unfrozen since (same list, other flags) needs a new plan.
    size_t k = 0;
    for (size_t i = 0; same && i < params.size(); ++i)
      if (updatable(params[i])) same = k < pending_.size() && pending_[k++].first == params[i];
    if (!same || k != pending_.size()) plan(params);
    for (auto& [p, s] : pending_) {
      if (p->grad.shape() != p->value.shape())
        throw ShapeError(type_ + ": parameter '" + p->name + "' has gradient of shape " +
                         p->grad.shape().str() + ", expected " + p->value.shape().str());
      for (auto& st : s->tensors)
        if (st.shape() != p->value.shape())
          throw ShapeError(type_ + ": state of parameter '" + p->name + "' has shape " +
                           st.shape().str() + " but the parameter has shape " +
                           p->value.shape().str());
    }
    begin_step(t);
    const int64_t total = offsets_.empty() ? 0 : offsets_.back();
    const int nt = total >= kParallelElements && !in_parallel() ? num_threads() : 1;
    parallel_ranges(total, nt, [&](int64_t b, int64_t e) {
      // Parameters overlapping [b, e): offsets_[i] is where parameter i starts.
      size_t i =
          size_t(std::upper_bound(offsets_.begin(), offsets_.end(), b) - offsets_.begin()) - 1;
      for (; i < pending_.size() && offsets_[i] < e; ++i) {
        auto& [p, s] = pending_[i];
        const int64_t lo = std::max(b, offsets_[i]) - offsets_[i];
        const int64_t hi = std::min(e, offsets_[i + 1]) - offsets_[i];
        if (hi > lo) update(*p, s->tensors, t, lo, hi);
      }
    });
    iterations_ = t;
  }

  // Creates the (zero) slots of every parameter step() would update, without updating.
  void build(const std::vector<ParameterT<T>*>& params) {
    for (ParameterT<T>* p : params)
      if (updatable(p)) slots_for(*p);
  }

  // ("<param name>/<slot name>", tensor) for every slot, in creation order. The pointers
  // stay valid for the optimizer's lifetime; writing through them restores state.
  std::vector<std::pair<std::string, Tensor<T>*>> state_tensors() {
    std::vector<std::pair<std::string, Tensor<T>*>> out;
    const auto names = slot_names();
    for (auto& s : slots_)
      for (size_t i = 0; i < names.size(); ++i)
        out.emplace_back(s->param_name + "/" + names[i], &s->tensors[i]);
    return out;
  }
  // The slot "<param name>/<slot name>", or nullptr.
  Tensor<T>* find_state(const std::string& full_name) {
    for (auto& [name, tensor] : state_tensors())
      if (name == full_name) return tensor;
    return nullptr;
  }

  int64_t iterations() const { return iterations_; }
  void set_iterations(int64_t n) {
    if (n < 0) throw ConfigError(type_ + ": iterations must be >= 0, got " + std::to_string(n));
    iterations_ = n;
  }
  double learning_rate() const { return learning_rate_; }
  void set_learning_rate(double lr) {
    if (!(std::isfinite(lr) && lr >= 0.0))
      throw ConfigError(type_ + ": learning_rate must be finite and >= 0, got " +
                        std::to_string(lr));
    learning_rate_ = lr;
  }

 protected:
  // Names of the per-parameter slots, e.g. {"m", "v"}; empty for a stateless rule.
  virtual std::vector<std::string> slot_names() const = 0;
  // Called once per step before any update, with the step number t (1 for the first).
  virtual void begin_step(int64_t /*t*/) {}
  // Updates elements [begin, end) of p.value from p.grad; `slots` holds one tensor per
  // slot_names() entry. Called from several threads at once on disjoint ranges.
  virtual void update(ParameterT<T>& p, std::vector<Tensor<T>>& slots, int64_t t, int64_t begin,
                      int64_t end) = 0;

 private:
  struct Slots {
    std::string param_name;
    std::vector<Tensor<T>> tensors;
    int64_t last_serial = -1;  // the step() call that last used these slots
  };

  // Below this many elements in all, waking threads costs more than the update.
  static constexpr int64_t kParallelElements = 1 << 15;

  static bool updatable(const ParameterT<T>* p) { return p && p->trainable && !p->is_state; }

  // Builds the flat list of (parameter, slots) and each one's first element, validating
  // names; on error the previous list is dropped, so the next step validates again.
  void plan(const std::vector<ParameterT<T>*>& params) {
    last_params_.clear();
    pending_.clear();
    offsets_.assign(1, 0);
    ++serial_;
    for (ParameterT<T>* p : params) {
      if (!updatable(p)) continue;
      Slots& s = slots_for(*p);
      // A name seen twice in one step would share (and double-apply) its state.
      if (s.last_serial == serial_)
        throw ConfigError(type_ + ": parameter name '" + p->name +
                          "' appears twice in one step; parameter names must be unique");
      s.last_serial = serial_;
      pending_.emplace_back(p, &s);
      offsets_.push_back(offsets_.back() + p->value.size());
    }
    last_params_ = params;
  }

  Slots& slots_for(const ParameterT<T>& p) {
    auto it = index_.find(p.name);
    if (it != index_.end()) {
      Slots& s = *slots_[it->second];
      for (auto& t : s.tensors)
        if (t.shape() != p.value.shape())
          throw ShapeError(type_ + ": state of parameter '" + p.name + "' has shape " +
                           t.shape().str() + " but the parameter has shape " +
                           p.value.shape().str());
      return s;
    }
    auto s = std::make_unique<Slots>();
    s->param_name = p.name;
    for (size_t i = 0; i < slot_names().size(); ++i) s->tensors.emplace_back(p.value.shape(), T(0));
    index_.emplace(p.name, slots_.size());
    slots_.push_back(std::move(s));
    return *slots_.back();
  }

  std::string type_;
  double learning_rate_ = 0.0;
  int64_t iterations_ = 0;
  int64_t serial_ = 0;                       // counts plan() calls, including ones that threw
  std::vector<ParameterT<T>*> last_params_;  // the list plan() last accepted
  std::vector<std::pair<ParameterT<T>*, Slots*>> pending_;  // the flat list
  std::vector<int64_t> offsets_;                            // pending_[i] starts at offsets_[i]
  std::vector<std::unique_ptr<Slots>> slots_;
  std::unordered_map<std::string, size_t> index_;
};

using Optimizer = OptimizerT<float>;

}  // namespace minicnn
