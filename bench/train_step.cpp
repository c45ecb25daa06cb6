// train_step: minicnn's training step of the notebook recipe, timed inside Model::fit (the
// counterpart of bench/torch_train_step.py): 96x96, batch 32, MobileNetV2 alpha 1.0, head
// Dense 128 relu -> Dropout 0.5 -> Dense 12 softmax, Adam.
//   --mode frozen: the base frozen (folded), the head trained (the notebook);
//   --mode full:   every layer trained, BatchNormalization in training mode (fine-tuning).
//
//   build/bin/train_step --weights weights/mobilenet_v2_1.0_224_no_top.mcnn [--mode frozen|full]
//       [--data ../shared/datasets/jellybeans12] [--aug keras|none] [--workers 1]
//       [--threads 2] [--steps 20] [--warmup 3] [--json] [--profile]
//
// Peak resident memory (VmHWM) is reported for the whole process.
//
// A step is what fit() does per batch: take the next batch from the ImageFlow (augmented and
// preprocessed by --workers background threads, or inline with --workers 0), run the folded
// base, the head forward and backward, and Adam. Step times are taken between consecutive
// batch ends (LambdaCallback), so they include waiting for the loader. Also reported: the
// phases timed alone (augmentation + preprocessing of a batch, base forward, head step).
#include <CLI/CLI.hpp>
#include <minicnn/minicnn.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>

using namespace minicnn;
using clock_type = std::chrono::steady_clock;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}
double ms_since(clock_type::time_point t0) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}
// Peak resident set of this process in MiB (Linux /proc/self/status VmHWM), 0 elsewhere.
double peak_rss_mib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return 0.0;
}

// The first `n` training images of the folder, spread over the classes, or random pixels.
ImageFolder sample_folder(const std::string& dir, int n, int size) {
  ImageFolder d;
  if (!dir.empty()) {
    FolderOptions fo;
    fo.height = fo.width = size;
    fo.verbose = false;
    ImageFolder all = load_image_folder(dir, fo);
    d.class_names = all.class_names;
    d.height = d.width = size;
    for (int i = 0; i < n; ++i) {
      const size_t k = size_t(i) * all.size() / size_t(n);
      d.files.push_back(all.files[k]);
      d.labels.push_back(all.labels[k]);
      d.pixels.insert(d.pixels.end(), all.image(k), all.image(k) + all.image_bytes());
    }
    return d;
  }
  Rng r(1);
  d.height = d.width = size;
  for (int c = 0; c < 12; ++c) d.class_names.push_back("c" + std::to_string(c));
  for (int i = 0; i < n; ++i) {
    d.files.push_back("random/" + std::to_string(i));
    d.labels.push_back(i % 12);
    for (int k = 0; k < size * size * 3; ++k) d.pixels.push_back(uint8_t(r.below(256)));
  }
  return d;
}

// --profile: seconds by layer type (forward, backward) over the timed steps of the phases
// loop, which runs a batch at a time outside fit().
std::map<std::string, std::pair<double, double>>& layer_times() {
  static std::map<std::string, std::pair<double, double>> t;
  return t;
}
bool& profiling() {
  static bool on = false;
  return on;
}
void print_layer_times(int steps, FILE* out) {
  double fwd = 0, bwd = 0;
  std::fprintf(out, "per step by layer type (ms):\n  %-24s %9s %9s\n", "type", "forward",
               "backward");
  for (const auto& [type, t] : layer_times()) {
    std::fprintf(out, "  %-24s %9.2f %9.2f\n", type.c_str(), 1e3 * t.first / steps,
                 1e3 * t.second / steps);
    fwd += t.first;
    bwd += t.second;
  }
  std::fprintf(out, "  %-24s %9.2f %9.2f\n", "all layers", 1e3 * fwd / steps, 1e3 * bwd / steps);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"train_step: time minicnn's training step (notebook recipe)"};
  std::string weights, data, aug = "keras", mode = "frozen";
  int threads = num_threads(), workers = 1, steps = 20, warmup = 3, batch = 32, size = 96;
  bool as_json = false, profile = false;
  app.add_option("--weights", weights, "ImageNet MobileNetV2 .mcnn (alpha 1.0)")->required();
  app.add_option("--data", data, "class-folder dataset to take the images from (default: random)");
  app.add_option("--mode", mode, "frozen (base folded, head trained) or full (every layer)")
      ->check(CLI::IsMember({"frozen", "full"}));
  app.add_option("--aug", aug, "keras (the notebook's ImageDataGenerator) or none")
      ->check(CLI::IsMember({"keras", "none"}));
  app.add_option("--workers", workers, "loader threads (0: augment inline)")
      ->check(CLI::Range(0, 16));
  app.add_option("--threads", threads, "OpenMP threads")->check(CLI::Range(1, 1024));
  app.add_option("--steps", steps, "timed steps")->check(CLI::Range(2, 100000));
  app.add_option("--warmup", warmup, "untimed steps first")->check(CLI::Range(1, 1000));
  app.add_option("--batch", batch, "images per step")->check(CLI::Range(1, 4096));
  app.add_option("--size", size, "input height and width")->check(CLI::Range(32, 1024));
  app.add_flag("--json", as_json, "one JSON object on stdout");
  app.add_flag("--profile", profile,
               "also print forward and backward ms per step by layer type (phases loop)");
  CLI11_PARSE(app, argc, argv);
  try {
    set_num_threads(threads);
    const int n = batch * (steps + warmup);
    ImageFolder folder = sample_folder(data, n, size);
    ClassifierOptions co;
    co.base_weights = weights;
    co.input_height = co.input_width = size;
    co.classes = int64_t(folder.class_names.size());
    co.seed = 1;
    co.freeze_base = mode == "frozen";
    Model model(mobilenet_v2_classifier(co));
    model.compile(std::make_unique<Adam>(1e-4));
    FlowOptions fo;
    fo.batch_size = batch;
    fo.seed = 3;
    fo.workers = workers;
    if (aug == "keras") fo.augment = AugmentOptions::notebook();
    ImageFlow flow(folder, fo);

    // Whole steps inside fit().
    std::vector<double> step_ms;
    clock_type::time_point last;
    auto timer = std::make_shared<LambdaCallback>();
    timer->on_batch_end_fn = [&](int b, const Logs&) {
      const auto now = clock_type::now();
      if (b >= warmup)
        step_ms.push_back(std::chrono::duration<double, std::milli>(now - last).count());
      last = now;
    };
    FitOptions o;
    o.epochs = 1;
    o.verbose = 0;
    o.cache_features = false;
    o.callbacks = {timer};
    last = clock_type::now();
    model.fit(flow, nullptr, o);

    // Phases alone, a batch at a time.
    std::vector<double> aug_ms, base_ms, head_ms;
    Batch b;
    std::vector<size_t> ids(static_cast<size_t>(batch), 0);
    TrainingGraph& g = model.graph();
    Tensor<float> features(g.rest_input_shape().with_leading(batch));
    CategoricalCrossentropy cce(true);
    Adam adam(1e-4);
    if (profile) {
      forward_observer() = [](const std::string&, const std::string& type, double sec) {
        if (profiling()) layer_times()[type].first += sec;
      };
      backward_observer() = [](const std::string&, const std::string& type, double sec) {
        if (profiling()) layer_times()[type].second += sec;
      };
    }
    for (int s = 0; s < steps + warmup; ++s) {
      profiling() = s >= warmup;
      for (int i = 0; i < batch; ++i) ids[size_t(i)] = size_t(s * batch + i);
      auto t0 = clock_type::now();
      flow.fill_batch(ids.data(), batch, 0, b);
      const double a = ms_since(t0);
      t0 = clock_type::now();
      // Full mode: "base" is the whole training forward, "head" the loss, backward and Adam.
      if (g.has_prefix())
        g.prefix_forward(b.x.view(), features.view());
      else
        g.forward(b.x.view(), true);
      const double f = ms_since(t0);
      t0 = clock_type::now();
      if (g.has_prefix()) g.forward_rest(features.view(), true);
      cce.forward(g.logits(), b.y.view());
      g.zero_grad();
      g.backward(cce.backward().view(), true);
      adam.step(g.trainable_parameters());
      const double h = ms_since(t0);
      if (s >= warmup) {
        aug_ms.push_back(a);
        base_ms.push_back(f);
        head_ms.push_back(h);
      }
    }
    profiling() = false;
    const double step = median(step_ms);
    const double ips = batch / (step / 1000.0);
    if (as_json) {
      std::cout << nlohmann::json{{"config", std::string("minicnn ") + mode + " aug=" + aug +
                                                 " workers=" + std::to_string(workers)},
                                  {"threads", threads},
                                  {"batch", batch},
                                  {"size", size},
                                  {"steps", steps},
                                  {"step_ms", step},
                                  {"step_ms_all", step_ms},
                                  {"images_per_sec", ips},
                                  {"aug_ms", median(aug_ms)},
                                  {"base_ms", median(base_ms)},
                                  {"head_ms", median(head_ms)},
                                  {"mode", mode},
                                  {"peak_rss_mib", peak_rss_mib()},
                                  {"prefix_micro_batch", g.prefix_micro_batch()},
                                  {"isa", isa_name(active_isa())}}
                       .dump()
                << "\n";
    } else {
      std::printf(
          "minicnn %s step, %dx%d batch %d, aug %s, %d loader threads, %d OpenMP "
          "threads, %s kernels:\n"
          "  step %.2f ms median over %d steps (%.0f images/s), peak RSS %.0f MiB\n"
          "  phases alone: augmentation+preprocessing %.2f ms, %s %.2f ms, %s "
          "%.2f ms\n",
          mode.c_str(), size, size, batch, aug.c_str(), workers, threads, isa_name(active_isa()),
          step, steps, ips, peak_rss_mib(), median(aug_ms),
          g.has_prefix() ? "base forward" : "forward", median(base_ms),
          g.has_prefix() ? "head step" : "loss+backward+Adam", median(head_ms));
    }
    if (profile) print_layer_times(steps, as_json ? stderr : stdout);  // JSON keeps stdout
  } catch (const std::exception& e) {
    std::cerr << "train_step: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
