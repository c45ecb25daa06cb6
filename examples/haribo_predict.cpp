// haribo_predict: classifies photos with a model trained by haribo_train (a self-contained
// .mcnn, models/saved_model.hpp), preparing each image exactly as training did
// (models/classifier.hpp), and summarises the run:
//   haribo_predict MODEL IMAGE|DIR... [--top-k K] [--json | --csv] [--batch N] [--threads N]
// Folders are searched recursively with the dataset loader's rules. An image whose parent
// folder is named after one of the model's classes (the training layout DATA/<class>/<image>)
// counts as labelled: the summary then gives the accuracy and the confusions over those.
// Output goes to stdout; inputs that cannot be used are reported on stderr as they are met,
// skipped, and make the exit code 1.
#include <CLI/CLI.hpp>
#include <minicnn/minicnn.hpp>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <new>
#include <string>
#include <vector>

using namespace minicnn;
using json = nlohmann::json;

namespace {

constexpr int kExitUnreadable = 1;  // some inputs were skipped; the others were classified
constexpr int kExitError = 2;       // bad arguments or an unusable model: nothing classified

enum class Format { Text, Json, Csv };

struct Options {
  std::string model;
  std::vector<std::string> inputs;
  int top_k = 1, batch = 32, threads = 0;
  bool json = false, csv = false;
};

// RFC 4180: a field holding a comma, quote or line break is quoted, quotes doubled.
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

// The decoder's messages start with "image 'PATH': "; the path is printed next to them already.
std::string reason_for(const std::string& path, const std::string& error) {
  const std::string prefix = "image '" + path + "': ";
  return error.compare(0, prefix.size(), prefix) == 0 ? error.substr(prefix.size()) : error;
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

// Counts over the run: predictions per class, and for labelled images (parent folder named
// after a class) the confusion matrix [true][predicted].
struct Tally {
  std::vector<int64_t> predicted;
  std::vector<std::vector<int64_t>> confusion;
  int64_t images = 0, labelled = 0, correct = 0;
  std::vector<SkippedFile> unusable;

  explicit Tally(int64_t classes)
      : predicted(size_t(classes), 0),
        confusion(size_t(classes), std::vector<int64_t>(size_t(classes), 0)) {}
  void add(int64_t pred, int64_t truth) {
    ++images;
    ++predicted[size_t(pred)];
    if (truth < 0) return;
    ++labelled;
    correct += pred == truth;
    ++confusion[size_t(truth)][size_t(pred)];
  }
};

class Printer {
 public:
  Printer(Format f, const Classifier& c, int top_k) : format_(f), c_(c), top_k_(top_k) {
    if (format_ == Format::Csv) {
      std::string header = "file";
      for (int t = 1; t <= top_k_; ++t)
        header += ",class_" + std::to_string(t) + ",prob_" + std::to_string(t);
      std::printf("%s\n", header.c_str());
    }
  }

  void result(const std::string& file, const std::vector<ClassScore>& top, int64_t truth) {
    if (format_ == Format::Json) {
      json t = json::array();
      for (const auto& s : top)
        t.push_back({{"index", s.index}, {"label", s.label}, {"prob", s.probability}});
      json r = {{"file", file}, {"top", t}};
      if (truth >= 0) r["folder_class"] = c_.label(truth);
      results_.push_back(std::move(r));
    } else if (format_ == Format::Csv) {
      std::string row = csv_field(file);
      for (int t = 0; t < top_k_; ++t)
        row += t < int(top.size()) ? "," + csv_field(top[size_t(t)].label) + "," +
                                         fixed(top[size_t(t)].probability, 6)
                                   : std::string(",,");
      std::printf("%s\n", row.c_str());
    } else {
      std::string line = file + ":";
      for (size_t t = 0; t < top.size(); ++t)
        line += (t ? ", " : " ") + top[t].label + " " + fixed(top[t].probability, 4);
      std::printf("%s\n", line.c_str());
    }
  }

  void unusable(const SkippedFile& s) {
    std::fflush(stdout);
    std::fprintf(stderr, "haribo_predict: skipped %s: %s\n", s.path.c_str(), s.reason.c_str());
    std::fflush(stderr);
  }

  void finish(const Tally& t) {
    if (format_ == Format::Json) {
      json unusable = json::array();
      for (const auto& s : t.unusable) unusable.push_back({{"path", s.path}, {"reason", s.reason}});
      json out = {{"model", c_.path()},
                  {"results", results_},
                  {"unreadable", unusable},
                  {"summary", summary_json(t)}};
      std::cout << out.dump(1, ' ', false, json::error_handler_t::replace) << "\n";
    } else if (format_ == Format::Text) {
      std::printf("%s", summary_text(t).c_str());
    } else {  // CSV keeps stdout a pure table; the summary goes to stderr
      std::fflush(stdout);
      std::fprintf(stderr, "%s", summary_text(t).c_str());
    }
    std::fflush(stdout);
  }

 private:
  // Non-zero off-diagonal cells of row `c`, most frequent first.
  std::vector<std::pair<int64_t, int64_t>> mistakes(const Tally& t, size_t c) const {
    std::vector<std::pair<int64_t, int64_t>> m;  // (count, predicted class)
    for (size_t p = 0; p < t.confusion[c].size(); ++p)
      if (p != c && t.confusion[c][p] > 0) m.push_back({t.confusion[c][p], int64_t(p)});
    std::stable_sort(m.begin(), m.end(), [](auto& a, auto& b) { return a.first > b.first; });
    return m;
  }

  json summary_json(const Tally& t) const {
    json predicted = json::object();
    for (size_t c = 0; c < t.predicted.size(); ++c)
      predicted[c_.label(int64_t(c))] = t.predicted[c];
    json s = {{"images", t.images},
              {"unreadable", t.unusable.size()},
              {"predicted", predicted},
              {"class_folders", nullptr}};
    if (t.labelled > 0) {
      json confusion = json::object();
      for (size_t c = 0; c < t.confusion.size(); ++c) {
        json row = json::object();
        for (size_t p = 0; p < t.confusion[c].size(); ++p)
          if (t.confusion[c][p] > 0) row[c_.label(int64_t(p))] = t.confusion[c][p];
        if (!row.empty()) confusion[c_.label(int64_t(c))] = row;
      }
      s["class_folders"] = {{"images", t.labelled},
                            {"correct", t.correct},
                            {"accuracy", double(t.correct) / double(t.labelled)},
                            {"confusion", confusion}};
    }
    return s;
  }

  std::string summary_text(const Tally& t) const {
    std::string s = "\nSummary: " + std::to_string(t.images) + " image" +
                    (t.images == 1 ? "" : "s") + " classified";
    if (!t.unusable.empty())
      s += ", " + std::to_string(t.unusable.size()) + " input" +
           (t.unusable.size() == 1 ? "" : "s") + " skipped";
    s += "\n";
    size_t w = 5;
    for (const auto& n : c_.class_names()) w = std::max(w, n.size());
    auto pad = [&](std::string x) {
      x.resize(std::max(x.size(), w), ' ');
      return x;
    };
    if (t.images > 0) {
      s += "Predicted classes:\n";
      for (size_t c = 0; c < t.predicted.size(); ++c)
        if (t.predicted[c] > 0)
          s += "  " + pad(c_.label(int64_t(c))) + "  " + std::to_string(t.predicted[c]) + "\n";
    }
    if (t.labelled > 0) {
      s += "Class folders (" + std::to_string(t.labelled) + " image" +
           (t.labelled == 1 ? "" : "s") + " in a folder named after a class): accuracy " +
           fixed(double(t.correct) / double(t.labelled), 4) + " (" + std::to_string(t.correct) +
           "/" + std::to_string(t.labelled) + ")\n";
      for (size_t c = 0; c < t.confusion.size(); ++c) {
        int64_t n = 0;
        for (int64_t v : t.confusion[c]) n += v;
        if (n == 0) continue;
        s += "  " + pad(c_.label(int64_t(c))) + "  " + std::to_string(t.confusion[c][c]) + "/" +
             std::to_string(n) + " correct";
        const auto m = mistakes(t, c);
        for (size_t i = 0; i < m.size(); ++i)
          s += (i ? ", " : "; ") + std::to_string(m[i].first) + " as " + c_.label(m[i].second);
        s += "\n";
      }
    }
    if (!t.unusable.empty()) {
      s += "Skipped (exit code 1):\n";
      for (const auto& u : t.unusable) s += "  " + u.path + ": " + u.reason + "\n";
    }
    return s;
  }

  Format format_;
  const Classifier& c_;
  int top_k_;
  json results_ = json::array();
};

int run(const Options& o) {
  if (o.threads > 0) set_num_threads(o.threads);
  Classifier c(o.model);
  const Format format = o.json ? Format::Json : o.csv ? Format::Csv : Format::Text;
  const int top_k = static_cast<int>(std::min<int64_t>(o.top_k, c.classes()));
  Printer out(format, c, top_k);
  Tally tally(c.classes());

  ImageInputs in = find_image_inputs(o.inputs);
  for (const auto& u : in.unusable) {
    out.unusable(u);
    tally.unusable.push_back(u);
  }
  const int64_t pixels = int64_t(c.height()) * c.width() * 3;
  TensorF x;
  for (size_t first = 0; first < in.files.size(); first += size_t(o.batch)) {
    const size_t end = std::min(in.files.size(), first + size_t(o.batch));
    const std::vector<std::string> paths(in.files.begin() + long(first),
                                         in.files.begin() + long(end));
    std::vector<Classifier::ReadResult> read = c.read_all(paths, o.threads);
    std::vector<size_t> ok;
    for (size_t i = 0; i < read.size(); ++i) {
      if (read[i].error.empty()) {
        ok.push_back(i);
      } else {
        tally.unusable.push_back({paths[i], reason_for(paths[i], read[i].error)});
        out.unusable(tally.unusable.back());
      }
    }
    if (ok.empty()) continue;
    x.resize(Shape{int64_t(ok.size()), c.height(), c.width(), 3});
    for (size_t k = 0; k < ok.size(); ++k)
      c.preprocess_into(read[ok[k]].image, x.data() + int64_t(k) * pixels);
    const auto tops = c.classify(x, top_k);
    for (size_t k = 0; k < ok.size(); ++k) {
      const std::string& file = paths[ok[k]];
      const int64_t truth = folder_class(c, file);
      out.result(file, tops[k], truth);
      tally.add(tops[k][0].index, truth);
    }
    std::fflush(stdout);
  }
  out.finish(tally);
  return tally.unusable.empty() ? 0 : kExitUnreadable;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "haribo_predict: classify photos with a model trained by haribo_train, preparing each "
      "image as training did (EXIF orientation, resize, preprocessing)"};
  Options o;
  app.add_option("MODEL", o.model, "model file written by haribo_train (e.g. best_model.mcnn)")
      ->required();
  app.add_option("IMAGE", o.inputs,
                 "pictures, or folders searched recursively (png jpg jpeg bmp ppm tif tiff; "
                 "hidden files skipped)")
      ->required();
  app.add_option("-k,--top-k", o.top_k, "classes shown per image")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  auto* as_json =
      app.add_flag("--json", o.json, "one JSON object: {model, results, unreadable, summary}");
  app.add_flag("--csv", o.csv, "CSV table: file,class_1,prob_1,... (summary on stderr)")
      ->excludes(as_json);
  app.add_option("--batch", o.batch, "images per forward pass")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app.add_option("--threads", o.threads, "threads for decoding and the network (default: all)")
      ->check(CLI::Range(1, 1024));
  app.footer(
      "Output: text by default, one line per image (FILE: CLASS PROB, ...), then a summary:\n"
      "predictions per class and, for images whose parent folder is named after a class\n"
      "(DATA/<class>/<image>), the accuracy and the confusions. JSON: {\"model\", \"results\":\n"
      "[{\"file\", \"top\": [{\"index\", \"label\", \"prob\"}], \"folder_class\"?}], "
      "\"unreadable\":\n"
      "[{\"path\", \"reason\"}], \"summary\": {\"images\", \"unreadable\", \"predicted\": {class:\n"
      "count}, \"class_folders\": null | {\"images\", \"correct\", \"accuracy\", \"confusion\":\n"
      "{true: {predicted: count}}}}}.\n"
      "Exit codes: 0 every input classified; 1 some inputs skipped (missing, not an image,\n"
      "corrupt or truncated, a folder without images: each listed with its reason on stderr),\n"
      "the others classified; 2 bad arguments or a model file that is not a classifier.");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : kExitError;
  }
  try {
    return run(o);
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr,
                 "haribo_predict: error: out of memory (batches of %d images at the model's "
                 "input size); try a smaller --batch or fewer --threads\n",
                 o.batch);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "haribo_predict: error: %s\n", e.what());
  }
  return kExitError;
}
