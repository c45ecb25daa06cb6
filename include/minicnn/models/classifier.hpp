// Classifying pictures with a trained model file (models/saved_model.hpp), preparing each
// image exactly as training did: decode, turn upright by its JPEG EXIF orientation when the
// model was trained so, resize to the input size with the model's interpolation, then the
// model's preprocessing (x/127.5-1 or x/255). Shared by `mcnn classify` and haribo_predict
// so that the two can never disagree on an image.
//   Classifier c("best_model.mcnn");                    // load_model_file + fold
//   Image img = c.read("photo.jpg");                    // at c.height() x c.width()
//   TensorF x(Shape{1, c.height(), c.width(), 3});
//   c.preprocess_into(img, x.data());
//   auto top = c.classify(x, 3);                        // top[0][0].label, .probability
// Also here: expanding command-line arguments into image files (folders searched
// recursively with the dataset loader's rules) and reading many images in parallel.
// Top-k order: highest probability first, the lower class index first on ties, so the
// first entry is Keras' argmax.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/tensor.hpp"
#include "../data/exif.hpp"
#include "../data/folder.hpp"
#include "../data/image.hpp"
#include "../io/npy.hpp"
#include "fold.hpp"
#include "saved_model.hpp"
#include "sequential.hpp"

namespace minicnn {

struct ClassScore {
  int64_t index = 0;
  std::string label;  // the class name, or the index as text for a model without names
  float probability = 0;
};

// The k (clamped to 1..classes) most probable of `classes` probabilities, named by
// `names` (or by index when it has no entry for a class).
inline std::vector<ClassScore> top_classes(const float* probs, int64_t classes, int64_t k,
                                           const std::vector<std::string>& names) {
  std::vector<int64_t> idx(static_cast<size_t>(classes));
  std::iota(idx.begin(), idx.end(), 0);
  k = std::clamp<int64_t>(k, 1, classes);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int64_t a, int64_t b) {
    return probs[a] > probs[b] || (probs[a] == probs[b] && a < b);
  });
  std::vector<ClassScore> top;
  for (int64_t t = 0; t < k; ++t) {
    const int64_t c = idx[size_t(t)];
    top.push_back({c, size_t(c) < names.size() ? names[size_t(c)] : std::to_string(c), probs[c]});
  }
  return top;
}

struct ClassifierFileOptions {
  std::optional<Preprocess> preprocess;  // instead of the file's (comparisons only)
  bool require_class_names = true;       // false: classes are reported by index
};

// A file-backed image classifier: input (H, W, 3), output (classes,) probabilities.
class Classifier {
 public:
  explicit Classifier(const std::string& path, const ClassifierFileOptions& o = {}) : path_(path) {
    LoadedNet l = load_model_file(path);
    const std::string where = "'" + path + "'";
    const Shape in = l.net->input_shape(), out = l.net->output_shape();
    if (in.rank() != 3 || in[2] != 3)
      throw ConfigError(where + " is not an image classifier: it takes inputs " + in.batched_str() +
                        ", expected RGB images (None, H, W, 3)");
    if (out.rank() != 1)
      throw ConfigError(where + " is not a classifier: its output is " + out.batched_str() +
                        ", expected one probability per class (None, classes); converted "
                        "ImageNet weights without top are a feature extractor");
    if (o.require_class_names && l.info.class_names.empty())
      throw ConfigError(where +
                        " is not a classifier: the file names no classes (a model "
                        "saved by haribo_train or Model::save with ModelInfo::class_names does)");
    height_ = static_cast<int>(in[0]);
    width_ = static_cast<int>(in[1]);
    classes_ = out[0];
    fold_for_inference(*l.net);
    net_ = std::move(l.net);
    info_ = std::move(l.info);
    preprocess_ = o.preprocess.value_or(info_.preprocess);
  }

  const std::string& path() const { return path_; }
  int height() const { return height_; }
  int width() const { return width_; }
  int64_t classes() const { return classes_; }
  const ModelInfo& info() const { return info_; }
  const std::vector<std::string>& class_names() const { return info_.class_names; }
  Preprocess preprocess() const { return preprocess_; }
  SequentialT<float>& net() { return *net_; }
  std::string label(int64_t index) const {
    return size_t(index) < info_.class_names.size() ? info_.class_names[size_t(index)]
                                                    : std::to_string(index);
  }
  // Class index of a name; -1 when the model has no such class.
  int64_t class_index(const std::string& name) const {
    auto it = std::find(info_.class_names.begin(), info_.class_names.end(), name);
    return it == info_.class_names.end() ? -1 : int64_t(it - info_.class_names.begin());
  }

  // A decoded image upright and at the input size, as the training loader stored it.
  Image fit(const Image& decoded, int exif_orientation = 1) const {
    Image img = info_.exif_orientation && exif_orientation > 1
                    ? apply_exif_orientation(decoded, exif_orientation)
                    : decoded;
    if (img.width == width_ && img.height == height_) return img;
    return resize_image(img, width_, height_, info_.interpolation);
  }
  // A file's bytes decoded and fitted; `where` names it in errors.
  Image fit_bytes(const std::vector<char>& bytes, const std::string& where) const {
    return fit(decode_image_memory(bytes, where), jpeg_exif_orientation(bytes));
  }
  // A picture file read, decoded and fitted. Safe to call from several threads.
  Image read(const std::string& path) const {
    return fit_bytes(read_file_bytes(path), "'" + path + "'");
  }

  // Writes the network input of a fitted image (H * W * 3 values) at dst.
  void preprocess_into(const Image& fitted, float* dst) const {
    if (fitted.width != width_ || fitted.height != height_)
      throw ShapeError("Classifier '" + path_ + "': image is " + std::to_string(fitted.width) +
                       "x" + std::to_string(fitted.height) + ", expected the input size " +
                       std::to_string(width_) + "x" + std::to_string(height_) + " (use fit())");
    preprocess_into(fitted.pixels.data(), dst);
  }
  // The same from H * W * 3 RGB bytes already at the input size (e.g. a .npy row).
  void preprocess_into(const uint8_t* rgb, float* dst) const {
    minicnn::preprocess_into(rgb, int64_t(height_) * width_ * 3, preprocess_, dst);
  }
  // The preprocessed (H, W, 3) input of a decoded image of any size.
  TensorF prepare(const Image& decoded, int exif_orientation = 1) const {
    TensorF x(Shape{height_, width_, 3});
    preprocess_into(fit(decoded, exif_orientation), x.data());
    return x;
  }

  // Probabilities (N, classes) of a preprocessed batch (N, H, W, 3); valid until the next call.
  const TensorF& probabilities(const TensorF& batch) {
    if (batch.rank() != 4 || batch.dim(1) != height_ || batch.dim(2) != width_ || batch.dim(3) != 3)
      throw ShapeError("Classifier '" + path_ + "': batch of shape " + batch.shape().str() +
                       ", expected (N, " + std::to_string(height_) + ", " + std::to_string(width_) +
                       ", 3)");
    return net_->infer(batch);
  }
  // The k most probable classes of each image of a preprocessed batch.
  std::vector<std::vector<ClassScore>> classify(const TensorF& batch, int64_t k) {
    const TensorF& p = probabilities(batch);
    std::vector<std::vector<ClassScore>> out;
    for (int64_t i = 0; i < p.dim(0); ++i) out.push_back(top_k(p.data() + i * classes_, k));
    return out;
  }
  std::vector<ClassScore> top_k(const float* probs, int64_t k) const {
    return top_classes(probs, classes_, k, info_.class_names);
  }

  // Reads, decodes and fits `paths` with up to `threads` threads (0: num_threads());
  // each result holds the image or, when the file could not be used, why.
  struct ReadResult {
    Image image;
    std::string error;  // empty when the image is usable
  };
  std::vector<ReadResult> read_all(const std::vector<std::string>& paths, int threads = 0) const {
    std::vector<ReadResult> out(paths.size());
    std::atomic<size_t> next{0};
    auto work = [&] {
      for (size_t i; (i = next.fetch_add(1)) < paths.size();) {
        try {
          out[i].image = read(paths[i]);
        } catch (const std::bad_alloc&) {
          out[i].error = "out of memory while decoding '" + paths[i] + "'";
        } catch (const std::exception& e) {
          out[i].error = e.what();
          if (out[i].error.empty()) out[i].error = "unknown error";
        }
      }
    };
    const int n = std::max(1, std::min<int>(threads > 0 ? threads : num_threads(),
                                            static_cast<int>(std::min<size_t>(paths.size(), 256))));
    std::vector<std::thread> pool;
    for (int t = 1; t < n; ++t) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
    return out;
  }

 private:
  std::string path_;
  std::unique_ptr<SequentialT<float>> net_;
  ModelInfo info_;
  Preprocess preprocess_ = Preprocess::Tf;
  int height_ = 0, width_ = 0;
  int64_t classes_ = 0;
};

// Command-line IMAGE arguments as files: a file is kept whatever its name (it was asked
// for); a folder contributes its images found recursively as the dataset loader finds them
// (data/folder.hpp: Keras' extensions, hidden entries skipped, folders sorted by path, files
// by name). Missing paths, folders without images and unlistable sub-folders are returned
// in `unusable` with the reason, in argument order.
struct ImageInputs {
  std::vector<std::string> files;
  std::vector<SkippedFile> unusable;
};

inline ImageInputs find_image_inputs(const std::vector<std::string>& args,
                                     bool follow_links = false) {
  namespace fs = std::filesystem;
  ImageInputs in;
  for (const auto& a : args) {
    std::error_code ec;
    const fs::file_status st = fs::status(a, ec);
    if (!fs::exists(st)) {
      in.unusable.push_back(
          {a, ec && ec != std::errc::no_such_file_or_directory
                  ? "cannot access: " + ec.message()
                  : (fs::is_symlink(fs::symlink_status(a, ec)) ? "broken symbolic link"
                                                               : "no such file or folder")});
      continue;
    }
    if (!fs::is_directory(st)) {
      in.files.push_back(a);
      continue;
    }
    std::string dir = a;
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    const size_t problems = in.unusable.size();
    std::vector<std::string> found = find_image_files(dir, follow_links, in.unusable);
    if (found.empty() && in.unusable.size() == problems)
      in.unusable.push_back({a,
                             "folder holds no images (files ending in png, jpg, jpeg, bmp, "
                             "ppm, tif or tiff, searched recursively; hidden ones skipped)"});
    for (auto& f : found) in.files.push_back(std::move(f));
  }
  return in;
}

// The class a file's folder names: its parent folder's name when the model has a class of
// that name (the dataset layout <dir>/<class>/<image>), else -1.
inline int64_t folder_class(const Classifier& c, const std::string& file) {
  const std::string parent = std::filesystem::path(file).parent_path().filename().string();
  return parent.empty() ? -1 : c.class_index(parent);
}

}  // namespace minicnn
