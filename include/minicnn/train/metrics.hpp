// Classification metrics with Keras' definitions:
//   categorical accuracy: argmax(y_pred) == label, the first maximum winning ties (tf.argmax);
//   top-k accuracy: the label is among the k best scores, ties at the boundary counted in
//     (tf.math.in_top_k: fewer than k classes score strictly higher than the label);
// and, after training, the confusion matrix, per-class precision, recall, F1 and support
// (scikit-learn's definitions; a ratio with a zero denominator is 0), macro and weighted
// averages, and the misclassified samples ordered by how confident the mistake was.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/tensor.hpp"

namespace minicnn {

inline int64_t argmax_row(const float* p, int64_t k) {
  int64_t best = 0;
  for (int64_t j = 1; j < k; ++j)
    if (p[j] > p[best]) best = j;
  return best;
}

inline bool in_top_k(const float* p, int64_t classes, int64_t label, int64_t k) {
  const float t = p[label];
  if (!std::isfinite(t)) return false;
  int64_t higher = 0;
  for (int64_t j = 0; j < classes; ++j) higher += p[j] > t;
  return higher < k;
}

struct ClassMetrics {
  std::string name;
  double precision = 0, recall = 0, f1 = 0;
  int64_t support = 0;  // samples of this class
};

struct Misclassified {
  size_t sample = 0;  // position in the evaluated data
  int label = 0, predicted = 0;
  double probability = 0;  // of the predicted class
  double label_probability = 0;
};

struct ClassificationReport {
  std::vector<std::string> class_names;
  std::vector<std::vector<int64_t>> confusion;  // [true][predicted]
  std::vector<ClassMetrics> per_class;
  double accuracy = 0, macro_precision = 0, macro_recall = 0, macro_f1 = 0, weighted_f1 = 0;
  int64_t samples = 0;
  std::vector<Misclassified> mistakes;  // most confident first
};

// Report for predicted probabilities `probs` (n, classes) against integer `labels`.
inline ClassificationReport classification_report(ConstView<float> probs,
                                                  const std::vector<int>& labels,
                                                  const std::vector<std::string>& class_names) {
  if (probs.rank() != 2 || probs.dim(0) != static_cast<int64_t>(labels.size()))
    throw ShapeError("classification_report: predictions of shape " + probs.shape().str() +
                     " need one row per label (" + std::to_string(labels.size()) + ")");
  const int64_t k = probs.dim(1), n = probs.dim(0);
  if (!class_names.empty() && static_cast<int64_t>(class_names.size()) != k)
    throw ShapeError("classification_report: " + std::to_string(class_names.size()) +
                     " class names for " + std::to_string(k) + " outputs");
  ClassificationReport r;
  r.class_names = class_names;
  if (r.class_names.empty())
    for (int64_t j = 0; j < k; ++j) r.class_names.push_back(std::to_string(j));
  r.confusion.assign(size_t(k), std::vector<int64_t>(size_t(k), 0));
  r.samples = n;
  int64_t correct = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int label = labels[size_t(i)];
    if (label < 0 || label >= k)
      throw ConfigError("classification_report: label " + std::to_string(label) + " of sample " +
                        std::to_string(i) + " is outside 0.." + std::to_string(k - 1));
    const float* p = probs.data() + i * k;
    const int pred = static_cast<int>(argmax_row(p, k));
    ++r.confusion[size_t(label)][size_t(pred)];
    if (pred == label)
      ++correct;
    else
      r.mistakes.push_back({size_t(i), label, pred, p[pred], p[label]});
  }
  r.accuracy = n ? double(correct) / double(n) : 0.0;
  double wf1 = 0;
  for (int64_t c = 0; c < k; ++c) {
    int64_t tp = r.confusion[size_t(c)][size_t(c)], predicted = 0, actual = 0;
    for (int64_t j = 0; j < k; ++j) {
      predicted += r.confusion[size_t(j)][size_t(c)];
      actual += r.confusion[size_t(c)][size_t(j)];
    }
    ClassMetrics m;
    m.name = r.class_names[size_t(c)];
    m.support = actual;
    m.precision = predicted ? double(tp) / double(predicted) : 0.0;
    m.recall = actual ? double(tp) / double(actual) : 0.0;
    m.f1 = m.precision + m.recall > 0 ? 2 * m.precision * m.recall / (m.precision + m.recall) : 0.0;
    r.macro_precision += m.precision / double(k);
    r.macro_recall += m.recall / double(k);
    r.macro_f1 += m.f1 / double(k);
    wf1 += m.f1 * double(actual);
    r.per_class.push_back(m);
  }
  r.weighted_f1 = n ? wf1 / double(n) : 0.0;
  std::stable_sort(
      r.mistakes.begin(), r.mistakes.end(),
      [](const Misclassified& a, const Misclassified& b) { return a.probability > b.probability; });
  return r;
}

// Fraction of rows whose label is in the top k (Keras' top_k_categorical_accuracy).
inline double top_k_accuracy(ConstView<float> probs, const std::vector<int>& labels, int64_t k) {
  const int64_t n = probs.dim(0), classes = probs.dim(1);
  int64_t hit = 0;
  for (int64_t i = 0; i < n; ++i)
    hit += in_top_k(probs.data() + i * classes, classes, labels[size_t(i)], k);
  return n ? double(hit) / double(n) : 0.0;
}

}  // namespace minicnn
