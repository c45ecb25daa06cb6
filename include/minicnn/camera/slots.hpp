// "Latest value wins" hand-over between threads: a producer replaces the value, a consumer
// takes the newest one it has not seen, waiting for it. Nothing queues up, so a slow
// consumer (a browser on a slow link, a slow network) only skips values and never slows the
// producer, and memory stays at one value per slot plus one per consumer holding it.
// Values are immutable once published (shared_ptr<const T>).
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>

namespace minicnn::camera {

template <class T>
class LatestSlot {
 public:
  void put(std::shared_ptr<const T> v) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      value_ = std::move(v);
      ++version_;
    }
    cv_.notify_all();
  }
  void put(T v) { put(std::make_shared<const T>(std::move(v))); }

  // The newest value (null before the first put) and its version (0 before the first put).
  std::shared_ptr<const T> get(uint64_t* version = nullptr) const {
    std::lock_guard<std::mutex> lk(mu_);
    if (version) *version = version_;
    return value_;
  }

  // Waits up to timeout_ms for a value newer than version `seen`; returns it and moves `seen`
  // to its version, or null on a timeout or after close().
  std::shared_ptr<const T> wait_newer(uint64_t& seen, int timeout_ms) {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait_for(lk, std::chrono::milliseconds(timeout_ms),
                 [&] { return closed_ || version_ > seen; });
    if (version_ <= seen) return nullptr;
    seen = version_;
    return value_;
  }

  // Wakes every waiter; later waits return at once with what is there.
  void close() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      closed_ = true;
    }
    cv_.notify_all();
  }
  bool closed() const {
    std::lock_guard<std::mutex> lk(mu_);
    return closed_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::shared_ptr<const T> value_;
  uint64_t version_ = 0;
  bool closed_ = false;
};

}  // namespace minicnn::camera
