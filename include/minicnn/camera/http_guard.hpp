// Bounds on what anything that connects can make the camera server hold, over cpp-httplib 0.11
// (Debian's is a shared library, so its compile-time limits cannot be changed from here).
// GuardedServer replaces httplib's connection loop and its thread pool, whose job queue has
// no bound:
//  - at most max_connections connections are served at once, each by its own worker thread
//    of a fixed pool; one more is answered "503 busy" by the accepting thread and closed, so
//    a flood costs neither threads nor queued sockets;
//  - a request (request line, headers and body together) may be at most max_request_bytes,
//    and must arrive within request_timeout_s of its start: a slow-loris client that sends a
//    header byte every few seconds is cut off instead of holding a worker for ever;
//  - every read waits at most read_timeout_s, and a write that makes no progress for
//    write_timeout_s drops the connection (a browser that stopped reading its stream);
//  - sends use MSG_NOSIGNAL: a browser that goes away cannot raise SIGPIPE;
//  - stop() ends every connection within about 100 ms: waits poll in short slices and look
//    at the stop flag between them.
#pragma once
#include <httplib.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../core/error.hpp"

namespace minicnn::camera {

struct HttpLimits {
  int max_connections = 32;              // served at once; one more gets 503
  size_t max_request_bytes = 16 * 1024;  // request line + headers + body
  double request_timeout_s = 10;         // from a request's first byte to its last
  double read_timeout_s = 5;             // one wait for bytes (also: a new connection's first)
  double write_timeout_s = 5;            // a write without progress for this long fails
  double keep_alive_s = 2;               // an idle kept-alive connection is closed after this
  int keep_alive_max = 100;              // requests on one connection

  void validate() const {
    if (max_connections < 1 || max_connections > 1024)
      throw ConfigError("HTTP connections must be 1..1024, got " + std::to_string(max_connections));
    if (max_request_bytes < 1024)
      throw ConfigError("HTTP request limit must be at least 1024 bytes, got " +
                        std::to_string(max_request_bytes));
    for (double s : {request_timeout_s, read_timeout_s, write_timeout_s, keep_alive_s})
      if (!(s > 0) || s > 3600)
        throw ConfigError("HTTP timeouts must be in (0, 3600] seconds, got " + std::to_string(s));
    if (keep_alive_max < 1)
      throw ConfigError("HTTP keep-alive request count must be >= 1, got " +
                        std::to_string(keep_alive_max));
  }
};

namespace http_detail {
using Clock = std::chrono::steady_clock;

inline Clock::time_point after(double seconds) {
  return Clock::now() +
         std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

// Waits until `events` (POLLIN or POLLOUT) on `sock`, `until` or `stopping`, whichever comes
// first; true only for the event. Slices of 100 ms keep stop() prompt.
inline bool wait_for(int sock, short events, Clock::time_point until,
                     const std::atomic<bool>& stopping) {
  for (;;) {
    if (stopping) return false;
    const auto now = Clock::now();
    if (now >= until) return false;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count();
    pollfd p{sock, events, 0};
    const int r = ::poll(&p, 1, int(std::clamp<int64_t>(left + 1, 1, 100)));
    if (r < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (r == 0) continue;
    // For reading, an error or hang-up is also "ready": recv() then reports it.
    if (events & POLLIN) return true;
    return (p.revents & POLLOUT) && !(p.revents & (POLLERR | POLLHUP | POLLNVAL));
  }
}

inline void endpoint(int sock, bool peer, std::string& ip, int& port) {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  auto* sa = reinterpret_cast<sockaddr*>(&a);
  if ((peer ? ::getpeername(sock, sa, &len) : ::getsockname(sock, sa, &len)) != 0) return;
  char host[NI_MAXHOST], serv[NI_MAXSERV];
  if (::getnameinfo(sa, len, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
    ip = host;
    port = std::atoi(serv);
  }
}
}  // namespace http_detail

// One connection's socket as httplib sees it, with the limits above. Reads are buffered
// (httplib reads request lines a byte at a time).
class GuardedStream final : public httplib::Stream {
 public:
  GuardedStream(int sock, const HttpLimits& lim, const std::atomic<bool>& stopping)
      : sock_(sock), lim_(lim), stopping_(stopping) {}

  // Waits for the next request on this connection: true when bytes are there.
  bool wait_request(double seconds) {
    return avail() > 0 ||
           http_detail::wait_for(sock_, POLLIN, http_detail::after(seconds), stopping_);
  }
  // Starts the byte count and the clock of one request.
  void begin_request() {
    consumed_ = 0;
    deadline_ = http_detail::after(lim_.request_timeout_s);
  }
  // A read was refused (the request too large or too slow): whatever httplib answered, the
  // connection must end, or the rest of that request would be read as the next one.
  bool cut() const { return cut_; }

  bool is_readable() const override {
    const auto until = std::min(deadline_, http_detail::after(lim_.read_timeout_s));
    return avail() > 0 || http_detail::wait_for(sock_, POLLIN, until, stopping_);
  }
  bool is_writable() const override {
    return http_detail::wait_for(sock_, POLLOUT, http_detail::after(lim_.write_timeout_s),
                                 stopping_);
  }
  ssize_t read(char* ptr, size_t size) override {
    if (size == 0) return 0;
    if (consumed_ >= lim_.max_request_bytes) {  // larger than allowed: stop reading it
      cut_ = true;
      return -1;
    }
    if (avail() == 0) {
      if (!is_readable()) {
        cut_ = true;
        return -1;
      }
      ssize_t n;
      do n = ::recv(sock_, buf_, sizeof buf_, 0);
      while (n < 0 && errno == EINTR);
      if (n <= 0) return n;
      off_ = 0;
      len_ = size_t(n);
    }
    const size_t n = std::min({size, avail(), lim_.max_request_bytes - consumed_});
    std::copy_n(buf_ + off_, n, ptr);
    off_ += n;
    consumed_ += n;
    return ssize_t(n);
  }
  ssize_t write(const char* ptr, size_t size) override {
    size_t done = 0;
    while (done < size) {
      if (!is_writable()) return -1;
      const ssize_t n = ::send(sock_, ptr + done, size - done, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
        return -1;
      }
      done += size_t(n);
    }
    return ssize_t(size);
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    http_detail::endpoint(sock_, true, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    http_detail::endpoint(sock_, false, ip, port);
  }
  socket_t socket() const override { return sock_; }

 private:
  size_t avail() const { return len_ - off_; }

  int sock_;
  const HttpLimits& lim_;
  const std::atomic<bool>& stopping_;
  http_detail::Clock::time_point deadline_ = http_detail::Clock::time_point::max();
  size_t consumed_ = 0;
  bool cut_ = false;
  char buf_[4096];
  size_t off_ = 0, len_ = 0;
};

// httplib's TaskQueue as a fixed pool with one worker per allowed connection. A connection
// that finds every worker taken is handled at once on the accepting thread with rejecting()
// set, which GuardedServer answers with 503: nothing waits in a queue.
class ConnectionPool final : public httplib::TaskQueue {
 public:
  explicit ConnectionPool(int workers) : size_(workers) {
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { work(); });
  }
  ~ConnectionPool() override { shutdown(); }

  void enqueue(std::function<void()> fn) override {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (busy_ < size_ && !quit_) {
        ++busy_;
        jobs_.push_back(std::move(fn));
        cv_.notify_one();
        return;
      }
    }
    rejecting() = true;
    fn();
    rejecting() = false;
  }
  void shutdown() override {
    {
      std::lock_guard<std::mutex> lk(mu_);
      quit_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }
  static bool& rejecting() {
    thread_local bool r = false;
    return r;
  }

 private:
  void work() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return quit_ || !jobs_.empty(); });
        if (jobs_.empty()) return;  // quit, and every accepted connection handled
        fn = std::move(jobs_.front());
        jobs_.pop_front();
      }
      fn();
      std::lock_guard<std::mutex> lk(mu_);
      --busy_;
    }
  }

  const int size_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  int busy_ = 0;
  bool quit_ = false;
};

class GuardedServer : public httplib::Server {
 public:
  explicit GuardedServer(HttpLimits lim) : lim_(lim) {
    lim_.validate();
    new_task_queue = [this] { return new ConnectionPool(lim_.max_connections); };
    // A body announced larger than this is refused (413) before any of it is read.
    set_payload_max_length(lim_.max_request_bytes);
  }
  // Ends every connection (streams included) and the listening loop.
  void shutdown() {
    stopping_ = true;
    stop();
  }
  // httplib listens with a backlog of 5: a burst of browsers' connections beyond it waits for
  // SYN retransmits (1 s, 3 s, ...). Call after binding.
  void widen_backlog(int n = 128) { ::listen(svr_sock_, n); }
  int active_connections() const { return active_; }
  int64_t rejected_connections() const { return rejected_; }
  const HttpLimits& limits() const { return lim_; }

 private:
  bool process_and_close_socket(socket_t sock) override {
    if (ConnectionPool::rejecting()) {
      ++rejected_;
      refuse(sock);
      return false;
    }
    ++active_;
    GuardedStream strm(sock, lim_, stopping_);
    bool ret = false;
    double wait = lim_.read_timeout_s;  // the first request; later ones: keep-alive
    for (int left = lim_.keep_alive_max; left > 0 && !stopping_; --left) {
      if (!strm.wait_request(wait)) break;
      strm.begin_request();
      bool closed = false;
      ret = process_request(strm, left == 1, closed, nullptr);
      if (!ret || closed || strm.cut()) break;
      wait = lim_.keep_alive_s;
    }
    ::shutdown(sock, SHUT_RDWR);
    ::close(sock);
    --active_;
    return ret;
  }

  // 503 on the accepting thread, which must not block: the answer goes out without waiting
  // (a fresh socket's buffer takes all of it). A socket closed with unread bytes in it sends
  // a reset, and a reset makes the client drop the answer unread: so the request, which a
  // client sends right after connecting, is waited for briefly (20 ms at most) and drained.
  static void refuse(int sock) {
    static const char kBusy[] =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 29\r\n"
        "Retry-After: 1\r\nConnection: close\r\n\r\ntoo many connections, retry\r\n";
    (void)!::send(sock, kBusy, sizeof kBusy - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    ::shutdown(sock, SHUT_WR);
    const auto until = http_detail::after(0.02);
    char junk[4096];
    for (int i = 0; i < 16; ++i) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(until - http_detail::Clock::now());
      pollfd p{sock, POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, int(left.count())) <= 0) break;
      if (::recv(sock, junk, sizeof junk, MSG_DONTWAIT) <= 0) break;  // the client closed
    }
    ::close(sock);
  }

  HttpLimits lim_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> active_{0};
  std::atomic<int64_t> rejected_{0};
};

}  // namespace minicnn::camera
