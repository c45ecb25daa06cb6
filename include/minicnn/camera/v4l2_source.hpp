// The live camera as a FrameSource: a V4l2Device whose frames are copied out of the mapped
// buffer (so the buffer goes straight back to the driver), then decoded: MJPEG through
// TurboJPEG at reduced scale with the standard Huffman tables inserted when the camera left
// them out, YUYV through the BT.601 limited-range conversion. When the camera goes away
// mid-stream (ENODEV: unplugged), the device is closed (STREAMOFF, munmap, close) and
// reopened every retry interval; if it is not back within the reconnect timeout, next()
// throws CameraError (kind Unplugged) and the program can exit cleanly. A camera that stays
// open but stops delivering (a UVC firmware hang, a USB bandwidth fault) or delivers only
// undecodable frames is named in problem() after a second, and its stream is restarted
// (closed and opened again) every stall timeout until frames come again.
#pragma once
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "frame_source.hpp"
#include "mjpeg.hpp"
#include "v4l2_device.hpp"
#include "yuyv.hpp"

namespace minicnn::camera {

struct V4l2SourceOptions {
  CaptureOptions capture;
  DecodeOptions decode;
  double reconnect_timeout_s = 10;  // how long an unplugged camera may stay away
  double retry_interval_s = 0.5;    // between attempts to reopen it
  double stall_timeout_s = 5;       // no good frame for this long: restart the stream (0: never)
  bool quiet = false;               // no messages on stderr (tests)
};

class V4l2Source : public FrameSource {
 public:
  // Opens the camera at once, so that a missing, busy or unsuitable device is reported
  // before anything else starts.
  V4l2Source(V4l2Io& io, std::string path, V4l2SourceOptions opt)
      : io_(io), path_(std::move(path)), opt_(std::move(opt)) {
    device_ = std::make_unique<V4l2Device>(io_, path_, opt_.capture);
    start_ = opened_ = Clock::now();
  }

  std::optional<Frame> next(int timeout_ms) override {
    if (!device_ && !reconnect(timeout_ms)) return std::nullopt;
    raw_.clear();
    bool got = false;
    try {
      got = device_->read_frame(timeout_ms,
                                [&](const uint8_t* p, size_t n) { raw_.assign(p, p + n); });
    } catch (const CameraError& e) {
      if (e.kind() != CameraError::Kind::Unplugged) throw;
      lost(e.what());
      return std::nullopt;
    }
    if (!got) {
      no_frame();
      return std::nullopt;
    }
    Frame f;
    const std::string where = "camera '" + path_ + "' frame " + std::to_string(count_);
    try {
      if (device_->is_mjpeg()) {
        // Only JPEG: decode_frame would hand anything else to stb_image's other formats.
        if (raw_.size() < 3 || raw_[0] != 0xFF || raw_[1] != 0xD8 || raw_[2] != 0xFF)
          throw FormatError(where + ": not a JPEG frame (" + std::to_string(raw_.size()) +
                            " bytes, no FF D8 FF start)");
        decode_frame(raw_.data(), raw_.size(), opt_.decode, decoder_, f, where);
      } else {
        const auto t0 = Clock::now();
        yuyv_to_rgb(raw_.data(), raw_.size(), device_->width(), device_->height(),
                    device_->bytes_per_line(), f.image);
        f.full_width = f.image.width;
        f.full_height = f.image.height;
        f.decode_ms = seconds_between(t0, Clock::now()) * 1e3;
      }
    } catch (const Error& e) {
      // A corrupt frame (USB hiccup) is skipped; the stream goes on.
      ++bad_frames_;
      ++bad_since_good_;
      if (!opt_.quiet && bad_frames_ == 1)
        std::fprintf(stderr, "warning: %s (skipped; later bad frames are counted silently)\n",
                     e.what());
      no_frame();
      return std::nullopt;
    }
    last_good_ = Clock::now();
    bad_since_good_ = 0;
    problem_.clear();
    f.index = count_++;
    f.timestamp = seconds_between(start_, Clock::now());
    return f;
  }

  std::string describe() const override {
    if (!device_) return "camera '" + path_ + "' (reconnecting)";
    return "camera '" + path_ + "' \"" + device_->info().card + "\" " +
           fourcc_string(device_->pixel_format()) + " " + std::to_string(device_->width()) + "x" +
           std::to_string(device_->height()) + ", " + std::to_string(device_->buffer_count()) +
           " buffers";
  }
  std::string problem() const override { return problem_; }
  const V4l2Device* device() const { return device_.get(); }
  int64_t bad_frames() const { return bad_frames_; }
  int64_t restarts() const { return restarts_; }  // after stalls

 private:
  void lost(const std::string& why) {
    device_.reset();  // STREAMOFF (refused by a gone device), munmap, close
    lost_at_ = last_try_ = Clock::now();
    last_error_ = why;
    problem_ = "camera unplugged, reconnecting";
    if (!opt_.quiet)
      std::fprintf(stderr, "%s; trying to reopen it for %g s\n", why.c_str(),
                   opt_.reconnect_timeout_s);
  }

  // No frame this time: after a second without one, problem() says so; after the stall
  // timeout the stream is restarted, and if the camera cannot be opened again it is treated
  // as unplugged (the reconnect loop takes over).
  void no_frame() {
    const auto now = Clock::now();
    const double quiet = seconds_between(std::max(last_good_, opened_), now);
    const bool restart = opt_.stall_timeout_s > 0 && quiet >= opt_.stall_timeout_s;
    if (quiet < 1.0 && !restart) return;
    char msg[160];
    if (bad_since_good_ > 0)
      std::snprintf(msg, sizeof msg, "no decodable frame from the camera for %.1f s (%lld corrupt)",
                    quiet, static_cast<long long>(bad_since_good_));
    else
      std::snprintf(msg, sizeof msg, "no frame from the camera for %.1f s", quiet);
    problem_ = msg;
    if (!restart) return;
    ++restarts_;
    if (!opt_.quiet) std::fprintf(stderr, "camera '%s': %s; restarting it\n", path_.c_str(), msg);
    device_.reset();  // STREAMOFF, munmap, close
    opened_ = Clock::now();
    try {
      device_ = std::make_unique<V4l2Device>(io_, path_, opt_.capture);
    } catch (const CameraError& e) {
      lost(e.what());
    }
  }

  // One attempt to reopen, when due; throws once the reconnect timeout has passed.
  bool reconnect(int timeout_ms) {
    const auto now = Clock::now();
    const auto retry = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(opt_.retry_interval_s));
    if (now < last_try_ + retry) {
      const auto until = std::min(last_try_ + retry, now + std::chrono::milliseconds(timeout_ms));
      std::this_thread::sleep_until(until);
      if (Clock::now() < last_try_ + retry) return false;
    }
    last_try_ = Clock::now();
    try {
      device_ = std::make_unique<V4l2Device>(io_, path_, opt_.capture);
      opened_ = Clock::now();
      problem_.clear();
      if (!opt_.quiet) std::fprintf(stderr, "camera '%s' is back\n", path_.c_str());
      return true;
    } catch (const CameraError& e) {
      last_error_ = e.what();
    }
    if (seconds_between(lost_at_, Clock::now()) >= opt_.reconnect_timeout_s) {
      char secs[32];
      std::snprintf(secs, sizeof secs, "%g", opt_.reconnect_timeout_s);
      throw CameraError(CameraError::Kind::Unplugged, ENODEV,
                        "camera '" + path_ + "' was unplugged (ENODEV) and did not come back " +
                            "within " + secs + " s (last attempt: " + last_error_ + ")");
    }
    return false;
  }

  V4l2Io& io_;
  std::string path_;
  V4l2SourceOptions opt_;
  std::unique_ptr<V4l2Device> device_;
  JpegDecoder decoder_;
  std::vector<uint8_t> raw_;
  int64_t count_ = 0, bad_frames_ = 0, bad_since_good_ = 0, restarts_ = 0;
  Clock::time_point start_, lost_at_, last_try_, opened_, last_good_;
  std::string problem_, last_error_;
};

}  // namespace minicnn::camera
