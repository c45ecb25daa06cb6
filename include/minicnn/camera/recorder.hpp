// Saving camera frames as a training set: OUT/CLASS/00001.jpg, 00002.jpg, ... (or .png), the
// layout haribo_train reads (one sub-folder per class). What is saved is what the classifier
// looks at: the centre crop at the network's aspect ratio, at the camera's full resolution
// (a JPEG frame decoded at reduced scale for the network is decoded again in full), so
// training sees the same framing as live classification; full_frame keeps the whole frame.
// Every written path stays inside OUT: CLASS is one plain folder name (no '/', no '..', not
// hidden), and a CLASS folder that is a link leading elsewhere is refused. Numbering
// continues after the highest number already there, and files are created exclusively
// (O_EXCL), so nothing is ever overwritten.
#pragma once
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../data/image.hpp"
#include "frame_source.hpp"
#include "geometry.hpp"
#include "mjpeg.hpp"
#include "pipeline.hpp"

#ifndef MINICNN_STB_IMAGE_WRITE_INCLUDED
#define MINICNN_STB_IMAGE_WRITE_INCLUDED
// Carried like stb_image (data/stb_image_impl.hpp): static, so a user's copy never clashes.
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#endif
#include <stb/stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#undef STB_IMAGE_WRITE_IMPLEMENTATION
#endif

namespace minicnn::camera {

// Throws ConfigError unless `name` is usable as one class folder inside the output folder.
inline void validate_class_name(const std::string& name) {
  auto bad = [&](const std::string& why) {
    throw ConfigError("class name '" + name + "' " + why +
                      "; it becomes one folder inside --out, so use a plain name like 'bear'");
  };
  if (name.empty()) bad("is empty");
  if (name.find('/') != std::string::npos || name.find('\\') != std::string::npos)
    bad("contains a path separator");
  if (name.find("..") != std::string::npos) bad("contains '..'");
  if (name[0] == '.') bad("starts with '.' (a hidden folder, which training skips)");
  if (name.size() > 200) bad("is longer than 200 bytes");
  for (unsigned char c : name)
    if (c < 0x20 || c == 0x7F) bad("contains a control character");
}

struct RecordOptions {
  std::string out_dir;
  std::string class_name;
  std::string format = "jpg";      // jpg or png
  int quality = 95;                // JPEG quality
  bool full_frame = false;         // the whole frame instead of the network's centre crop
  int aspect_w = 1, aspect_h = 1;  // the network input's width:height (for the crop)
};

class FrameRecorder {
 public:
  explicit FrameRecorder(RecordOptions opt) : opt_(std::move(opt)) {
    namespace fs = std::filesystem;
    validate_class_name(opt_.class_name);
    if (opt_.format != "jpg" && opt_.format != "png")
      throw ConfigError("record format must be jpg or png, got '" + opt_.format + "'");
    if (opt_.quality < 1 || opt_.quality > 100)
      throw ConfigError("record JPEG quality must be 1..100, got " + std::to_string(opt_.quality));
    if (opt_.out_dir.empty()) throw ConfigError("recording needs an output folder (--out DIR)");
    std::error_code ec;
    const fs::path out = fs::absolute(opt_.out_dir, ec);
    const fs::path dir = out / opt_.class_name;
    fs::create_directories(dir, ec);
    if (ec || !fs::is_directory(dir))
      throw IoError("cannot create the recording folder '" + dir.string() + "'" +
                    (ec ? ": " + ec.message() : std::string()));
    const fs::path real_out = fs::canonical(out, ec), real_dir = fs::canonical(dir, ec);
    if (ec || real_dir.parent_path() != real_out)
      throw IoError("recording folder '" + dir.string() + "' resolves to '" + real_dir.string() +
                    "', outside '" + out.string() + "' (a link?); refusing to write there");
    dir_ = real_dir.string();
    for (const auto& e : fs::directory_iterator(dir_, ec)) {
      const std::string n = e.path().filename().string();
      size_t digits = 0;
      while (digits < n.size() && n[digits] >= '0' && n[digits] <= '9') ++digits;
      if (digits == 0 || digits > 12 || n.substr(digits) != "." + opt_.format) continue;
      next_ = std::max<int64_t>(next_, std::stoll(n.substr(0, digits)) + 1);
    }
  }

  // Writes one frame; returns its path.
  std::string save(const Frame& f) {
    Image full;
    const Image* img = &f.image;
    if (f.scale > 1 && f.jpeg) {
      decoder_.decode(f.jpeg->data(), f.jpeg->size(), 1, full, "frame " + std::to_string(f.index));
      // A replayed photo turned upright by its EXIF orientation: keep the upright reduced one.
      if (int64_t(full.width) * f.image.height == int64_t(full.height) * f.image.width ||
          (full.width > full.height) == (f.image.width > f.image.height))
        img = &full;
    }
    Image part;
    if (!opt_.full_frame) {
      part =
          crop_image(*img, center_crop_box(img->width, img->height, opt_.aspect_w, opt_.aspect_h));
      img = &part;
    }
    std::vector<uint8_t> bytes;
    if (opt_.format == "jpg") {
      bytes = encoder_.encode(*img, opt_.quality);
    } else {
      auto sink = [](void* ctx, void* data, int size) {
        auto* v = static_cast<std::vector<uint8_t>*>(ctx);
        v->insert(v->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
      };
      if (!stbi_write_png_to_func(sink, &bytes, img->width, img->height, 3, img->pixels.data(),
                                  img->width * 3))
        throw Error("PNG encoding of frame " + std::to_string(f.index) + " failed");
    }
    for (int attempt = 0; attempt < 100000; ++attempt) {
      char name[32];
      std::snprintf(name, sizeof name, "%05lld.%s", static_cast<long long>(next_++),
                    opt_.format.c_str());
      const std::string path = dir_ + "/" + name;
      const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (fd < 0) {
        if (errno == EEXIST) continue;  // someone else's file: take the next number
        throw IoError("cannot create '" + path + "': " + std::strerror(errno));
      }
      size_t done = 0;
      while (done < bytes.size()) {
        const ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
          const int e = errno;
          ::close(fd);
          ::unlink(path.c_str());
          throw IoError("cannot write '" + path + "': " + std::strerror(e));
        }
        done += size_t(w);
      }
      if (::close(fd) < 0) throw IoError("cannot write '" + path + "': " + std::strerror(errno));
      ++saved_;
      return path;
    }
    throw IoError("no free file number in '" + dir_ + "'");
  }

  const std::string& folder() const { return dir_; }
  int64_t saved() const { return saved_; }

 private:
  RecordOptions opt_;
  std::string dir_;
  int64_t next_ = 1, saved_ = 0;
  JpegDecoder decoder_;
  JpegEncoder encoder_;
};

}  // namespace minicnn::camera
