// A V4L2 capture device in memory-mapped streaming mode, through the V4l2Io seam:
// open (non-blocking) -> VIDIOC_QUERYCAP (a single-planar video capture device with streaming
// I/O) -> VIDIOC_ENUM_FMT -> choose MJPEG (preferred: small frames over USB, decoded cheaply at
// reduced scale) else YUYV -> VIDIOC_S_FMT at the asked size (640x480 by default; the driver
// answers with the nearest size it has) -> VIDIOC_S_PARM (frame rate, best effort) ->
// VIDIOC_REQBUFS -> VIDIOC_QUERYBUF + mmap per buffer -> VIDIOC_QBUF all -> VIDIOC_STREAMON.
// read_frame() waits with poll, VIDIOC_DQBUF, hands the bytes to a callback and always requeues
// the buffer (VIDIOC_QBUF). The destructor stops the stream (VIDIOC_STREAMOFF), munmaps every
// buffer, frees them (REQBUFS 0) and closes the descriptor. Every system call's result is
// checked; failures become CameraError with the device path, the call, the errno name and
// what the user can do about it.
#pragma once
#include <linux/videodev2.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "v4l2_io.hpp"

namespace minicnn::camera {

// A camera problem; kind() says which, so callers (the replay of an unplugged camera, tests)
// can react without parsing the message.
class CameraError : public IoError {
 public:
  enum class Kind {
    NoDevice,          // ENOENT: nothing at that path
    PermissionDenied,  // EACCES / EPERM: not in the video group
    Busy,              // EBUSY: another program streams from it
    NotV4l2,           // QUERYCAP refused: not a video device at all
    NotCapture,        // a V4L2 node that cannot capture video (metadata node, output, m2m)
    NoFormat,          // none of the pixel formats we decode is offered
    Unplugged,         // ENODEV / ENXIO: the device went away
    Other,
  };
  CameraError(Kind kind, int error_code, const std::string& what)
      : IoError(what), kind_(kind), error_code_(error_code) {}
  Kind kind() const { return kind_; }
  int error_code() const { return error_code_; }  // errno, 0 when none

 private:
  Kind kind_;
  int error_code_;
};

inline std::string errno_name(int e) {
  switch (e) {
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case EBUSY: return "EBUSY";
    case ENODEV: return "ENODEV";
    case ENXIO: return "ENXIO";
    case EINVAL: return "EINVAL";
    case ENOTTY: return "ENOTTY";
    case EIO: return "EIO";
    case ENOMEM: return "ENOMEM";
    case EAGAIN: return "EAGAIN";
    case EINTR: return "EINTR";
    default: return "errno " + std::to_string(e);
  }
}

// The message and kind for a failed call `what` ("open", "VIDIOC_S_FMT") on `path`.
[[noreturn]] inline void throw_camera_errno(const std::string& path, const std::string& what,
                                            int e) {
  const std::string cam = "camera '" + path + "'";
  const std::string why = std::string(std::strerror(e)) + " (" + errno_name(e) + ")";
  using K = CameraError::Kind;
  switch (e) {
    case ENOENT:
      throw CameraError(K::NoDevice, e,
                        cam + ": no such device (" + errno_name(e) + " from " + what +
                            "); is the camera plugged in? `haribo_camera --list-devices` lists "
                            "the video devices present");
    case EACCES:
    case EPERM:
      throw CameraError(K::PermissionDenied, e,
                        cam + ": permission denied (" + errno_name(e) + " from " + what +
                            "). Join the video group: sudo usermod -aG video $USER, then log "
                            "out and in again");
    case EBUSY:
      throw CameraError(K::Busy, e,
                        cam + " is busy (EBUSY from " + what +
                            "): another program (a video call, a browser tab, another "
                            "haribo_camera) is using it; close that program and try again");
    case ENODEV:
    case ENXIO:
      throw CameraError(K::Unplugged, e,
                        cam + " went away (" + errno_name(e) + " from " + what +
                            "): the camera was unplugged or its driver stopped");
    default: throw CameraError(K::Other, e, cam + ": " + what + " failed: " + why);
  }
}

inline std::string fourcc_string(uint32_t f) {
  std::string s;
  for (int i = 0; i < 4; ++i) {
    const char c = static_cast<char>((f >> (8 * i)) & 0xFF);
    s += (c >= 32 && c < 127) ? c : '?';
  }
  return s;
}

struct FormatDesc {
  uint32_t fourcc = 0;
  std::string description;
  uint32_t flags = 0;  // V4L2_FMT_FLAG_COMPRESSED, ...
};

struct DeviceInfo {
  std::string path, driver, card, bus;
  uint32_t caps = 0;  // the node's own capabilities (device_caps when the driver sets them)
  bool can_capture() const {
    return (caps & V4L2_CAP_VIDEO_CAPTURE) && (caps & V4L2_CAP_STREAMING);
  }
};

struct CaptureOptions {
  int width = 640, height = 480;  // asked for; the driver picks its nearest size
  std::string format = "auto";    // auto (MJPEG, else YUYV), mjpeg or yuyv
  int buffers = 4;                // asked with REQBUFS; the driver may grant another count
  int fps = 30;                   // asked with S_PARM where the driver supports it; 0: leave it
};

namespace v4l2_detail {
template <size_t N>
std::string c_string(const uint8_t (&a)[N]) {
  size_t n = 0;
  while (n < N && a[n]) ++n;
  return std::string(reinterpret_cast<const char*>(a), n);
}

inline bool is_mjpeg(uint32_t f) {
  return f == V4L2_PIX_FMT_MJPEG || f == V4L2_PIX_FMT_JPEG;
}

// An open descriptor closed on scope exit unless released.
class Fd {
 public:
  Fd(V4l2Io& io, int fd) : io_(io), fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) io_.close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  V4l2Io& io_;
  int fd_;
};
}  // namespace v4l2_detail

// Opens `path` read-write and non-blocking (DQBUF must never block: we wait in poll, which a
// stop request can interrupt).
inline int open_video_node(V4l2Io& io, const std::string& path) {
  const int fd = io.open(path, O_RDWR | O_NONBLOCK);
  if (fd < 0) throw_camera_errno(path, "open", errno);
  return fd;
}

// VIDIOC_QUERYCAP on an open node.
inline DeviceInfo query_capabilities(V4l2Io& io, int fd, const std::string& path) {
  v4l2_capability cap{};
  if (io.ioctl(fd, VIDIOC_QUERYCAP, &cap) < 0) {
    const int e = errno;
    if (e == ENOTTY || e == EINVAL)
      throw CameraError(
          CameraError::Kind::NotV4l2, e,
          "'" + path + "' is not a V4L2 video device (VIDIOC_QUERYCAP: " + errno_name(e) + ")");
    throw_camera_errno(path, "VIDIOC_QUERYCAP", e);
  }
  DeviceInfo d;
  d.path = path;
  d.driver = v4l2_detail::c_string(cap.driver);
  d.card = v4l2_detail::c_string(cap.card);
  d.bus = v4l2_detail::c_string(cap.bus_info);
  d.caps = (cap.capabilities & V4L2_CAP_DEVICE_CAPS) ? cap.device_caps : cap.capabilities;
  return d;
}

inline void require_capture(const DeviceInfo& d) {
  if (d.can_capture()) return;
  std::string what;
  if (!(d.caps & V4L2_CAP_VIDEO_CAPTURE)) {
    what = (d.caps & V4L2_CAP_META_CAPTURE) ? "a metadata node" : "not a video capture node";
    if (d.caps & V4L2_CAP_VIDEO_CAPTURE_MPLANE) what = "a multi-planar capture node";
  } else {
    what = "a capture node without streaming I/O";
  }
  throw CameraError(CameraError::Kind::NotCapture, 0,
                    "camera '" + d.path + "' (" + d.card + ", driver " + d.driver +
                        ") is not a video capture device we can stream from: it is " + what +
                        ". USB cameras create two nodes per camera; `haribo_camera "
                        "--list-devices` shows which one captures");
}

// VIDIOC_ENUM_FMT until the driver says EINVAL (the end of the list).
inline std::vector<FormatDesc> enumerate_formats(V4l2Io& io, int fd, const std::string& path) {
  std::vector<FormatDesc> out;
  for (uint32_t i = 0; i < 256; ++i) {
    v4l2_fmtdesc f{};
    f.index = i;
    f.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    if (io.ioctl(fd, VIDIOC_ENUM_FMT, &f) < 0) {
      if (errno == EINVAL) break;
      throw_camera_errno(path, "VIDIOC_ENUM_FMT", errno);
    }
    out.push_back({f.pixelformat, v4l2_detail::c_string(f.description), f.flags});
  }
  return out;
}

// Frame sizes offered for one format: "640x480" (discrete) or "160x120..1920x1080" (stepwise
// or continuous). Empty when the driver does not enumerate sizes (ENOTTY / EINVAL at index 0).
inline std::vector<std::string> enumerate_frame_sizes(V4l2Io& io, int fd, uint32_t fourcc,
                                                      const std::string& path) {
  std::vector<std::string> out;
  for (uint32_t i = 0; i < 256; ++i) {
    v4l2_frmsizeenum s{};
    s.index = i;
    s.pixel_format = fourcc;
    if (io.ioctl(fd, VIDIOC_ENUM_FRAMESIZES, &s) < 0) {
      if (errno == EINVAL || errno == ENOTTY) break;
      throw_camera_errno(path, "VIDIOC_ENUM_FRAMESIZES", errno);
    }
    if (s.type == V4L2_FRMSIZE_TYPE_DISCRETE) {
      out.push_back(std::to_string(s.discrete.width) + "x" + std::to_string(s.discrete.height));
    } else {
      out.push_back(std::to_string(s.stepwise.min_width) + "x" +
                    std::to_string(s.stepwise.min_height) + ".." +
                    std::to_string(s.stepwise.max_width) + "x" +
                    std::to_string(s.stepwise.max_height));
      break;  // stepwise and continuous have one entry only
    }
  }
  return out;
}

inline std::string describe_formats(const std::vector<FormatDesc>& formats) {
  std::string s;
  for (const auto& f : formats) {
    if (!s.empty()) s += ", ";
    s += "'" + fourcc_string(f.fourcc) + "' (" + f.description + ")";
  }
  return s.empty() ? "none" : s;
}

// The pixel format to capture in: `want` is auto (MJPEG, then JPEG, then YUYV), mjpeg or yuyv.
inline uint32_t choose_pixel_format(const std::vector<FormatDesc>& offered, const std::string& want,
                                    const std::string& path) {
  if (want != "auto" && want != "mjpeg" && want != "yuyv")
    throw ConfigError("capture format must be auto, mjpeg or yuyv, got '" + want + "'");
  auto has = [&](uint32_t f) {
    for (const auto& o : offered)
      if (o.fourcc == f) return true;
    return false;
  };
  std::vector<uint32_t> order;
  if (want != "yuyv") order = {V4L2_PIX_FMT_MJPEG, V4L2_PIX_FMT_JPEG};
  if (want != "mjpeg") order.push_back(V4L2_PIX_FMT_YUYV);
  for (uint32_t f : order)
    if (has(f)) return f;
  const std::string asked = want == "auto" ? "MJPG or YUYV" : want == "mjpeg" ? "MJPG" : "YUYV";
  throw CameraError(CameraError::Kind::NoFormat, 0,
                    "camera '" + path + "' offers no pixel format haribo_camera decodes (" + asked +
                        "); it offers: " + describe_formats(offered));
}

class V4l2Device {
 public:
  V4l2Device(V4l2Io& io, std::string path, const CaptureOptions& opt = {})
      : io_(io), path_(std::move(path)) {
    if (opt.buffers < 1 || opt.buffers > 32)
      throw ConfigError("capture buffers must be in 1..32, got " + std::to_string(opt.buffers));
    if (opt.width < 1 || opt.height < 1)
      throw ConfigError("capture size must be positive, got " + std::to_string(opt.width) + "x" +
                        std::to_string(opt.height));
    try {
      start(opt);
    } catch (...) {
      release();
      throw;
    }
  }
  ~V4l2Device() { release(); }
  V4l2Device(const V4l2Device&) = delete;
  V4l2Device& operator=(const V4l2Device&) = delete;

  const std::string& path() const { return path_; }
  const DeviceInfo& info() const { return info_; }
  const std::vector<FormatDesc>& offered_formats() const { return formats_; }
  uint32_t pixel_format() const { return fourcc_; }
  bool is_mjpeg() const { return v4l2_detail::is_mjpeg(fourcc_); }
  int width() const { return width_; }
  int height() const { return height_; }
  uint32_t bytes_per_line() const { return bytes_per_line_; }
  size_t buffer_count() const { return buffers_.size(); }
  bool frame_rate_set() const { return fps_set_; }

  // Waits up to timeout_ms for a filled buffer. For a frame, calls fn(data, size) while the
  // buffer is dequeued, requeues it afterwards (also when fn throws) and returns true. Returns
  // false on a timeout, an interrupted wait, or a frame the driver marked as corrupt (requeued
  // and skipped). Throws CameraError (kind Unplugged) when the device went away.
  template <class F>
  bool read_frame(int timeout_ms, F&& fn) {
    short revents = 0;
    const int r = io_.poll(fd_, POLLIN, timeout_ms, &revents);
    if (r < 0) {
      if (errno == EINTR) return false;
      throw_camera_errno(path_, "poll", errno);
    }
    if (r == 0) return false;
    // POLLERR without POLLIN: the driver has nothing to give (device gone, stream broken);
    // DQBUF below says which.
    v4l2_buffer b{};
    b.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    b.memory = V4L2_MEMORY_MMAP;
    if (io_.ioctl(fd_, VIDIOC_DQBUF, &b) < 0) {
      const int e = errno;
      if ((e == EAGAIN || e == EINTR) && !(revents & (POLLERR | POLLHUP | POLLNVAL)))
        return false;  // a spurious wake-up
      // An error condition and no frame while streaming with buffers queued: the device
      // stopped working; treated like an unplug, so that the source tries to reopen it.
      if (e == EAGAIN || e == EINTR)
        throw CameraError(CameraError::Kind::Unplugged, ENODEV,
                          "camera '" + path_ + "' reports an error (poll: " +
                              ((revents & POLLHUP) ? std::string("POLLHUP") : "POLLERR") +
                              ") and gives no frame");
      throw_camera_errno(path_, "VIDIOC_DQBUF", e);
    }
    if (b.index >= buffers_.size())
      throw CameraError(CameraError::Kind::Other, 0,
                        "camera '" + path_ + "': VIDIOC_DQBUF returned buffer " +
                            std::to_string(b.index) + ", but only " +
                            std::to_string(buffers_.size()) + " are mapped");
    const Buffer& buf = buffers_[b.index];
    size_t n = std::min<size_t>(b.bytesused, buf.length);
    // Some drivers leave bytesused at 0 for uncompressed frames: the whole image is there.
    if (n == 0 && !is_mjpeg()) n = std::min<size_t>(size_image_, buf.length);
    const bool good = !(b.flags & V4L2_BUF_FLAG_ERROR) && n > 0;
    std::exception_ptr failure;
    if (good) {
      try {
        fn(static_cast<const uint8_t*>(buf.start), n);
      } catch (...) {
        failure = std::current_exception();
      }
    }
    queue(b.index);
    if (failure) std::rethrow_exception(failure);
    return good;
  }

 private:
  struct Buffer {
    void* start = MAP_FAILED;
    size_t length = 0;
  };

  void start(const CaptureOptions& opt) {
    fd_ = open_video_node(io_, path_);
    info_ = query_capabilities(io_, fd_, path_);
    require_capture(info_);
    formats_ = enumerate_formats(io_, fd_, path_);
    fourcc_ = choose_pixel_format(formats_, opt.format, path_);

    v4l2_format fmt{};
    fmt.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    fmt.fmt.pix.width = static_cast<uint32_t>(opt.width);
    fmt.fmt.pix.height = static_cast<uint32_t>(opt.height);
    fmt.fmt.pix.pixelformat = fourcc_;
    fmt.fmt.pix.field = V4L2_FIELD_ANY;
    if (io_.ioctl(fd_, VIDIOC_S_FMT, &fmt) < 0) throw_camera_errno(path_, "VIDIOC_S_FMT", errno);
    if (fmt.fmt.pix.pixelformat != fourcc_)
      throw CameraError(CameraError::Kind::NoFormat, 0,
                        "camera '" + path_ + "': asked for '" + fourcc_string(fourcc_) +
                            "' with VIDIOC_S_FMT, the driver set '" +
                            fourcc_string(fmt.fmt.pix.pixelformat) + "'");
    width_ = static_cast<int>(fmt.fmt.pix.width);
    height_ = static_cast<int>(fmt.fmt.pix.height);
    if (width_ < 1 || height_ < 1 || width_ > 16384 || height_ > 16384)
      throw CameraError(CameraError::Kind::Other, 0,
                        "camera '" + path_ + "': VIDIOC_S_FMT answered an unusable size " +
                            std::to_string(width_) + "x" + std::to_string(height_));
    bytes_per_line_ = fmt.fmt.pix.bytesperline;
    if (!is_mjpeg() && bytes_per_line_ < 2u * fmt.fmt.pix.width)
      bytes_per_line_ = 2u * fmt.fmt.pix.width;  // YUYV: 2 bytes a pixel, rows unpadded
    size_image_ = fmt.fmt.pix.sizeimage;

    if (opt.fps > 0) set_frame_rate(opt.fps);

    v4l2_requestbuffers req{};
    req.count = static_cast<uint32_t>(opt.buffers);
    req.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    req.memory = V4L2_MEMORY_MMAP;
    if (io_.ioctl(fd_, VIDIOC_REQBUFS, &req) < 0) {
      if (errno == EINVAL)
        throw CameraError(CameraError::Kind::NotCapture, EINVAL,
                          "camera '" + path_ +
                              "' does not support memory-mapped streaming (VIDIOC_REQBUFS: "
                              "EINVAL)");
      throw_camera_errno(path_, "VIDIOC_REQBUFS", errno);
    }
    requested_ = true;
    if (req.count < 1)
      throw CameraError(
          CameraError::Kind::Other, 0,
          "camera '" + path_ + "': VIDIOC_REQBUFS granted no buffers (out of buffer memory?)");
    buffers_.resize(req.count);
    for (uint32_t i = 0; i < req.count; ++i) {
      v4l2_buffer b{};
      b.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
      b.memory = V4L2_MEMORY_MMAP;
      b.index = i;
      if (io_.ioctl(fd_, VIDIOC_QUERYBUF, &b) < 0)
        throw_camera_errno(path_, "VIDIOC_QUERYBUF", errno);
      void* p = io_.mmap(b.length, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, b.m.offset);
      if (p == MAP_FAILED) throw_camera_errno(path_, "mmap", errno);
      buffers_[i] = {p, b.length};
    }
    for (uint32_t i = 0; i < req.count; ++i) queue(i);
    int type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    if (io_.ioctl(fd_, VIDIOC_STREAMON, &type) < 0)
      throw_camera_errno(path_, "VIDIOC_STREAMON", errno);
    streaming_ = true;
  }

  // Frame rate through VIDIOC_S_PARM, where the driver has it (UVC does; many do not, and
  // then the camera keeps its own rate, which is not an error).
  void set_frame_rate(int fps) {
    v4l2_streamparm p{};
    p.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    if (io_.ioctl(fd_, VIDIOC_G_PARM, &p) < 0) {
      if (errno == ENOTTY || errno == EINVAL) return;
      throw_camera_errno(path_, "VIDIOC_G_PARM", errno);
    }
    if (!(p.parm.capture.capability & V4L2_CAP_TIMEPERFRAME)) return;
    p.parm.capture.timeperframe.numerator = 1;
    p.parm.capture.timeperframe.denominator = static_cast<uint32_t>(fps);
    if (io_.ioctl(fd_, VIDIOC_S_PARM, &p) < 0) {
      if (errno == ENOTTY || errno == EINVAL) return;
      throw_camera_errno(path_, "VIDIOC_S_PARM", errno);
    }
    fps_set_ = true;
  }

  void queue(uint32_t index) {
    v4l2_buffer b{};
    b.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    b.memory = V4L2_MEMORY_MMAP;
    b.index = index;
    if (io_.ioctl(fd_, VIDIOC_QBUF, &b) < 0) throw_camera_errno(path_, "VIDIOC_QBUF", errno);
  }

  // Teardown cannot throw (destructor); a device already gone (ENODEV) refuses every call
  // here and that is expected. Anything else is reported on stderr.
  void release() noexcept {
    auto complain = [&](const char* what) {
      const int e = errno;
      if (e != ENODEV && e != ENXIO)
        std::fprintf(stderr, "warning: camera '%s': %s failed during shutdown: %s\n", path_.c_str(),
                     what, std::strerror(e));
    };
    if (fd_ >= 0 && streaming_) {
      int type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
      if (io_.ioctl(fd_, VIDIOC_STREAMOFF, &type) < 0) complain("VIDIOC_STREAMOFF");
      streaming_ = false;
    }
    for (auto& b : buffers_)
      if (b.start != MAP_FAILED && io_.munmap(b.start, b.length) < 0) complain("munmap");
    buffers_.clear();
    if (fd_ >= 0 && requested_) {
      // Frees the driver's buffers now rather than at close (needs every mapping gone).
      v4l2_requestbuffers req{};
      req.count = 0;
      req.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
      req.memory = V4L2_MEMORY_MMAP;
      if (io_.ioctl(fd_, VIDIOC_REQBUFS, &req) < 0) complain("VIDIOC_REQBUFS(0)");
      requested_ = false;
    }
    if (fd_ >= 0) {
      if (io_.close(fd_) < 0) complain("close");
      fd_ = -1;
    }
  }

  V4l2Io& io_;
  std::string path_;
  int fd_ = -1;
  DeviceInfo info_;
  std::vector<FormatDesc> formats_;
  uint32_t fourcc_ = 0;
  int width_ = 0, height_ = 0;
  uint32_t bytes_per_line_ = 0, size_image_ = 0;
  std::vector<Buffer> buffers_;
  bool requested_ = false, streaming_ = false, fps_set_ = false;
};

// --list-devices: one line per /dev/video* node, what it is and whether it captures.
inline std::string list_devices_text(V4l2Io& io) {
  const std::vector<std::string> paths = io.device_paths();
  if (paths.empty()) return "no video devices (/dev/video*) found; is a camera plugged in?\n";
  std::string out;
  for (const auto& p : paths) {
    out += p + "  ";
    try {
      v4l2_detail::Fd fd(io, open_video_node(io, p));
      const DeviceInfo d = query_capabilities(io, fd.get(), p);
      out += "\"" + d.card + "\"  driver " + d.driver + "  bus " + d.bus + "  ";
      out += d.can_capture() ? std::string("video capture")
                             : std::string("no video capture (not usable here)");
    } catch (const CameraError& e) {
      out += std::string("(") + e.what() + ")";
    }
    out += "\n";
  }
  return out;
}

// --list-formats: the formats and frame sizes of one device, marking the one we would choose.
inline std::string list_formats_text(V4l2Io& io, const std::string& path,
                                     const std::string& want = "auto") {
  v4l2_detail::Fd fd(io, open_video_node(io, path));
  const DeviceInfo d = query_capabilities(io, fd.get(), path);
  require_capture(d);
  const std::vector<FormatDesc> formats = enumerate_formats(io, fd.get(), path);
  uint32_t chosen = 0;
  try {
    chosen = choose_pixel_format(formats, want, path);
  } catch (const CameraError&) {
  }
  std::string out = path + " \"" + d.card + "\" (driver " + d.driver + "):\n";
  if (formats.empty()) out += "  no formats offered\n";
  for (const auto& f : formats) {
    out += "  '" + fourcc_string(f.fourcc) + "'  " + f.description;
    if (f.flags & V4L2_FMT_FLAG_COMPRESSED) out += " (compressed)";
    if (f.fourcc == chosen) out += "  <- haribo_camera uses this";
    out += "\n    sizes:";
    const std::vector<std::string> sizes = enumerate_frame_sizes(io, fd.get(), f.fourcc, path);
    if (sizes.empty()) out += " (not enumerated)";
    for (const auto& s : sizes) out += " " + s;
    out += "\n";
  }
  if (!chosen) out += "  none of these is MJPG or YUYV: haribo_camera cannot use this camera\n";
  return out;
}

}  // namespace minicnn::camera
