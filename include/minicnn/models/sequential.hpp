// SequentialT<T>: Keras Sequential, a chain of layers that is itself a LayerT<T>
// (so it nests: a MobileNetV2 base inside a classifier). Each child's input is the
// previous child's output buffer; outputs stay owned by the children.
// backward runs the children in reverse and asks a child for dL/dx only when an
// earlier child has trainable parameters or the caller wants dL/dx, so a frozen
// base costs nothing in the backward pass.
// fold_for_inference() collapses conv + BN (+ ReLU6) runs for fast inference; infer()
// runs an inference forward in a few recycled buffers.
// A BatchNormalization followed by a ReLU / ReLU6 applies it itself (fused when the model
// is built); both passes then skip the ReLU layer (LayerT::absorbed_next()). Likewise a
// 'valid' convolution after a ZeroPadding2D that pads as TF 'same' would pads its input
// itself, and the ZeroPadding2D is skipped (LayerT::absorbed_previous()).
// During a backward, each child's dL/dx goes back to a gradient pool as soon as the child
// before it has consumed it (layers/activation_pool.hpp): the outermost Sequential (or
// the training graph) installs the pool, so a deep model needs a few gradient buffers, not
// one per layer.
// summary() prints Keras' table, expanding containers into their layers (flat, as
// Keras prints the functional MobileNetV2).
// In training forwards, a BatchNormalization (+ its ReLU, + an absorbed ZeroPadding2D)
// followed by a DepthwiseConv2D leaves its output unwritten, and the depthwise layer
// normalises the batch norm's input as it reads it (LayerT::output_deferred()); the
// container then passes the batch norm's input on.
#pragma once
#include <algorithm>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../layers/layer.hpp"
#include "fold.hpp"

namespace minicnn {

namespace seq_detail {
// 2257984 -> "2,257,984"
inline std::string thousands(int64_t v) {
  std::string digits = std::to_string(v < 0 ? -v : v), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return v < 0 ? "-" + out : out;
}

// Elements a layer's forward computes per sample: its output, or for a container (an
// inverted residual block) every output inside it and its own.
template <typename T>
int64_t activation_elements(LayerT<T>& l) {
  auto kids = l.children();
  if (kids.empty()) return l.output_shape().size();
  int64_t n = l.output_shape().size();  // a residual Add's output
  for (auto* c : kids) n += activation_elements(*c);
  return n;
}

template <typename T>
LayerT<T>* find_layer_in(const std::vector<LayerT<T>*>& layers, const std::string& name) {
  for (auto* l : layers) {
    if (l->name() == name) return l;
    if (auto* f = find_layer_in(l->children(), name)) return f;
  }
  return nullptr;
}

// Keras' summary table (the tf.keras 2 layout), columns widened to fit long names
// instead of truncating them.
inline std::string format_summary(const std::string& model_name,
                                  const std::vector<SummaryRow>& rows, int64_t total,
                                  int64_t trainable) {
  const std::string h1 = "Layer (type)", h2 = "Output Shape", h3 = "Param #";
  size_t w1 = 29, w2 = 26, w3 = 10;
  for (const auto& r : rows) {
    w1 = std::max(w1, r.name.size() + r.type.size() + 3 + 2);
    w2 = std::max(w2, r.output_shape.batched_str().size() + 2);
    w3 = std::max(w3, thousands(r.params).size() + 1);
  }
  const size_t width = w1 + w2 + w3;
  auto cell = [](std::string s, size_t w) {
    if (s.size() < w) s.append(w - s.size(), ' ');
    return s;
  };
  auto line = [&](const std::string& a, const std::string& b, const std::string& c) {
    std::string l = cell(a, w1) + cell(b, w2) + c;
    while (!l.empty() && l.back() == ' ') l.pop_back();
    return l + "\n";
  };
  std::string out = "Model: \"" + model_name + "\"\n";
  out += std::string(width, '_') + "\n";
  out += line(h1, h2, h3);
  out += std::string(width, '=') + "\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& r = rows[i];
    out +=
        line(r.name + " (" + r.type + ")", r.output_shape.batched_str(), std::to_string(r.params));
    out += std::string(width, i + 1 == rows.size() ? '=' : '_') + "\n";
  }
  if (rows.empty()) out += std::string(width, '=') + "\n";
  out += "Total params: " + thousands(total) + "\n";
  out += "Trainable params: " + thousands(trainable) + "\n";
  out += "Non-trainable params: " + thousands(total - trainable) + "\n";
  out += std::string(width, '_') + "\n";
  return out;
}
}  // namespace seq_detail

// Links each BatchNormalization of `layers` to a DepthwiseConv2D that reads its output,
// past the layers `absorbed(i)` says neighbours do (its ReLU, a ZeroPadding2D the
// convolution pads in place of): the batch norm then defers its output in training
// forwards. And to a Conv2D (linear) right before it, to which it defers its dx in
// backwards. Unlinks everything first; a null `absorbed` only unlinks.
template <typename T, typename Absorbed>
void link_deferred_batch_norms(std::vector<std::unique_ptr<LayerT<T>>>& layers, Absorbed absorbed) {
  for (auto& l : layers) {
    if (auto* bn = dynamic_cast<BatchNormalizationT<T>*>(l.get())) {
      bn->defer_apply_to(nullptr);
      bn->defer_input_grad_to(nullptr);
    }
    if (auto* dw = dynamic_cast<DepthwiseConv2DT<T>*>(l.get())) dw->read_batch_norm_output(nullptr);
    if (auto* conv = dynamic_cast<Conv2DT<T>*>(l.get())) conv->read_batch_norm_input_grad(nullptr);
  }
  if constexpr (!std::is_same_v<Absorbed, std::nullptr_t>) {
    for (size_t i = 0; i < layers.size(); ++i) {
      auto* bn = dynamic_cast<BatchNormalizationT<T>*>(layers[i].get());
      if (!bn || bn->output_shape().rank() != 3) continue;
      size_t j = i + 1;
      while (j < layers.size() && absorbed(j)) ++j;
      if (j == layers.size()) continue;
      if (auto* dw = dynamic_cast<DepthwiseConv2DT<T>*>(layers[j].get())) {
        bn->defer_apply_to(dw);
        dw->read_batch_norm_output(bn);
      }
    }
    // A Conv2D right before a batch norm makes the batch norm's dx as it reads it.
    for (size_t i = 1; i < layers.size(); ++i) {
      auto* bn = dynamic_cast<BatchNormalizationT<T>*>(layers[i].get());
      auto* conv = dynamic_cast<Conv2DT<T>*>(layers[i - 1].get());
      if (bn && conv && bn->output_shape().rank() == 3 &&
          conv->activation() == Activation::Linear) {
        bn->defer_input_grad_to(conv);
        conv->read_batch_norm_input_grad(bn);
      }
    }
  }
}

template <typename T>
class SequentialT : public LayerT<T> {
 public:
  explicit SequentialT(std::string name = "sequential") : LayerT<T>(std::move(name)) {}

  std::string type() const override { return "Sequential"; }

  // An inference forward whose intermediate outputs are recycled through the model's own
  // pool (layers/activation_pool.hpp), a large batch in equal micro-batches of at most
  // infer_micro_batch() samples: each micro-batch flows through a few buffers that stay in
  // cache instead of one fresh buffer per layer. MobileNetV2 at 96x96, batch 32, 2 threads:
  // 24.0 ms with a buffer per layer, 21.7 ms pooled, less again in micro-batches of 16.
  // Only the returned output is valid afterwards; forward(x, false) keeps every layer's.
  const Tensor<T>& infer(ConstView<T> x) {
    const int64_t n = x.rank() > 0 ? x.dim(0) : 0;
    if (n <= infer_micro_batch()) {
      typename ActivationPoolT<T>::Scope scope(inference_pool_);
      return this->forward(x, false);
    }
    infer_output_.resize(this->output_shape().with_leading(n));
    infer_into(x, infer_output_.view());
    return infer_output_;
  }
  // infer() written into `out` (x's batch, this model's output shape), micro-batch by
  // micro-batch, so the rows are copied once (the training graph's frozen prefix writes
  // its features this way).
  void infer_into(ConstView<T> x, TensorView<T> out) {
    if (!this->built_) this->build(x.shape().sample());
    const int64_t n = x.rank() > 0 ? x.dim(0) : 0, row = this->output_shape().size();
    if (out.size() != n * row)
      throw ShapeError("Sequential '" + this->name_ + "': infer_into needs an output of " +
                       this->output_shape().with_leading(n).str() + ", got " + out.shape().str());
    typename ActivationPoolT<T>::Scope scope(inference_pool_);
    const int64_t step = infer_step(n);
    for (int64_t i = 0; i < n; i += step) {
      const int64_t m = std::min(step, n - i);
      const Tensor<T>& y = this->forward(x.batch_slice(i, m), false);
      std::copy(y.data(), y.data() + m * row, out.data() + i * row);
    }
  }
  // Samples per infer() pass: what is alive while a layer runs (its input and all it
  // computes) within kInferActivationBudget for the whole micro-batch. The budget is also
  // the training graph's for its frozen prefix: 16 samples of MobileNetV2 at 96x96 (the
  // 48x48 block keeps ~1.9 MB per sample alive), large enough for the GEMMs to keep their
  // speed (batches of 4 were 15-30% slower per image), small enough to stay in L2 + L3.
  static constexpr int64_t kInferActivationBudget = 32 << 20;
  void set_infer_activation_budget(int64_t bytes) { infer_budget_ = std::max<int64_t>(1, bytes); }
  int64_t infer_micro_batch() const {
    const int64_t per_sample = infer_bytes_per_sample();
    return per_sample > 0 ? std::max<int64_t>(1, infer_budget_ / per_sample) : int64_t(1) << 20;
  }
  // Equal micro-batches for n samples: 32 at most 21 each run as 16 + 16, not 21 + 11.
  int64_t infer_step(int64_t n) const {
    const int64_t most = infer_micro_batch(), calls = (n + most - 1) / most;
    return calls > 0 ? (n + calls - 1) / calls : 1;
  }
  // Computed once per build or fold: a camera frame's infer() walks no layer tree and
  // allocates nothing for it.
  int64_t infer_bytes_per_sample() const {
    if (!this->built_) return 0;
    if (infer_bytes_per_sample_ >= 0) return infer_bytes_per_sample_;
    int64_t in = this->input_shape().size(), most = 0;
    for (auto& l : layers_) {
      most = std::max(most, (in + seq_detail::activation_elements(*l)) * int64_t(sizeof(T)));
      in = l->output_shape().size();
    }
    return infer_bytes_per_sample_ = most;
  }

  // {"name", "layers": [{"class_name", "config"}, ...]}: Keras' Sequential config.
  nlohmann::json config() const override {
    nlohmann::json layers = nlohmann::json::array();
    for (auto& l : layers_) layers.push_back({{"class_name", l->type()}, {"config", l->config()}});
    return {{"name", this->name_}, {"layers", std::move(layers)}};
  }

  // Constructs L(args...) at the end of the model and returns it.
  template <class L, class... A>
  L& add(A&&... args) {
    auto p = std::make_unique<L>(std::forward<A>(args)...);
    L& ref = *p;
    add(std::unique_ptr<LayerT<T>>(std::move(p)));
    return ref;
  }
  LayerT<T>& add(std::unique_ptr<LayerT<T>> layer) {
    if (!layer) throw ConfigError("Sequential '" + this->name_ + "': cannot add a null layer");
    for (const std::string& n : names_in(*layer))
      if (n == this->name_ || find_layer(n))
        throw ConfigError("Sequential '" + this->name_ + "': a layer named '" + n +
                          "' is already in the model; layer names must be unique");
    layers_.push_back(std::move(layer));
    // A built model rebuilds lazily (built children keep their shapes).
    this->built_ = false;
    infer_bytes_per_sample_ = -1;
    return *layers_.back();
  }

  // Direct children, model order.
  std::vector<LayerT<T>*> layers() const {
    std::vector<LayerT<T>*> out;
    for (auto& l : layers_) out.push_back(l.get());
    return out;
  }
  std::vector<LayerT<T>*> children() override { return layers(); }
  size_t size() const { return layers_.size(); }

  // Searches the whole tree (children, their children, ...); null when absent.
  LayerT<T>* find_layer(const std::string& name) const {
    return seq_detail::find_layer_in(layers(), name);
  }
  LayerT<T>& layer(const std::string& name) const {
    if (auto* l = find_layer(name)) return *l;
    throw Error("Sequential '" + this->name_ + "': no layer named '" + name + "'");
  }

  std::vector<ParameterT<T>*> parameters() override {
    std::vector<ParameterT<T>*> out = LayerT<T>::parameters();
    for (auto& l : layers_)
      for (auto* p : l->parameters()) out.push_back(p);
    return out;
  }

  bool has_trainable_parameters() override {
    if (LayerT<T>::has_trainable_parameters()) return true;
    for (auto& l : layers_)
      if (l->has_trainable_parameters()) return true;
    return false;
  }

  // Keras semantics: setting trainable on a container sets it on every sublayer.
  void set_trainable(bool t) override {
    LayerT<T>::set_trainable(t);
    for (auto& l : layers_) l->set_trainable(t);
  }

  void summary_rows(std::vector<SummaryRow>& rows, int depth = 0) override {
    for (auto& l : layers_) l->summary_rows(rows, depth + 1);
  }

  // Folds each conv + BatchNormalization (+ ReLU/ReLU6) run into the convolution
  // (models/fold.hpp), recursively; the model is inference-only afterwards.
  void fold_for_inference() override {
    link_deferred_batch_norms(layers_, nullptr);  // folding removes the batch norms
    fold_layer_sequence(layers_);
    find_first_run();
    infer_bytes_per_sample_ = -1;
    this->inference_only_ = true;
  }

  // Keras model.summary() text. With expand_nested=false each direct child is one
  // row (a nested container shows its total parameter count).
  std::string summary(bool expand_nested = true) {
    if (!this->built_)
      throw Error("Sequential '" + this->name_ +
                  "': summary() needs a built model; call build(input_shape) or forward first");
    std::vector<SummaryRow> rows;
    for (auto& l : layers_) {
      if (expand_nested)
        l->summary_rows(rows, 0);
      else
        rows.push_back({l->name(), l->type(), l->output_shape(), l->count_params(false), 0});
    }
    return seq_detail::format_summary(this->name_, rows, this->count_params(false),
                                      this->count_params(true));
  }

 protected:
  Shape build_impl(const Shape& in) override {
    Shape s = in;
    for (auto& l : layers_) s = l->build(s);
    for (size_t i = 0; i + 1 < layers_.size(); ++i) {
      if (auto* bn = dynamic_cast<BatchNormalizationT<T>*>(layers_[i].get()))
        bn->fuse_activation(layers_[i + 1].get());
      layers_[i + 1]->absorb_previous(layers_[i].get());
    }
    find_first_run();
    link_deferred_batch_norms(layers_, [this](size_t i) { return absorbed(i); });
    infer_bytes_per_sample_ = -1;
    return s;
  }
  // Whether layer i is done by a neighbour (LayerT::absorbed_next(), absorbed_previous()).
  void find_first_run() {
    first_run_ = 0;
    while (first_run_ + 1 < layers_.size() && absorbed(first_run_)) ++first_run_;
  }
  bool absorbed(size_t i) const {
    return (i > 0 && layers_[i - 1]->absorbed_next() == layers_[i].get()) ||
           (i + 1 < layers_.size() && layers_[i + 1]->absorbed_previous() == layers_[i].get());
  }

  const Tensor<T>& forward_impl(ConstView<T> x, bool training) override {
    if (layers_.empty()) {  // identity
      this->output_.copy_from(x);
      return this->output_;
    }
    // In an inference pass with a pool (layers/activation_pool.hpp), each output goes back
    // to the pool as soon as the next layer has read it.
    ActivationPoolT<T>* pool = training ? nullptr : ActivationPoolT<T>::current();
    const Tensor<T>* y = nullptr;
    ConstView<T> cur = x;
    LayerT<T>* previous = nullptr;
    for (size_t i = 0; i < layers_.size(); ++i) {
      if (absorbed(i)) continue;
      y = &layers_[i]->forward(cur, training);
      if (!layers_[i]->output_deferred()) cur = y->view();
      if (pool && previous) previous->release_activations(*pool);
      previous = layers_[i].get();
    }
    return *y;
  }
  bool pools_output() const override { return layers_.empty(); }

  const Tensor<T>& backward_impl(ConstView<T> dy, bool need_input_grad) override {
    const size_t n = layers_.size();
    if (n == 0) {
      if (!need_input_grad) return this->empty_;
      this->input_grad_tensor(dy.shape());
      std::copy(dy.data(), dy.data() + dy.size(), this->dinput_.data());
      return this->dinput_;
    }
    // earlier_trainable_[i]: some child before i has a trainable parameter.
    earlier_trainable_.assign(n, false);
    for (size_t i = 1; i < n; ++i)
      earlier_trainable_[i] =
          earlier_trainable_[i - 1] || layers_[i - 1]->has_trainable_parameters();
    std::optional<typename ActivationPoolT<T>::Scope> scope;
    if (!ActivationPoolT<T>::current_gradients())
      scope.emplace(gradient_pool_, ActivationPoolT<T>::gradients);
    ActivationPoolT<T>& pool = *ActivationPoolT<T>::current_gradients();
    ConstView<T> cur = dy;
    LayerT<T>* producer = nullptr;  // the child whose dL/dx `cur` is
    for (size_t k = n; k-- > 0;) {
      if (absorbed(k)) continue;
      const bool need_dx = need_input_grad || earlier_trainable_[k];
      if (!need_dx && !layers_[k]->has_trainable_parameters()) break;
      const Tensor<T>& g = layers_[k]->backward(cur, need_dx);
      if (layers_[k]->input_grad_deferred()) continue;  // cur and its buffer go on
      if (producer) producer->release_input_grad(pool);
      if (!need_dx) break;  // nothing earlier needs a gradient
      if (k == first_run_) return g;
      cur = g.view();
      producer = layers_[k].get();
    }
    return this->empty_;
  }

 public:
  // LayerT's version walks children(), which builds a vector: an allocation per call.
  void release_activations(ActivationPoolT<T>& pool) override {
    pool.put(std::move(this->output_));
    for (auto& l : layers_) l->release_activations(pool);
  }
  // The dL/dx this container returned is its first child's (or its own, when empty).
  void release_input_grad(ActivationPoolT<T>& pool) override {
    if (layers_.empty())
      LayerT<T>::release_input_grad(pool);
    else
      layers_[first_run_]->release_input_grad(pool);
  }

 private:
  // Names of a layer and of everything inside it.
  static std::vector<std::string> names_in(LayerT<T>& l) {
    std::vector<std::string> out{l.name()};
    for (auto* c : l.children())
      for (auto& s : names_in(*c)) out.push_back(s);
    return out;
  }

  std::vector<std::unique_ptr<LayerT<T>>> layers_;
  std::vector<bool> earlier_trainable_;
  size_t first_run_ = 0;  // the first child forward runs (one before it may be absorbed)
  ActivationPoolT<T> gradient_pool_;   // used when no outer container installed one
  ActivationPoolT<T> inference_pool_;  // infer()'s
  Tensor<T> infer_output_;             // infer()'s result when it ran micro-batches
  int64_t infer_budget_ = kInferActivationBudget;
  mutable int64_t infer_bytes_per_sample_ = -1;  // -1: not yet computed for this build
};

using Sequential = SequentialT<float>;

}  // namespace minicnn
