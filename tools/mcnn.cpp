// mcnn: command-line front end to minicnn's MobileNetV2.
//   mcnn inspect FILE                       metadata and tensor table of a .mcnn file
//   mcnn bench --weights F --size N ...     forward images/s and batch latency
//   mcnn classify --weights F IMAGE...      top-k ImageNet labels
//   mcnn features --weights F --out O.npy IMAGE...   pooled feature vectors
// An IMAGE may be a picture file (decoded with stb_image, resized with PIL-compatible
// antialiased bilinear filtering to the model's input size), a folder of pictures (searched
// recursively, as haribo_predict does: models/classifier.hpp) or a .npy uint8 array of
// shape (N, H, W, 3) used as is, so exact inputs can be fed. A trained model file is
// classified through minicnn::Classifier, which prepares images as training did.
// Outputs are row-aligned with the inputs, so any unusable input is an error.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <minicnn/minicnn.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <new>
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

// What main() names when memory runs out: set before each step whose allocations grow
// with the options (image size, batch, number of images).
struct MemoryNeed {
  std::string what, advice;
  double bytes = 0;
};
MemoryNeed& memory_need() {
  static MemoryNeed m;
  return m;
}

std::string human_bytes(double b) {
  const char* units[] = {"bytes", "KB", "MB", "GB", "TB", "PB"};
  int u = 0;
  while (b >= 1024 && u < 5) b /= 1024, ++u;
  char buf[64];
  std::snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", b, units[u]);
  return buf;
}

double physical_memory() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? double(pages) * double(page) : 0.0;
}

// Records a step's memory for main() and refuses it outright when it cannot fit in the
// machine's memory (rather than letting the kernel kill the process halfway).
void expect_memory(const std::string& what, double bytes, const std::string& advice) {
  memory_need() = {what, advice, bytes};
  const double installed = physical_memory();
  if (installed > 0 && bytes > installed)
    throw ConfigError(what + " needs about " + human_bytes(bytes) + ", more than the " +
                      human_bytes(installed) + " of memory of this machine; " + advice);
}

// About the bytes an infer() pass holds: the input and output batches, and what is alive
// in one micro-batch (models/sequential.hpp). Kernel scratch space comes on top.
double forward_bytes(Sequential& net, int64_t batch) {
  const double io = double(net.input_shape().size() + net.output_shape().size()) * sizeof(float);
  return io * double(batch) +
         double(std::min(batch, net.infer_micro_batch())) * double(net.infer_bytes_per_sample());
}

void expect_forward(Sequential& net, int64_t batch, const std::string& advice) {
  const Shape in = net.input_shape();
  expect_memory("a forward pass of " + std::to_string(batch) + " image" + (batch == 1 ? "" : "s") +
                    " of " + std::to_string(in[0]) + "x" + std::to_string(in[1]),
                forward_bytes(net, batch), advice);
}

// IMAGE arguments as files, folders expanded (models/classifier.hpp). Every row of the
// output belongs to an input, so an unusable one stops the run, named with its reason.
std::vector<std::string> input_files(const std::vector<std::string>& args) {
  ImageInputs in = find_image_inputs(args);
  if (!in.unusable.empty()) {
    std::string list;
    for (const auto& u : in.unusable) list += "\n  " + u.path + ": " + u.reason;
    throw IoError(std::to_string(in.unusable.size()) + " IMAGE argument" +
                  (in.unusable.size() == 1 ? "" : "s") + " cannot be used:" + list);
  }
  return in.files;
}

// Expands the IMAGE arguments; pictures are resized to size x size (size 0: keep).
std::vector<Sample> read_inputs(const std::vector<std::string>& args, int64_t size) {
  std::vector<Sample> out;
  const std::vector<std::string> files = input_files(args);
  if (size > 0)
    expect_memory("keeping " + std::to_string(files.size()) + " image" +
                      (files.size() == 1 ? "" : "s") + " resized to " + std::to_string(size) + "x" +
                      std::to_string(size),
                  double(files.size()) * double(size) * double(size) * 3.0,
                  "use a smaller --size or fewer images per run");
  for (const auto& a : files) {
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
    expect_forward(*m.net, n, "use a smaller --batch or --size");
    x.resize(Shape{n, h, w, 3});
    for (int64_t k = 0; k < n; ++k)
      preprocess_into(samples[i + k].rgb.data(), h * w * 3, p, x.data() + k * h * w * 3);
    fn(m, x, i, n);
    i = j;
  }
}

void print_top(const std::string& file, const std::vector<ClassScore>& top, bool as_json,
               json& results) {
  json t = json::array();
  if (!as_json) std::printf("%s\n", file.c_str());
  for (const auto& s : top) {
    t.push_back({{"index", s.index}, {"label", s.label}, {"prob", s.probability}});
    if (!as_json)
      std::printf("  %5lld  %.4f  %s\n", (long long)s.index, s.probability, s.label.c_str());
  }
  results.push_back({{"file", file}, {"top", t}});
}

// Top-k classes of each image with a trained model file (models/saved_model.hpp) through
// minicnn::Classifier, which reads the input size, resizing, EXIF handling, preprocessing
// and class names from the file, exactly as haribo_predict does.
int cmd_classify_model(const std::string& path, const std::vector<std::string>& images,
                       std::optional<Preprocess> pre, int64_t batch, int top_k, bool as_json) {
  ClassifierFileOptions co;
  co.preprocess = pre;
  co.require_class_names = false;  // a model saved without names: classes by index
  Classifier c(path, co);
  const int h = c.height(), w = c.width();
  std::vector<Sample> samples;
  std::vector<size_t> pictures;  // positions in samples still to decode
  for (const auto& a : input_files(images)) {
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
    pictures.push_back(samples.size());
    samples.push_back({a, h, w, {}});
  }
  std::vector<std::string> paths;
  for (size_t i : pictures) paths.push_back(samples[i].file);
  expect_memory("keeping " + std::to_string(paths.size()) + " images at " + std::to_string(w) +
                    "x" + std::to_string(h),
                double(paths.size()) * h * w * 3.0, "classify fewer images per run");
  std::vector<Classifier::ReadResult> read = c.read_all(paths);
  std::string errors;
  for (size_t k = 0; k < read.size(); ++k) {
    if (!read[k].error.empty()) errors += "\n  " + read[k].error;
    samples[pictures[k]].rgb = std::move(read[k].image.pixels);
  }
  if (!errors.empty()) throw FormatError("cannot classify these images:" + errors);

  json results = json::array();
  TensorF x;
  const int64_t pixels = int64_t(h) * w * 3;
  expect_forward(c.net(), std::min<int64_t>(batch, int64_t(samples.size())),
                 "use a smaller --batch");
  for (size_t i = 0; i < samples.size(); i += size_t(batch)) {
    const int64_t n = std::min<int64_t>(batch, int64_t(samples.size() - i));
    x.resize(Shape{n, h, w, 3});
    for (int64_t k = 0; k < n; ++k)
      c.preprocess_into(samples[i + size_t(k)].rgb.data(), x.data() + k * pixels);
    const auto tops = c.classify(x, top_k);
    for (int64_t k = 0; k < n; ++k)
      print_top(samples[i + size_t(k)].file, tops[size_t(k)], as_json, results);
  }
  if (as_json)
    std::cout << results.dump(1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
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
  expect_forward(*m.net, batch, "use a smaller --batch or --size");
  Rng rng(7);
  TensorF x(Shape{batch, size, size, 3});
  for (auto& v : x) v = static_cast<float>(rng.uniform(-1, 1));
  for (int i = 0; i < warmup; ++i) m.net->infer(x);
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    m.net->infer(x);
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  double median = ms[ms.size() / 2];
  double ips = batch / (median / 1000.0);
  if (profile) {
    // A separate set of runs: the observer's clock reads are kept out of the figures above.
    // infer() may run a batch as several micro-batches: each layer's times within one run
    // are summed, so that a row is the layer's time for the whole batch.
    forward_observer() = record_layer_time;
    for (int i = 0; i < runs; ++i) {
      std::vector<size_t> before;
      for (const auto& row : profile_table()) before.push_back(row.seconds.size());
      m.net->infer(x);
      for (size_t r = 0; r < profile_table().size(); ++r) {
        auto& sec = profile_table()[r].seconds;
        const size_t keep = (r < before.size() ? before[r] : 0) + 1;
        for (; sec.size() > keep; sec.pop_back()) sec[sec.size() - 2] += sec.back();
      }
    }
    forward_observer() = nullptr;
  }
  if (as_json) {
    std::cout << json{{"weights", weights},    {"size", size},
                      {"batch", batch},        {"threads", threads},
                      {"runs", runs},          {"latency_ms", median},
                      {"min_ms", ms.front()},  {"max_ms", ms.back()},
                      {"images_per_sec", ips}, {"isa", isa_name(active_isa())}}
                     .dump()
              << "\n";
  } else {
    std::printf(
        "MobileNetV2 alpha %.2f, %lldx%lld, batch %lld, %d threads, %s kernels: median %.3f ms "
        "per batch (min %.3f, max %.3f over %d runs), %.1f images/s\n",
        m.options.alpha, (long long)size, (long long)size, (long long)batch, threads,
        isa_name(active_isa()), median, ms.front(), ms.back(), runs, ips);
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
  // MobileNetV2 needs at least 32x32; 4096x4096 (50 MB per image as floats) is far beyond any
  // photo classifier's input and keeps a mistyped size from asking for terabytes.
  const auto size_range = CLI::Range(int64_t(32), int64_t(4096));
  const auto batch_range = CLI::Range(int64_t(1), int64_t(4096));
  const auto threads_range = CLI::Range(1, 1024);

  auto* inspect =
      app.add_subcommand("inspect", "print the metadata and tensor table of a .mcnn file");
  inspect->add_option("FILE", file, ".mcnn file")->required();
  inspect->add_flag("--json", as_json, "machine-readable output");

  auto* bench = app.add_subcommand("bench", "time the folded forward pass (median after warm-up)");
  bench->add_option("--weights", weights, ".mcnn weights")->required();
  // Its own variable: a default_val here would also set classify's and features' --size.
  bench->add_option("--size", bench_size, "input height and width")
      ->capture_default_str()
      ->check(size_range);
  bench->add_option("--batch", batch, "images per batch")->default_val(32)->check(batch_range);
  bench->add_option("--threads", threads, "OpenMP threads")->check(threads_range);
  bench->add_option("--warmup", warmup, "untimed runs first")
      ->default_val(5)
      ->check(CLI::Range(0, 100000));
  bench->add_option("--runs", runs, "timed runs")->default_val(30)->check(CLI::Range(1, 100000));
  bench->add_flag("--json", as_json, "print {images_per_sec, latency_ms, ...}");
  bench->add_flag("--profile", profile, "also print each layer's median forward time");

  auto add_common = [&](CLI::App* c) {
    c->add_option("--weights", weights, ".mcnn weights")->required();
    c->add_option("--size", size, "input size (default: the file's; pictures are resized to it)")
        ->check(size_range);
    c->add_option("--preprocess", preprocess_name,
                  "tf (x/127.5-1, default for Keras weights) or unit (x/255)")
        ->check(CLI::IsMember({"tf", "unit"}));
    c->add_option("--threads", threads, "OpenMP threads")->check(threads_range);
    c->add_option("--batch", batch, "images per forward pass")->check(batch_range);
    c->add_option("IMAGE", images,
                  "pictures, folders of pictures (searched recursively), or .npy uint8 arrays "
                  "(N, H, W, 3)")
        ->required();
  };
  auto* classify = app.add_subcommand(
      "classify", "top-k classes of each image (ImageNet weights or a model trained with minicnn)");
  add_common(classify);
  classify->add_option("--labels", labels_path,
                       "label file, one class per line (default: the file's class names)");
  classify->add_option("--top", top_k, "how many classes to print")
      ->default_val(5)
      ->check(CLI::Range(1, 100000));
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
      for_batches(models, samples, pre, batch,
                  [&](LoadedModel& m, const TensorF& x, size_t first, int64_t n) {
                    const TensorF& probs = m.net->infer(x);
                    int64_t classes = probs.dim(1);
                    if (!labels.empty() && static_cast<int64_t>(labels.size()) != classes)
                      throw ConfigError("label file has " + std::to_string(labels.size()) +
                                        " lines, the model has " + std::to_string(classes) +
                                        " classes");
                    for (int64_t k = 0; k < n; ++k)
                      print_top(samples[first + k].file,
                                top_classes(probs.data() + k * classes, classes, top_k, labels),
                                as_json, results);
                  });
      if (as_json)
        std::cout << results.dump(1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
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
                    const TensorF& f = m.net->infer(x);
                    if (feats.empty())
                      feats.resize(Shape{static_cast<int64_t>(samples.size()), f.dim(1)});
                    std::copy(f.data(), f.data() + n * f.dim(1), feats.data() + first * f.dim(1));
                  });
      save_npy<float>(out_path, feats);
      std::fprintf(stderr, "wrote %s: %s\n", out_path.c_str(), feats.shape().str().c_str());
      return 0;
    }
  } catch (const std::bad_alloc&) {
    const MemoryNeed& m = memory_need();
    std::string what = "out of memory";
    if (!m.what.empty())
      what += " during " + m.what + ", which needs about " + human_bytes(m.bytes) +
              " (this machine has " + human_bytes(physical_memory()) + "); " + m.advice;
    std::fprintf(stderr, "mcnn: error: %s\n", what.c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mcnn: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
