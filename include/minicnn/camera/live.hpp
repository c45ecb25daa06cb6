// The live pipeline's threads. Capture pulls frames from a FrameSource and publishes each in
// a latest-frame slot; classification takes the newest frame it has not seen, classifies and
// smooths it, and publishes a LiveStatus in a second slot; an optional recorder takes frames
// from the first slot at its own pace. Readers (the HTTP server, the terminal status line)
// only read the slots. Because every hand-over is "latest wins", a slow classifier skips
// frames instead of stalling capture (the camera's buffers keep cycling), a slow browser
// never slows classification, and memory is bounded by one frame per slot and reader.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../core/parallel.hpp"
#include "frame_source.hpp"
#include "pipeline.hpp"
#include "recorder.hpp"
#include "slots.hpp"

namespace minicnn::camera {

// Events per second over the last two seconds (0 when nothing happened for two seconds).
class RateMeter {
 public:
  void tick(Clock::time_point t) {
    ticks_.push_back(t);
    trim(t);
  }
  double rate(Clock::time_point now) {
    trim(now);
    if (ticks_.size() < 2) return 0;
    const double span = seconds_between(ticks_.front(), ticks_.back());
    return span > 0 ? double(ticks_.size() - 1) / span : 0;
  }

 private:
  void trim(Clock::time_point now) {
    while (!ticks_.empty() && seconds_between(ticks_.front(), now) > 2.0) ticks_.pop_front();
  }
  std::deque<Clock::time_point> ticks_;
};

struct LiveOptions {
  int smooth = 5;               // average the probabilities of the last N frames
  int top = 5;                  // classes in the status
  double record_every_s = 0.5;  // with a recorder: at most one saved frame per interval
  int64_t record_max = 0;       // stop recording after this many frames (0: no limit)
  // OpenMP threads of the network in the classification thread. A thread started outside
  // OpenMP gets the process default (every core), and a team that waits at barriers for a
  // core the capture thread holds runs hundreds of times slower: keep 1 unless cores are free.
  int network_threads = 1;
};

// What the page and the terminal show; one immutable snapshot per classified frame (and a
// refresh every 200 ms while no frames come, so a stalled camera shows as such).
struct LiveStatus {
  int64_t frame = -1;  // index of the classified frame (-1: none yet)
  std::string frame_name;
  int frame_width = 0, frame_height = 0;  // the frame as captured
  CropBox crop;                           // what the network sees, in captured-frame pixels
  double capture_fps = 0, classify_fps = 0;
  int64_t captured = 0, classified = 0;
  std::vector<Ranked> top;  // smoothed probabilities, best first
  StageTimes times;         // of the classified frame
  double latency_ms = 0;    // from the frame's arrival to its result
  std::string problem;      // e.g. "camera unplugged, reconnecting"
  bool finished = false;    // the source ended or failed
  std::string error;        // why it failed
  int64_t recorded = 0;
  std::string record_folder;
  double uptime_s = 0;
};

class LiveClassifier {
 public:
  LiveClassifier(FrameSource& source, FrameClassifier& classifier, LiveOptions opt = {},
                 FrameRecorder* recorder = nullptr)
      : source_(source), clf_(classifier), opt_(opt), recorder_(recorder) {
    Smoother check(opt_.smooth);  // validates the window now, not in a thread
    (void)check;
    if (opt_.record_every_s < 0)
      throw ConfigError("record interval must be >= 0 seconds, got " +
                        std::to_string(opt_.record_every_s));
  }
  ~LiveClassifier() { stop(); }
  LiveClassifier(const LiveClassifier&) = delete;
  LiveClassifier& operator=(const LiveClassifier&) = delete;

  void start() {
    if (started_) return;
    started_ = true;
    start_time_ = Clock::now();
    capture_ = std::thread([this] { capture_loop(); });
    classify_ = std::thread([this] { classify_loop(); });
    if (recorder_) record_ = std::thread([this] { record_loop(); });
  }

  // Stops and joins every thread (idempotent). Readers waiting on the slots wake up.
  void stop() {
    stop_ = true;
    if (capture_.joinable()) capture_.join();
    frames_.close();
    if (classify_.joinable()) classify_.join();
    if (record_.joinable()) record_.join();
    status_.close();
  }

  // True once the source has ended or failed and the last frame is classified.
  bool finished() const { return finished_; }
  std::string error() const {
    std::lock_guard<std::mutex> lk(mu_);
    return error_;
  }

  LatestSlot<Frame>& frames() { return frames_; }
  LatestSlot<LiveStatus>& status() { return status_; }
  const FrameClassifier& classifier() const { return clf_; }
  const LiveOptions& options() const { return opt_; }

 private:
  void fail(const std::string& why) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (error_.empty()) error_ = why;
    }
    stop_ = true;
  }

  void capture_loop() {
    RateMeter meter;
    while (!stop_) {
      std::optional<Frame> f;
      try {
        f = source_.next(200);
      } catch (const std::exception& e) {
        fail(e.what());
        break;
      }
      const auto now = Clock::now();
      {
        std::lock_guard<std::mutex> lk(mu_);
        problem_ = source_.problem();
        if (f) {
          meter.tick(now);
          ++captured_;
        }
        capture_fps_ = meter.rate(now);
      }
      if (!f) {
        if (source_.ended()) break;
        continue;
      }
      f->arrived = now;
      frames_.put(std::move(*f));
    }
    frames_.close();  // the classifier drains the last frame, then ends
  }

  void classify_loop() {
    set_num_threads(opt_.network_threads);
    Smoother smoother(opt_.smooth);
    RateMeter meter;
    uint64_t seen = 0;
    LiveStatus st;
    int64_t classified = 0;
    for (;;) {
      std::shared_ptr<const Frame> f = frames_.wait_newer(seen, 200);
      if (f) {
        StageTimes t;
        t.decode_ms = f->decode_ms;
        try {
          const std::vector<float>& p = clf_.classify(f->image, &t);
          st.top = top_k(smoother.add(p), clf_.class_names(), opt_.top);
        } catch (const std::exception& e) {
          fail(e.what());
          break;
        }
        const auto now = Clock::now();
        meter.tick(now);
        ++classified;
        st.frame = f->index;
        st.frame_name = f->name;
        st.frame_width = f->full_width;
        st.frame_height = f->full_height;
        st.crop =
            center_crop_box(f->full_width, f->full_height, clf_.input_width(), clf_.input_height());
        st.times = t;
        st.latency_ms = seconds_between(f->arrived, now) * 1e3;
      } else if (frames_.closed()) {
        break;  // closed and nothing newer: the source is done
      }
      const auto now = Clock::now();
      st.classify_fps = meter.rate(now);
      st.classified = classified;
      fill_shared(st, now);
      status_.put(st);
    }
    finished_ = true;
    LiveStatus last = st;
    fill_shared(last, Clock::now());
    last.finished = true;
    status_.put(std::move(last));
  }

  void fill_shared(LiveStatus& st, Clock::time_point now) {
    std::lock_guard<std::mutex> lk(mu_);
    st.capture_fps = capture_fps_;
    st.captured = captured_;
    st.problem = problem_;
    st.error = error_;
    st.recorded = recorded_;
    st.record_folder = recorder_ ? recorder_->folder() : "";
    st.uptime_s = seconds_between(start_time_, now);
  }

  void record_loop() {
    uint64_t seen = 0;
    bool first = true;
    Clock::time_point last{};
    for (;;) {
      std::shared_ptr<const Frame> f = frames_.wait_newer(seen, 200);
      if (!f) {
        if (frames_.closed()) break;
        continue;
      }
      const auto now = Clock::now();
      if (!first && seconds_between(last, now) < opt_.record_every_s) continue;
      if (opt_.record_max > 0 && recorder_->saved() >= opt_.record_max) continue;
      try {
        recorder_->save(*f);
      } catch (const std::exception& e) {
        fail(std::string("recording stopped: ") + e.what());
        break;
      }
      first = false;
      last = now;
      std::lock_guard<std::mutex> lk(mu_);
      recorded_ = recorder_->saved();
    }
  }

  FrameSource& source_;
  FrameClassifier& clf_;
  LiveOptions opt_;
  FrameRecorder* recorder_;
  LatestSlot<Frame> frames_;
  LatestSlot<LiveStatus> status_;
  std::thread capture_, classify_, record_;
  std::atomic<bool> stop_{false}, finished_{false};
  bool started_ = false;
  Clock::time_point start_time_;
  mutable std::mutex mu_;  // guards the fields below (written by capture and recorder)
  std::string error_, problem_;
  double capture_fps_ = 0;
  int64_t captured_ = 0, recorded_ = 0;
};

}  // namespace minicnn::camera
