// TrainingGraph: how a model runs during fit(), in two regions.
//
// Freezing splits a model into a frozen prefix and a trainable rest. The model is walked
// as a path of units: the children of nested Sequentials, with composite layers
// (InvertedResidual) kept whole. The prefix is the longest run of units from the input
// that has no trainable parameter and behaves the same in training and inference (a
// Dropout ends it); the rest starts at the first unit that trains.
//   - The prefix runs as a folded copy (BatchNormalization merged into the convolutions,
//     ReLU6 in their epilogues, padding inside the kernels): a snapshot of the frozen
//     weights, made again whenever they or the boundary change (prepare()). It keeps no
//     activations for backward: each layer's output goes back to a pool of buffers as soon
//     as the next layer has read it (layers/activation_pool.hpp), and it runs in
//     micro-batches sized so that what is alive at once stays within a budget. Its output
//     can be computed once per image and cached when the input is not augmented.
//   - The rest runs unfolded, layer by layer, in training mode where trainable; backward
//     goes through it only, asking a unit for dL/dx only when an earlier unit trains.
// When the last unit ends in a softmax (Dense(activation="softmax") or Softmax), the loss is
// computed from its logits and backward starts from dL/dlogits, as TF does.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../io/format.hpp"
#include "../layers/activation_pool.hpp"
#include "../layers/dropout.hpp"
#include "../layers/layer.hpp"
#include "../models/layer_config.hpp"
#include "../models/sequential.hpp"

namespace minicnn {

template <typename T>
class TrainingGraphT {
 public:
  // Finds the boundary and (re)builds the folded prefix if the boundary or the frozen
  // weights changed since the last call; true when it did. Cheap when nothing changed
  // (one hash pass over the frozen weights).
  bool prepare(SequentialT<T>& net) {
    if (!net.built())
      throw Error("Sequential '" + net.name() + "': build the model before training");
    const bool same_net = net_ == &net;
    net_ = &net;
    units_.clear();
    collect_units(net, units_);
    size_t b = 0;
    while (b < units_.size() && frozen_and_deterministic(*units_[b])) ++b;
    // A unit that pads its own input (absorbed_previous()) takes the unpadded input, so
    // the pad it absorbed stays with it in the rest.
    while (b > 0 && b < units_.size() && units_[b]->absorbed_previous() == units_[b - 1]) --b;
    // Only weights make a prefix worth folding and caching; a lone ZeroPadding2D is not.
    bool weighted = false;
    for (size_t i = 0; i < b && !weighted; ++i) weighted = units_[i]->count_params(false) > 0;
    if (!weighted) b = 0;
    const uint64_t fp = fingerprint(b);
    if (prepared_ && same_net && b == boundary_ && fp == fingerprint_) {
      refresh_params();
      return false;
    }
    prepared_ = true;
    boundary_ = b;
    fingerprint_ = fp;
    prefix_.reset();
    if (b > 0) {
      prefix_ = std::make_unique<SequentialT<T>>(net.name() + "/frozen");
      for (size_t i = 0; i < b; ++i) prefix_->add(clone_layer(*units_[i], /*trainable=*/false));
      prefix_->build(units_[0]->input_shape());
      prefix_->fold_for_inference();
    }
    refresh_params();
    return true;
  }

  bool has_prefix() const { return prefix_ != nullptr; }
  size_t boundary() const { return boundary_; }
  const std::vector<LayerT<T>*>& units() const { return units_; }
  // Shape (without batch) of what the rest takes: the prefix output or the model input.
  Shape rest_input_shape() const {
    return boundary_ < units_.size() ? units_[boundary_]->input_shape()
                                     : units_.back()->output_shape();
  }
  Shape input_shape() const { return units_.front()->input_shape(); }
  bool trains() const { return !trainable_.empty(); }
  // Trainable, non-state parameters of the rest, model order (built once per prepare()).
  const std::vector<ParameterT<T>*>& trainable_parameters() const { return trainable_; }
  bool softmax_head() const { return !units_.empty() && units_.back()->softmax_output(); }
  // Samples per prefix call: the prefix runs as Sequential::infer() does, in micro-batches
  // whose activations stay within its budget (MobileNetV2 at 96x96: a batch of 32 runs as
  // two of 16, large enough for the GEMMs to reach full speed, small enough for a whole
  // training run to stay near 100 MB).
  int64_t prefix_micro_batch() const { return prefix_ ? prefix_->infer_micro_batch() : 1 << 20; }

  // Prefix output for a batch of inputs, written to `out` (rows in order).
  void prefix_forward(ConstView<T> x, TensorView<T> out) {
    if (!prefix_) throw Error("TrainingGraph: the model has no frozen prefix");
    prefix_->infer_into(x, out);
  }

  // The whole model: prefix (folded) then rest. `x` is the model input.
  const Tensor<T>& forward(ConstView<T> x, bool training) {
    if (!prefix_) return forward_rest(x, training);
    const int64_t n = x.dim(0);
    // The prefix's last output stays with its layer: the rest reads it, backward too.
    if (n <= prefix_micro_batch()) return forward_rest(prefix_->infer(x).view(), training);
    features_.resize(rest_input_shape().with_leading(n));
    prefix_forward(x, features_.view());
    return forward_rest(features_.view(), training);
  }

  // The rest only; `h` is the prefix output (or the model input when there is no prefix).
  const Tensor<T>& forward_rest(ConstView<T> h, bool training) {
    if (boundary_ == units_.size()) {
      passthrough_.copy_from(h);
      return passthrough_;
    }
    ConstView<T> cur = h;
    const Tensor<T>* y = nullptr;
    for (size_t i = boundary_; i < units_.size(); ++i) {
      if (absorbed(i)) continue;
      y = &units_[i]->forward(cur, training);
      if (!units_[i]->output_deferred()) cur = y->view();  // see LayerT::output_deferred()
    }
    return *y;
  }

  // Logits of the last forward (softmax heads only).
  ConstView<T> logits() const { return units_.back()->logits(); }

  // Backward through the rest from dL/dy of the model output, or (from_logits) from
  // dL/dlogits of a softmax head. Adds the parameter gradients.
  // Each unit's dL/dx goes back to a gradient pool once the unit before it has used it.
  void backward(ConstView<T> grad, bool from_logits) {
    typename ActivationPoolT<T>::Scope scope(gradient_pool_, ActivationPoolT<T>::gradients);
    ConstView<T> cur = grad;
    LayerT<T>* producer = nullptr;  // the unit whose dL/dx `cur` is
    for (size_t k = units_.size(); k-- > boundary_;) {
      if (absorbed(k)) continue;
      const bool need_dx = k > boundary_ && earlier_trainable_[k];
      if (!need_dx && !units_[k]->has_trainable_parameters()) break;
      const Tensor<T>& g = (from_logits && k + 1 == units_.size())
                               ? units_[k]->backward_from_logits(cur, need_dx)
                               : units_[k]->backward(cur, need_dx);
      if (units_[k]->input_grad_deferred()) continue;  // see LayerT::input_grad_deferred()
      if (producer) producer->release_input_grad(gradient_pool_);
      if (!need_dx) break;
      cur = g.view();
      producer = units_[k];
    }
    // The last dL/dx (the rest's input) is not needed after the step.
    if (producer) producer->release_input_grad(gradient_pool_);
  }

  void zero_grad() {
    for (auto* p : trainable_) p->grad.zero();
  }

  // Every Dropout of the rest (their mask counters are part of a checkpoint).
  std::vector<DropoutT<T>*> dropouts() const {
    std::vector<DropoutT<T>*> out;
    auto walk = [&](auto& self, LayerT<T>* l) -> void {
      if (auto* d = dynamic_cast<DropoutT<T>*>(l)) out.push_back(d);
      for (auto* c : l->children()) self(self, c);
    };
    if (net_) walk(walk, net_);
    return out;
  }

 private:
  // Whether unit i of the rest is done by a neighbour (LayerT::absorbed_next(),
  // absorbed_previous()).
  bool absorbed(size_t i) const {
    return (i > boundary_ && units_[i - 1]->absorbed_next() == units_[i]) ||
           (i + 1 < units_.size() && units_[i + 1]->absorbed_previous() == units_[i]);
  }
  static void collect_units(LayerT<T>& l, std::vector<LayerT<T>*>& out) {
    if (auto* s = dynamic_cast<SequentialT<T>*>(&l)) {
      for (auto* c : s->layers()) collect_units(*c, out);
      return;
    }
    out.push_back(&l);
  }
  static bool frozen_and_deterministic(LayerT<T>& l) {
    if (l.has_trainable_parameters()) return false;
    bool random = false;
    auto walk = [&](auto& self, LayerT<T>& x) -> void {
      if (dynamic_cast<DropoutT<T>*>(&x)) random = true;
      for (auto* c : x.children()) self(self, *c);
    };
    walk(walk, l);
    return !random;
  }
  // A hash of the boundary and of every prefix parameter's name and bytes (all of them: a
  // stale snapshot would silently compute with old weights). ~2 ms for MobileNetV2.
  uint64_t fingerprint(size_t b) const {
    uint64_t h = 1469598103934665603ULL ^ b;
    auto word = [&h](uint64_t w) { h = (h ^ w) * 1099511628211ULL; };
    for (size_t i = 0; i < b; ++i)
      for (auto* p : units_[i]->parameters()) {
        for (char c : p->name) word(static_cast<unsigned char>(c));
        const auto* bytes = reinterpret_cast<const unsigned char*>(p->value.data());
        const size_t n = size_t(p->value.size()) * sizeof(T);
        size_t j = 0;
        for (; j + 8 <= n; j += 8) {
          uint64_t w;
          std::memcpy(&w, bytes + j, 8);
          word(w);
        }
        for (; j < n; ++j) word(bytes[j]);
        word(n);
      }
    return h;
  }
  void refresh_params() {
    trainable_.clear();
    for (size_t i = boundary_; i < units_.size(); ++i)
      for (auto* p : units_[i]->parameters())
        if (p->trainable && !p->is_state) trainable_.push_back(p);
    earlier_trainable_.assign(units_.size(), false);
    for (size_t i = boundary_ + 1; i < units_.size(); ++i)
      earlier_trainable_[i] =
          earlier_trainable_[i - 1] || units_[i - 1]->has_trainable_parameters();
  }

  SequentialT<T>* net_ = nullptr;
  bool prepared_ = false;
  std::vector<LayerT<T>*> units_;
  size_t boundary_ = 0;
  uint64_t fingerprint_ = 0;
  std::unique_ptr<SequentialT<T>> prefix_;
  ActivationPoolT<T> gradient_pool_;
  std::vector<ParameterT<T>*> trainable_;
  std::vector<bool> earlier_trainable_;
  Tensor<T> features_, passthrough_;
};

using TrainingGraph = TrainingGraphT<float>;

}  // namespace minicnn
