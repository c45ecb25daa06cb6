// ProgbarLogger: Keras 2's console output for fit().
//   "Epoch 3/50" before each epoch (only when epochs > 1, as Keras).
//   verbose 1 (a terminal): a line rewritten after each batch,
//       " 7/17 [============>.................] - ETA: 2s - loss: 0.6931 - accuracy: 0.5000"
//     and at the end of the epoch, after validation,
//       "17/17 [==============================] - 3s 152ms/step - loss: ... - val_accuracy: ..."
//   verbose 2 (not a terminal): that final line only, as
//       "17/17 - 3s - loss: ... - val_accuracy: ... - 3s/epoch - 152ms/step".
// Numbers are "%.4f", or "%.4e" when |v| <= 1e-3; ms/step leaves out the first step (which
// also fills caches) and includes validation, both as Keras does. learning_rate is not shown.
#pragma once
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ostream>
#include <string>

#include "callback.hpp"

namespace minicnn {

namespace progbar_detail {
inline std::string value(double v) {
  char b[32];
  std::snprintf(b, sizeof b, std::abs(v) > 1e-3 ? "%.4f" : "%.4e", v);
  return b;
}
inline std::string duration(double s) {
  char b[32];
  if (s >= 1.0)
    std::snprintf(b, sizeof b, "%.0fs", s);
  else if (s >= 1e-3)
    std::snprintf(b, sizeof b, "%.0fms", s * 1e3);
  else
    std::snprintf(b, sizeof b, "%.0fus", s * 1e6);
  return b;
}
inline std::string eta(double s) {
  char b[32];
  const long t = static_cast<long>(s);
  if (t > 3600)
    std::snprintf(b, sizeof b, "%ld:%02ld:%02ld", t / 3600, (t % 3600) / 60, t % 60);
  else if (t > 60)
    std::snprintf(b, sizeof b, "%ld:%02ld", t / 60, t % 60);
  else
    std::snprintf(b, sizeof b, "%lds", t);
  return b;
}
inline std::string logs_text(const Logs& logs) {
  std::string s;
  for (const auto& [k, v] : logs.items())
    if (k != "learning_rate") s += " - " + k + ": " + value(v);
  return s;
}
}  // namespace progbar_detail

class ProgbarLogger : public Callback {
 public:
  using clock = std::chrono::steady_clock;
  ProgbarLogger(std::ostream& out, int verbose, int epochs, int64_t steps)
      : out_(out), verbose_(verbose), epochs_(epochs), steps_(steps) {}
  std::string name() const override { return "ProgbarLogger"; }

  void on_epoch_begin(int epoch, const Logs&) override {
    if (epochs_ > 1) out_ << "Epoch " << epoch + 1 << "/" << epochs_ << "\n";
    out_.flush();
    start_ = clock::now();
    first_step_done_ = false;
    last_update_ = start_;
    shown_ = 0;
  }
  void on_train_batch_end(int batch, const Logs& logs) override {
    const auto now = clock::now();
    if (!first_step_done_) {
      first_step_ = now;
      first_step_done_ = true;
    }
    if (verbose_ != 1) return;
    const int64_t cur = batch + 1;
    // At most ~20 updates a second, as Keras' interval of 0.05 s; always the last batch.
    if (cur < steps_ && std::chrono::duration<double>(now - last_update_).count() < 0.05) return;
    last_update_ = now;
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    const double per_step = elapsed / double(cur);
    std::string line = "\r" + counter(cur) + " " + bar(cur) +
                       " - ETA: " + progbar_detail::eta(per_step * double(steps_ - cur)) +
                       progbar_detail::logs_text(logs);
    pad_and_write(line);
  }
  void on_epoch_end(int, Logs& logs) override {
    const auto now = clock::now();
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    double per_step = elapsed;
    if (first_step_done_ && steps_ > 1)
      per_step = std::chrono::duration<double>(now - first_step_).count() / double(steps_ - 1);
    if (verbose_ == 1) {
      std::string line =
          "\r" + counter(steps_) + " " + bar(steps_) + " - " + progbar_detail::duration(elapsed) +
          " " + progbar_detail::duration(per_step) + "/step" + progbar_detail::logs_text(logs);
      pad_and_write(line);
      out_ << "\n";
    } else if (verbose_ == 2) {
      out_ << counter(steps_) << " - " << progbar_detail::duration(elapsed)
           << progbar_detail::logs_text(logs) << " - " << progbar_detail::duration(elapsed)
           << "/epoch - " << progbar_detail::duration(per_step) << "/step\n";
    }
    out_.flush();
  }

 private:
  std::string counter(int64_t cur) const {
    const std::string t = std::to_string(steps_), c = std::to_string(cur);
    return std::string(t.size() > c.size() ? t.size() - c.size() : 0, ' ') + c + "/" + t;
  }
  // Keras 2: width 30, int(30 * cur / target) done characters ending in '>' until complete.
  std::string bar(int64_t cur) const {
    const int width = 30;
    const int done = steps_ > 0 ? static_cast<int>(width * cur / steps_) : width;
    std::string b = "[";
    if (done > 0) {
      b += std::string(size_t(done - 1), '=');
      b += cur < steps_ ? '>' : '=';
    }
    b += std::string(size_t(width - done), '.');
    return b + "]";
  }
  // Rewrites the line in place, blanking what a longer previous version left behind.
  void pad_and_write(std::string line) {
    const size_t len = line.size();
    if (len < shown_) line += std::string(shown_ - len, ' ');
    shown_ = len;
    out_ << line;
    out_.flush();
  }

  std::ostream& out_;
  int verbose_, epochs_;
  int64_t steps_;
  clock::time_point start_, first_step_, last_update_;
  bool first_step_done_ = false;
  size_t shown_ = 0;
};

}  // namespace minicnn
