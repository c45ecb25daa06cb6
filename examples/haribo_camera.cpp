// haribo_camera: the origin notebook's last step (live camera classification) as a command-line
// program with a browser view instead of a desktop window. Frames come from a V4L2 webcam
// (memory-mapped streaming, MJPEG preferred, YUYV otherwise) or from a replayed folder of
// pictures / MJPEG file (--source); each is centre-cropped to the model's aspect ratio, resized
// and preprocessed as the model file says, classified and smoothed over the last frames. The
// terminal gets one status line a second; http://127.0.0.1:8080/ shows the stream with the
// label, the top classes and the frame rates. --record CLASS --out DIR saves frames into
// DIR/CLASS/ to collect a training set for haribo_train. --bench measures the pipeline.
#include <sched.h>
#include <signal.h>
#include <unistd.h>
#include <CLI/CLI.hpp>
#include <minicnn/camera/camera.hpp>
#include <minicnn/minicnn.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace minicnn;
using namespace minicnn::camera;
namespace fs = std::filesystem;

namespace {

std::atomic<bool> g_stop{false};

extern "C" void on_signal(int sig) {
  if (g_stop.exchange(true)) {  // the second Ctrl-C: the default action (quit at once)
    ::signal(sig, SIG_DFL);
    ::raise(sig);
    return;
  }
  static const char msg[] = "\nstopping (Ctrl-C again to quit at once)\n";
  ssize_t ignored = ::write(STDERR_FILENO, msg, sizeof msg - 1);
  (void)ignored;
}

struct Settings {
  std::string model, device = "/dev/video0", source, format = "auto", host = "127.0.0.1";
  std::string record, out, record_format = "jpg";
  bool list_devices = false, list_formats = false, no_server = false, no_loop = false;
  bool record_full_frame = false;
  double fps = 30, record_every = 0.5, reconnect_timeout = 10, duration = 0, bench_seconds = 3;
  int width = 640, height = 480, buffers = 4, smooth = 5, top = 5, port = 8080, quality = 80;
  int threads = 1, bench = 0;
  int64_t record_max = 0;
};

bool is_loopback(const std::string& host) {
  return host == "127.0.0.1" || host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

std::string status_line(const LiveStatus& s) {
  char buf[512];
  std::string label = s.top.empty() ? std::string("-") : s.top[0].label;
  const double prob = s.top.empty() ? 0.0 : 100.0 * s.top[0].prob;
  std::snprintf(buf, sizeof buf,
                "[%7.1f s] %5.1f fps | classified %5.1f/s | %-20s %5.1f %% | decode %.2f ms, "
                "resize %.2f ms, network %.2f ms",
                s.uptime_s, s.capture_fps, s.classify_fps, label.c_str(), prob, s.times.decode_ms,
                s.times.resize_ms, s.times.network_ms);
  std::string line = buf;
  if (!s.record_folder.empty()) line += " | recorded " + std::to_string(s.recorded);
  if (!s.problem.empty()) line += " | " + s.problem;
  return line;
}

ReplayOptions replay_options(const Settings& st, const FrameClassifier& clf, double fps) {
  ReplayOptions ro;
  ro.fps = fps;
  ro.loop = !st.no_loop;
  ro.decode.need_width = clf.input_width();
  ro.decode.need_height = clf.input_height();
  ro.decode.exif_orientation = clf.info().exif_orientation;
  return ro;
}

// ----------------------------------------------------------------------------- --bench

struct Mean {
  double sum = 0;
  int64_t n = 0;
  void add(double v) {
    sum += v;
    ++n;
  }
  double get() const { return n ? sum / double(n) : 0.0; }
};

// Restricts the calling thread (and the threads it starts afterwards) to the first `cores`
// CPUs it may use; returns the previous mask.
std::optional<cpu_set_t> pin_to_cores(int cores) {
  cpu_set_t old;
  CPU_ZERO(&old);
  if (sched_getaffinity(0, sizeof old, &old) != 0) return std::nullopt;
  cpu_set_t mask;
  CPU_ZERO(&mask);
  int taken = 0;
  for (int c = 0; c < CPU_SETSIZE && taken < cores; ++c)
    if (CPU_ISSET(c, &old)) {
      CPU_SET(c, &mask);
      ++taken;
    }
  if (taken < cores || sched_setaffinity(0, sizeof mask, &mask) != 0) return std::nullopt;
  return old;
}

// The threaded pipeline (replay at `fps`, 0: flat out): capture + classify threads of
// LiveClassifier, plus a viewer thread that fetches every new frame's JPEG as a browser stream
// would (encoding it when `encode` or when it did not come as JPEG). Returns capture, classified,
// served fps.
std::vector<double> run_threaded(const Settings& st, FrameClassifier& clf, double fps, bool encode,
                                 double seconds) {
  ReplayOptions ro = replay_options(st, clf, fps);
  ro.loop = true;
  if (encode) ro.decode.need_width = ro.decode.need_height = 0;  // full-size frames, as YUYV
  std::unique_ptr<FrameSource> src = open_replay_source(st.source, ro);
  LiveOptions lo;
  lo.smooth = st.smooth;
  lo.network_threads = st.threads;
  LiveClassifier live(*src, clf, lo);
  ServerOptions so;
  so.reencode = encode;
  CameraServer server(live, so);  // not started: only its frame-to-JPEG path is used
  std::atomic<bool> done{false};
  std::atomic<int64_t> served{0};
  live.start();
  std::thread viewer([&] {
    uint64_t seen = 0;
    while (!done) {
      auto f = live.frames().wait_newer(seen, 100);
      if (!f) continue;
      server.jpeg_for(f);
      ++served;
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // warm-up
  auto s0 = live.status().get();
  const int64_t served0 = served;
  const auto t0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  auto s1 = live.status().get();
  const int64_t served1 = served;
  const double dt = seconds_between(t0, Clock::now());
  done = true;
  viewer.join();
  live.stop();
  if (!live.error().empty()) throw Error(live.error());
  if (!s0 || !s1) throw Error("benchmark: no frames were classified");
  return {double(s1->captured - s0->captured) / dt, double(s1->classified - s0->classified) / dt,
          double(served1 - served0) / dt};
}

int run_bench(const Settings& st, FrameClassifier& clf) {
  if (st.source.empty())
    throw ConfigError("--bench replays --source (an .mjpeg file or a folder) as fast as it can");
  set_num_threads(st.threads);
  std::unique_ptr<FrameSource> src = open_replay_source(st.source, replay_options(st, clf, 0));
  std::printf("benchmark: %s, model input %dx%d, network threads %d, %d frames\n",
              src->describe().c_str(), clf.input_width(), clf.input_height(), st.threads, st.bench);
  JpegDecoder full_decoder;
  JpegEncoder encoder;
  Mean read_decode, decode, resize, network, full_decode, encode;
  int scale = 1, fw = 0, fh = 0, dw = 0, dh = 0;
  // Warm-up (first forward allocates).
  for (int i = 0; i < 5; ++i) {
    auto f = src->next(1000);
    if (f) clf.classify(f->image);
  }
  const auto t0 = Clock::now();
  int frames = 0;
  while (frames < st.bench) {
    const auto a = Clock::now();
    std::optional<Frame> f = src->next(1000);
    if (!f) break;
    read_decode.add(seconds_between(a, Clock::now()) * 1e3);
    StageTimes t;
    clf.classify(f->image, &t);
    decode.add(f->decode_ms);
    resize.add(t.resize_ms);
    network.add(t.network_ms);
    scale = f->scale;
    fw = f->full_width;
    fh = f->full_height;
    dw = f->image.width;
    dh = f->image.height;
    ++frames;
  }
  const double seq_s = seconds_between(t0, Clock::now());
  // Encoding cost of a full-size frame (what a YUYV camera or a PNG replay costs the stream;
  // MJPEG frames are passed to the browser as they came), and a full-size decode for reference.
  {
    std::unique_ptr<FrameSource> full = open_replay_source(st.source, [&] {
      ReplayOptions ro = replay_options(st, clf, 0);
      ro.decode.need_width = ro.decode.need_height = 0;
      return ro;
    }());
    for (int i = 0; i < std::min(st.bench, 200); ++i) {
      std::optional<Frame> f = full->next(1000);
      if (!f) break;
      full_decode.add(f->decode_ms);
      const auto a = Clock::now();
      encoder.encode(f->image, st.quality);
      encode.add(seconds_between(a, Clock::now()) * 1e3);
    }
  }
  std::printf("\nper-frame latency, one thread (mean of %d frames):\n", frames);
  std::printf("  read + decode at 1/%d (%dx%d -> %dx%d)   %7.3f ms  (decode alone %.3f ms)\n",
              scale, fw, fh, dw, dh, read_decode.get(), decode.get());
  std::printf("  centre crop + resize to %dx%d          %7.3f ms\n", clf.input_width(),
              clf.input_height(), resize.get());
  std::printf("  preprocess + network                   %7.3f ms\n", network.get());
  std::printf(
      "  JPEG encode of a %dx%d frame (q%d)    %7.3f ms  (MJPEG sources: none, passed "
      "through)\n",
      fw, fh, st.quality, encode.get());
  std::printf("  full-size decode, for reference        %7.3f ms\n", full_decode.get());
  std::printf("  sequential, one thread: %.1f frames/s (%.1f with encode)\n", frames / seq_s,
              1e3 / (1e3 * seq_s / frames + encode.get()));

  std::printf(
      "\nthreaded pipeline (capture | classify | viewer threads), pinned to N cores, "
      "%.0f s each:\n",
      st.bench_seconds);
  std::printf("  %-5s  %-46s %10s %12s %10s\n", "cores", "mode", "capture/s", "classified/s",
              "served/s");
  struct Mode {
    const char* name;
    double fps;
    bool encode;
  };
  const Mode modes[] = {
      {"camera-paced 30/s, scaled decode, pass-through", 30, false},
      {"flat out, scaled decode, JPEG pass-through", 0, false},
      {"flat out, full decode + encode every frame", 0, true},
  };
  for (const Mode& m : modes) {
    for (int cores : {1, 2}) {
      std::optional<cpu_set_t> old = pin_to_cores(cores);
      if (!old) {
        std::printf("  %-5d  (cannot pin to %d cores here)\n", cores, cores);
        continue;
      }
      const std::vector<double> r = run_threaded(st, clf, m.fps, m.encode, st.bench_seconds);
      sched_setaffinity(0, sizeof *old, &*old);
      std::printf("  %-5d  %-46s %10.1f %12.1f %10.1f\n", cores, m.name, r[0], r[1], r[2]);
    }
  }
  return 0;
}

// ----------------------------------------------------------------------------- live

int run_live(const Settings& st) {
  FrameClassifier clf = FrameClassifier::from_file(st.model);
  set_num_threads(st.threads);
  if (st.bench > 0) return run_bench(st, clf);

  SystemV4l2Io io;
  std::unique_ptr<FrameSource> source;
  if (!st.source.empty()) {
    source = open_replay_source(st.source, replay_options(st, clf, st.fps));
  } else {
    V4l2SourceOptions vo;
    vo.capture.width = st.width;
    vo.capture.height = st.height;
    vo.capture.format = st.format;
    vo.capture.buffers = st.buffers;
    vo.capture.fps = int(st.fps + 0.5);
    vo.decode.need_width = clf.input_width();
    vo.decode.need_height = clf.input_height();
    vo.reconnect_timeout_s = st.reconnect_timeout;
    source = std::make_unique<V4l2Source>(io, st.device, vo);
  }
  std::unique_ptr<FrameRecorder> recorder;
  if (!st.record.empty()) {
    if (st.out.empty())
      throw ConfigError("--record CLASS needs --out DIR (frames go to DIR/CLASS/)");
    RecordOptions ro;
    ro.out_dir = st.out;
    ro.class_name = st.record;
    ro.format = st.record_format;
    ro.full_frame = st.record_full_frame;
    ro.aspect_w = clf.input_width();
    ro.aspect_h = clf.input_height();
    recorder = std::make_unique<FrameRecorder>(ro);
  } else if (!st.out.empty()) {
    throw ConfigError("--out DIR is where --record CLASS saves frames; give --record too");
  }

  std::printf("model %s: %dx%d input, %zu classes, %s preprocessing, %s resize\n", st.model.c_str(),
              clf.input_width(), clf.input_height(), clf.class_names().size(),
              to_string(clf.info().preprocess).c_str(),
              to_string(clf.info().interpolation).c_str());
  std::printf("source %s\n", source->describe().c_str());
  if (recorder)
    std::printf("recording every %.2f s into %s\n", st.record_every, recorder->folder().c_str());

  LiveOptions lo;
  lo.smooth = st.smooth;
  lo.top = st.top;
  lo.record_every_s = st.record_every;
  lo.record_max = st.record_max;
  lo.network_threads = st.threads;
  LiveClassifier live(*source, clf, lo, recorder.get());
  std::unique_ptr<CameraServer> server;
  if (!st.no_server) {
    ServerOptions so;
    so.host = st.host;
    so.port = st.port;
    so.jpeg_quality = st.quality;
    so.title = fs::path(st.model).filename().string();
    so.source = source->describe();
    server = std::make_unique<CameraServer>(live, so);
    server->start();
    if (!is_loopback(st.host))
      std::fprintf(stderr,
                   "warning: serving on %s: anyone who can reach this machine on port %d sees "
                   "the camera\n",
                   st.host.c_str(), server->port());
    std::printf("open %s in a browser (Ctrl-C to stop)\n", server->url().c_str());
  }
  std::fflush(stdout);

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);

  live.start();
  const auto t0 = Clock::now();
  auto next_line = t0 + std::chrono::seconds(1);
  while (!g_stop && !live.finished()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const auto now = Clock::now();
    if (now >= next_line) {
      next_line += std::chrono::seconds(1);
      if (auto s = live.status().get()) {
        std::printf("%s\n", status_line(*s).c_str());
        std::fflush(stdout);
      }
    }
    if (st.duration > 0 && seconds_between(t0, now) >= st.duration) break;
  }
  if (server) server->stop();
  live.stop();
  const std::string err = live.error();
  auto s = live.status().get();
  std::printf("stopped after %.1f s: %lld frames captured, %lld classified",
              seconds_between(t0, Clock::now()), s ? (long long)s->captured : 0LL,
              s ? (long long)s->classified : 0LL);
  if (recorder)
    std::printf(", %lld saved in %s", (long long)recorder->saved(), recorder->folder().c_str());
  std::printf("\n");
  source.reset();  // the camera: STREAMOFF, munmap, close
  if (!err.empty()) {
    std::fprintf(stderr, "error: %s\n", err.c_str());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "haribo_camera: live classification of camera frames with a model trained by haribo_train, "
      "shown in a browser (http://127.0.0.1:8080/)"};
  Settings st;
  app.add_option("model", st.model, "trained model file (.mcnn from haribo_train)");
  app.add_option("--device", st.device, "V4L2 camera")->capture_default_str();
  app.add_flag("--list-devices", st.list_devices, "list the video devices and exit");
  app.add_flag("--list-formats", st.list_formats,
               "list the pixel formats and sizes of --device and exit");
  app.add_option("--source", st.source,
                 "replay a folder of pictures (sorted, sub-folders included) or an MJPEG file "
                 "instead of the camera");
  app.add_option("--fps", st.fps, "replay rate, and the frame rate asked of the camera")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1000.0));
  app.add_flag("--no-loop", st.no_loop, "replay the source once, then stop");
  app.add_option("--width", st.width, "capture width asked of the camera (it picks its nearest)")
      ->capture_default_str()
      ->check(CLI::Range(16, 8192));
  app.add_option("--height", st.height, "capture height")
      ->capture_default_str()
      ->check(CLI::Range(16, 8192));
  app.add_option("--format", st.format, "capture format: auto (MJPEG, else YUYV), mjpeg or yuyv")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "mjpeg", "yuyv"}));
  app.add_option("--buffers", st.buffers, "capture buffers (VIDIOC_REQBUFS)")
      ->capture_default_str()
      ->check(CLI::Range(2, 32));
  app.add_option("--smooth", st.smooth, "average the probabilities of the last N frames")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--top", st.top, "classes shown in the page")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  app.add_option("--port", st.port, "HTTP port (0: any free port)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  app.add_option("--host", st.host,
                 "address to serve on; anything but 127.0.0.1 shows the camera to the network")
      ->capture_default_str();
  app.add_flag("--no-server", st.no_server, "terminal only, no browser view");
  app.add_option("--quality", st.quality, "JPEG quality of frames encoded for the browser")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  app.add_option("--record", st.record,
                 "save frames as training pictures of class CLASS (into --out/CLASS/)");
  app.add_option("--out", st.out, "dataset folder for --record");
  app.add_option("--record-every", st.record_every, "seconds between saved frames")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  app.add_option("--record-max", st.record_max, "stop saving after N frames (0: no limit)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(0), int64_t(1) << 40));
  app.add_option("--record-format", st.record_format, "jpg or png")
      ->capture_default_str()
      ->check(CLI::IsMember({"jpg", "png"}));
  app.add_flag("--record-full-frame", st.record_full_frame,
               "save whole frames instead of the centre crop the model sees");
  app.add_option("--reconnect-timeout", st.reconnect_timeout,
                 "seconds to wait for an unplugged camera to come back")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  app.add_option("--duration", st.duration, "stop after this many seconds (0: run until Ctrl-C)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e9));
  app.add_option("--threads", st.threads, "threads of the network's forward pass")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  app.add_option("--bench", st.bench,
                 "benchmark: replay --source as fast as possible for N frames, print per-stage "
                 "times and the pipeline's frame rates on 1 and 2 cores")
      ->check(CLI::Range(1, 1000000));
  app.add_option("--bench-seconds", st.bench_seconds, "length of each threaded benchmark run")
      ->capture_default_str()
      ->check(CLI::Range(0.5, 600.0));
  CLI11_PARSE(app, argc, argv);

  try {
    SystemV4l2Io io;
    if (st.list_devices) {
      std::cout << list_devices_text(io);
      return 0;
    }
    if (st.list_formats) {
      std::cout << list_formats_text(io, st.device, st.format);
      return 0;
    }
    if (st.model.empty()) {
      std::cerr << "error: give a model file (haribo_train writes OUT/best_model.mcnn); --help "
                   "lists the options\n";
      return 2;
    }
    return run_live(st);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
