// The seam between the V4L2 capture code and the kernel: V4l2Io is the handful of system calls
// a memory-mapped V4L2 capture needs (open, ioctl, mmap, munmap, poll, close, and listing the
// /dev/video* nodes). Every method mirrors its system call: on failure it returns -1
// (MAP_FAILED for mmap) and leaves the reason in errno. SystemV4l2Io is the real one, a few
// lines over the system calls; tests substitute a fake device that offers formats, fills
// buffers and fails on demand. Linux only.
#pragma once
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <string>
#include <vector>

namespace minicnn::camera {

class V4l2Io {
 public:
  virtual ~V4l2Io() = default;
  virtual int open(const std::string& path, int flags) = 0;
  virtual int close(int fd) = 0;
  virtual int ioctl(int fd, unsigned long request, void* arg) = 0;
  virtual void* mmap(size_t length, int prot, int flags, int fd, off_t offset) = 0;
  virtual int munmap(void* addr, size_t length) = 0;
  // poll() on one descriptor; the returned events land in *revents.
  virtual int poll(int fd, short events, int timeout_ms, short* revents) = 0;
  // The video device nodes present (/dev/video0, /dev/video1, ...), in numeric order.
  virtual std::vector<std::string> device_paths() = 0;
};

namespace v4l2_detail {
// "/dev/video10" sorts after "/dev/video9": by the number after "video".
inline std::vector<std::string> sorted_video_nodes(const std::string& dir,
                                                   const std::vector<std::string>& names) {
  std::vector<std::pair<long, std::string>> found;
  for (const auto& n : names) {
    if (n.rfind("video", 0) != 0 || n.size() == 5) continue;
    char* end = nullptr;
    const long k = std::strtol(n.c_str() + 5, &end, 10);
    if (*end != '\0' || k < 0) continue;
    found.emplace_back(k, dir + "/" + n);
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}
}  // namespace v4l2_detail

class SystemV4l2Io : public V4l2Io {
 public:
  int open(const std::string& path, int flags) override {
    return ::open(path.c_str(), flags | O_CLOEXEC);
  }
  int close(int fd) override { return ::close(fd); }
  // A signal (Ctrl-C) may interrupt an ioctl before it did anything; V4L2 ioctls are
  // safe to repeat then.
  int ioctl(int fd, unsigned long request, void* arg) override {
    int r;
    do r = ::ioctl(fd, request, arg);
    while (r == -1 && errno == EINTR);
    return r;
  }
  void* mmap(size_t length, int prot, int flags, int fd, off_t offset) override {
    return ::mmap(nullptr, length, prot, flags, fd, offset);
  }
  int munmap(void* addr, size_t length) override { return ::munmap(addr, length); }
  int poll(int fd, short events, int timeout_ms, short* revents) override {
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, timeout_ms);
    *revents = r > 0 ? p.revents : 0;
    return r;
  }
  std::vector<std::string> device_paths() override {
    std::vector<std::string> names;
    if (DIR* d = ::opendir("/dev")) {
      while (dirent* e = ::readdir(d)) names.emplace_back(e->d_name);
      ::closedir(d);
    }
    return v4l2_detail::sorted_video_nodes("/dev", names);
  }
};

}  // namespace minicnn::camera
