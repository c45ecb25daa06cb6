// Fuzz target: the camera server's HTTP request handling (camera/server.hpp over
// cpp-httplib): raw request bytes, keep-alive sequences of them included, go through
// httplib's request parser and routing into CameraServer's handlers (page, /status,
// /frame.jpg with a frame waiting, /stream.mjpg), without sockets: an in-memory Stream is
// handed to httplib::Server::process_request (protected, reached through a derived class),
// so one execution takes microseconds, not a TCP connection.
// Debian's cpp-httplib is a shared library compiled without coverage: the fuzzer steers by
// the coverage of minicnn's handlers and the inline parts of httplib.h; what it checks is
// that no request crashes, leaks or corrupts memory and every one gets a bounded answer.
#include <cstdint>
#include <optional>
#include <string>

#include <minicnn/camera/live.hpp>
#include <minicnn/camera/server.hpp>
#include <minicnn/layers/dense.hpp>
#include <minicnn/layers/pooling.hpp>

namespace minicnn::camera {
struct CameraServerFuzzAccess {
  static httplib::Server& server(CameraServer& s) { return s.svr_; }
};
}  // namespace minicnn::camera

using namespace minicnn;
using namespace minicnn::camera;

namespace {
struct ProcessAccess : httplib::Server {
  using httplib::Server::process_request;
};

// Reads the fuzz input, keeps (a bounded prefix of) what the server writes.
class MemoryStream : public httplib::Stream {
 public:
  MemoryStream(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  bool is_readable() const override { return pos_ < n_; }
  bool is_writable() const override { return true; }
  ssize_t read(char* ptr, size_t size) override {
    const size_t k = std::min(size, n_ - pos_);
    std::memcpy(ptr, p_ + pos_, k);
    pos_ += k;
    return static_cast<ssize_t>(k);
  }
  ssize_t write(const char* ptr, size_t size) override {
    written_ += size;
    if (out_.size() < 4096) out_.append(ptr, std::min(size, 4096 - out_.size()));
    return static_cast<ssize_t>(size);
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    ip = "127.0.0.1";
    port = 40000;
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    ip = "127.0.0.1";
    port = 8080;
  }
  socket_t socket() const override { return INVALID_SOCKET; }
  bool done() const { return pos_ >= n_; }
  const std::string& out() const { return out_; }

 private:
  const uint8_t* p_;
  size_t n_, pos_ = 0, written_ = 0;
  std::string out_;
};

class NoFrames : public FrameSource {
 public:
  std::optional<Frame> next(int) override { return std::nullopt; }
  std::string describe() const override { return "fuzz"; }
};

struct World {
  NoFrames source;
  FrameClassifier classifier;
  LiveClassifier live;
  CameraServer server;
  static LoadedNet tiny_model() {
    LoadedNet n;
    n.net = std::make_unique<Sequential>("fuzz");
    n.net->add<GlobalAveragePooling2D>("gap");
    n.net->add<Dense>("fc", 2, DenseOptions{"softmax", true});
    n.net->build(Shape{8, 8, 3});
    n.info.class_names = {"red <&>", "gr\xc3\xbcn"};
    return n;
  }
  static ServerOptions options() {
    ServerOptions o;
    o.port = 0;
    o.title = "fuzz <title>";
    return o;
  }
  World()
      : classifier(tiny_model(), "fuzz model"), live(source, classifier), server(live, options()) {
    Frame f;
    f.image.width = 8;
    f.image.height = 6;
    f.image.pixels.assign(8 * 6 * 3, 128);
    live.frames().put(std::move(f));
    LiveStatus st;
    st.frame = 0;
    live.status().put(std::move(st));
  }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World* world = new World;  // built once; never torn down (no server thread runs)
  httplib::Server& svr = CameraServerFuzzAccess::server(world->server);
  MemoryStream strm(data, size);
  // Keep-alive: requests follow one another on the connection until it closes or the input
  // ends, as httplib's connection loop does (at most 16 here).
  for (int i = 0; i < 16 && !strm.done(); ++i) {
    bool closed = false;
    const bool ok =
        (svr.*(&ProcessAccess::process_request))(strm, false, closed, [](httplib::Request&) {});
    if (!ok || closed) break;
  }
  if (size > 0 && strm.out().empty()) __builtin_trap();  // every request gets an answer
  return 0;
}
