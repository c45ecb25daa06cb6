// The pictures and report of a training run, from what fit() and classification_report()
// return: writes curves.png and curves.svg (accuracy and loss, training against validation,
// the best epoch marked), augmented_samples.png (the notebook's "training image examples"),
// confusion_matrix.png and report.html (all of them inlined) into one folder. Part of the
// minicnn::plot component (cairo); the core library does not need it.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "../train/history.hpp"
#include "../train/metrics.hpp"
#include "plot.hpp"

namespace minicnn::plot {

struct TrainingReportInput {
  std::string title;
  const History* history = nullptr;
  const ClassificationReport* report = nullptr;  // on the validation images
  int best_epoch = -1;                           // index into the history, -1: none
  std::vector<std::pair<std::string, std::string>> settings, summary;
  std::vector<GridItem> augmented;      // training images as the network saw them
  std::vector<ReportMistake> mistakes;  // worst first
};

inline Curves curves_of(const History& h, int best_epoch, const std::string& title = "") {
  Curves c;
  c.accuracy = h.get("accuracy");
  c.val_accuracy = h.has("val_accuracy") ? h.get("val_accuracy") : std::vector<double>{};
  c.loss = h.get("loss");
  c.val_loss = h.has("val_loss") ? h.get("val_loss") : std::vector<double>{};
  c.best_epoch = best_epoch;
  c.title = title;
  return c;
}

// Writes the pictures and report.html into `dir` (which must exist).
inline void write_training_report(const TrainingReportInput& in, const std::string& dir) {
  ReportData d;
  d.title = in.title;
  d.settings = in.settings;
  d.summary = in.summary;
  d.best_epoch = in.best_epoch;
  if (in.history && in.history->size() > 0) {
    const History& h = *in.history;
    const Curves c = curves_of(h, in.best_epoch);
    const auto png = render_curves_png(c);
    write_bytes(dir + "/curves.png", png);
    write_bytes(dir + "/curves.svg", render_curves_svg(c));
    d.pictures.emplace_back("Accuracy and loss per epoch", png);
    const auto lr = h.get("learning_rate");
    for (size_t i = 0; i < h.size(); ++i) {
      ReportEpochRow r;
      r.epoch = h.epoch[i] + 1;
      r.loss = h.get("loss")[i];
      r.accuracy = h.get("accuracy")[i];
      r.val_loss = h.get("val_loss")[i];
      r.val_accuracy = h.get("val_accuracy")[i];
      r.learning_rate = lr[i];
      r.seconds = i < h.seconds.size() ? h.seconds[i] : NAN;
      d.epochs.push_back(r);
    }
  }
  if (!in.augmented.empty()) {
    const auto png = render_image_grid_png(in.augmented, 4, 160, "Training images as augmented");
    write_bytes(dir + "/augmented_samples.png", png);
    d.pictures.emplace_back("Augmented training images with their labels", png);
  }
  if (in.report) {
    const ClassificationReport& r = *in.report;
    const auto png = render_confusion_matrix_png(r.confusion, r.class_names, "Validation images");
    write_bytes(dir + "/confusion_matrix.png", png);
    d.pictures.emplace_back("Confusion matrix of the validation images (best model)", png);
    for (const auto& m : r.per_class)
      d.classes.push_back({m.name, m.precision, m.recall, m.f1, m.support});
  }
  d.mistakes = in.mistakes;
  write_report_html(d, dir + "/report.html");
}

}  // namespace minicnn::plot
