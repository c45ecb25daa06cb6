// ImageFlow: batches of images from an ImageFolder (Keras' flow_from_directory iterator),
// augmented and preprocessed by background threads while the network works.
//
// Each sample goes: uint8 image -> augmentation (data/augment.hpp; float, [0, 255] units,
// Keras' ImageDataGenerator) -> preprocessing (x/127.5 - 1 or x/255, written straight into
// the batch tensor). If the augmentation options set Keras' `rescale`, that multiplier is
// the whole normalisation and `preprocess` is not applied (Keras' generator has no other).
// The augmentation of image i in epoch e draws from KeyedRng(seed ^ kAugmentSalt, e, i),
// with i the image's index in the folder, and the epoch's order from the shuffle key
// (train/batches.hpp): batches do not depend on the number of workers, and a resumed run
// sees what the uninterrupted one would have.
// Workers fill a ring of `queue` batch slots ahead of the consumer (bounded memory: queue
// batches); next() hands out the slot of the next batch and takes back the previous one.
#pragma once
#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../core/error.hpp"
#include "../core/random.hpp"
#include "../train/batches.hpp"
#include "augment.hpp"
#include "folder.hpp"
#include "image.hpp"

namespace minicnn {

struct FlowOptions {
  int64_t batch_size = 32;
  bool shuffle = true;
  uint64_t seed = 0;
  AugmentOptions augment;  // default: no augmentation
  Preprocess preprocess = Preprocess::Tf;
  int workers = 1;  // background threads; 0: batches are made in the calling thread
  int queue = 2;    // batches made ahead of the one in use
};

class ImageFlow : public BatchSource {
 public:
  static constexpr uint64_t kAugmentSalt = 0x41554734ULL;  // "AUG4"

  ImageFlow(const ImageFolder& data, std::vector<size_t> indices, FlowOptions o = {})
      : BatchSource(o.batch_size, o.shuffle, o.seed),
        data_(data),
        indices_(std::move(indices)),
        o_(std::move(o)) {
    o_.augment.validate();
    if (o_.workers < 0 || o_.workers > 64)
      throw ConfigError("ImageFlow: workers must be in 0..64, got " + std::to_string(o_.workers));
    if (o_.queue < 1 || o_.queue > 64)
      throw ConfigError("ImageFlow: queue must be in 1..64, got " + std::to_string(o_.queue));
    for (size_t i : indices_)
      if (i >= data_.size())
        throw ConfigError("ImageFlow: index " + std::to_string(i) + " outside the folder's " +
                          std::to_string(data_.size()) + " images");
    slots_.resize(size_t(o_.queue));
    for (int w = 0; w < o_.workers; ++w) workers_.emplace_back([this] { work(); });
  }
  ImageFlow(const ImageFolder& data, FlowOptions o = {})
      : ImageFlow(data, all_indices(data), std::move(o)) {}
  ~ImageFlow() override {
    {
      std::unique_lock<std::mutex> lk(m_);
      quit_ = true;
      active_ = false;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }

  size_t size() const override { return indices_.size(); }
  Shape sample_shape() const override { return Shape{data_.height, data_.width, 3}; }
  int64_t num_classes() const override { return static_cast<int64_t>(data_.class_names.size()); }
  int label(size_t i) const override { return data_.labels[indices_[i]]; }
  bool augmented() const override { return o_.augment.random(); }
  const FlowOptions& options() const { return o_; }
  const ImageFolder& folder() const { return data_; }
  // The folder index and path of sample i.
  size_t folder_index(size_t i) const { return indices_[i]; }
  const std::string& file(size_t i) const { return data_.files[indices_[i]]; }

  void plain_samples(size_t first, size_t count, float* out) const override {
    const size_t px = data_.image_bytes();
    for (size_t i = 0; i < count; ++i)
      normalise(data_.image(indices_[first + i]), out + i * px, px, false);
  }

  // Sample i as epoch `epoch` augments it, in [0, 255] units, before preprocessing (for
  // pictures of the augmented training images).
  void augmented_sample(size_t i, int epoch, float* out) const {
    KeyedRng rng(seed_ ^ kAugmentSalt, static_cast<uint64_t>(epoch), indices_[i]);
    AugmentOptions a = o_.augment;
    a.rescale = 0;
    augment_image(data_.image(indices_[i]), data_.height, data_.width, 3, a, rng, out);
  }

  void fill_batch(const size_t* ids, int64_t n, int epoch, Batch& b) const override {
    prepare_batch(ids, n, b);
    const size_t px = data_.image_bytes();
    const bool random = o_.augment.random();
    for (int64_t i = 0; i < n; ++i) {
      float* dst = b.x.data() + size_t(i) * px;
      const size_t idx = indices_[ids[i]];
      if (random) {
        KeyedRng rng(seed_ ^ kAugmentSalt, static_cast<uint64_t>(epoch), idx);
        augment_image(data_.image(idx), data_.height, data_.width, 3, o_.augment, rng, dst);
        normalise(nullptr, dst, px, true);
      } else {
        normalise(data_.image(idx), dst, px, false);
      }
    }
  }

  void start_epoch(int epoch) override {
    if (o_.workers == 0) {
      BatchSource::start_epoch(epoch);
      return;
    }
    std::unique_lock<std::mutex> lk(m_);
    halt(lk);
    epoch_ = epoch;
    order_ = order(epoch);
    next_fill_ = 0;
    released_ = 0;
    next_batch_ = 0;
    holding_ = false;
    for (auto& s : slots_) s.number = -1;
    active_ = true;
    lk.unlock();
    cv_.notify_all();
  }

  const Batch& next() override {
    if (o_.workers == 0) return BatchSource::next();
    std::unique_lock<std::mutex> lk(m_);
    if (!active_) throw Error("ImageFlow: next() before start_epoch()");
    if (holding_) {
      released_ = next_batch_;  // the batch handed out last is free again
      holding_ = false;
      cv_.notify_all();
    }
    const int64_t want = next_batch_;
    if (want >= steps())
      throw Error("ImageFlow: epoch " + std::to_string(epoch_) + " has only " +
                  std::to_string(steps()) + " batches");
    Slot& s = slots_[size_t(want % o_.queue)];
    cv_.wait(lk, [&] { return s.number == want || !error_.empty(); });
    if (!error_.empty()) {
      const std::string e = error_;
      error_.clear();
      throw Error("ImageFlow: a worker failed: " + e);
    }
    ++next_batch_;
    holding_ = true;
    return s.batch;
  }

  void stop() override {
    if (o_.workers == 0) return;
    std::unique_lock<std::mutex> lk(m_);
    halt(lk);
  }

 private:
  struct Slot {
    Batch batch;
    int64_t number = -1;  // the batch it holds, -1 when empty or being filled
  };

  static std::vector<size_t> all_indices(const ImageFolder& d) {
    std::vector<size_t> v(d.size());
    for (size_t i = 0; i < v.size(); ++i) v[i] = i;
    return v;
  }

  // uint8 pixels (or, in place, augmented floats) to network inputs.
  void normalise(const uint8_t* src, float* dst, size_t n, bool in_place) const {
    if (o_.augment.rescale != 0.0) {
      const float r = static_cast<float>(o_.augment.rescale);
      if (!in_place)
        for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]) * r;
      return;  // augment_image already rescaled in place
    }
    const bool tf = o_.preprocess == Preprocess::Tf;
    if (in_place) {
      for (size_t i = 0; i < n; ++i) dst[i] = tf ? dst[i] / 127.5f - 1.0f : dst[i] / 255.0f;
    } else {
      preprocess_into(src, static_cast<int64_t>(n), o_.preprocess, dst);
    }
  }

  // Stops handing out work for the current epoch and waits for batches being filled.
  void halt(std::unique_lock<std::mutex>& lk) {
    active_ = false;
    ++generation_;
    cv_.wait(lk, [&] { return in_flight_ == 0; });
  }

  void work() {
    std::unique_lock<std::mutex> lk(m_);
    for (;;) {
      cv_.wait(lk, [&] {
        return quit_ || (active_ && next_fill_ < steps() && next_fill_ < released_ + o_.queue);
      });
      if (quit_) return;
      const int64_t b = next_fill_++;
      const uint64_t gen = generation_;
      const int epoch = epoch_;
      Slot& s = slots_[size_t(b % o_.queue)];
      s.number = -1;
      ++in_flight_;
      const int64_t first = b * batch_size_;
      const int64_t n = std::min<int64_t>(batch_size_, static_cast<int64_t>(size()) - first);
      const size_t* ids = order_.data() + first;
      lk.unlock();
      std::string err;
      try {
        fill_batch(ids, n, epoch, s.batch);
      } catch (const std::exception& e) {
        err = e.what();
      }
      lk.lock();
      --in_flight_;
      if (!err.empty())
        error_ = err;
      else if (gen == generation_)
        s.number = b;
      cv_.notify_all();
    }
  }

  const ImageFolder& data_;
  std::vector<size_t> indices_;
  FlowOptions o_;
  std::vector<Slot> slots_;
  std::vector<std::thread> workers_;
  std::mutex m_;
  std::condition_variable cv_;
  bool quit_ = false, active_ = false, holding_ = false;
  int64_t next_fill_ = 0, released_ = 0;
  int in_flight_ = 0;
  uint64_t generation_ = 0;
  std::string error_;
};

}  // namespace minicnn
