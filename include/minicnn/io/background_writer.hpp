// BackgroundWriter: atomic file writes finished by one background thread, so that a training
// loop does not wait for the disk. After every epoch haribo_train writes a model file and a
// checkpoint (~21 MB together for MobileNetV2); their fsyncs cost 30-150 ms, as much as a
// fifth of a frozen-base epoch on jellybeans12.
//
// submit(path, bytes) takes the bytes as they are now (a consistent snapshot: training may
// change the weights right after) and creates the temporary file at once (AtomicFile), so a
// missing folder or a permission problem throws IoError in the caller, immediately. The
// write, fsync and rename happen on the thread; what fails there (a full disk) is kept and
// handed out by take_errors() or thrown by wait(). Either way the previous file at that path
// is untouched. The destructor finishes every pending write.
//
// Order: files reach the disk in submission order, so a file that describes others (a
// training checkpoint saying "the best model was saved in epoch 7") is never on disk before
// them, whatever moment the process is killed at. To keep memory bounded when the disk is
// slower than the submissions, a newer state of a path replaces a pending one when nothing
// was submitted after it (only the newest state matters); otherwise submit() waits until the
// writer has started on the older one (replacing it there would reorder the files).
//
// A file that describes the others (a checkpoint) can be submitted with
// `only_if_earlier_written`: it is then left unwritten (its previous version stays, and the
// caller gets an error naming the file that failed) when a write submitted before it, since
// the same owner's previous submission (or its begin()), failed. A training checkpoint therefore
// never says a best model was saved when that write failed (disk full) and the checkpoint's,
// smaller or later, still fitted.
//
// Several callers can share one writer (the callbacks of one Model do: Model::file_writer()),
// each passing itself as `owner`: take_errors(owner) and wait(owner) then hand each caller the
// failures of its own files only.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
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

  void submit(const std::string& path, std::vector<char> bytes, const void* owner = nullptr,
              bool only_if_earlier_written = false) {
    AtomicFile file(path);  // throws here for a missing folder, a read-only one, ...
    std::unique_lock<std::mutex> lock(mu_);
    const uint64_t since = last_submitted_[owner], seq = ++submitted_;
    last_submitted_[owner] = seq;
    for (;;) {
      if (!queue_.empty() && queue_.back().file.path() == path) {  // the newest job: replace it
        Job& job = queue_.back();
        job.bytes = std::move(bytes);
        job.owner = owner;
        job.seq = seq;  // `since` stays the older one's: the wider range
        job.only_if_earlier_written = job.only_if_earlier_written || only_if_earlier_written;
        return;  // `file`, unused, removes its temporary file
      }
      bool older = false;
      for (const auto& job : queue_) older = older || job.file.path() == path;
      if (!older) break;
      taken_cv_.wait(lock);  // the writer starts on the older state first
    }
    queue_.push_back(
        Job{std::move(file), std::move(bytes), owner, seq, since, only_if_earlier_written});
    if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
    cv_.notify_all();
  }

  // An owner's only_if_earlier_written covers, for its first submission, the writes submitted
  // after begin(owner) (otherwise: since the writer was made); end(owner) forgets the owner.
  // A callback calls them when fit() begins and ends, so an old failure never holds it back.
  void begin(const void* owner) {
    std::lock_guard<std::mutex> lock(mu_);
    last_submitted_[owner] = submitted_;
  }
  void end(const void* owner) {
    std::lock_guard<std::mutex> lock(mu_);
    last_submitted_.erase(owner);
  }

  // Blocks until every submitted write has finished; throws IoError naming every write of
  // `owner` (nullptr: of anyone) that failed since its errors were last taken.
  void wait(const void* owner = nullptr) {
    std::unique_lock<std::mutex> lock(mu_);
    idle_cv_.wait(lock, [this] { return queue_.empty() && !busy_; });
    const std::vector<std::string> errors = take_locked(owner);
    if (errors.empty()) return;
    std::string msg = errors.front();
    for (size_t i = 1; i < errors.size(); ++i) msg += "; " + errors[i];
    throw IoError(msg);
  }

  // The messages of the writes of `owner` (nullptr: of anyone) that failed so far (without
  // waiting), and forgets them.
  std::vector<std::string> take_errors(const void* owner = nullptr) {
    std::lock_guard<std::mutex> lock(mu_);
    return take_locked(owner);
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
    const void* owner = nullptr;
    uint64_t seq = 0, since = 0;  // submission number; the owner's previous one
    bool only_if_earlier_written = false;
  };
  struct Failure {
    const void* owner;
    std::string message;
  };

  std::vector<std::string> take_locked(const void* owner) {
    std::vector<std::string> out;
    std::vector<Failure> keep;
    for (auto& f : errors_) {
      if (owner == nullptr || f.owner == owner)
        out.push_back(std::move(f.message));
      else
        keep.push_back(std::move(f));
    }
    errors_ = std::move(keep);
    return out;
  }

  void run() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return closing_ || !queue_.empty(); });
      if (queue_.empty()) return;  // closing, nothing left
      Job job = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
      taken_cv_.notify_all();
      // Jobs run in submission order, so every job submitted before this one is done.
      const bool skip = job.only_if_earlier_written && last_failed_seq_ > job.since;
      const std::string failed_path = last_failed_path_;
      lock.unlock();
      std::string error;
      if (skip) {
        error = "cannot write '" + job.file.path() + "': not written because '" + failed_path +
                "', saved before it, could not be written (the previous file is unchanged)";
      } else {
        try {
          job.file.commit(job.bytes.data(), job.bytes.size());
        } catch (const std::exception& e) {
          error = e.what();
        }
      }
      lock.lock();
      busy_ = false;
      if (!error.empty()) {
        errors_.push_back(Failure{job.owner, error});
        last_failed_seq_ = job.seq;
        last_failed_path_ = job.file.path();
      }
      if (queue_.empty()) idle_cv_.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_, idle_cv_, taken_cv_;
  std::deque<Job> queue_;
  std::vector<Failure> errors_;
  std::map<const void*, uint64_t> last_submitted_;
  uint64_t submitted_ = 0, last_failed_seq_ = 0;
  std::string last_failed_path_;
  bool busy_ = false, closing_ = false;
  std::thread thread_;
};

}  // namespace minicnn
