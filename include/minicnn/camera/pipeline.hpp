// From a decoded frame to class probabilities, the way the model was trained: centre crop to
// the network's aspect ratio (geometry.hpp), resize with the model's interpolation (nearest or
// PIL-compatible bilinear), preprocess as the model file says (x/127.5-1 or x/255), forward
// through the network folded for inference. Then Smoother averages the probabilities of the
// last N frames (a window mean: a class must hold for a moment to win, which stops the label
// flickering between frames), and top_k ranks them. One FrameClassifier serves one thread.
#pragma once
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <deque>
#include <memory>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../data/image.hpp"
#include "../models/fold.hpp"
#include "../models/saved_model.hpp"
#include "geometry.hpp"

namespace minicnn::camera {

// Milliseconds per stage for one frame.
struct StageTimes {
  double decode_ms = 0, resize_ms = 0, network_ms = 0, encode_ms = 0;
};

// Copies the box out of an image.
inline Image crop_image(const Image& in, const CropBox& b) {
  if (b.x < 0 || b.y < 0 || b.width < 1 || b.height < 1 || b.x + b.width > in.width ||
      b.y + b.height > in.height)
    throw ShapeError("crop: box " + std::to_string(b.width) + "x" + std::to_string(b.height) + "+" +
                     std::to_string(b.x) + "+" + std::to_string(b.y) + " does not fit a " +
                     std::to_string(in.width) + "x" + std::to_string(in.height) + " image");
  if (b.x == 0 && b.y == 0 && b.width == in.width && b.height == in.height) return in;
  Image out;
  out.width = b.width;
  out.height = b.height;
  out.pixels.resize(size_t(b.width) * b.height * 3);
  for (int y = 0; y < b.height; ++y)
    std::copy_n(in.row(b.y + y) + size_t(b.x) * 3, size_t(b.width) * 3, out.row(y));
  return out;
}

struct Ranked {
  int index = 0;
  std::string label;
  float prob = 0;
};

// The k most probable classes, best first (ties: lower index first).
inline std::vector<Ranked> top_k(const std::vector<float>& probs,
                                 const std::vector<std::string>& names, int k) {
  std::vector<int> idx(probs.size());
  std::iota(idx.begin(), idx.end(), 0);
  const int n = std::min<int>(std::max(k, 0), static_cast<int>(idx.size()));
  std::partial_sort(idx.begin(), idx.begin() + n, idx.end(), [&](int a, int b) {
    return probs[size_t(a)] > probs[size_t(b)] || (probs[size_t(a)] == probs[size_t(b)] && a < b);
  });
  std::vector<Ranked> out;
  for (int i = 0; i < n; ++i) {
    const int c = idx[size_t(i)];
    out.push_back(
        {c, size_t(c) < names.size() ? names[size_t(c)] : std::to_string(c), probs[size_t(c)]});
  }
  return out;
}

// The mean of the last `window` probability vectors (window 1: no smoothing).
class Smoother {
 public:
  explicit Smoother(int window) : window_(window) {
    if (window < 1 || window > 1000)
      throw ConfigError("smoothing window must be 1..1000 frames, got " + std::to_string(window));
  }
  const std::vector<float>& add(const std::vector<float>& p) {
    if (!history_.empty() && history_.front().size() != p.size()) reset();
    if (sum_.size() != p.size()) sum_.assign(p.size(), 0.0);
    history_.push_back(p);
    for (size_t i = 0; i < p.size(); ++i) sum_[i] += p[i];
    if (static_cast<int>(history_.size()) > window_) {
      for (size_t i = 0; i < p.size(); ++i) sum_[i] -= history_.front()[i];
      history_.pop_front();
    }
    mean_.resize(p.size());
    for (size_t i = 0; i < p.size(); ++i)
      mean_[i] = static_cast<float>(sum_[i] / static_cast<double>(history_.size()));
    return mean_;
  }
  void reset() {
    history_.clear();
    sum_.clear();
  }
  int window() const { return window_; }

 private:
  int window_;
  std::deque<std::vector<float>> history_;
  std::vector<double> sum_;  // double: no drift from adding and removing floats for hours
  std::vector<float> mean_;
};

// A trained model file as a live classifier of RGB frames.
class FrameClassifier {
 public:
  // Validates that `loaded` is an image classifier: input (H, W, 3), output (classes,) and class
  // names (a converted ImageNet weight file or a feature extractor is refused), then folds it.
  FrameClassifier(LoadedNet loaded, const std::string& where) : info_(std::move(loaded.info)) {
    net_ = std::move(loaded.net);
    const Shape in = net_->input_shape(), out = net_->output_shape();
    if (in.rank() != 3 || in[2] != 3)
      throw ConfigError(where + " takes inputs " + in.batched_str() +
                        ", not RGB images (None, height, width, 3)");
    if (out.rank() != 1)
      throw ConfigError(where + " is not a classifier: its output is " + out.batched_str() +
                        ", a classifier outputs (None, classes) probabilities; train one with "
                        "haribo_train");
    if (info_.class_names.empty())
      throw ConfigError(where +
                        " is not a classifier: it names no classes (converted ImageNet "
                        "weights or a bare network?); train one with haribo_train");
    height_ = static_cast<int>(in[0]);
    width_ = static_cast<int>(in[1]);
    fold_for_inference(*net_);
    x_.resize(Shape{1, in[0], in[1], 3});
    where_ = where;
  }
  static FrameClassifier from_file(const std::string& path) {
    return FrameClassifier(load_model_file(path), "model '" + path + "'");
  }

  int input_width() const { return width_; }
  int input_height() const { return height_; }
  const ModelInfo& info() const { return info_; }
  const std::vector<std::string>& class_names() const { return info_.class_names; }

  // The centre crop of the frame at the network's aspect ratio, resized to the input size.
  Image network_input(const Image& frame) const {
    const CropBox b = center_crop_box(frame.width, frame.height, width_, height_);
    return resize_image(crop_image(frame, b), width_, height_, info_.interpolation);
  }

  // Class probabilities of one frame; stage times land in *t when given.
  const std::vector<float>& classify(const Image& frame, StageTimes* t = nullptr) {
    using C = std::chrono::steady_clock;
    const auto t0 = C::now();
    const Image in = network_input(frame);
    const auto t1 = C::now();
    preprocess_into(in.pixels.data(), int64_t(in.pixels.size()), info_.preprocess, x_.data());
    const TensorF& y = net_->infer(x_);
    probs_.assign(y.data(), y.data() + y.size());
    const auto t2 = C::now();
    if (t) {
      t->resize_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
      t->network_ms = std::chrono::duration<double, std::milli>(t2 - t1).count();
    }
    if (!checked_) check_probabilities();
    return probs_;
  }

 private:
  // Once: a classifier without a softmax gives scores, which the page would show as nonsense
  // percentages.
  void check_probabilities() {
    double sum = 0;
    for (float p : probs_) {
      if (!(p >= -1e-6f && p <= 1 + 1e-6f))
        throw ConfigError(where_ + " does not output probabilities (a value is " +
                          std::to_string(p) + "); its last layer must be a softmax");
      sum += p;
    }
    if (std::abs(sum - 1.0) > 1e-3)
      throw ConfigError(where_ + " does not output probabilities (they sum to " +
                        std::to_string(sum) + "); its last layer must be a softmax");
    checked_ = true;
  }

  std::unique_ptr<SequentialT<float>> net_;
  ModelInfo info_;
  std::string where_;
  int width_ = 0, height_ = 0;
  TensorF x_;
  std::vector<float> probs_;
  bool checked_ = false;
};

}  // namespace minicnn::camera
