// CategoricalCrossentropyT<T>: Keras' categorical crossentropy, mean over the batch,
// plus categorical accuracy.
//
// Inputs are (..., K) with classes on the last axis; every leading index is one sample.
// Probabilities (from_logits == false), exactly as Keras' backend does it: each row is
// divided by its sum, clipped to [1e-7, 1 - 1e-7] (the bounds rounded to T, as Keras
// does in float32), and loss = -sum(y_true * log(p)). From logits: a fused, max-shifted
// log-softmax, so logits of +-1000 give finite, exact losses. Label smoothing s replaces
// y_true by y_true * (1 - s) + s / K before either form.
//
// Note: tf.keras silently switches to the logits form when y_pred comes straight from
// a softmax op; minicnn does not look through layers, so models that end in Softmax
// get the clipped probability form. Prefer a linear head with from_logits = true.
//
// backward() returns the exact gradient of the forward value with respect to y_pred,
// including the normalisation and the clip (zero through clipped entries, as TF's
// clip_by_value gradient). Sums are accumulated in double whatever T is.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>

#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../core/tensor.hpp"

namespace minicnn {

template <typename T>
class CategoricalCrossentropyT {
 public:
  // Keras' backend epsilon: the clip margin of the probability form.
  static constexpr double kEpsilon = 1e-7;

  explicit CategoricalCrossentropyT(bool from_logits = false, double label_smoothing = 0.0)
      : from_logits_(from_logits), label_smoothing_(label_smoothing) {
    if (!(label_smoothing >= 0.0 && label_smoothing <= 1.0))
      throw ConfigError("CategoricalCrossentropy: label_smoothing must be in [0, 1], got " +
                        std::to_string(label_smoothing));
  }

  bool from_logits() const { return from_logits_; }
  double label_smoothing() const { return label_smoothing_; }

  // Mean loss over the samples; also computes the gradient that backward() returns.
  double forward(ConstView<T> y_pred, ConstView<T> y_true) {
    const int64_t k = check_shapes(y_pred, y_true);
    const int64_t rows = y_pred.size() / k;
    grad_.resize(y_pred.shape());
    const double s = label_smoothing_;
    const double inv_rows = 1.0 / static_cast<double>(rows);
    double total = 0.0;
    for (int64_t r = 0; r < rows; ++r) {
      const T* p = y_pred.data() + r * k;
      const T* t = y_true.data() + r * k;
      T* g = grad_.data() + r * k;
      auto label = [&](int64_t j) { return double(t[j]) * (1.0 - s) + s / double(k); };
      total += from_logits_ ? row_from_logits(p, k, label, g, inv_rows)
                            : row_from_probs(p, k, label, g, inv_rows);
    }
    double loss = total * inv_rows;
    if (!std::isfinite(loss)) {
      std::ostringstream msg;
      msg << "CategoricalCrossentropy: loss is " << loss << " for y_pred of shape "
          << y_pred.shape().str() << " (non-finite predictions or labels?)";
      throw NumericError(msg.str());
    }
    has_forward_ = true;
    return loss;
  }

  // dL/dy_pred of the last forward, where L is the mean loss it returned.
  const Tensor<T>& backward() const {
    if (!has_forward_) throw Error("CategoricalCrossentropy: backward called before forward");
    return grad_;
  }

  // Number of samples whose argmax of y_pred equals the argmax of y_true
  // (first maximum wins on ties, as np.argmax).
  static int64_t count_correct(ConstView<T> y_pred, ConstView<T> y_true) {
    const int64_t k = check_shapes(y_pred, y_true);
    const int64_t rows = y_pred.size() / k;
    int64_t correct = 0;
    for (int64_t r = 0; r < rows; ++r) {
      const T* p = y_pred.data() + r * k;
      const T* t = y_true.data() + r * k;
      if (std::max_element(p, p + k) - p == std::max_element(t, t + k) - t) ++correct;
    }
    return correct;
  }
  // Keras' categorical_accuracy averaged over the samples.
  static double accuracy(ConstView<T> y_pred, ConstView<T> y_true) {
    const int64_t k = check_shapes(y_pred, y_true);
    return double(count_correct(y_pred, y_true)) / double(y_pred.size() / k);
  }

 private:
  // Returns the number of classes.
  static int64_t check_shapes(ConstView<T> y_pred, ConstView<T> y_true) {
    if (y_pred.shape() != y_true.shape())
      throw ShapeError("CategoricalCrossentropy: y_pred has shape " + y_pred.shape().str() +
                       " but y_true has shape " + y_true.shape().str() + "; they must match");
    if (y_pred.rank() < 1 || y_pred.size() == 0)
      throw ShapeError("CategoricalCrossentropy: y_pred of shape " + y_pred.shape().str() +
                       " is empty; expected (batch, classes)");
    return y_pred.shape()[y_pred.rank() - 1];
  }

  // Loss of one row from logits z; writes its gradient (scaled by `scale`, 1/rows) into g.
  // d/dz_j [ -sum_i y_i log softmax(z)_i ] = softmax(z)_j * sum_i y_i - y_j.
  template <typename Label>
  static double row_from_logits(const T* z, int64_t k, Label label, T* g, double scale) {
    double zmax = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < k; ++j) zmax = std::max(zmax, double(z[j]));
    double sum_exp = 0.0;
    for (int64_t j = 0; j < k; ++j) sum_exp += std::exp(double(z[j]) - zmax);
    const double log_sum = std::log(sum_exp);
    double loss = 0.0, ysum = 0.0;
    for (int64_t j = 0; j < k; ++j) {
      double y = label(j);
      double log_p = double(z[j]) - zmax - log_sum;
      // 0 * log p is 0 even where p underflowed, as the y == 0 terms vanish.
      if (y != 0.0) loss -= y * log_p;
      ysum += y;
    }
    for (int64_t j = 0; j < k; ++j) {
      double p = std::exp(double(z[j]) - zmax - log_sum);
      g[j] = static_cast<T>((p * ysum - label(j)) * scale);
    }
    return loss;
  }

  // Loss of one row from (unnormalised) probabilities p, Keras' clipped form.
  // With S = sum p, q = p / S, c = clip(q): dL/dc_j = -y_j / c_j, dc/dq = 1 inside the
  // clip range else 0, and dL/dp_i = (h_i - sum_j h_j q_j) / S with h = dL/dq.
  template <typename Label>
  static double row_from_probs(const T* p, int64_t k, Label label, T* g, double scale) {
    // The clip bounds as T, because Keras clips in the tensor's own precision.
    const double lo = double(static_cast<T>(kEpsilon));
    const double hi = double(static_cast<T>(T(1) - static_cast<T>(kEpsilon)));
    double sum = 0.0;
    for (int64_t j = 0; j < k; ++j) sum += double(p[j]);
    // TF passes the gradient at the bounds themselves (clipped only when strictly outside).
    auto dl_dq = [&](int64_t j, double q) {
      return (q < lo || q > hi) ? 0.0 : -label(j) / std::min(std::max(q, lo), hi);
    };
    double loss = 0.0, hq = 0.0;
    for (int64_t j = 0; j < k; ++j) {
      double q = double(p[j]) / sum;
      loss -= label(j) * std::log(std::min(std::max(q, lo), hi));
      hq += dl_dq(j, q) * q;
    }
    for (int64_t j = 0; j < k; ++j) {
      double q = double(p[j]) / sum;
      g[j] = static_cast<T>((dl_dq(j, q) - hq) / sum * scale);
    }
    return loss;
  }

  bool from_logits_;
  double label_smoothing_;
  bool has_forward_ = false;
  Tensor<T> grad_;
};

using CategoricalCrossentropy = CategoricalCrossentropyT<float>;

}  // namespace minicnn
