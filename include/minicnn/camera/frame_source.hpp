// Where frames come from. FrameSource gives the next frame as a decoded RGB image plus a
// timestamp; three implementations share one decode path (decode_frame): the V4L2 camera
// (v4l2_source.hpp) and, here, the replay of an image folder and of a recorded MJPEG stream,
// paced at a frame rate (0: as fast as they decode, for benchmarks) and looping by default.
// JPEG frames decode at the smallest 1/2^k scale that still covers the network input after
// the centre crop (geometry.hpp) and keep their compressed bytes, so the browser stream and
// the recorder use the frame as it came instead of encoding it again.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../data/exif.hpp"
#include "../data/image.hpp"
#include "../io/npy.hpp"
#include "geometry.hpp"
#include "mjpeg.hpp"

namespace minicnn::camera {

using Clock = std::chrono::steady_clock;

inline double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

struct Frame {
  Image image;    // RGB; 1/scale of the frame when a JPEG was decoded at reduced scale
  int scale = 1;  // 1, 2, 4 or 8
  int full_width = 0, full_height = 0;  // the frame as captured (or stored)
  double timestamp = 0;                 // seconds on the steady clock since the source began
  int64_t index = 0;                    // 0, 1, 2, ... in delivery order
  // The frame as a self-contained JPEG when it arrived as one and is small enough to send to a
  // browser as is; null otherwise (YUYV, PNG, huge photos), and then it is encoded for them.
  std::shared_ptr<const std::vector<uint8_t>> jpeg;
  std::string name;  // replay: the file, relative to the folder, or "clip.mjpeg#12"
  double decode_ms = 0;
  Clock::time_point arrived{};  // when the source handed it over (latency is measured from here)
};

struct DecodeOptions {
  // The network input: JPEG frames decode at the smallest scale whose centre crop still
  // covers it. 0: decode at full size.
  int need_width = 0, need_height = 0;
  // Turn replayed photos upright by their EXIF orientation (as the model's training did).
  bool exif_orientation = false;
};

// JPEGs larger than this are re-encoded (from the reduced decode) for the browser rather than
// sent as they are: a 12-megapixel phone photo 30 times a second is no live view.
inline constexpr int64_t kPassThroughMaxPixels = 1920 * 1080;

// Decodes one stored frame or picture (JPEG through TurboJPEG, other formats through
// stb_image) into `f`. `where` names it in errors.
inline void decode_frame(const uint8_t* data, size_t size, const DecodeOptions& opt,
                         JpegDecoder& jpeg, Frame& f, const std::string& where) {
  const auto t0 = Clock::now();
  // FF fill bytes may precede the SOI (stb_image accepts them; TurboJPEG wants FF D8 first).
  // Such a frame is still a JPEG and must not fall through to stb_image, whose entropy
  // decoder has undefined behaviour on corrupt scans (docs/fuzzing.md, finding 14).
  if (const size_t soi = image_detail::jpeg_soi_end(data, size); soi >= 3) {
    data += soi - 2;
    size -= soi - 2;
  }
  const bool is_jpeg = size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF;
  if (is_jpeg) {
    auto bytes = std::make_shared<std::vector<uint8_t>>(with_huffman_tables(data, size, where));
    const JpegHeader h = jpeg.header(bytes->data(), bytes->size(), where);
    const int orientation =
        opt.exif_orientation ? jpeg_exif_orientation(bytes->data(), bytes->size()) : 1;
    // A quarter turn exchanges width and height: choose the scale for the upright frame.
    const bool turned = orientation >= 5 && orientation <= 8;
    f.full_width = turned ? h.height : h.width;
    f.full_height = turned ? h.width : h.height;
    f.scale = choose_decode_scale(f.full_width, f.full_height, opt.need_width, opt.need_height);
    jpeg.decode(bytes->data(), bytes->size(), f.scale, f.image, where);
    if (orientation != 1) f.image = apply_exif_orientation(f.image, orientation);
    f.jpeg = int64_t(h.width) * h.height <= kPassThroughMaxPixels ? std::move(bytes) : nullptr;
  } else {
    std::vector<char> copy(reinterpret_cast<const char*>(data),
                           reinterpret_cast<const char*>(data) + size);
    f.image = decode_image_memory(copy, where);
    f.full_width = f.image.width;
    f.full_height = f.image.height;
    f.scale = 1;
    f.jpeg = nullptr;
  }
  f.decode_ms = seconds_between(t0, Clock::now()) * 1e3;
}

class FrameSource {
 public:
  virtual ~FrameSource() = default;
  // The next frame, waiting at most timeout_ms for it; nullopt when none came in time or the
  // source has ended (ended() says which). Called from one thread.
  virtual std::optional<Frame> next(int timeout_ms) = 0;
  virtual bool ended() const { return false; }
  virtual std::string describe() const = 0;
  // What is wrong right now, for the page and the terminal ("camera unplugged, reconnecting");
  // empty when frames flow. Called from the thread that calls next().
  virtual std::string problem() const { return ""; }
};

struct ReplayOptions {
  double fps = 30;  // 0: as fast as frames decode
  bool loop = true;
  DecodeOptions decode;
};

namespace source_detail {
// Hands out frame slots at a steady rate. After a stall longer than a frame the schedule
// restarts from now instead of bursting to catch up.
class Pacer {
 public:
  explicit Pacer(double fps) : fps_(fps) {}
  // True when the next frame is due within timeout_ms (after sleeping until it is).
  bool wait(int timeout_ms) {
    if (fps_ <= 0) return true;
    const auto now = Clock::now();
    if (!started_) {
      started_ = true;
      due_ = now;
    }
    if (due_ > now) {
      const auto limit = now + std::chrono::milliseconds(std::max(timeout_ms, 0));
      if (due_ > limit) {
        std::this_thread::sleep_until(limit);
        return false;
      }
      std::this_thread::sleep_until(due_);
    }
    const auto period =
        std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / fps_));
    due_ += period;
    if (due_ + period < Clock::now()) due_ = Clock::now();
    return true;
  }

 private:
  double fps_;
  bool started_ = false;
  Clock::time_point due_;
};

inline bool decodable_extension(const std::filesystem::path& p) {
  std::string e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const char* ok :
       {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tga", ".psd", ".pnm", ".ppm", ".pgm"})
    if (e == ok) return true;
  return false;
}

inline void check_fps(double fps) {
  if (!(fps >= 0) || fps > 10000)
    throw ConfigError(
        "replay frame rate must be in 0..10000 frames/s (0: as fast as possible), got " +
        std::to_string(fps));
}
}  // namespace source_detail

// The pictures under a folder (sub-folders included, so a dataset folder DIR/<class>/*.jpg
// replays class by class; hidden entries skipped), in sorted order of their paths relative to
// the folder.
class ImageFolderSource : public FrameSource {
 public:
  ImageFolderSource(std::string dir, ReplayOptions opt)
      : dir_(std::move(dir)), opt_(opt), pacer_(opt.fps) {
    source_detail::check_fps(opt.fps);
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::is_directory(dir_, ec)) throw IoError("replay source '" + dir_ + "' is not a folder");
    std::vector<std::string> rel;
    for (fs::recursive_directory_iterator
             it(dir_, fs::directory_options::skip_permission_denied, ec),
         end;
         !ec && it != end; it.increment(ec)) {
      if (it->path().filename().string().rfind('.', 0) == 0) {  // hidden, as training skips
        if (it->is_directory(ec)) it.disable_recursion_pending();
        continue;
      }
      if (it->is_regular_file(ec) && source_detail::decodable_extension(it->path()))
        rel.push_back(fs::relative(it->path(), dir_, ec).generic_string());
    }
    if (ec) throw IoError("cannot list replay folder '" + dir_ + "': " + ec.message());
    std::sort(rel.begin(), rel.end());
    files_ = std::move(rel);
    if (files_.empty())
      throw IoError("replay folder '" + dir_ +
                    "' holds no pictures (.jpg, .jpeg, .png, .bmp, .gif, .tga, .psd, .pnm, .ppm, "
                    ".pgm)");
    start_ = Clock::now();
  }

  std::optional<Frame> next(int timeout_ms) override {
    if (ended()) return std::nullopt;
    if (!pacer_.wait(timeout_ms)) return std::nullopt;
    const std::string& name = files_[pos_ % files_.size()];
    const std::string path = dir_ + "/" + name;
    const std::vector<char> bytes = read_file_bytes(path);
    Frame f;
    decode_frame(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), opt_.decode,
                 decoder_, f, "'" + path + "'");
    f.name = name;
    f.index = static_cast<int64_t>(pos_++);
    f.timestamp = seconds_between(start_, Clock::now());
    return f;
  }
  bool ended() const override { return !opt_.loop && pos_ >= files_.size(); }
  std::string describe() const override {
    return "image folder '" + dir_ + "' (" + std::to_string(files_.size()) + " pictures)";
  }
  const std::vector<std::string>& files() const { return files_; }

 private:
  std::string dir_;
  ReplayOptions opt_;
  source_detail::Pacer pacer_;
  std::vector<std::string> files_;
  size_t pos_ = 0;
  JpegDecoder decoder_;
  Clock::time_point start_;
};

// A recorded MJPEG stream: JPEG frames back to back (`ffmpeg -i in.mp4 -f mjpeg out.mjpeg`,
// or a camera's frames saved as they came). The file is read once and kept in memory.
class MjpegFileSource : public FrameSource {
 public:
  MjpegFileSource(std::string path, ReplayOptions opt)
      : path_(std::move(path)), opt_(opt), pacer_(opt.fps) {
    source_detail::check_fps(opt.fps);
    const std::vector<char> raw = read_file_bytes(path_);
    data_.assign(raw.begin(), raw.end());
    frames_ = split_mjpeg(data_.data(), data_.size());
    if (frames_.empty())
      throw FormatError("replay source '" + path_ + "': no JPEG frame (FF D8 ... FF D9) in its " +
                        std::to_string(data_.size()) + " bytes; expected an MJPEG stream");
    start_ = Clock::now();
  }

  std::optional<Frame> next(int timeout_ms) override {
    if (ended()) return std::nullopt;
    if (!pacer_.wait(timeout_ms)) return std::nullopt;
    const size_t k = pos_ % frames_.size();
    const auto [off, len] = frames_[k];
    Frame f;
    f.name = std::filesystem::path(path_).filename().string() + "#" + std::to_string(k);
    decode_frame(data_.data() + off, len, opt_.decode, decoder_, f, "'" + f.name + "'");
    f.index = static_cast<int64_t>(pos_++);
    f.timestamp = seconds_between(start_, Clock::now());
    return f;
  }
  bool ended() const override { return !opt_.loop && pos_ >= frames_.size(); }
  std::string describe() const override {
    return "MJPEG file '" + path_ + "' (" + std::to_string(frames_.size()) + " frames)";
  }
  size_t frame_count() const { return frames_.size(); }

 private:
  std::string path_;
  ReplayOptions opt_;
  source_detail::Pacer pacer_;
  std::vector<uint8_t> data_;
  std::vector<std::pair<size_t, size_t>> frames_;
  size_t pos_ = 0;
  JpegDecoder decoder_;
  Clock::time_point start_;
};

// An image folder or an .mjpeg file, by what `path` is.
inline std::unique_ptr<FrameSource> open_replay_source(const std::string& path,
                                                       const ReplayOptions& opt) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    return std::make_unique<ImageFolderSource>(path, opt);
  if (!std::filesystem::exists(path, ec))
    throw IoError("replay source '" + path +
                  "' does not exist (expected a folder of pictures "
                  "or an .mjpeg file)");
  return std::make_unique<MjpegFileSource>(path, opt);
}

}  // namespace minicnn::camera
