// Ctrl-C during fit(): the first SIGINT only raises a flag, so training finishes the
// current batch, keeps every file already saved and returns its History; a second SIGINT
// is the default one (the process ends). InterruptGuard installs the handler for the
// lifetime of a fit() and puts the previous one back.
#pragma once
#include <signal.h>
#include <unistd.h>

#include <atomic>

namespace minicnn {

inline std::atomic<bool>& interrupt_requested() {
  static std::atomic<bool> flag{false};
  return flag;
}

namespace interrupt_detail {
inline void on_sigint(int) {
  if (interrupt_requested().exchange(true)) {
    ::signal(SIGINT, SIG_DFL);
    ::raise(SIGINT);
    return;
  }
  static const char msg[] =
      "\nInterrupted: finishing the current batch (press Ctrl-C again to quit at once)\n";
  ssize_t ignored = ::write(STDERR_FILENO, msg, sizeof msg - 1);
  (void)ignored;
}
}  // namespace interrupt_detail

class InterruptGuard {
 public:
  explicit InterruptGuard(bool enable) : enabled_(enable) {
    interrupt_requested() = false;
    if (!enabled_) return;
    struct sigaction sa {};
    sa.sa_handler = interrupt_detail::on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    installed_ = ::sigaction(SIGINT, &sa, &previous_) == 0;
  }
  ~InterruptGuard() {
    if (installed_) ::sigaction(SIGINT, &previous_, nullptr);
    interrupt_requested() = false;
  }
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;

 private:
  bool enabled_, installed_ = false;
  struct sigaction previous_ {};
};

}  // namespace minicnn
