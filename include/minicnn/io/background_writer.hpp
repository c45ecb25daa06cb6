// BackgroundWriter: atomic file writes finished by one background thread, so that a training
// loop does not wait for the disk. After every epoch haribo_train writes a model file and a
// checkpoint (~21 MB together for MobileNetV2); their fsyncs cost 30-150 ms, as much as a
// fifth of a frozen-base epoch on jellybeans12.
//
// submit(path, bytes) takes the bytes as they are now (a consistent snapshot: training may
// change the weights right after) and creates the temporary file at once (AtomicFile), so a
// missing folder or a permission problem throws IoError in the caller, immediately. The
// write, fsync and rename happen on the thread, in submission order; what fails there (a
// full disk) is kept and handed out by take_errors() or thrown by wait(). Either way the
// previous file at that path is untouched. A newer submit for a path whose write has not
// started yet replaces it (only the newest state of a file matters). The destructor finishes
// every pending write.
#pragma once
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "format.hpp"

namespace minicnn {

class BackgroundWriter {
 public:
  BackgroundWriter() = default;
  BackgroundWriter(const BackgroundWriter&) = delete;
  BackgroundWriter& operator=(const BackgroundWriter&) = delete;
  ~BackgroundWriter() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      closing_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  void submit(const std::string& path, std::vector<char> bytes) {
    AtomicFile file(path);  // throws here for a missing folder, a read-only one, ...
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& job : queue_)
      if (job.file.path() == path) {  // not started yet: the newer state replaces it
        job.bytes = std::move(bytes);
        return;  // `file`, unused, removes its temporary file
      }
    queue_.push_back(Job{std::move(file), std::move(bytes)});
    if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
    cv_.notify_all();
  }

  // Blocks until every submitted write has finished; throws IoError naming every write that
  // failed since the errors were last taken.
  void wait() {
    std::unique_lock<std::mutex> lock(mu_);
    idle_cv_.wait(lock, [this] { return queue_.empty() && !busy_; });
    if (errors_.empty()) return;
    std::string msg = errors_.front();
    for (size_t i = 1; i < errors_.size(); ++i) msg += "; " + errors_[i];
    errors_.clear();
    throw IoError(msg);
  }

  // The messages of the writes that failed so far (without waiting), and forgets them.
  std::vector<std::string> take_errors() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::exchange(errors_, {});
  }

  // Writes submitted and not finished yet.
  size_t pending() {
    std::lock_guard<std::mutex> lock(mu_);
    return queue_.size() + (busy_ ? 1 : 0);
  }

 private:
  struct Job {
    AtomicFile file;
    std::vector<char> bytes;
  };

  void run() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return closing_ || !queue_.empty(); });
      if (queue_.empty()) return;  // closing, nothing left
      Job job = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
      lock.unlock();
      std::string error;
      try {
        job.file.commit(job.bytes.data(), job.bytes.size());
      } catch (const std::exception& e) {
        error = e.what();
      }
      lock.lock();
      busy_ = false;
      if (!error.empty()) errors_.push_back(error);
      if (queue_.empty()) idle_cv_.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  std::deque<Job> queue_;
  std::vector<std::string> errors_;
  bool busy_ = false, closing_ = false;
  std::thread thread_;
};

}  // namespace minicnn
