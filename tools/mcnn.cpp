// mcnn: command-line front end to minicnn's MobileNetV2.
//   mcnn inspect FILE                       metadata and tensor table of a .mcnn file
//   mcnn bench --weights F --size N ...     forward images/s and batch latency
//   mcnn classify --weights F IMAGE...      top-k ImageNet labels
//   mcnn features --weights F --out O.npy IMAGE...   pooled feature vectors
// An IMAGE may be a picture file (decoded with stb_image, resized with PIL-compatible
// antialiased bilinear filtering to the model's input size) or a .npy uint8 array of
// shape (N, H, W, 3) used as is, so exact inputs can be fed.
#include <CLI/CLI.hpp>
#include <minicnn/minicnn.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <numeric>
#include <optional>

using namespace minicnn;
using json = nlohmann::json;

namespace {

struct Sample {
  std::string file;  // as given on the command line (with [i] for .npy rows)
  int64_t height = 0, width = 0;
  std::vector<uint8_t> rgb;
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Expands the IMAGE arguments; pictures are resized to size x size (size 0: keep).
std::vector<Sample> read_inputs(const std::vector<std::string>& args, int64_t size) {
  std::vector<Sample> out;
  for (const auto& a : args) {
    if (ends_with(a, ".npy")) {
      NpyArray arr = load_npy(a);
      if (arr.dtype != "u1" || arr.dims.size() != 4 || arr.dims[3] != 3)
        throw FormatError("'" + a +
                          "': expected a uint8 array of shape (N, H, W, 3), found dtype " +
                          arr.dtype + " and shape " + arr.shape("'" + a + "'").str());
      int64_t n = arr.dims[0], h = arr.dims[1], w = arr.dims[2];
      for (int64_t i = 0; i < n; ++i) {
        Sample s{a + "[" + std::to_string(i) + "]", h, w, {}};
        auto* p = reinterpret_cast<const uint8_t*>(arr.bytes.data()) + i * h * w * 3;
        s.rgb.assign(p, p + h * w * 3);
        out.push_back(std::move(s));
      }
    } else {
      Image img = decode_image(a);
      if (size > 0) img = resize_bilinear(img, static_cast<int>(size), static_cast<int>(size));
      out.push_back({a, img.height, img.width, std::move(img.pixels)});
    }
  }
  return out;
}

std::vector<std::string> read_labels(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw IoError("cannot open label file '" + path + "'");
  std::vector<std::string> labels;
  for (std::string line; std::getline(f, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    labels.push_back(line);
  }
  return labels;
}

// One network per input size (a .npy may hold a size other than the pictures').
class Models {
 public:
  Models(std::string path, ModelLoadOptions opt) : path_(std::move(path)), opt_(std::move(opt)) {}
  LoadedModel& get(int64_t h, int64_t w) {
    auto key = std::make_pair(h, w);
    auto it = cache_.find(key);
    if (it != cache_.end()) return it->second;
    ModelLoadOptions o = opt_;
    o.input_height = h;
    o.input_width = w;
    return cache_.emplace(key, load_mobilenet_v2(path_, o)).first->second;
  }
  LoadedModel& any() {
    if (cache_.empty()) return get(opt_.input_height, opt_.input_width);
    return cache_.begin()->second;
  }

 private:
  std::string path_;
  ModelLoadOptions opt_;
  std::map<std::pair<int64_t, int64_t>, LoadedModel> cache_;
};

int64_t default_size(const std::string& weights) {
  McnnFile f = read_mcnn(weights);
  return mobilenet_v2_options_from_metadata(f.metadata, "'" + weights + "'").input_height;
}

// Runs `fn(model, batch_tensor, first, count)` over consecutive same-size samples in batches.
template <typename F>
void for_batches(Models& models, const std::vector<Sample>& samples, std::optional<Preprocess> pre,
                 int64_t batch, F&& fn) {
  TensorF x;
  size_t i = 0;
  while (i < samples.size()) {
    size_t j = i;
    while (j < samples.size() && j - i < static_cast<size_t>(batch) &&
           samples[j].height == samples[i].height && samples[j].width == samples[i].width)
      ++j;
    LoadedModel& m = models.get(samples[i].height, samples[i].width);
    Preprocess p = pre.value_or(m.preprocess);
    int64_t h = samples[i].height, w = samples[i].width, n = static_cast<int64_t>(j - i);
    x.resize(Shape{n, h, w, 3});
    for (int64_t k = 0; k < n; ++k)
      preprocess_into(samples[i + k].rgb.data(), h * w * 3, p, x.data() + k * h * w * 3);
    fn(m, x, i, n);
    i = j;
  }
}

// Top-k classes of each image with a trained model file (models/saved_model.hpp): the file
// says the input size, how training resized (nearest or bilinear), whether EXIF orientation
// was applied, the preprocessing and the class names.
int cmd_classify_model(const std::string& path, const std::vector<std::string>& images,
                       std::optional<Preprocess> pre, int64_t batch, int top_k, bool as_json) {
  LoadedNet l = load_model_file(path);
  const Shape in = l.net->input_shape();
  if (in.rank() != 3 || in[2] != 3)
    throw ConfigError("'" + path + "' takes inputs " + in.batched_str() + ", not RGB images");
  const int h = static_cast<int>(in[0]), w = static_cast<int>(in[1]);
  fold_for_inference(*l.net);
  const Preprocess p = pre.value_or(l.info.preprocess);
  std::vector<Sample> samples;
  for (const auto& a : images) {
    if (ends_with(a, ".npy")) {
      for (auto& s : read_inputs({a}, 0)) {
        if (s.height != h || s.width != w)
          throw ShapeError("'" + s.file + "' is " + std::to_string(s.height) + "x" +
                           std::to_string(s.width) + ", the model takes " + std::to_string(h) +
                           "x" + std::to_string(w));
        samples.push_back(std::move(s));
      }
      continue;
    }
    std::vector<char> bytes = read_file_bytes(a);
    Image img = decode_image_memory(bytes, "'" + a + "'");
    if (l.info.exif_orientation) img = apply_exif_orientation(img, jpeg_exif_orientation(bytes));
    img = resize_image(img, w, h, l.info.interpolation);
    samples.push_back({a, h, w, std::move(img.pixels)});
  }
  const int64_t classes = l.net->output_shape()[0];
  json results = json::array();
  TensorF x;
  for (size_t i = 0; i < samples.size(); i += size_t(batch)) {
    const int64_t n = std::min<int64_t>(batch, int64_t(samples.size() - i));
    x.resize(Shape{n, h, w, 3});
    for (int64_t k = 0; k < n; ++k)
      preprocess_into(samples[i + size_t(k)].rgb.data(), int64_t(h) * w * 3, p,
                      x.data() + k * h * w * 3);
    const TensorF& probs = l.net->forward(x, false);
    for (int64_t k = 0; k < n; ++k) {
      const float* pr = probs.data() + k * classes;
      std::vector<int64_t> idx(static_cast<size_t>(classes));
      std::iota(idx.begin(), idx.end(), 0);
      const int64_t kk = std::min<int64_t>(top_k, classes);
      std::partial_sort(idx.begin(), idx.begin() + kk, idx.end(),
                        [&](int64_t a, int64_t b) { return pr[a] > pr[b]; });
      json top = json::array();
      if (!as_json) std::printf("%s\n", samples[i + size_t(k)].file.c_str());
      for (int64_t t = 0; t < kk; ++t) {
        const std::string label = size_t(idx[t]) < l.info.class_names.size()
                                      ? l.info.class_names[size_t(idx[t])]
                                      : std::to_string(idx[t]);
        top.push_back({{"index", idx[t]}, {"label", label}, {"prob", pr[idx[t]]}});
        if (!as_json)
          std::printf("  %5lld  %.4f  %s\n", (long long)idx[t], pr[idx[t]], label.c_str());
      }
      results.push_back({{"file", samples[i + size_t(k)].file}, {"top", top}});
    }
  }
  if (as_json) std::cout << results.dump(1) << "\n";
  return 0;
}

int cmd_inspect(const std::string& path, bool as_json) {
  McnnFile f = read_mcnn(path);
  int64_t total = 0;
  json tensors = json::array();
  for (const auto& t : f.tensors) {
    total += t.shape().size();
    std::vector<int64_t> dims(t.shape().begin(), t.shape().end());
    tensors.push_back({{"name", t.name}, {"dtype", dtype_name(t.dtype)}, {"shape", dims}});
  }
  if (as_json) {
    std::cout << json{{"file", path},
                      {"metadata", f.metadata},
                      {"tensors", tensors},
                      {"values", total}}
                     .dump(1)
              << "\n";
    return 0;
  }
  std::cout << "file: " << path << "\nmetadata:\n" << f.metadata.dump(2) << "\n\n";
  std::printf("%-55s %-8s %s\n", "tensor", "dtype", "shape");
  for (const auto& t : f.tensors)
    std::printf("%-55s %-8s %s\n", t.name.c_str(), dtype_name(t.dtype), t.shape().str().c_str());
  std::printf("\n%zu tensors, %lld values\n", f.tensors.size(), static_cast<long long>(total));
  return 0;
}

// Per-layer forward times gathered by --profile, in model order.
struct LayerTime {
  std::string name, type;
  std::vector<double> seconds;
};
std::vector<LayerTime>& profile_table() {
  static std::vector<LayerTime> table;
  return table;
}
void record_layer_time(const std::string& name, const std::string& type, double seconds) {
  auto& t = profile_table();
  for (auto& row : t)
    if (row.name == name) {
      row.seconds.push_back(seconds);
      return;
    }
  t.push_back({name, type, {seconds}});
}

void print_profile(double total_ms) {
  std::vector<std::pair<double, const LayerTime*>> rows;
  double sum = 0;
  for (const auto& r : profile_table()) {
    std::vector<double> s = r.seconds;
    std::sort(s.begin(), s.end());
    double med = s[s.size() / 2] * 1000.0;
    rows.push_back({med, &r});
    sum += med;
  }
  std::printf(
      "\nper layer (median ms over the timed runs; layers timed one by one, sum %.3f ms vs %.3f ms "
      "untimed):\n",
      sum, total_ms);
  std::printf("%-28s %-22s %9s %6s\n", "layer", "type", "ms", "%");
  for (const auto& [ms, r] : rows)
    std::printf("%-28s %-22s %9.4f %6.1f\n", r->name.c_str(), r->type.c_str(), ms,
                100.0 * ms / sum);
}

int cmd_bench(const std::string& weights, int64_t size, int64_t batch, int threads, int warmup,
              int runs, bool as_json, bool profile) {
  set_num_threads(threads);
  ModelLoadOptions o;
  o.include_top = false;
  o.pooling = "avg";
  o.input_height = o.input_width = size;
  LoadedModel m = load_mobilenet_v2(weights, o);
  Rng rng(7);
  TensorF x(Shape{batch, size, size, 3});
  for (auto& v : x) v = static_cast<float>(rng.uniform(-1, 1));
  for (int i = 0; i < warmup; ++i) m.net->forward(x, false);
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    m.net->forward(x, false);
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  double median = ms[ms.size() / 2];
  double ips = batch / (median / 1000.0);
  if (profile) {
    // A separate set of runs: the observer's clock reads are kept out of the figures above.
    forward_observer() = record_layer_time;
    for (int i = 0; i < runs; ++i) m.net->forward(x, false);
    forward_observer() = nullptr;
  }
  if (as_json) {
    std::cout << json{{"weights", weights},   {"size", size},        {"batch", batch},
                      {"threads", threads},   {"runs", runs},        {"latency_ms", median},
                      {"min_ms", ms.front()}, {"max_ms", ms.back()}, {"images_per_sec", ips}}
                     .dump()
              << "\n";
  } else {
    std::printf(
        "MobileNetV2 alpha %.2f, %lldx%lld, batch %lld, %d threads: median %.3f ms per batch "
        "(min %.3f, max %.3f over %d runs), %.1f images/s\n",
        m.options.alpha, (long long)size, (long long)size, (long long)batch, threads, median,
        ms.front(), ms.back(), runs, ips);
    if (profile) print_profile(median);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mcnn: MobileNetV2 inference with minicnn (.mcnn weights)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string(kMcnnLibraryVersion));

  std::string file, weights, labels_path, out_path, preprocess_name;
  std::vector<std::string> images;
  int64_t size = 0, bench_size = 96, batch = 32;
  int threads = num_threads(), warmup = 5, runs = 30, top_k = 5;
  bool as_json = false, profile = false;

  auto* inspect =
      app.add_subcommand("inspect", "print the metadata and tensor table of a .mcnn file");
  inspect->add_option("FILE", file, ".mcnn file")->required();
  inspect->add_flag("--json", as_json, "machine-readable output");

  auto* bench = app.add_subcommand("bench", "time the folded forward pass (median after warm-up)");
  bench->add_option("--weights", weights, ".mcnn weights")->required();
  // Its own variable: a default_val here would also set classify's and features' --size.
  bench->add_option("--size", bench_size, "input height and width")->capture_default_str();
  bench->add_option("--batch", batch, "images per batch")
      ->default_val(32)
      ->check(CLI::PositiveNumber);
  bench->add_option("--threads", threads, "OpenMP threads")->check(CLI::PositiveNumber);
  bench->add_option("--warmup", warmup, "untimed runs first")->default_val(5);
  bench->add_option("--runs", runs, "timed runs")->default_val(30)->check(CLI::PositiveNumber);
  bench->add_flag("--json", as_json, "print {images_per_sec, latency_ms, ...}");
  bench->add_flag("--profile", profile, "also print each layer's median forward time");

  auto add_common = [&](CLI::App* c) {
    c->add_option("--weights", weights, ".mcnn weights")->required();
    c->add_option("--size", size, "input size (default: the file's; pictures are resized to it)");
    c->add_option("--preprocess", preprocess_name,
                  "tf (x/127.5-1, default for Keras weights) or unit (x/255)")
        ->check(CLI::IsMember({"tf", "unit"}));
    c->add_option("--threads", threads, "OpenMP threads")->check(CLI::PositiveNumber);
    c->add_option("--batch", batch, "images per forward pass")->check(CLI::PositiveNumber);
    c->add_option("IMAGE", images, "pictures, or .npy uint8 arrays (N, H, W, 3)")->required();
  };
  auto* classify = app.add_subcommand(
      "classify", "top-k classes of each image (ImageNet weights or a model trained with minicnn)");
  add_common(classify);
  classify->add_option("--labels", labels_path,
                       "label file, one class per line (default: the file's class names)");
  classify->add_option("--top", top_k, "how many classes to print")
      ->default_val(5)
      ->check(CLI::PositiveNumber);
  classify->add_flag("--json", as_json, "JSON list, one object per image");

  auto* features = app.add_subcommand(
      "features", "pooled feature vectors as a float32 .npy (one row per image)");
  add_common(features);
  features->add_option("--out", out_path, "output .npy")->required();

  CLI11_PARSE(app, argc, argv);
  try {
    if (*inspect) return cmd_inspect(file, as_json);
    if (*bench)
      return cmd_bench(weights, bench_size, batch, threads, warmup, runs, as_json, profile);
    set_num_threads(threads);
    std::optional<Preprocess> pre;
    if (!preprocess_name.empty()) pre = preprocess_from_string(preprocess_name);
    if (*classify && is_model_metadata(read_mcnn(weights).metadata)) {
      if (size != 0)
        throw ConfigError("--size: '" + weights +
                          "' is a trained model; it takes the size it was trained at");
      return cmd_classify_model(weights, images, pre, batch, top_k, as_json);
    }
    if (size == 0) size = default_size(weights);
    auto samples = read_inputs(images, size);

    if (*classify) {
      ModelLoadOptions o;
      o.include_top = true;
      Models models(weights, o);
      std::vector<std::string> labels =
          labels_path.empty() ? models.get(size, size).class_names : read_labels(labels_path);
      json results = json::array();
      for_batches(
          models, samples, pre, batch,
          [&](LoadedModel& m, const TensorF& x, size_t first, int64_t n) {
            const TensorF& probs = m.net->forward(x, false);
            int64_t classes = probs.dim(1);
            if (!labels.empty() && static_cast<int64_t>(labels.size()) != classes)
              throw ConfigError("label file has " + std::to_string(labels.size()) +
                                " lines, the model has " + std::to_string(classes) + " classes");
            for (int64_t k = 0; k < n; ++k) {
              std::vector<int64_t> idx(classes);
              std::iota(idx.begin(), idx.end(), 0);
              const float* p = probs.data() + k * classes;
              int64_t kk = std::min<int64_t>(top_k, classes);
              std::partial_sort(idx.begin(), idx.begin() + kk, idx.end(),
                                [&](int64_t a, int64_t b) { return p[a] > p[b]; });
              json top = json::array();
              if (!as_json) std::printf("%s\n", samples[first + k].file.c_str());
              for (int64_t t = 0; t < kk; ++t) {
                std::string label = labels.empty() ? std::to_string(idx[t]) : labels[idx[t]];
                top.push_back({{"index", idx[t]}, {"label", label}, {"prob", p[idx[t]]}});
                if (!as_json)
                  std::printf("  %5lld  %.4f  %s\n", (long long)idx[t], p[idx[t]], label.c_str());
              }
              results.push_back({{"file", samples[first + k].file}, {"top", top}});
            }
          });
      if (as_json) std::cout << results.dump(1) << "\n";
      return 0;
    }
    if (*features) {
      ModelLoadOptions o;
      o.include_top = false;
      o.pooling = "avg";
      Models models(weights, o);
      TensorF feats;
      for_batches(models, samples, pre, batch,
                  [&](LoadedModel& m, const TensorF& x, size_t first, int64_t n) {
                    const TensorF& f = m.net->forward(x, false);
                    if (feats.empty())
                      feats.resize(Shape{static_cast<int64_t>(samples.size()), f.dim(1)});
                    std::copy(f.data(), f.data() + n * f.dim(1), feats.data() + first * f.dim(1));
                  });
      save_npy<float>(out_path, feats);
      std::fprintf(stderr, "wrote %s: %s\n", out_path.c_str(), feats.shape().str().c_str());
      return 0;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mcnn: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
