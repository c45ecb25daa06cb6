// haribo_train: the origin notebook's training half as a command-line program.
// Trains a classifier on a class-folder dataset (one sub-folder per class) from an
// ImageNet MobileNetV2 base, with the notebook's recipe as defaults (96x96, frozen alpha 1.0
// base, Dense 128 relu + Dropout 0.5 + softmax head, Adam 1e-4, batch 32, 50 epochs,
// EarlyStopping on val_loss with patience 5 restoring the best weights, the notebook's
// augmentation on the training images only, Keras' validation_split 0.2) and the fixes the
// notebook needed (x/127.5-1 preprocessing, validation never augmented). Writes into --out:
// best_model.mcnn, last_checkpoint.mcnn, history.csv, curves.png/.svg, augmented_samples.png,
// confusion_matrix.png, report.html and summary.json.
#include <CLI/CLI.hpp>
#include <minicnn/minicnn.hpp>
#include <minicnn/plot/training_report.hpp>

#include "gummy_renderer.hpp"

#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>

using namespace minicnn;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct Settings {
  std::string data, val_data, out = "haribo_out", weights;
  double alpha = 1.0;
  int size = 96, batch_size = 32, epochs = 50, patience = 5, dense = 128, threads = 0, workers = 1,
      finetune = 0, finetune_epochs = 10, verbose = -1;
  double lr = 1e-4, finetune_lr = 1e-5, dropout = 0.5, validation_split = 0.2;
  std::string preprocess = "tf", interpolation = "nearest", split = "keras";
  std::string on_write_error = "stop";  // per invocation, like --threads: not in to_json()
  uint64_t seed = 1;
  bool exif = true, augment = true, cache_features = false, report = true;
  AugmentOptions aug = AugmentOptions::notebook();

  json to_json() const {
    return {{"data", data},
            {"val_data", val_data},
            {"weights", weights},
            {"alpha", alpha},
            {"size", size},
            {"batch_size", batch_size},
            {"epochs", epochs},
            {"patience", patience},
            {"dense", dense},
            {"dropout", dropout},
            {"lr", lr},
            {"finetune", finetune},
            {"finetune_epochs", finetune_epochs},
            {"finetune_lr", finetune_lr},
            {"validation_split", validation_split},
            {"split", split},
            {"seed", seed},
            {"preprocess", preprocess},
            {"interpolation", interpolation},
            {"exif", exif},
            {"augment", augment},
            {"augmentation", aug.to_json()},
            {"cache_features", cache_features}};
  }
};

double peak_rss_mb() {
  std::ifstream f("/proc/self/status");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_maxrss) / 1024.0;
}

std::string default_weights(double alpha) {
  const std::string name =
      alpha == 1.0
          ? "mobilenet_v2_1.0_224_no_top.mcnn"
          : "mobilenet_v2_" + std::string(alpha == 0.35 ? "0.35" : "x") + "_224_no_top.mcnn";
  for (const std::string& dir :
       {std::string("weights"), std::string(MINICNN_SOURCE_DIR) + "/weights"})
    if (fs::exists(dir + "/" + name)) return dir + "/" + name;
  return std::string(MINICNN_SOURCE_DIR) + "/weights/" + name;
}

Split make_split(const ImageFolder& ds, const Settings& s) {
  if (s.split == "keras") return keras_validation_split(ds, s.validation_split);
  if (s.split == "random") return random_split(ds, s.validation_split, s.seed);
  if (s.split.rfind("grouped:", 0) == 0) {
    const std::string re = s.split.substr(8);
    Split sp = grouped_split(ds, s.validation_split, re, s.seed);
    std::cout << "Grouped split on /" << re << "/: " << count_groups(ds, re) << " groups of "
              << ds.size() << " files\n";
    return sp;
  }
  throw ConfigError("--split must be keras, random or grouped:REGEX, got '" + s.split + "'");
}

// Training images after augmentation (the notebook's "training image examples").
std::vector<plot::GridItem> augmented_grid(const ImageFlow& flow, int count) {
  std::vector<plot::GridItem> items;
  const auto& ds = flow.folder();
  std::vector<float> buf(ds.image_bytes());
  const auto order = flow.order(0);
  for (int i = 0; i < count && size_t(i) < order.size(); ++i) {
    const size_t s = order[size_t(i)];
    flow.augmented_sample(s, 0, buf.data());
    plot::RgbImage img;
    img.width = ds.width;
    img.height = ds.height;
    img.pixels.resize(buf.size());
    for (size_t k = 0; k < buf.size(); ++k)
      img.pixels[k] = static_cast<uint8_t>(std::min(255.0f, std::max(0.0f, std::round(buf[k]))));
    items.push_back({std::move(img), ds.class_names[size_t(flow.label(s))]});
  }
  return items;
}

std::string fixed(double v, int digits) {
  if (!std::isfinite(v)) return "-";
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", digits, v);
  return b;
}

// The augmentation in words, only what is on.
std::string describe(const AugmentOptions& a) {
  if (!a.random()) return "none";
  std::string d;
  auto add = [&](const std::string& part) { d += (d.empty() ? "" : ", ") + part; };
  auto num = [](double v) {
    std::string t = fixed(v, 3);
    while (t.size() > 1 && t.back() == '0') t.pop_back();
    if (t.back() == '.') t.pop_back();
    return t;
  };
  if (a.rotation_range) add("rotation +-" + num(a.rotation_range) + " deg");
  if (a.width_shift_range) add("width shift " + num(a.width_shift_range));
  if (a.height_shift_range) add("height shift " + num(a.height_shift_range));
  if (a.shear_range) add("shear +-" + num(a.shear_range) + " deg");
  if (a.zoom_lo != 1 || a.zoom_hi != 1) add("zoom " + num(a.zoom_lo) + ".." + num(a.zoom_hi));
  if (a.horizontal_flip) add("horizontal flip");
  if (a.vertical_flip) add("vertical flip");
  if (a.brightness_range)
    add("brightness " + num((*a.brightness_range)[0]) + ".." + num((*a.brightness_range)[1]));
  if (a.channel_shift_range) add("channel shift " + num(a.channel_shift_range));
  add("fill " + to_string(a.fill_mode));
  return d;
}

// The training state a checkpoint holds beyond the weights: its History, and whether its
// phase is over (every epoch run, or EarlyStopping stopped it).
struct ResumedPhase {
  History history;
  int next_epoch = 0;
  bool stopped_early = false;
};
ResumedPhase resumed_phase(const McnnFile& ck) {
  ResumedPhase r;
  const json& tr = ck.metadata.value("training", json::object());
  if (tr.contains("history")) r.history = History::from_json(tr["history"]);
  r.next_epoch = tr.value("epoch", -1) + 1;
  if (tr.contains("callbacks") && tr["callbacks"].contains("EarlyStopping") &&
      tr["callbacks"]["EarlyStopping"].is_object())
    r.stopped_early = tr["callbacks"]["EarlyStopping"].value("stopped_epoch", 0) > 0;
  return r;
}

// What EarlyStopping(restore_best_weights) does at the end of fit, for a phase that a killed
// run had finished: the best epoch's weights, which the checkpoint holds.
void restore_best_weights(Model& model, const McnnFile& ck) {
  const std::string prefix = "callbacks/EarlyStopping/best/";
  std::vector<std::pair<std::string, Tensor<float>>> best;
  for (const auto& t : ck.tensors)
    if (t.name.rfind(prefix, 0) == 0 && t.dtype == DType::float32)
      best.emplace_back(t.name.substr(prefix.size()), t.value);
  model.set_trainable_state(best);
}

// history.csv as the checkpoint left it: the rows of its epochs, once each. A run killed after
// it logged an epoch but before that epoch's checkpoint reached the disk logged rows that the
// resumed run logs again.
void trim_history_csv(const std::string& path, int last_epoch) {
  std::ifstream in(path);
  std::string line, out;
  if (!std::getline(in, line)) return;
  out = line + "\n";
  std::vector<bool> seen(size_t(std::max(0, last_epoch + 1)), false);
  while (std::getline(in, line)) {
    char* end = nullptr;
    const long e = std::strtol(line.c_str(), &end, 10);
    if (end == line.c_str() || *end != ',' || e < 0 || e > last_epoch || seen[size_t(e)]) continue;
    seen[size_t(e)] = true;
    out += line + "\n";
  }
  in.close();
  write_file_atomic(path, out.data(), out.size());
}

int run(Settings s, bool resume, bool epochs_given) {
  const auto t_start = std::chrono::steady_clock::now();
  if (s.threads > 0) set_num_threads(s.threads);
  fs::create_directories(s.out);
  const std::string best_path = s.out + "/best_model.mcnn",
                    last_path = s.out + "/last_checkpoint.mcnn";
  // Temporary files of a run that was killed while writing (they can be as large as a model).
  for (const char* f :
       {"best_model.mcnn", "last_checkpoint.mcnn", "history.csv", "summary.json", "report.html",
        "curves.png", "curves.svg", "augmented_samples.png", "confusion_matrix.png"})
    remove_stale_temporaries(s.out + "/" + f);

  int phase_resumed = 1;
  McnnFile ck;
  if (resume) {
    if (!fs::exists(last_path))
      throw ConfigError("--resume: no checkpoint at '" + last_path +
                        "' (train without --resume first)");
    ck = read_mcnn(last_path);
    const json& extra = ck.metadata.value("extra", json::object());
    if (!extra.contains("settings"))
      throw FormatError("'" + last_path + "' was not written by haribo_train (no settings)");
    const json& st = extra["settings"];
    // The run continues with the settings it was started with.
    s.data = st.value("data", s.data);
    s.val_data = st.value("val_data", s.val_data);
    s.weights = st.value("weights", s.weights);
    s.size = st.value("size", s.size);
    s.batch_size = st.value("batch_size", s.batch_size);
    if (!epochs_given) s.epochs = st.value("epochs", s.epochs);  // --epochs N trains further
    s.patience = st.value("patience", s.patience);
    s.dense = st.value("dense", s.dense);
    s.dropout = st.value("dropout", s.dropout);
    s.lr = st.value("lr", s.lr);
    s.finetune = st.value("finetune", s.finetune);
    s.finetune_epochs = st.value("finetune_epochs", s.finetune_epochs);
    s.finetune_lr = st.value("finetune_lr", s.finetune_lr);
    s.validation_split = st.value("validation_split", s.validation_split);
    s.split = st.value("split", s.split);
    s.seed = st.value("seed", s.seed);
    s.preprocess = st.value("preprocess", s.preprocess);
    s.interpolation = st.value("interpolation", s.interpolation);
    s.exif = st.value("exif", s.exif);
    s.augment = st.value("augment", s.augment);
    if (st.contains("augmentation")) s.aug = AugmentOptions::from_json(st["augmentation"]);
    s.cache_features = st.value("cache_features", s.cache_features);
    phase_resumed = extra.value("phase", 1);
    std::cout << "Resuming from '" << last_path << "' (phase " << phase_resumed
              << ") with its settings\n";
  }
  if (s.data.empty()) {
    // The embedded default: photos-like synthetic gummies, rendered once into the output folder.
    s.data = s.out + "/synthetic_gummies";
    std::cout << "No --data given: training on SYNTHETIC gummy candies (rendered by this program, "
                 "not photos) in "
              << s.data << ".\n"
              << "  Your own photos: haribo_train --data DIR, one sub-folder per class "
                 "(DIR/bear/*.jpg, DIR/ring/*.jpg, ...).\n"
              << "  Take them with a webcam: haribo_camera MODEL --record CLASS --out DIR.\n";
    gummies::GummyDatasetOptions go;
    go.threads = s.threads;  // never changes the pictures
    const auto rep = gummies::render_gummy_dataset(s.data, go);
    std::cout << (rep.reused ? "Using " : "Rendered ") << rep.images << " synthetic images of "
              << rep.classes.size() << " classes (" << fixed(rep.seconds, 1) << " s)\n";
  }
  // The paths are kept in the model file's JSON metadata (the settings), which is UTF-8 text.
  for (const auto& [opt, path] : {std::pair<const char*, const std::string*>{"--data", &s.data},
                                  {"--val-data", &s.val_data},
                                  {"--weights", &s.weights}})
    if (!path->empty() && !detail::valid_utf8_name(*path))
      throw ConfigError(std::string(opt) + " path is not valid UTF-8; it is stored in the model " +
                        "file's JSON metadata: rename it or use a link with a UTF-8 name");
  if (!s.augment) s.aug = AugmentOptions{};
  if (s.weights.empty()) s.weights = default_weights(s.alpha);
  if (!fs::exists(s.weights))
    throw ConfigError("ImageNet weights '" + s.weights +
                      "' not found. Make them with:\n  weights/fetch_keras_weights.sh          "
                      "# downloads the official Keras weights\n  weights/fetch_keras_weights.sh "
                      "--shared # or converts the copies in ../shared/weights-src");

  // Data: decoded once, kept in memory at the input size.
  FolderOptions fo;
  fo.height = fo.width = s.size;
  fo.interpolation = interpolation_from_string(s.interpolation);
  fo.exif_orientation = s.exif;
  ImageFolder ds = load_image_folder(s.data, fo);
  std::optional<ImageFolder> val_ds;
  Split split;
  if (!s.val_data.empty()) {
    check_same_classes(ds, s.val_data);
    fo.classes = ds.class_names;
    val_ds = load_image_folder(s.val_data, fo);
    for (size_t i = 0; i < ds.size(); ++i) split.train.push_back(i);
    for (size_t i = 0; i < val_ds->size(); ++i) split.validation.push_back(i);
  } else {
    split = make_split(ds, s);
  }
  const ImageFolder& vds = val_ds ? *val_ds : ds;
  std::cout << "Training on " << split.train.size() << " images, validating on "
            << split.validation.size() << " (" << s.split << " split"
            << (s.augment ? ", augmentation on training images only" : ", no augmentation")
            << ")\n";
  if (split.validation.empty())
    throw ConfigError(
        "the validation split is empty: use more images or a larger --validation-split");

  FlowOptions tf;
  tf.batch_size = s.batch_size;
  tf.seed = s.seed;
  tf.augment = s.aug;
  tf.preprocess = preprocess_from_string(s.preprocess);
  tf.workers = s.workers;
  ImageFlow train(ds, split.train, tf);
  FlowOptions vf = tf;
  vf.augment = AugmentOptions{};
  vf.shuffle = false;
  vf.workers = 0;
  ImageFlow val(vds, split.validation, vf);

  // Model.
  ClassifierOptions co;
  co.base_weights = s.weights;
  co.input_height = co.input_width = s.size;
  co.classes = static_cast<int64_t>(ds.class_names.size());
  co.dense_units = s.dense;
  co.dropout = s.dropout;
  co.seed = s.seed;
  Model model(mobilenet_v2_classifier(co));
  model.info().class_names = ds.class_names;
  model.info().preprocess = tf.preprocess;
  model.info().interpolation = fo.interpolation;
  model.info().exif_orientation = s.exif;
  model.info().extra = {{"settings", s.to_json()}, {"phase", 1}};
  model.compile(std::make_unique<Adam>(s.lr));
  std::cout << model.net().summary(/*expand_nested=*/false);

  ModelCheckpointOptions mco;
  mco.filepath = best_path;
  mco.save_best_only = true;
  mco.verbose = 1;
  mco.on_write_error = s.on_write_error;
  EarlyStoppingOptions eso;
  eso.patience = s.patience;
  eso.restore_best_weights = true;
  eso.verbose = 1;
  int write_errors = 0;  // of the callbacks of finished fits
  std::vector<std::shared_ptr<Callback>> live;
  auto count_write_errors = [&] {
    for (const auto& c : live) {
      if (auto* m = dynamic_cast<ModelCheckpoint*>(c.get())) write_errors += m->write_errors();
      if (auto* b = dynamic_cast<BackupAndRestore*>(c.get())) write_errors += b->write_errors();
    }
    live.clear();
  };
  auto make_callbacks = [&](bool append_csv, std::optional<double> best) {
    ModelCheckpointOptions m = mco;
    m.initial_value_threshold = best;
    live = {std::make_shared<ModelCheckpoint>(m), std::make_shared<EarlyStopping>(eso),
            std::make_shared<CSVLogger>(s.out + "/history.csv", ',', append_csv),
            std::make_shared<BackupAndRestore>(last_path, s.on_write_error)};
    return live;
  };

  History h1, h2;
  double fit_seconds = 0;
  int64_t trained_images = 0;
  // Images trained on in this process (a resumed run counts only its own epochs).
  auto counter = std::make_shared<LambdaCallback>();
  counter->on_epoch_end_fn = [&](int, Logs&) { trained_images += int64_t(train.size()); };
  auto timed_fit = [&](FitOptions o) {
    o.callbacks.push_back(counter);
    const auto t0 = std::chrono::steady_clock::now();
    History h = model.fit(train, &val, o);
    fit_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    count_write_errors();
    return h;
  };
  // A resumed phase continues after the checkpoint's epoch; one that the killed run had
  // finished is not trained again, its History and best weights come from the checkpoint.
  auto resume_phase = [&](FitOptions& o) -> std::optional<History> {
    const ResumedPhase rp = resumed_phase(ck);
    o.initial_epoch = model.load_checkpoint(last_path);
    trim_history_csv(s.out + "/history.csv", o.initial_epoch - 1);
    if (o.initial_epoch < o.epochs && !rp.stopped_early) return std::nullopt;
    model.discard_resumed_training();  // for this phase's fit, which does not run
    std::cout << "The checkpoint's phase " << phase_resumed << " has finished ("
              << (rp.stopped_early ? "stopped early" : "all epochs run")
              << "); nothing to train again in it\n";
    restore_best_weights(model, ck);
    return rp.history;
  };
  auto stopped_by_write_error = [&](const History& h) {
    return write_errors > 0 && s.on_write_error == "stop" && h.stop_reason.empty();
  };
  FitOptions fo1;
  fo1.epochs = s.epochs;
  fo1.verbose = s.verbose;
  fo1.cache_features = s.cache_features ? std::optional<bool>(true) : std::nullopt;
  if (phase_resumed == 1) {
    fo1.callbacks = make_callbacks(resume, std::nullopt);
    std::optional<History> done;
    if (resume) done = resume_phase(fo1);
    h1 = done ? *done : timed_fit(fo1);
    if (stopped_by_write_error(h1)) h1.stop_reason = "write error";
  } else if (ck.metadata.value("extra", json::object()).contains("phase1_history")) {
    h1 = History::from_json(ck.metadata["extra"]["phase1_history"]);
  }
  if (s.finetune != 0 && h1.stop_reason != "interrupted" && h1.stop_reason != "non-finite loss" &&
      h1.stop_reason != "write error") {
    // Phase 2: unfreeze the top blocks, train them with a lower learning rate.
    std::cout << unfreeze_top_blocks(model.net(), s.finetune) << "\n";
    model.info().extra["phase"] = 2;
    model.info().extra["phase1_history"] = h1.to_json();  // a resumed phase 2 reports both
    model.compile(std::make_unique<Adam>(s.finetune_lr));
    FitOptions fo2 = fo1;
    fo2.cache_features = std::nullopt;
    const int done = int(h1.size()) ? h1.epoch.back() + 1 : 0;
    fo2.initial_epoch = done;
    fo2.epochs = done + s.finetune_epochs;
    std::optional<double> best;
    if (h1.has("val_loss"))
      for (double v : h1["val_loss"])
        if (!best || v < *best) best = v;
    fo2.callbacks = make_callbacks(true, best);
    std::optional<History> done2;
    if (resume && phase_resumed == 2) done2 = resume_phase(fo2);
    h2 = done2 ? *done2 : timed_fit(fo2);
    if (stopped_by_write_error(h2)) h2.stop_reason = "write error";
  }
  // The two phases as one history.
  History h = h1;
  for (size_t i = 0; i < h2.size(); ++i) {
    Logs l;
    for (size_t k = 0; k < h2.keys.size(); ++k) l.set(h2.keys[k], h2.values[k][i]);
    h.record(h2.epoch[i], l, h2.seconds[i]);
  }
  if (!h2.stop_reason.empty()) h.stop_reason = h2.stop_reason;

  // Evaluate the best model (restored by EarlyStopping) on the validation images.
  Tensor<float> probs = model.predict(val);
  std::vector<int> labels(val.size());
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = val.label(i);
  ClassificationReport rep = classification_report(probs.view(), labels, ds.class_names);

  int best_epoch = -1;
  double best_val_loss = NAN, best_val_acc = NAN;
  if (h.has("val_loss"))
    for (size_t i = 0; i < h.size(); ++i)
      if (std::isfinite(h["val_loss"][i]) && (best_epoch < 0 || h["val_loss"][i] < best_val_loss)) {
        best_epoch = int(i);
        best_val_loss = h["val_loss"][i];
        best_val_acc = h.get("val_accuracy")[i];
      }
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  json summary = {
      {"classes", ds.class_names},
      {"train_count", split.train.size()},
      {"val_count", split.validation.size()},
      {"skipped_files", ds.skipped.size()},
      {"epochs_run", h.size()},
      {"best_epoch", best_epoch + 1},
      {"best_val_loss", best_val_loss},
      {"best_val_accuracy", best_val_acc},
      {"final_val_accuracy", rep.accuracy},
      {"macro_f1", rep.macro_f1},
      {"stop_reason", h.stop_reason},
      {"write_errors", write_errors},
      {"train_images_per_sec", fit_seconds > 0 ? double(trained_images) / fit_seconds : 0.0},
      {"end_to_end_images_per_sec", wall > 0 ? double(trained_images) / wall : 0.0},
      {"fit_seconds", fit_seconds},
      {"wall_seconds", wall},
      {"peak_rss_mb", peak_rss_mb()},
      {"threads", num_threads()},
      {"isa", isa_name(active_isa())},
      {"model", best_path},
      {"settings", s.to_json()}};
  // Strings from file names are UTF-8 (the dataset checks its class names); anything else
  // would become U+FFFD rather than an invalid file.
  const std::string summary_text =
      summary.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
  write_file_atomic(s.out + "/summary.json", summary_text.data(), summary_text.size());
  // The whole run's History (both phases, resumed epochs included) replaces the live CSV.
  const std::string csv = h.to_csv();
  write_file_atomic(s.out + "/history.csv", csv.data(), csv.size());

  if (s.report) {
    plot::TrainingReportInput in;
    in.title = "minicnn: " + fs::path(s.data).filename().string();
    in.history = &h;
    in.report = &rep;
    in.best_epoch = best_epoch;
    const json settings = s.to_json();
    for (const auto& [k, v] : settings.items()) {
      if (k == "augmentation") continue;
      in.settings.emplace_back(k, v.is_string() ? v.get<std::string>() : v.dump());
    }
    in.settings.emplace_back("augmentation (training only)", describe(s.aug));
    in.summary = {
        {"best epoch", std::to_string(best_epoch + 1) + " of " + std::to_string(h.size())},
        {"best val_loss", fixed(best_val_loss, 4)},
        {"best val_accuracy", fixed(best_val_acc, 4)},
        {"macro F1 (best model)", fixed(rep.macro_f1, 3)},
        {"images", std::to_string(split.train.size()) + " training, " +
                       std::to_string(split.validation.size()) + " validation"},
        {"training speed", fixed(summary["train_images_per_sec"].get<double>(), 0) + " images/s"},
        {"wall time", fixed(wall, 1) + " s"},
        {"peak memory", fixed(summary["peak_rss_mb"].get<double>(), 0) + " MB"},
        {"threads", std::to_string(num_threads())}};
    if (!h.stop_reason.empty()) in.summary.emplace_back("stopped by", h.stop_reason);
    if (!ds.skipped.empty())
      in.summary.emplace_back("unreadable files skipped", std::to_string(ds.skipped.size()));
    in.augmented = augmented_grid(train, 16);
    for (size_t i = 0; i < rep.mistakes.size() && i < 24; ++i) {
      const auto& m = rep.mistakes[i];
      plot::RgbImage img;
      img.width = vds.width;
      img.height = vds.height;
      const uint8_t* px = vds.image(val.folder_index(m.sample));
      img.pixels.assign(px, px + vds.image_bytes());
      in.mistakes.push_back({std::move(img), val.file(m.sample), ds.class_names[size_t(m.label)],
                             ds.class_names[size_t(m.predicted)], m.probability});
    }
    plot::write_training_report(in, s.out);
  }
  std::cout << "\nBest epoch " << best_epoch + 1 << ": val_loss " << best_val_loss
            << ", val_accuracy " << best_val_acc << " (" << h.size() << " epochs, "
            << std::lround(wall) << " s)\n"
            << "Model:  " << best_path << "\n"
            << "Report: " << s.out << "/report.html\n";
  if (write_errors > 0)
    std::cerr << "haribo_train: " << write_errors << " file(s) could not be written (see above); "
              << (h.stop_reason == "write error"
                      ? "training stopped (--on-write-error stop). The files already saved are "
                        "intact: make room and continue with --resume.\n"
                      : "training went on (--on-write-error continue).\n");
  if (h.stop_reason == "write error") return 4;
  return h.stop_reason == "non-finite loss" ? 3 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "haribo_train: train an image classifier on a folder of photos (one sub-folder per "
      "class) from ImageNet MobileNetV2, with the Haribo notebook's recipe as defaults"};
  Settings s;
  bool resume = false, no_augment = false, no_exif = false, no_hflip = false, no_report = false;
  std::vector<double> brightness;
  std::string fill = "nearest";
  app.add_option("--data", s.data,
                 "dataset folder: DATA/<class>/<image> (default: synthetic gummies rendered into "
                 "OUT/synthetic_gummies)");
  app.add_option("--val-data", s.val_data, "separate validation folder with the same classes");
  app.add_option("--out", s.out, "output folder")->capture_default_str();
  app.add_option(
      "--weights", s.weights,
      "ImageNet MobileNetV2 .mcnn (default: weights/mobilenet_v2_<alpha>_224_no_top.mcnn)");
  app.add_option("--alpha", s.alpha, "base width when --weights is not given")
      ->check(CLI::IsMember({1.0, 0.35}))
      ->capture_default_str();
  app.add_option("--size", s.size, "input height and width")
      ->check(CLI::Range(32, 1024))
      ->capture_default_str();
  app.add_option("--batch-size", s.batch_size, "images per step")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app.add_option("--epochs", s.epochs, "maximum epochs")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--lr", s.lr, "Adam learning rate")
      ->check(CLI::Range(0.0, 10.0))
      ->capture_default_str();
  app.add_option("--patience", s.patience, "EarlyStopping patience on val_loss")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  app.add_option("--dense", s.dense, "units of the hidden Dense layer (0: none)")
      ->check(CLI::Range(0, 65536))
      ->capture_default_str();
  app.add_option("--dropout", s.dropout, "Dropout rate before the output")
      ->check(CLI::Range(0.0, 0.99))
      ->capture_default_str();
  app.add_option("--validation-split", s.validation_split, "fraction held out for validation")
      ->check(CLI::Range(0.01, 0.99))
      ->capture_default_str();
  app.add_option("--split", s.split,
                 "keras (first files of each class), random (seeded, stratified) or grouped:REGEX")
      ->capture_default_str();
  app.add_option("--seed", s.seed,
                 "seed of the split, shuffling, augmentation and head initialisation")
      ->capture_default_str();
  app.add_option("--preprocess", s.preprocess,
                 "tf (x/127.5-1, what the weights expect) or unit (x/255, the notebook's)")
      ->check(CLI::IsMember({"tf", "unit"}))
      ->capture_default_str();
  app.add_option("--interpolation", s.interpolation, "resize: nearest (Keras' default) or bilinear")
      ->check(CLI::IsMember({"nearest", "bilinear"}))
      ->capture_default_str();
  app.add_flag("--no-exif", no_exif, "ignore JPEG EXIF orientation (Keras' behaviour)");
  app.add_flag("--no-augment", no_augment, "train on the images as they are");
  app.add_option("--rotation-range", s.aug.rotation_range, "degrees")
      ->check(CLI::Range(0.0, 360.0))
      ->capture_default_str();
  app.add_option("--width-shift", s.aug.width_shift_range, "fraction of the width (< 1) or pixels")
      ->check(CLI::Range(0.0, 4096.0))
      ->capture_default_str();
  app.add_option("--height-shift", s.aug.height_shift_range,
                 "fraction of the height (< 1) or pixels")
      ->check(CLI::Range(0.0, 4096.0))
      ->capture_default_str();
  app.add_option("--shear", s.aug.shear_range, "degrees")
      ->check(CLI::Range(0.0, 90.0))
      ->capture_default_str();
  double zoom = 0.1;
  app.add_option("--zoom", zoom, "zoom range z: scale in [1-z, 1+z]")
      ->check(CLI::Range(0.0, 0.99))
      ->capture_default_str();
  app.add_flag("--no-horizontal-flip", no_hflip, "do not mirror images left-right");
  app.add_flag("--vertical-flip", s.aug.vertical_flip, "also mirror images top-bottom");
  app.add_option("--brightness", brightness, "brightness range LO HI (e.g. 0.8 1.2)")->expected(2);
  app.add_option("--channel-shift", s.aug.channel_shift_range, "channel shift range (pixel units)")
      ->check(CLI::Range(0.0, 255.0));
  app.add_option("--fill-mode", fill, "nearest, constant, reflect or wrap")
      ->check(CLI::IsMember({"nearest", "constant", "reflect", "wrap"}))
      ->capture_default_str();
  app.add_flag(
      "--cache-features", s.cache_features,
      "compute the frozen base's outputs once (requires --no-augment; then epochs take seconds)");
  app.add_option("--finetune", s.finetune,
                 "then unfreeze the top N blocks (-1: all) and train again")
      ->check(CLI::Range(-1, 17));
  app.add_option("--finetune-epochs", s.finetune_epochs, "epochs of the fine-tuning phase")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--finetune-lr", s.finetune_lr, "learning rate of the fine-tuning phase")
      ->check(CLI::Range(0.0, 10.0))
      ->capture_default_str();
  app.add_flag(
      "--resume", resume,
      "continue from OUT/last_checkpoint.mcnn with its settings (--epochs may raise the total)");
  app.add_option("--threads", s.threads, "OpenMP threads (default: all cores)")
      ->check(CLI::Range(0, 1024));
  app.add_option("--workers", s.workers, "background threads preparing batches")
      ->check(CLI::Range(0, 64))
      ->capture_default_str();
  app.add_option("--verbose", s.verbose,
                 "0 silent, 1 progress bar, 2 one line per epoch (default: 1 on a terminal)")
      ->check(CLI::Range(-1, 2));
  app.add_flag("--no-report", no_report, "skip the pictures and report.html");
  app.add_option("--on-write-error", s.on_write_error,
                 "when the best model or the checkpoint cannot be written (disk full): stop "
                 "(exit code 4; the files already saved stay intact) or continue with a warning")
      ->check(CLI::IsMember({"stop", "continue"}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  s.aug.zoom_range(zoom);
  s.aug.horizontal_flip = !no_hflip;
  s.aug.fill_mode = fill_mode_from_string(fill);
  if (!brightness.empty())
    s.aug.brightness_range = std::array<double, 2>{brightness[0], brightness[1]};
  s.augment = !no_augment;
  s.exif = !no_exif;
  s.report = !no_report;
  if (s.cache_features && s.augment) {
    std::cerr << "haribo_train: --cache-features needs --no-augment (augmented images change every "
                 "epoch)\n";
    return 2;
  }
  try {
    return run(s, resume, app.count("--epochs") > 0);
  } catch (const std::exception& e) {
    std::cerr << "haribo_train: error: " << e.what() << "\n";
    return 1;
  }
}
