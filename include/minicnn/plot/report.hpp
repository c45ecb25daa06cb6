// The run report: one self-contained report.html (no script, no external resource; pictures are
// inlined as data: URIs and a Content-Security-Policy forbids loading anything else), readable
// offline and printable. Sections, each left out when it has no data: title, summary line,
// settings, pictures (curves, sample grid, confusion matrix: whatever the caller passes, in
// order), epochs table (best row highlighted), per-class table, worst mistakes with thumbnails.
//
// Conventions: every caller string goes through html_escape() (class names and file paths come
// from folder and file names); NaN numbers are shown as a dash; best_epoch is a 0-based index
// into `epochs` (-1: none), like Curves::best_epoch; probabilities are in [0, 1].
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../io/format.hpp"
#include "html.hpp"
#include "png.hpp"
#include "rgb_image.hpp"

namespace minicnn::plot {

struct ReportClassRow {
  std::string name;
  double precision = NAN, recall = NAN, f1 = NAN;
  int64_t support = 0;
};
struct ReportMistake {
  RgbImage thumbnail;  // may be empty (0x0): no picture
  std::string file, true_class, predicted_class;
  double probability = NAN;  // of the predicted class
};
struct ReportEpochRow {  // NaN = absent
  int epoch = 0;
  double loss = NAN, accuracy = NAN, val_loss = NAN, val_accuracy = NAN, learning_rate = NAN,
         seconds = NAN;
};
struct ReportData {
  std::string title;
  std::vector<std::pair<std::string, std::string>> settings;
  std::vector<std::pair<std::string, std::string>> summary;
  std::vector<ReportEpochRow> epochs;
  int best_epoch = -1;
  std::vector<ReportClassRow> classes;
  std::vector<ReportMistake> mistakes;
  std::vector<std::pair<std::string, std::vector<uint8_t>>> pictures;  // (caption, PNG bytes)
};

namespace report_detail {

inline constexpr const char* kDash = "&#8212;";

inline std::string num(double v, const char* fmt) {
  if (!std::isfinite(v)) return kDash;
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

inline bool is_png(const std::vector<uint8_t>& b) {
  static const uint8_t kSig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (b.size() < 24) return false;
  for (int i = 0; i < 8; ++i)
    if (b[i] != kSig[i]) return false;
  return true;
}
inline uint32_t be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3];
}

// <img> of PNG bytes (width and height from the IHDR chunk, so the page does not reflow).
inline std::string img_tag(const std::vector<uint8_t>& png, const std::string& alt,
                           const std::string& cls = "") {
  std::string s = "<img";
  if (!cls.empty()) s += " class=\"" + cls + "\"";
  s += " width=\"" + std::to_string(be32(png.data() + 16)) + "\" height=\"" +
       std::to_string(be32(png.data() + 20)) + "\" alt=\"" + html_escape(alt) +
       "\" src=\"data:image/png;base64,";
  s += base64(png);
  s += "\">";
  return s;
}

inline const char* kStyle = R"css(
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f4f5f7; color: #1f2328;
  font: 15px/1.5 "DejaVu Sans", "Segoe UI", Helvetica, Arial, sans-serif; }
main { max-width: 1260px; margin: 0 auto; padding: 24px 20px 40px; }
h1 { font-size: 26px; margin: 0 0 14px; }
h2 { font-size: 18px; margin: 0 0 12px; }
section { background: #fff; border: 1px solid #d8dde3; border-radius: 8px;
  padding: 16px 20px; margin: 0 0 18px; overflow-x: auto; }
.summary { display: flex; flex-wrap: wrap; gap: 10px; margin: 0; }
.summary div { background: #eef3fb; border: 1px solid #cfdcf0; border-radius: 6px;
  padding: 6px 12px; }
.summary dt { font-size: 12px; color: #57606a; }
.summary dd { margin: 0; font-weight: bold; font-size: 16px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 12px; border-bottom: 1px solid #e4e7eb; text-align: left;
  vertical-align: top; }
thead th { background: #f0f3f7; border-bottom: 2px solid #c9d1da; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafbfc; }
td.n, th.n { text-align: right; }
table.kv th { font-weight: normal; color: #57606a; white-space: nowrap; }
table.kv td { word-break: break-word; }
tr.best, tr.best:nth-child(even) { background: #fff1c7; font-weight: bold; }
.badge { display: inline-block; margin-left: 6px; padding: 0 6px; border-radius: 4px;
  background: #d4a72c; color: #fff; font-size: 11px; font-weight: bold; }
figure { margin: 0; }
figure img { display: block; max-width: 100%; height: auto; }
figcaption { font-weight: bold; font-size: 18px; margin: 0 0 10px; }
.mistakes { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr));
  gap: 14px; }
.mistake { border: 1px solid #e1e4e8; border-radius: 6px; padding: 8px; font-size: 13px; }
.mistake img { display: block; width: 100%; max-width: 184px; height: auto; margin: 0 auto 6px;
  image-rendering: pixelated; }
.mistake .path { font-family: "DejaVu Sans Mono", Consolas, monospace; font-size: 12px;
  word-break: break-all; color: #57606a; }
.mistake .pred { color: #b42318; }
.noimg { height: 120px; display: flex; align-items: center; justify-content: center;
  color: #8c959f; background: #f6f8fa; margin-bottom: 6px; }
footer { color: #8c959f; font-size: 12px; text-align: center; }
@media print { body { background: #fff; } section { break-inside: avoid; border: none; } }
)css";

}  // namespace report_detail

inline std::string render_report_html(const ReportData& d) {
  using namespace report_detail;
  for (std::size_t i = 0; i < d.pictures.size(); ++i)
    if (!is_png(d.pictures[i].second))
      throw ConfigError("render_report_html: picture " + std::to_string(i) + " ('" +
                        d.pictures[i].first + "') is not PNG data (" +
                        std::to_string(d.pictures[i].second.size()) + " bytes)");
  if (d.best_epoch < -1 ||
      (d.best_epoch >= 0 && static_cast<std::size_t>(d.best_epoch) >= d.epochs.size() &&
       !d.epochs.empty()))
    throw ConfigError("render_report_html: best_epoch " + std::to_string(d.best_epoch) +
                      " is outside the " + std::to_string(d.epochs.size()) + " epoch rows");
  const std::string title = d.title.empty() ? "minicnn report" : d.title;
  std::string h;
  h.reserve(1 << 16);
  h += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  h += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  h += "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
       "img-src data:; style-src 'unsafe-inline'\">\n";
  h += "<title>" + html_escape(title) + "</title>\n<style>" + kStyle + "</style>\n</head>\n";
  h += "<body>\n<main>\n<h1>" + html_escape(title) + "</h1>\n";

  if (!d.summary.empty()) {
    h += "<section>\n<dl class=\"summary\">\n";
    for (const auto& [k, v] : d.summary)
      h += "<div><dt>" + html_escape(k) + "</dt><dd>" + html_escape(v) + "</dd></div>\n";
    h += "</dl>\n</section>\n";
  }
  if (!d.settings.empty()) {
    h += "<section>\n<h2>Settings</h2>\n<table class=\"kv\">\n<tbody>\n";
    for (const auto& [k, v] : d.settings)
      h +=
          "<tr><th scope=\"row\">" + html_escape(k) + "</th><td>" + html_escape(v) + "</td></tr>\n";
    h += "</tbody>\n</table>\n</section>\n";
  }
  for (const auto& [caption, png] : d.pictures) {
    h += "<section>\n<figure>\n";
    if (!caption.empty()) h += "<figcaption>" + html_escape(caption) + "</figcaption>\n";
    h += img_tag(png, caption) + "\n</figure>\n</section>\n";
  }
  if (!d.epochs.empty()) {
    // Columns absent from every row (no validation, no timing) are left out.
    struct Col {
      const char* name;
      double ReportEpochRow::*field;
      const char* fmt;
    };
    const Col all[] = {{"loss", &ReportEpochRow::loss, "%.4f"},
                       {"accuracy", &ReportEpochRow::accuracy, "%.4f"},
                       {"val_loss", &ReportEpochRow::val_loss, "%.4f"},
                       {"val_accuracy", &ReportEpochRow::val_accuracy, "%.4f"},
                       {"learning rate", &ReportEpochRow::learning_rate, "%.2e"},
                       {"seconds", &ReportEpochRow::seconds, "%.1f"}};
    std::vector<Col> cols;
    for (const Col& c : all)
      for (const auto& r : d.epochs)
        if (std::isfinite(r.*(c.field))) {
          cols.push_back(c);
          break;
        }
    h += "<section>\n<h2>Epochs</h2>\n<table>\n<thead><tr><th class=\"n\">epoch</th>";
    for (const Col& c : cols) h += std::string("<th class=\"n\">") + c.name + "</th>";
    h += "</tr></thead>\n<tbody>\n";
    for (std::size_t i = 0; i < d.epochs.size(); ++i) {
      const bool best = static_cast<int>(i) == d.best_epoch;
      const auto& r = d.epochs[i];
      h += best ? "<tr class=\"best\">" : "<tr>";
      h += "<td class=\"n\">" + std::to_string(r.epoch) +
           (best ? "<span class=\"badge\">best</span>" : "") + "</td>";
      for (const Col& c : cols) h += "<td class=\"n\">" + num(r.*(c.field), c.fmt) + "</td>";
      h += "</tr>\n";
    }
    h += "</tbody>\n</table>\n</section>\n";
  }
  if (!d.classes.empty()) {
    h += "<section>\n<h2>Per-class results</h2>\n<table>\n<thead><tr><th>class</th>"
         "<th class=\"n\">precision</th><th class=\"n\">recall</th><th class=\"n\">F1</th>"
         "<th class=\"n\">support</th></tr></thead>\n<tbody>\n";
    for (const auto& c : d.classes)
      h += "<tr><td>" + html_escape(c.name) + "</td><td class=\"n\">" + num(c.precision, "%.3f") +
           "</td><td class=\"n\">" + num(c.recall, "%.3f") + "</td><td class=\"n\">" +
           num(c.f1, "%.3f") + "</td><td class=\"n\">" + std::to_string(c.support) + "</td></tr>\n";
    h += "</tbody>\n</table>\n</section>\n";
  }
  if (!d.mistakes.empty()) {
    h += "<section>\n<h2>Worst mistakes</h2>\n<div class=\"mistakes\">\n";
    for (std::size_t i = 0; i < d.mistakes.size(); ++i) {
      const auto& m = d.mistakes[i];
      h += "<div class=\"mistake\">";
      if (m.thumbnail.width == 0 && m.thumbnail.height == 0 && m.thumbnail.pixels.empty()) {
        h += "<div class=\"noimg\">no picture</div>";
      } else {
        check_image(m.thumbnail, "render_report_html: thumbnail of mistake " + std::to_string(i) +
                                     " ('" + m.file + "')");
        h += img_tag(encode_png(m.thumbnail), m.file);
      }
      h += "<div class=\"path\">" + html_escape(m.file) + "</div>";
      h += "<div>true: <b>" + html_escape(m.true_class) + "</b></div>";
      h += "<div class=\"pred\">predicted: <b>" + html_escape(m.predicted_class) + "</b> (" +
           num(100 * m.probability, "%.1f%%") + ")</div>";
      h += "</div>\n";
    }
    h += "</div>\n</section>\n";
  }
  h += std::string("<footer>made by minicnn ") + kMcnnLibraryVersion + "</footer>\n";
  h += "</main>\n</body>\n</html>\n";
  return h;
}

// Atomic: a reader sees the old report or the new one, never half of one.
inline void write_report_html(const ReportData& d, const std::string& path) {
  const std::string html = render_report_html(d);
  write_file_atomic(path, html.data(), html.size());
}

}  // namespace minicnn::plot
