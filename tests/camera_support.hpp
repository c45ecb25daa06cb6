// Helpers of the camera tests (test_camera*.cpp): a V4L2 device in memory (FakeCamera), the
// camera fixtures, a hand-made two-class colour model and solid-colour frames.
#pragma once
#include <minicnn/camera/camera.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"

namespace camtest {

using namespace minicnn;
using namespace minicnn::camera;
namespace fs = std::filesystem;

using mt::temp_dir;

inline std::vector<uint8_t> fixture(const std::string& name) {
  const std::vector<char> b = read_file_bytes(mt::fixtures_dir() + "/camera/" + name);
  return std::vector<uint8_t>(b.begin(), b.end());
}

inline std::vector<uint8_t> npy_u8(const std::string& name, std::vector<int64_t>* dims) {
  NpyArray a = load_npy(mt::fixtures_dir() + "/camera/" + name);
  REQUIRE(a.dtype == "u1");
  *dims = a.dims;
  return std::vector<uint8_t>(a.bytes.begin(), a.bytes.end());
}

template <typename E, typename F>
inline std::string error_of(F&& fn) {
  try {
    fn();
  } catch (const E& e) {
    return e.what();
  }
  FAIL("expected an exception");
  return "";
}

inline bool has(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// A V4L2 device in memory. It offers formats, grants buffers, fills them from a queue of
// payloads, and fails on demand; it records what the code under test did to it.
class FakeCamera : public V4l2Io {
 public:
  // --- configuration
  std::vector<std::string> nodes = {"/dev/video0"};
  std::map<std::string, int> open_errno;  // path -> errno of open()
  int querycap_errno = 0;
  uint32_t caps = V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_STREAMING;
  std::string card = "Fake Cam";
  std::vector<std::pair<uint32_t, std::string>> formats = {{V4L2_PIX_FMT_YUYV, "YUYV 4:2:2"},
                                                           {V4L2_PIX_FMT_MJPEG, "Motion-JPEG"}};
  std::vector<std::pair<int, int>> sizes = {{320, 240}, {640, 480}, {1280, 720}};
  uint32_t grant = 0;                 // buffers granted by REQBUFS (0: as many as asked)
  std::map<unsigned long, int> fail;  // ioctl request -> errno (every time)
  std::deque<std::vector<uint8_t>> payloads;
  std::deque<uint32_t> payload_flags;  // v4l2_buffer flags per payload (default 0)
  int unplug_after = -1;               // DQBUFs that succeed before the device goes away
  int absent_opens = 0;                // after unplugging: opens that fail with ENOENT
  std::vector<uint8_t> repeat;         // delivered for ever once `payloads` run out
  int interval_ms = 0;                 // at most one frame per interval (a camera's frame rate)
  int stall_after = -1;                // DQBUFs before the camera stops delivering
  int stall_ms = 0;                    // for this long (then frames flow again)

  // --- observations
  int opens = 0, closes = 0, open_fds = 0, qbufs = 0, dqbufs = 0, munmaps = 0;
  int streamons = 0, streamoffs = 0, reqbufs_zero = 0;
  uint32_t asked_buffers = 0;
  bool streaming = false, unplugged = false;
  uint32_t pixfmt = 0;
  int width = 0, height = 0;
  std::vector<std::vector<uint8_t>> mem;
  std::vector<bool> mapped;
  std::deque<uint32_t> queue;  // driver-owned buffers, in fill order
  std::set<uint32_t> out;      // dequeued, not yet requeued
  std::chrono::steady_clock::time_point last_frame{}, stalled_until{};

  bool has_payload() const { return !payloads.empty() || !repeat.empty(); }
  // A frame is ready: streaming, a buffer queued, something to send, not stalled, and the
  // frame interval has passed.
  bool frame_ready() const {
    const auto now = std::chrono::steady_clock::now();
    return streaming && !queue.empty() && has_payload() && now >= stalled_until &&
           now >= last_frame + std::chrono::milliseconds(interval_ms);
  }

  static constexpr int kFd = 42;
  static constexpr size_t kBufBytes = 1 << 20;

  int open(const std::string& path, int flags) override {
    CHECK((flags & O_NONBLOCK));
    if (unplugged) {
      if (absent_opens > 0) {
        --absent_opens;
        errno = ENOENT;
        return -1;
      }
      unplugged = false;  // plugged back in: a fresh device
      unplug_after = -1;
      streaming = false;
      mem.clear();
      mapped.clear();
      queue.clear();
      out.clear();
    }
    stalled_until = {};  // a stuck camera works again once reopened
    if (auto it = open_errno.find(path); it != open_errno.end()) {
      errno = it->second;
      return -1;
    }
    if (std::find(nodes.begin(), nodes.end(), path) == nodes.end()) {
      errno = ENOENT;
      return -1;
    }
    ++opens;
    ++open_fds;
    return kFd;
  }
  int close(int fd) override {
    CHECK(fd == kFd);
    ++closes;
    --open_fds;
    return 0;
  }
  void* mmap(size_t length, int, int, int fd, off_t offset) override {
    CHECK(fd == kFd);
    const size_t i = size_t(offset) / kBufBytes;
    REQUIRE(i < mem.size());
    CHECK(length == kBufBytes);
    CHECK(!mapped[i]);
    mapped[i] = true;
    return mem[i].data();
  }
  int munmap(void* addr, size_t length) override {
    CHECK(length == kBufBytes);
    for (size_t i = 0; i < mem.size(); ++i)
      if (mem[i].data() == addr) {
        CHECK(mapped[i]);
        mapped[i] = false;
        ++munmaps;
        return 0;
      }
    FAIL("munmap of an address never mapped");
    return -1;
  }
  int poll(int, short, int timeout_ms, short* revents) override {
    if (unplugged || unplug_after == 0) {
      *revents = POLLERR;
      return 1;
    }
    if (frame_ready()) {
      *revents = POLLIN;
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(timeout_ms, 2)));
    *revents = 0;
    return 0;
  }
  std::vector<std::string> device_paths() override { return nodes; }

  int ioctl(int fd, unsigned long request, void* arg) override {
    CHECK(fd == kFd);
    if (auto it = fail.find(request); it != fail.end()) {
      errno = it->second;
      return -1;
    }
    if (unplugged && request != VIDIOC_STREAMOFF && request != VIDIOC_REQBUFS) {
      errno = ENODEV;
      return -1;
    }
    switch (request) {
      case VIDIOC_QUERYCAP: {
        if (querycap_errno) {
          errno = querycap_errno;
          return -1;
        }
        auto* c = static_cast<v4l2_capability*>(arg);
        *c = {};
        std::snprintf(reinterpret_cast<char*>(c->driver), sizeof c->driver, "fakecam");
        std::snprintf(reinterpret_cast<char*>(c->card), sizeof c->card, "%s", card.c_str());
        std::snprintf(reinterpret_cast<char*>(c->bus_info), sizeof c->bus_info, "usb-1");
        c->capabilities = caps | V4L2_CAP_DEVICE_CAPS;
        c->device_caps = caps;
        return 0;
      }
      case VIDIOC_ENUM_FMT: {
        auto* f = static_cast<v4l2_fmtdesc*>(arg);
        CHECK(f->type == V4L2_BUF_TYPE_VIDEO_CAPTURE);
        if (f->index >= formats.size()) {
          errno = EINVAL;
          return -1;
        }
        f->pixelformat = formats[f->index].first;
        std::snprintf(reinterpret_cast<char*>(f->description), sizeof f->description, "%s",
                      formats[f->index].second.c_str());
        f->flags = f->pixelformat == V4L2_PIX_FMT_MJPEG ? V4L2_FMT_FLAG_COMPRESSED : 0;
        return 0;
      }
      case VIDIOC_ENUM_FRAMESIZES: {
        auto* s = static_cast<v4l2_frmsizeenum*>(arg);
        if (s->index >= sizes.size()) {
          errno = EINVAL;
          return -1;
        }
        s->type = V4L2_FRMSIZE_TYPE_DISCRETE;
        s->discrete.width = uint32_t(sizes[s->index].first);
        s->discrete.height = uint32_t(sizes[s->index].second);
        return 0;
      }
      case VIDIOC_S_FMT: {
        auto* f = static_cast<v4l2_format*>(arg);
        CHECK(f->type == V4L2_BUF_TYPE_VIDEO_CAPTURE);
        if (streaming || !mem.empty()) {
          errno = EBUSY;
          return -1;
        }
        // The nearest offered size, as UVC picks it.
        auto best = sizes.front();
        for (auto s : sizes)
          if (std::abs(s.first * s.second - int(f->fmt.pix.width * f->fmt.pix.height)) <
              std::abs(best.first * best.second - int(f->fmt.pix.width * f->fmt.pix.height)))
            best = s;
        pixfmt = f->fmt.pix.pixelformat;
        width = best.first;
        height = best.second;
        f->fmt.pix.width = uint32_t(width);
        f->fmt.pix.height = uint32_t(height);
        f->fmt.pix.bytesperline = pixfmt == V4L2_PIX_FMT_YUYV ? uint32_t(width * 2) : 0;
        f->fmt.pix.sizeimage = uint32_t(width * height * 2);
        return 0;
      }
      case VIDIOC_G_PARM: errno = ENOTTY; return -1;  // like many drivers
      case VIDIOC_REQBUFS: {
        auto* r = static_cast<v4l2_requestbuffers*>(arg);
        CHECK(r->memory == V4L2_MEMORY_MMAP);
        if (r->count == 0) {
          for (bool m : mapped) CHECK_MESSAGE(!m, "REQBUFS(0) while a buffer is still mapped");
          ++reqbufs_zero;
          mem.clear();
          mapped.clear();
          queue.clear();
          out.clear();
          return 0;
        }
        asked_buffers = r->count;
        if (grant) r->count = grant;
        mem.assign(r->count, std::vector<uint8_t>(kBufBytes));
        mapped.assign(r->count, false);
        return 0;
      }
      case VIDIOC_QUERYBUF: {
        auto* b = static_cast<v4l2_buffer*>(arg);
        if (b->index >= mem.size()) {
          errno = EINVAL;
          return -1;
        }
        b->length = uint32_t(kBufBytes);
        b->m.offset = uint32_t(b->index * kBufBytes);
        return 0;
      }
      case VIDIOC_QBUF: {
        auto* b = static_cast<v4l2_buffer*>(arg);
        REQUIRE(b->index < mem.size());
        CHECK(std::find(queue.begin(), queue.end(), b->index) == queue.end());
        out.erase(b->index);
        queue.push_back(b->index);
        ++qbufs;
        return 0;
      }
      case VIDIOC_DQBUF: {
        if (unplug_after == 0) {
          unplugged = true;
          errno = ENODEV;
          return -1;
        }
        if (!frame_ready()) {
          errno = EAGAIN;
          return -1;
        }
        auto* b = static_cast<v4l2_buffer*>(arg);
        b->index = queue.front();
        queue.pop_front();
        out.insert(b->index);
        std::vector<uint8_t> p = repeat;
        if (!payloads.empty()) {
          p = std::move(payloads.front());
          payloads.pop_front();
        }
        last_frame = std::chrono::steady_clock::now();
        if (stall_after > 0 && --stall_after == 0)
          stalled_until = last_frame + std::chrono::milliseconds(stall_ms);
        b->flags = 0;
        if (!payload_flags.empty()) {
          b->flags = payload_flags.front();
          payload_flags.pop_front();
        }
        REQUIRE(p.size() <= kBufBytes);
        std::copy(p.begin(), p.end(), mem[b->index].begin());
        b->bytesused = uint32_t(p.size());
        ++dqbufs;
        if (unplug_after > 0) --unplug_after;
        return 0;
      }
      case VIDIOC_STREAMON:
        ++streamons;
        streaming = true;
        return 0;
      case VIDIOC_STREAMOFF:
        if (unplugged) {
          errno = ENODEV;
          return -1;
        }
        ++streamoffs;
        streaming = false;
        return 0;
      default: errno = ENOTTY; return -1;
    }
  }
};

inline std::vector<uint8_t> yuyv_of_size(int w, int h) {
  std::vector<uint8_t> f(size_t(w) * h * 2);
  for (size_t i = 0; i < f.size(); i += 4) {
    f[i] = 100;
    f[i + 1] = 128;
    f[i + 2] = 120;
    f[i + 3] = 128;
  }
  return f;
}

// GlobalAveragePooling2D + Dense softmax with weights by hand: after x/127.5-1 the pooled
// means of a pure red frame are (1, -1, -1), of a pure green one (-1, 1, -1), and the kernel
// scores class 0 by 5 (r - g) and class 1 by 5 (g - r): a clear verdict either way.
inline std::string save_colour_model(const std::string& dir, std::vector<std::string> names,
                                     int size = 16) {
  Sequential net("colours");
  net.add<GlobalAveragePooling2D>("gap");
  auto& fc = net.add<Dense>("fc", 2, DenseOptions{.activation = "softmax"});
  net.build(Shape{size, size, 3});
  TensorF& k = fc.kernel().value;  // [in 3, out 2]
  const float w[6] = {5, -5, -5, 5, 0, 0};
  for (int i = 0; i < 6; ++i) k[i] = w[i];
  fc.bias().value.fill(0);
  ModelInfo info;
  info.class_names = std::move(names);
  info.preprocess = Preprocess::Tf;
  info.interpolation = Interpolation::Bilinear;
  const std::string path = dir + "/colours.mcnn";
  save_model_file(net, info, path);
  return path;
}

inline Image solid(int w, int h, uint8_t r, uint8_t g, uint8_t b) {
  Image img;
  img.width = w;
  img.height = h;
  img.pixels.resize(size_t(w) * h * 3);
  for (size_t i = 0; i < img.pixels.size(); i += 3) {
    img.pixels[i] = r;
    img.pixels[i + 1] = g;
    img.pixels[i + 2] = b;
  }
  return img;
}

inline void write_png(const std::string& path, const Image& img) {
  std::vector<uint8_t> bytes;
  auto sink = [](void* ctx, void* data, int size) {
    auto* v = static_cast<std::vector<uint8_t>*>(ctx);
    v->insert(v->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
  };
  REQUIRE(stbi_write_png_to_func(sink, &bytes, img.width, img.height, 3, img.pixels.data(),
                                 img.width * 3));
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

}  // namespace camtest
