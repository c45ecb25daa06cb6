// Batch sources: what fit(), evaluate() and predict() read, Keras' Sequence / iterator.
// A source has `size()` samples, each with a class label, served in batches of
// `batch_size()` (the last one partial). With shuffle, epoch e visits the samples in a
// permutation drawn from KeyedRng(seed, e, kShuffleKey): a pure function of (seed, e), so
// a resumed run and any number of loader threads see the same order.
//   ArraySource:   in-memory inputs and labels (Keras' fit(x, y)).
//   FeatureSource: cached outputs of a model's frozen part, one row per sample (what fit()
//                  trains the head on when the inputs are not augmented).
//   ImageFlow (data/loader.hpp): decoded images, augmented and preprocessed by background
//                  threads.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/random.hpp"
#include "../core/tensor.hpp"

namespace minicnn {

struct Batch {
  Tensor<float> x;          // (n, sample shape...)
  Tensor<float> y;          // (n, classes), one-hot
  std::vector<size_t> ids;  // which samples (positions in the source)
  int64_t size() const { return static_cast<int64_t>(ids.size()); }
};

class BatchSource {
 public:
  static constexpr uint64_t kShuffleKey = 0x5348554646ULL;  // "SHUFF"

  BatchSource(int64_t batch_size, bool shuffle, uint64_t seed)
      : batch_size_(batch_size), shuffle_(shuffle), seed_(seed) {
    if (batch_size < 1)
      throw ConfigError("batch_size must be >= 1, got " + std::to_string(batch_size));
  }
  virtual ~BatchSource() = default;
  BatchSource(const BatchSource&) = delete;
  BatchSource& operator=(const BatchSource&) = delete;

  virtual size_t size() const = 0;
  virtual Shape sample_shape() const = 0;
  virtual int64_t num_classes() const = 0;
  virtual int label(size_t i) const = 0;
  // Whether the samples change from epoch to epoch (random augmentation).
  virtual bool augmented() const { return false; }
  // Samples [first, first + count) in source order as the network sees them, never
  // augmented: what a cache of a frozen part's outputs is computed from.
  virtual void plain_samples(size_t first, size_t count, float* out) const = 0;

  int64_t batch_size() const { return batch_size_; }
  bool shuffle() const { return shuffle_; }
  uint64_t seed() const { return seed_; }
  int64_t steps() const { return (static_cast<int64_t>(size()) + batch_size_ - 1) / batch_size_; }

  // The order in which epoch `epoch` visits the samples.
  std::vector<size_t> order(int epoch) const {
    std::vector<size_t> o(size());
    for (size_t i = 0; i < o.size(); ++i) o[i] = i;
    if (shuffle_) {
      KeyedRng rng(seed_, static_cast<uint64_t>(epoch), kShuffleKey);
      for (size_t i = o.size(); i > 1; --i) std::swap(o[i - 1], o[rng.below(i)]);
    }
    return o;
  }

  // Starts serving epoch `epoch` from its first batch.
  virtual void start_epoch(int epoch) {
    epoch_ = epoch;
    order_ = order(epoch);
    next_batch_ = 0;
  }
  // The next batch of the epoch; valid until the next call. Throws past the last batch.
  virtual const Batch& next() {
    const int64_t b = next_batch_++;
    if (b >= steps())
      throw Error("batch source: epoch " + std::to_string(epoch_) + " has only " +
                  std::to_string(steps()) + " batches");
    const int64_t first = b * batch_size_;
    const int64_t n = std::min<int64_t>(batch_size_, static_cast<int64_t>(size()) - first);
    fill_batch(order_.data() + first, n, epoch_, current_);
    return current_;
  }
  // Abandons the rest of the epoch (an interrupted fit).
  virtual void stop() {}

  // Fills `b` with the samples ids[0..n) as epoch `epoch` serves them. Must be safe to
  // call from several threads at once on different batches.
  virtual void fill_batch(const size_t* ids, int64_t n, int epoch, Batch& b) const = 0;

 protected:
  // Sizes b for n samples and writes ids and one-hot labels.
  void prepare_batch(const size_t* ids, int64_t n, Batch& b) const {
    b.x.resize(sample_shape().with_leading(n));
    b.y.resize(Shape{n, num_classes()});
    b.y.zero();
    b.ids.assign(ids, ids + n);
    for (int64_t i = 0; i < n; ++i) b.y.at(i, label(ids[i])) = 1.0f;
  }

  int64_t batch_size_;
  bool shuffle_;
  uint64_t seed_;
  int epoch_ = 0;
  std::vector<size_t> order_;
  int64_t next_batch_ = 0;
  Batch current_;
};

namespace batches_detail {
inline void check_labels(const std::vector<int>& labels, int64_t classes, const std::string& what) {
  if (classes < 1) throw ConfigError(what + ": need at least one class");
  for (size_t i = 0; i < labels.size(); ++i)
    if (labels[i] < 0 || labels[i] >= classes)
      throw ConfigError(what + ": label " + std::to_string(labels[i]) + " of sample " +
                        std::to_string(i) + " is outside 0.." + std::to_string(classes - 1));
}
}  // namespace batches_detail

// Rows of an in-memory tensor with integer labels.
class ArraySource : public BatchSource {
 public:
  ArraySource(Tensor<float> x, std::vector<int> labels, int64_t classes, int64_t batch_size = 32,
              bool shuffle = true, uint64_t seed = 0)
      : BatchSource(batch_size, shuffle, seed),
        x_(std::move(x)),
        labels_(std::move(labels)),
        classes_(classes) {
    if (x_.rank() < 2 || x_.dim(0) != static_cast<int64_t>(labels_.size()))
      throw ShapeError("ArraySource: inputs of shape " + x_.shape().str() +
                       " need one row per label (" + std::to_string(labels_.size()) + " labels)");
    batches_detail::check_labels(labels_, classes_, "ArraySource");
  }
  size_t size() const override { return labels_.size(); }
  Shape sample_shape() const override { return x_.shape().sample(); }
  int64_t num_classes() const override { return classes_; }
  int label(size_t i) const override { return labels_[i]; }
  void plain_samples(size_t first, size_t count, float* out) const override {
    const int64_t row = sample_shape().size();
    std::copy(x_.data() + first * row, x_.data() + (first + count) * row, out);
  }
  void fill_batch(const size_t* ids, int64_t n, int, Batch& b) const override {
    prepare_batch(ids, n, b);
    const int64_t row = sample_shape().size();
    for (int64_t i = 0; i < n; ++i)
      std::copy(x_.data() + ids[i] * row, x_.data() + (ids[i] + 1) * row, b.x.data() + i * row);
  }
  const Tensor<float>& inputs() const { return x_; }

 private:
  Tensor<float> x_;
  std::vector<int> labels_;
  int64_t classes_;
};

// Cached rows (e.g. a frozen base's outputs) standing in for another source's samples:
// same labels, same batch size, same shuffle order.
class FeatureSource : public ArraySource {
 public:
  FeatureSource(Tensor<float> features, const BatchSource& like)
      : ArraySource(std::move(features), labels_of(like), like.num_classes(), like.batch_size(),
                    like.shuffle(), like.seed()) {}

 private:
  static std::vector<int> labels_of(const BatchSource& s) {
    std::vector<int> l(s.size());
    for (size_t i = 0; i < l.size(); ++i) l[i] = s.label(i);
    return l;
  }
};

}  // namespace minicnn
