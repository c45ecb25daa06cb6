// The browser side of haribo_camera, over cpp-httplib (Debian's libcpp-httplib-dev):
//   GET /            the page (page.hpp)
//   GET /status      the latest LiveStatus as JSON (top classes, frame rates, stage times)
//   GET /stream.mjpg the live frames as multipart/x-mixed-replace JPEGs
//   GET /frame.jpg   the latest frame as one JPEG
// Frames that arrived as JPEG (MJPEG cameras and files) are sent as they came; others (YUYV,
// PNG) are encoded with TurboJPEG once per frame, however many browsers watch, in the
// server's own threads: a slow browser only skips frames and never holds up capture or
// classification. It listens on 127.0.0.1 unless told otherwise; port 0 picks a free port.
// It answers only these four paths (exact matches: nothing is served from disk, so there is
// no path to traverse and no folder to list); everything else is 404. Connection counts,
// request sizes and timeouts are bounded (http_guard.hpp, docs/camera.md).
#pragma once
#include <httplib.h>
#include <signal.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "http_guard.hpp"
#include "live.hpp"
#include "mjpeg.hpp"
#include "page.hpp"

namespace minicnn::camera {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port (start() returns it)
  int jpeg_quality = 80;
  int max_streams = 4;    // concurrent /stream.mjpg viewers (each holds a server thread)
  HttpLimits limits;      // connections, request sizes, timeouts (http_guard.hpp)
  bool reencode = false;  // encode every frame, even one that came as JPEG (benchmarks)
  std::string title;      // shown in the page (the model file)
  std::string source;     // shown under the stream
};

// The /status document. Strings are JSON-escaped; invalid UTF-8 (a class folder named in
// another encoding) becomes U+FFFD instead of failing.
inline std::string status_json(const LiveStatus& s, const std::string& source, double encode_ms,
                               bool passthrough, int64_t streamed, int viewers) {
  nlohmann::json top = nlohmann::json::array();
  for (const auto& r : s.top)
    top.push_back({{"index", r.index}, {"label", r.label}, {"prob", r.prob}});
  nlohmann::json j = {{"frame", s.frame},
                      {"frame_name", s.frame_name},
                      {"frame_width", s.frame_width},
                      {"frame_height", s.frame_height},
                      {"crop", {s.crop.x, s.crop.y, s.crop.width, s.crop.height}},
                      {"capture_fps", s.capture_fps},
                      {"classify_fps", s.classify_fps},
                      {"captured", s.captured},
                      {"classified", s.classified},
                      {"label", s.top.empty() ? std::string() : s.top[0].label},
                      {"prob", s.top.empty() ? 0.0f : s.top[0].prob},
                      {"top", top},
                      {"times_ms",
                       {{"decode", s.times.decode_ms},
                        {"resize", s.times.resize_ms},
                        {"network", s.times.network_ms},
                        {"encode", encode_ms}}},
                      {"latency_ms", s.latency_ms},
                      {"problem", s.problem},
                      {"finished", s.finished},
                      {"error", s.error},
                      {"recorded", s.recorded},
                      {"record_folder", s.record_folder},
                      {"uptime_s", s.uptime_s},
                      {"source", source},
                      {"stream_passthrough", passthrough},
                      {"frames_streamed", streamed},
                      {"viewers", viewers}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

class CameraServer {
 public:
  CameraServer(LiveClassifier& live, ServerOptions opt)
      : live_(live), opt_(std::move(opt)), svr_(opt_.limits) {
    if (opt_.jpeg_quality < 1 || opt_.jpeg_quality > 100)
      throw ConfigError("stream JPEG quality must be 1..100, got " +
                        std::to_string(opt_.jpeg_quality));
    if (opt_.port < 0 || opt_.port > 65535)
      throw ConfigError("port must be 0..65535, got " + std::to_string(opt_.port));
    // Streams hold a connection each for as long as they run: leave room for the page.
    if (opt_.max_streams < 0 || opt_.max_streams >= opt_.limits.max_connections)
      throw ConfigError(
          "stream viewers must be 0.." + std::to_string(opt_.limits.max_connections - 1) +
          " (fewer than the connection limit), got " + std::to_string(opt_.max_streams));
    page_ = camera_page_html(opt_.title);
    routes();
  }
  ~CameraServer() { stop(); }
  CameraServer(const CameraServer&) = delete;
  CameraServer& operator=(const CameraServer&) = delete;

  // Binds and starts serving in a background thread; returns the port. A browser that goes
  // away mid-frame would end the process with SIGPIPE (httplib writes with plain send()), so
  // SIGPIPE is ignored from here on if nobody handles it: the write then fails with EPIPE.
  int start() {
    struct sigaction old {};
    if (::sigaction(SIGPIPE, nullptr, &old) == 0 && old.sa_handler == SIG_DFL)
      ::signal(SIGPIPE, SIG_IGN);
    int port = opt_.port;
    if (port == 0) {
      port = svr_.bind_to_any_port(opt_.host);
      if (port <= 0) port = -1;
    } else if (!svr_.bind_to_port(opt_.host, port)) {
      port = -1;
    }
    if (port < 0)
      throw IoError("cannot listen on " + opt_.host + ":" + std::to_string(opt_.port) +
                    ": the port is in use (another haribo_camera?) or the address is not one "
                    "of this machine's; choose another with --port");
    svr_.widen_backlog();
    port_ = port;
    running_ = true;
    thread_ = std::thread([this] {
      svr_.listen_after_bind();
      listen_done_ = true;
    });
    // httplib's stop() does nothing before the listening loop has begun: wait for it, so that
    // a stop() soon after start() cannot slip in before and leave the loop running for ever.
    while (!svr_.is_running() && !listen_done_)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return port_;
  }

  void stop() {
    if (!running_.exchange(false)) return;
    svr_.shutdown();
    if (thread_.joinable()) thread_.join();
  }

  int port() const { return port_; }
  std::string url() const {
    const bool v6 = opt_.host.find(':') != std::string::npos;
    return "http://" + (v6 ? "[" + opt_.host + "]" : opt_.host) + ":" + std::to_string(port_) + "/";
  }
  int64_t frames_streamed() const { return streamed_; }
  int viewers() const { return viewers_; }
  int connections() const { return svr_.active_connections(); }
  int64_t refused_connections() const { return svr_.rejected_connections(); }

  // The JPEG a browser gets for this frame: the camera's own, or one encoded once and shared.
  std::shared_ptr<const std::vector<uint8_t>> jpeg_for(const std::shared_ptr<const Frame>& f) {
    if (f->jpeg && !opt_.reencode) {
      passthrough_ = true;
      return f->jpeg;
    }
    std::lock_guard<std::mutex> lk(enc_mu_);
    if (cached_frame_.lock() == f) return cached_jpeg_;
    const auto t0 = Clock::now();
    cached_jpeg_ =
        std::make_shared<const std::vector<uint8_t>>(encoder_.encode(f->image, opt_.jpeg_quality));
    encode_ms_ = seconds_between(t0, Clock::now()) * 1e3;
    passthrough_ = false;
    cached_frame_ = f;
    return cached_jpeg_;
  }

 private:
  friend struct CameraServerFuzzAccess;  // fuzz/fuzz_http.cpp feeds requests to svr_ directly
  static constexpr const char* kBoundary = "haribo-frame";

  void routes() {
    // httplib's default also sets SO_REUSEPORT, which lets a second haribo_camera bind the same
    // port and silently take half the connections; SO_REUSEADDR alone still allows a restart
    // while old connections linger, but refuses a port another server listens on.
    svr_.set_socket_options([](socket_t sock) {
      int yes = 1;
      ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    });
    svr_.Get("/", [this](const httplib::Request&, httplib::Response& res) {
      res.set_header("Cache-Control", "no-store");
      res.set_content(page_, "text/html; charset=utf-8");
    });
    svr_.Get("/status", [this](const httplib::Request&, httplib::Response& res) {
      std::shared_ptr<const LiveStatus> s = live_.status().get();
      const LiveStatus empty;
      res.set_header("Cache-Control", "no-store");
      res.set_content(
          status_json(s ? *s : empty, opt_.source, encode_ms_, passthrough_, streamed_, viewers_),
          "application/json");
    });
    svr_.Get(R"(/frame\.jpg)", [this](const httplib::Request&, httplib::Response& res) {
      std::shared_ptr<const Frame> f = live_.frames().get();
      if (!f) {
        res.status = 503;
        res.set_content("no frame yet\n", "text/plain");
        return;
      }
      auto jpeg = jpeg_for(f);
      res.set_header("Cache-Control", "no-store");
      res.set_content(reinterpret_cast<const char*>(jpeg->data()), jpeg->size(), "image/jpeg");
    });
    svr_.Get(R"(/stream\.mjpg)", [this](const httplib::Request&, httplib::Response& res) {
      if (viewers_.fetch_add(1) >= opt_.max_streams) {
        --viewers_;
        res.status = 503;
        res.set_content("too many viewers (at most " + std::to_string(opt_.max_streams) + ")\n",
                        "text/plain");
        return;
      }
      res.set_header("Cache-Control", "no-store, no-cache, must-revalidate");
      res.set_header("Pragma", "no-cache");
      auto seen = std::make_shared<uint64_t>(0);
      res.set_content_provider(
          std::string("multipart/x-mixed-replace; boundary=") + kBoundary,
          [this, seen](size_t, httplib::DataSink& sink) {
            if (!running_) return false;
            std::shared_ptr<const Frame> f = live_.frames().wait_newer(*seen, 200);
            if (!f) return !live_.frames().closed();  // nothing new yet: wait again
            auto jpeg = jpeg_for(f);
            const std::string head =
                std::string("--") + kBoundary +
                "\r\nContent-Type: image/jpeg\r\nContent-Length: " + std::to_string(jpeg->size()) +
                "\r\n\r\n";
            if (!sink.write(head.data(), head.size()) ||
                !sink.write(reinterpret_cast<const char*>(jpeg->data()), jpeg->size()) ||
                !sink.write("\r\n", 2))
              return false;
            ++streamed_;
            return true;
          },
          [this](bool) { --viewers_; });
    });
  }

  LiveClassifier& live_;
  ServerOptions opt_;
  GuardedServer svr_;
  std::string page_;
  std::thread thread_;
  std::atomic<bool> running_{false}, listen_done_{false};
  int port_ = 0;
  std::atomic<int64_t> streamed_{0};
  std::atomic<int> viewers_{0};
  std::mutex enc_mu_;
  JpegEncoder encoder_;
  std::weak_ptr<const Frame> cached_frame_;
  std::shared_ptr<const std::vector<uint8_t>> cached_jpeg_;
  std::atomic<double> encode_ms_{0};
  std::atomic<bool> passthrough_{false};
};

}  // namespace minicnn::camera
