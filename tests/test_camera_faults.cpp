// Camera faults through the fake V4L2 device (camera_support.hpp): a camera unplugged in the
// middle of a live run, truncated and garbage MJPEG and YUYV frames, and a camera that stops
// delivering. None of them may stop the program or leave a buffer out of the driver; each
// must show in the status while it lasts and clear when frames flow again.
#include <random>

#include "camera_support.hpp"

using namespace camtest;

namespace {

// Polls the live status every 5 ms until `done` says so or `seconds` pass.
template <typename F>
bool watch_status(LiveClassifier& live, double seconds, F&& done) {
  const auto t0 = Clock::now();
  while (seconds_between(t0, Clock::now()) < seconds) {
    if (auto st = live.status().get(); st && done(*st)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

V4l2SourceOptions quiet_source() {
  V4l2SourceOptions o;
  o.quiet = true;
  o.retry_interval_s = 0.02;
  return o;
}

}  // namespace

TEST_CASE("faults: a camera unplugged in a live run shows in the status, then frames continue") {
  const std::string dir = temp_dir("unplug_live");
  FrameClassifier clf = FrameClassifier::from_file(save_colour_model(dir, {"red", "green"}));
  FakeCamera cam;
  cam.repeat = fixture("frame_nodht.jpg");
  cam.interval_ms = 10;
  cam.unplug_after = 20;
  cam.absent_opens = 30;  // retried every 20 ms: away for about 0.6 s
  V4l2SourceOptions o = quiet_source();
  o.reconnect_timeout_s = 10;
  V4l2Source src(cam, "/dev/video0", o);
  LiveClassifier live(src, clf);
  live.start();
  int64_t captured_when_lost = -1;
  const bool lost = watch_status(live, 10, [&](const LiveStatus& s) {
    if (s.problem != "camera unplugged, reconnecting") return false;
    captured_when_lost = s.captured;
    return true;
  });
  CHECK(lost);
  const bool back = watch_status(live, 10, [&](const LiveStatus& s) {
    return s.problem.empty() && s.captured >= captured_when_lost + 10 && s.classified > 10;
  });
  CHECK(back);
  live.stop();
  CHECK(live.error().empty());
  CHECK(captured_when_lost == 20);
  CHECK(cam.opens == 2);     // the first open and the one that found it back
  CHECK(cam.open_fds == 1);  // the lost descriptor was closed
  CHECK(cam.munmaps == 4);   // and its buffers unmapped
  fs::remove_all(dir);
}

TEST_CASE("faults: truncated and garbage MJPEG frames are skipped and the stream goes on") {
  FakeCamera cam;
  const std::vector<uint8_t> good = fixture("frame_nodht.jpg");
  std::vector<uint8_t> truncated(good.begin(), good.begin() + long(good.size() / 2));
  std::vector<uint8_t> header_only(good.begin(), good.begin() + 20);
  std::mt19937 rng(13);
  auto garbage = [&](size_t n, bool jpeg_magic) {
    std::vector<uint8_t> g(n);
    for (auto& b : g) b = uint8_t(rng());
    if (jpeg_magic && n >= 3) g[0] = 0xFF, g[1] = 0xD8, g[2] = 0xFF;
    return g;
  };
  // One good frame, then each kind of bad one followed by a good one.
  std::vector<std::vector<uint8_t>> bad = {header_only, {0xFF, 0xD8, 0xFF}, {0x00}};
  for (int i = 0; i < 40; ++i) bad.push_back(garbage(1 + rng() % 5000, i % 2 == 0));
  // A JPEG whose entropy data is replaced by noise after the headers.
  std::vector<uint8_t> noisy = good;
  for (size_t i = noisy.size() / 2; i + 2 < noisy.size(); ++i) noisy[i] = uint8_t(rng() | 1);
  cam.payloads.push_back(good);
  for (const auto& b : bad) {
    cam.payloads.push_back(b);
    cam.payloads.push_back(good);
  }
  // Cut short and noisy frames still decode (TurboJPEG warns, missing blocks are grey) or are
  // skipped; either way they must not end the stream.
  cam.payloads.push_back(truncated);
  cam.payloads.push_back(noisy);
  cam.payloads.push_back(good);
  // A frame the driver marks as damaged (V4L2_BUF_FLAG_ERROR) is dropped unseen.
  cam.payload_flags.assign(cam.payloads.size() - 1, 0);
  cam.payload_flags.push_back(V4L2_BUF_FLAG_ERROR);
  V4l2Source src(cam, "/dev/video0", quiet_source());
  int good_frames = 0, frames = 0;
  for (int i = 0; i < 2000 && !cam.payloads.empty(); ++i) {
    std::optional<Frame> f = src.next(20);
    if (!f) continue;
    ++frames;
    CHECK(f->image.width > 0);
    if (f->image.width == 64 && f->image.height == 48) ++good_frames;
  }
  for (int i = 0; i < 5; ++i) src.next(5);  // the last payload
  CHECK(cam.payloads.empty());
  CHECK(good_frames >= int(bad.size()) + 1);
  // Every frame that did not decode was counted, and nothing else was lost.
  CHECK(frames + src.bad_frames() == int64_t(bad.size()) * 2 + 1 + 2);
  CHECK(src.bad_frames() >= 40);
  CHECK(cam.out.empty());  // every buffer went back to the driver
  CHECK(cam.queue.size() == 4);
  CHECK(src.problem().empty());
}

TEST_CASE("faults: short, empty and oversized YUYV frames") {
  FakeCamera cam;
  cam.formats = {{V4L2_PIX_FMT_YUYV, "YUYV 4:2:2"}};
  cam.sizes = {{64, 48}};
  const std::vector<uint8_t> good = yuyv_of_size(64, 48);
  std::vector<uint8_t> short_frame(good.begin(), good.begin() + long(good.size() - 1));
  std::vector<uint8_t> oversized = good;
  oversized.resize(good.size() * 3, 0x55);
  for (const auto& p : std::vector<std::vector<uint8_t>>{
           good, short_frame, {0x10}, good, oversized, std::vector<uint8_t>(7, 0), good})
    cam.payloads.push_back(p);
  V4l2Source src(cam, "/dev/video0", quiet_source());
  int frames = 0;
  for (int i = 0; i < 500 && !cam.payloads.empty(); ++i)
    if (std::optional<Frame> f = src.next(20)) {
      ++frames;
      CHECK(f->image.width == 64);
      CHECK(f->image.height == 48);
      CHECK(f->image.pixels[0] == 98);  // the good rows: Y=100 -> 98
    }
  for (int i = 0; i < 5; ++i)
    if (src.next(5)) ++frames;
  CHECK(frames == 4);  // good, good, oversized (its first rows are the image), good
  CHECK(src.bad_frames() == 3);
  CHECK(cam.out.empty());
}

TEST_CASE("faults: a camera that stops delivering is named in the status and restarted") {
  const std::string dir = temp_dir("stall_live");
  FrameClassifier clf = FrameClassifier::from_file(save_colour_model(dir, {"red", "green"}));
  FakeCamera cam;
  cam.repeat = fixture("frame_nodht.jpg");
  cam.interval_ms = 10;
  cam.stall_after = 10;
  cam.stall_ms = 600000;  // stuck until the device is opened again
  V4l2SourceOptions o = quiet_source();
  o.stall_timeout_s = 1.5;
  V4l2Source src(cam, "/dev/video0", o);
  LiveClassifier live(src, clf);
  live.start();
  int64_t captured_in_stall = -1;
  const bool named = watch_status(live, 10, [&](const LiveStatus& s) {
    if (s.problem.rfind("no frame from the camera for ", 0) != 0) return false;
    captured_in_stall = s.captured;
    return true;
  });
  CHECK(named);
  const bool back = watch_status(live, 10, [&](const LiveStatus& s) {
    return s.problem.empty() && s.captured >= captured_in_stall + 10;
  });
  CHECK(back);
  live.stop();
  CHECK(live.error().empty());
  CHECK(captured_in_stall == 10);
  CHECK(src.restarts() == 1);
  CHECK(cam.opens == 2);
  CHECK(cam.open_fds == 1);
  CHECK(cam.streamoffs == 1);  // the stuck stream was stopped and its buffers freed
  CHECK(cam.reqbufs_zero == 1);
  fs::remove_all(dir);
}

TEST_CASE("faults: a camera that only sends undecodable frames is named and restarted") {
  FakeCamera cam;
  cam.repeat = {0xFF, 0xD8, 0xFF, 0x00, 0x01};
  cam.interval_ms = 5;
  V4l2SourceOptions o = quiet_source();
  o.stall_timeout_s = 0.5;
  V4l2Source src(cam, "/dev/video0", o);
  std::string problem;
  for (int i = 0; i < 2000 && src.restarts() == 0; ++i) {
    CHECK(!src.next(10));
    if (!src.problem().empty()) problem = src.problem();
  }
  CHECK(src.restarts() == 1);
  CHECK(has(problem, "no decodable frame from the camera"));
  CHECK(has(problem, "corrupt"));
  CHECK(cam.opens == 2);
  CHECK(cam.open_fds == 1);
}
