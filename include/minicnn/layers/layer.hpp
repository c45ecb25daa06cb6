// LayerT<T>: the base of every layer, and ParameterT<T>, a named weight.
//
// Contract (the one sentence every layer honours): `forward(x, training)` returns
// y = f(x) in a buffer the layer owns and remembers a view of x; `backward(dy)`
// receives dL/dy for that same forward call, ADDS dL/dparams into each trainable
// parameter's `grad`, and WRITES dL/dx into a layer-owned buffer that it returns
// (skipped, returning an empty tensor, when need_input_grad is false).
// The caller keeps x alive between forward and backward (Sequential does).
//
// Shapes given to `build` and returned by `output_shape` exclude the batch
// dimension, as in Keras' (None, ...): a Conv2D built on (96, 96, 3) accepts any
// batch of 96x96x3 images. Buffers are resized per call and reallocate only when
// they grow, so a training loop allocates in its first step only.
//
// A frozen layer (trainable == false) runs in inference mode (Dropout excepted, as in
// Keras: it has no weights and only the training flag switches it), adds no gradients,
// and still propagates dL/dx when asked, so layers before it can train.
#pragma once
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../core/tensor.hpp"
#include "../kernels/activation.hpp"
#include "activation_pool.hpp"

namespace minicnn {

// Per-layer timing (mcnn bench --profile, train_step --profile): when set, every leaf
// layer (one without children) reports the wall time of each forward call, and of each
// backward call to backward_observer(). Off by default; costs one branch per call.
using ForwardObserver = void (*)(const std::string& name, const std::string& type, double seconds);
inline ForwardObserver& forward_observer() {
  static ForwardObserver observer = nullptr;
  return observer;
}
inline ForwardObserver& backward_observer() {
  static ForwardObserver observer = nullptr;
  return observer;
}

// While one is alive on a thread, the parameters layers create there (add_parameter) may
// hold at most `elements` values in all; one more throws FormatError naming `where`. Loading
// a model file builds the network its metadata describes before reading the weights, and
// every parameter must come from the file, so the file's own tensors are the budget: a
// crafted config cannot make the build allocate more than the file's size justifies.
class ParameterBudget {
 public:
  ParameterBudget(int64_t elements, std::string where)
      : left_(elements), where_(std::move(where)), outer_(current()) {
    current() = this;
  }
  ~ParameterBudget() { current() = outer_; }
  ParameterBudget(const ParameterBudget&) = delete;
  ParameterBudget& operator=(const ParameterBudget&) = delete;

  static ParameterBudget*& current() {
    static thread_local ParameterBudget* budget = nullptr;
    return budget;
  }
  void take(const std::string& name, const Shape& shape) {
    int64_t n = 1;  // saturating: shapes from a file may multiply past int64
    for (int64_t d : shape) n = (d != 0 && n > left_ / d) ? left_ + 1 : n * d;
    if (n > left_)
      throw FormatError(where_ + ": parameter '" + name + "' of shape " + shape.str() +
                        " does not fit in the " + std::to_string(left_) +
                        " values the file has left; the model config asks for more parameters "
                        "than the file stores");
    left_ -= n;
  }

 private:
  int64_t left_;
  std::string where_;
  ParameterBudget* outer_;
};

template <typename T>
struct ParameterT {
  std::string name;  // "<layer>/<weight>", e.g. "block_3_depthwise/depthwise_kernel"
  Tensor<T> value;
  Tensor<T> grad;         // same shape as value when the parameter can train, else empty
  bool trainable = true;  // false when the owning layer is frozen, and always for state
  bool is_state =
      false;  // BatchNormalization moving statistics: updated by forward, not by optimizers

  ParameterT() = default;
  ParameterT(std::string n, const Shape& shape, bool state = false)
      : name(std::move(n)), value(shape, T(0)), trainable(!state), is_state(state) {
    if (!state) grad = Tensor<T>(shape, T(0));
  }
  void zero_grad() { grad.zero(); }
};

// One row of a Keras-style summary table.
struct SummaryRow {
  std::string name, type;
  Shape output_shape;  // without batch
  int64_t params = 0;
  int depth = 0;
};

template <typename T>
class LayerT {
 public:
  explicit LayerT(std::string name) : name_(std::move(name)) {}
  virtual ~LayerT() = default;
  LayerT(const LayerT&) = delete;
  LayerT& operator=(const LayerT&) = delete;

  const std::string& name() const { return name_; }
  // Keras class name: "Conv2D", "BatchNormalization", ...
  virtual std::string type() const = 0;
  // Keras get_config(): the constructor arguments that rebuild this layer
  // (models/layer_config.hpp turns {"class_name": type(), "config": config()} back into one).
  // Trainability is not part of it: a model file lists its frozen layers separately.
  virtual nlohmann::json config() const { return {{"name", name_}}; }

  // Validates `input_shape` (no batch dimension), creates parameters, returns the output shape.
  // Building again on the same shape is a no-op; on another shape it is an error
  // once parameters exist (their shapes would change).
  Shape build(const Shape& input_shape) {
    if (built_) {
      if (input_shape != input_shape_)
        throw ShapeError(type() + " '" + name_ + "': already built for input " +
                         input_shape_.str() + ", cannot rebuild for " + input_shape.str());
      return output_shape_;
    }
    for (int i = 0; i < input_shape.rank(); ++i)
      if (input_shape[i] == 0)
        throw ShapeError(type() + " '" + name_ + "': input shape " + input_shape.str() +
                         " has a zero-sized dimension");
    output_shape_ = build_impl(input_shape);
    input_shape_ = input_shape;
    built_ = true;
    return output_shape_;
  }
  bool built() const { return built_; }
  const Shape& input_shape() const { return input_shape_; }
  const Shape& output_shape() const { return output_shape_; }

  // y = f(x); x has shape (N, input_shape...). Builds on first use if needed.
  const Tensor<T>& forward(ConstView<T> x, bool training = false) {
    if (x.rank() == 0)
      throw ShapeError(type() + " '" + name_ + "': input is a scalar, expected a batch");
    if (!built_) build(x.shape().sample());
    check_input(x.shape());
    if (training && inference_only_)
      throw Error(type() + " '" + name_ +
                  "': was folded for inference (BatchNormalization merged into "
                  "convolutions); build an unfolded model to train it");
    input_ = x;
    last_training_ = training;
    if (!training && output_.capacity() == 0 && pools_output())
      if (auto* pool = ActivationPoolT<T>::current())
        output_ = pool->take(output_shape_.size() * x.dim(0));
    if (ForwardObserver obs = forward_observer(); obs && children().empty()) {
      auto t0 = std::chrono::steady_clock::now();
      const Tensor<T>& y = forward_impl(x, training);
      obs(name_, type(),
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      return y;
    }
    return forward_impl(x, training);
  }
  // See the contract at the top of this file.
  const Tensor<T>& backward(ConstView<T> dy, bool need_input_grad = true) {
    if (!built_) throw Error(type() + " '" + name_ + "': backward called before forward");
    Shape expect = output_shape_.with_leading(input_.shape()[0]);
    if (dy.shape() != expect)
      throw ShapeError(type() + " '" + name_ + "': gradient has shape " + dy.shape().str() +
                       ", expected " + expect.str() + " (the output of the last forward)");
    if (ForwardObserver obs = backward_observer(); obs && children().empty()) {
      auto t0 = std::chrono::steady_clock::now();
      const Tensor<T>& g = backward_impl(dy, need_input_grad);
      obs(name_, type(),
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      return g;
    }
    return backward_impl(dy, need_input_grad);
  }

  // Layers whose output is a softmax over the last axis (Dense with activation "softmax",
  // Softmax) expose the logits z and a backward that starts from dL/dz, so that a
  // cross-entropy loss is computed from logits, as TF does for a softmax output
  // (exact and finite where the probabilities underflow).
  virtual bool softmax_output() const { return false; }
  virtual ConstView<T> logits() const {
    throw Error(type() + " '" + name_ + "': has no softmax output, so no logits");
  }
  // Like backward(), but given dL/dz for the logits of the last forward.
  const Tensor<T>& backward_from_logits(ConstView<T> dz, bool need_input_grad = true) {
    if (!softmax_output())
      throw Error(type() + " '" + name_ + "': backward_from_logits on a layer without softmax");
    Shape expect = output_shape_.with_leading(input_.shape()[0]);
    if (dz.shape() != expect)
      throw ShapeError(type() + " '" + name_ + "': logits gradient has shape " + dz.shape().str() +
                       ", expected " + expect.str());
    return backward_logits_impl(dz, need_input_grad);
  }

  // This layer's parameters and those of its children (containers), model order.
  virtual std::vector<ParameterT<T>*> parameters() {
    std::vector<ParameterT<T>*> out;
    for (auto& p : params_) out.push_back(p.get());
    return out;
  }
  // Direct children (containers only).
  virtual std::vector<LayerT<T>*> children() { return {}; }
  // Whether any parameter of this layer or of its children can train. Containers call it
  // on every backward, so it must not allocate (containers override it).
  virtual bool has_trainable_parameters() {
    for (auto& p : params_)
      if (p->trainable) return true;
    return false;
  }

  bool trainable() const { return trainable_; }
  // Freezing a layer makes all its parameters (and its children's) non-trainable
  // and switches it to inference mode.
  virtual void set_trainable(bool t) {
    trainable_ = t;
    for (auto& p : params_) {
      if (p->is_state) continue;
      p->trainable = t;
      if (t && p->grad.shape() != p->value.shape()) p->grad = Tensor<T>(p->value.shape(), T(0));
      if (!t) p->grad = Tensor<T>();  // a frozen base's gradients would double its memory
    }
  }
  void zero_grad() {
    for (auto* p : parameters())
      if (p->trainable) p->zero_grad();
  }
  int64_t count_params(bool trainable_only) {
    int64_t n = 0;
    for (auto* p : parameters())
      if (!trainable_only || p->trainable) n += p->value.size();
    return n;
  }
  ParameterT<T>* find_parameter(const std::string& full_name) {
    for (auto* p : parameters())
      if (p->name == full_name) return p;
    return nullptr;
  }

  // Prepares the layer for fast inference: containers fold each frozen
  // BatchNormalization into the convolution before it and fuse the following ReLU /
  // ReLU6 into that convolution's epilogue. Afterwards the layer is inference-only
  // (its parameter set changed), and forward(training=true) is refused.
  virtual void fold_for_inference() {
    for (auto* c : children()) c->fold_for_inference();
    inference_only_ = true;
  }
  bool inference_only() const { return inference_only_; }

  // Hands every buffer that holds this layer's last inference output (its own, its
  // children's) to `pool`, once the next layer has read it (layers/activation_pool.hpp).
  virtual void release_activations(ActivationPoolT<T>& pool) {
    pool.put(std::move(output_));
    for (auto* c : children()) c->release_activations(pool);
  }

  // Hands the dL/dx buffer that the last backward returned back to `pool` once the caller
  // has consumed it (a gradient pool, layers/activation_pool.hpp). Containers return a
  // child's buffer, so they pass the call on to whoever owns it.
  virtual void release_input_grad(ActivationPoolT<T>& pool) { pool.put(std::move(dinput_)); }

  // The layer after this one in its container whose work this layer's forward and backward
  // already do (a BatchNormalization followed by a ReLU applies it itself), or null. The
  // container skips that layer in both passes.
  virtual LayerT<T>* absorbed_next() const { return nullptr; }
  // The reverse: the layer before this one whose work this layer does (a 'valid'
  // convolution padding its own input in place of a ZeroPadding2D), or null. The container
  // skips that layer and gives this one its input (absorb_previous() sets it up).
  virtual LayerT<T>* absorbed_previous() const { return nullptr; }
  // Called by a container on each built child with the layer before it; true when this
  // layer now does `previous`'s work (absorbed_previous() names it).
  virtual bool absorb_previous(LayerT<T>* /*previous*/) { return false; }
  // True when the last forward left its output for the next layer to make as it reads (a
  // training BatchNormalization whose normalisation the DepthwiseConv2D after it applies,
  // kernels/dwconv2d_bn_input.hpp). The forward then returned an empty tensor, and the
  // container hands the next layer this layer's input instead.
  virtual bool output_deferred() const { return false; }
  // The same in a backward: true when the last backward left dL/dx for the layer before it
  // to make as it reads (a BatchNormalization after a Conv2D, kernels::BnInputGrad). The
  // backward then returned an empty tensor; the container hands the layer before it this
  // layer's dy instead, and keeps dy's buffer out of the gradient pool until then.
  virtual bool input_grad_deferred() const { return false; }

  // Rows for summary(): containers expand to their children.
  virtual void summary_rows(std::vector<SummaryRow>& rows, int depth = 0) {
    int64_t n = 0;
    for (auto& p : params_) n += p->value.size();
    rows.push_back({name_, type(), output_shape_, n, depth});
  }

 protected:
  virtual Shape build_impl(const Shape& input_shape) = 0;
  virtual const Tensor<T>& forward_impl(ConstView<T> x, bool training) = 0;
  virtual const Tensor<T>& backward_impl(ConstView<T> dy, bool need_input_grad) = 0;
  virtual const Tensor<T>& backward_logits_impl(ConstView<T>, bool) {
    throw Error(type() + " '" + name_ + "': has no softmax output");
  }

  ParameterT<T>& add_parameter(const std::string& weight, const Shape& shape, bool state = false) {
    if (ParameterBudget* b = ParameterBudget::current()) b->take(name_ + "/" + weight, shape);
    params_.push_back(std::make_unique<ParameterT<T>>(name_ + "/" + weight, shape, state));
    if (!trainable_ && !state) {
      params_.back()->trainable = false;
      params_.back()->grad = Tensor<T>();
    }
    return *params_.back();
  }
  // An input shape (without batch) forward accepts besides input_shape(): the unpadded
  // input of an absorbed ZeroPadding2D (absorbed_previous()); null when none.
  virtual const Shape* alternative_input_shape() const { return nullptr; }
  void check_input(const Shape& s) const {
    auto matches = [&s](const Shape& in) {
      bool ok = s.rank() == in.rank() + 1;
      for (int i = 0; ok && i < in.rank(); ++i) ok = s[i + 1] == in[i];
      return ok;
    };
    const Shape* alt = alternative_input_shape();
    if (!matches(input_shape_) && !(alt && matches(*alt)))
      throw ShapeError(type() + " '" + name_ + "': input has shape " + s.str() + ", expected " +
                       input_shape_.batched_str());
    if (s[0] == 0) throw ShapeError(type() + " '" + name_ + "': input batch is empty " + s.str());
  }
  // dL/dx buffer for backward, sized like the last input; null when not wanted.
  T* input_grad_buffer(bool need_input_grad) {
    if (!need_input_grad) return nullptr;
    return input_grad_tensor(input_.shape()).data();
  }
  // dinput_ resized to `s`, taken from the gradient pool when one is installed and the
  // layer gave its buffer back after the previous backward.
  Tensor<T>& input_grad_tensor(const Shape& s) {
    if (dinput_.capacity() == 0)
      if (auto* pool = ActivationPoolT<T>::current_gradients()) dinput_ = pool->take(s.size());
    dinput_.resize(s);
    return dinput_;
  }
  // dL/d(pre-activation) of a layer whose activation is fused into its output: dy itself
  // when linear, else computed from the stored output into `scratch`.
  const T* preactivation_grad(Activation act, ConstView<T> dy, Tensor<T>& scratch) {
    if (act == Activation::Linear) return dy.data();
    scratch.resize(dy.shape());
    kernels::activate_backward(act, output_.data(), dy.data(), scratch.data(), dy.size());
    return scratch.data();
  }
  // Whether forward writes its result into output_ (containers return a child's output).
  virtual bool pools_output() const { return true; }
  // Whether this call should behave as in training (frozen layers never do).
  bool training_mode(bool training) const { return training && trainable_; }

  std::string name_;
  std::vector<std::unique_ptr<ParameterT<T>>> params_;
  bool trainable_ = true;
  bool built_ = false;
  bool last_training_ = false;
  bool inference_only_ = false;
  Shape input_shape_, output_shape_;
  ConstView<T> input_;  // the x of the last forward
  Tensor<T> output_;    // y
  Tensor<T> dinput_;    // dL/dx
  Tensor<T> empty_;
};

using Layer = LayerT<float>;
using Parameter = ParameterT<float>;

}  // namespace minicnn
