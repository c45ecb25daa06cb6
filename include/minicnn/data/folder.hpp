// Image-folder datasets, Keras' flow_from_directory layout: <directory>/<class>/<image>.
//   Classes: the sub-folders in byte order (Python's sorted(os.listdir())), or a given list.
//   Files:   each class folder searched recursively (os.walk: folders in path order, files
//            in name order), kept when the lower-cased name ends with one of Keras'
//            extensions png jpg jpeg bmp ppm tif tiff (checked without the dot, as Keras
//            does). Hidden files and folders (name starting with '.') are skipped, unlike
//            Keras, which would make Colab's `.ipynb_checkpoints` a class; symbolic links to
//            folders are followed only with follow_links (loops are detected).
// Every image is decoded once, in parallel, turned upright by its EXIF orientation (an
// option: Keras does not), converted to RGB (grey, palette and RGBA: alpha dropped, as
// PIL's convert('RGB')), resized to the target size (Keras' nearest by default) and kept in
// memory as uint8: N x H x W x 3 bytes (675 images at 96x96 are 18.7 MB). A file that cannot
// be read or decoded is skipped and reported with its reason; a missing folder, an empty
// class folder, fewer than two classes or a class folder name that is not UTF-8 (class names
// are stored as JSON text) are errors.
#pragma once
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../io/format.hpp"
#include "../io/npy.hpp"
#include "exif.hpp"
#include "image.hpp"

namespace minicnn {

// Keras' white list (keras.preprocessing.image, flow_from_directory).
inline const std::vector<std::string>& keras_image_extensions() {
  static const std::vector<std::string> ext = {"png", "jpg", "jpeg", "bmp", "ppm", "tif", "tiff"};
  return ext;
}

struct FolderOptions {
  int height = 96, width = 96;  // Keras' target_size (height, width)
  Interpolation interpolation = Interpolation::Nearest;
  bool exif_orientation = true;      // false: Keras' behaviour (photos stay as the sensor saw them)
  bool follow_links = false;         // Keras' follow_links
  std::vector<std::string> classes;  // Keras' classes=: these sub-folders, in this order
  int threads = 0;                   // decoding threads; 0: num_threads()
  bool verbose = true;               // print "Found N images belonging to K classes." and skips
};

struct SkippedFile {
  std::string path, reason;
};

// A decoded image-folder dataset. Images are grouped class by class, in class order, each
// class in Keras' file order (the order validation_split takes its first files from).
struct ImageFolder {
  std::string directory;
  std::vector<std::string> class_names;
  std::vector<std::string> files;  // paths as directory + "/" + class + "/" + relative path
  std::vector<int> labels;         // class index of each file
  int height = 0, width = 0;
  std::vector<uint8_t> pixels;       // size() * height * width * 3, RGB
  std::vector<SkippedFile> skipped;  // files that matched the extensions but did not decode
  int exif_rotated = 0;              // images turned upright by their EXIF orientation

  size_t size() const { return files.size(); }
  size_t image_bytes() const { return size_t(height) * width * 3; }
  const uint8_t* image(size_t i) const { return pixels.data() + i * image_bytes(); }
  std::vector<int64_t> class_counts() const {
    std::vector<int64_t> c(class_names.size(), 0);
    for (int l : labels) ++c[size_t(l)];
    return c;
  }
};

namespace folder_detail {
namespace fs = std::filesystem;

inline bool hidden(const std::string& name) {
  return !name.empty() && name[0] == '.';
}
// A name as printable ASCII: other bytes as \xNN (for messages about names that are not text).
inline std::string printable(const std::string& name) {
  std::string out;
  for (unsigned char c : name) {
    if (c >= 0x20 && c < 0x7F) {
      out += char(c);
    } else {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02X", c);
      out += b;
    }
  }
  return out;
}
inline bool has_image_extension(std::string name) {
  for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  for (const auto& e : keras_image_extensions())
    if (name.size() >= e.size() && name.compare(name.size() - e.size(), e.size(), e) == 0)
      return true;
  return false;
}

// The image files under `class_dir` in Keras' order: folders sorted by path, the files in
// each folder sorted by name. Unreadable sub-folders are reported, not fatal.
inline std::vector<std::string> class_files(const std::string& class_dir, bool follow_links,
                                            std::vector<SkippedFile>& problems) {
  struct Dir {
    std::string path;
    std::vector<std::string> files;
  };
  std::vector<Dir> dirs;
  std::set<std::pair<uintmax_t, uintmax_t>> visited;  // (device, inode) of followed folders
  std::function<void(const std::string&)> walk = [&](const std::string& dir) {
    struct stat st;
    if (::stat(dir.c_str(), &st) == 0 && !visited.insert({st.st_dev, st.st_ino}).second) {
      problems.push_back({dir, "symbolic link loop: this folder was already visited; skipped"});
      return;
    }
    std::error_code ec;
    fs::directory_iterator it(dir, ec), end;
    if (ec) {
      problems.push_back({dir, "cannot list folder: " + ec.message()});
      return;
    }
    Dir d{dir, {}};
    std::vector<std::string> subdirs;
    for (; it != end; it.increment(ec)) {
      if (ec) {
        problems.push_back({dir, "error while listing folder: " + ec.message()});
        break;
      }
      const std::string name = it->path().filename().string();
      if (hidden(name)) continue;
      std::error_code e2;
      const bool is_link = it->is_symlink(e2);
      const bool is_dir = it->is_directory(e2);  // follows links
      if (is_dir) {
        if (!is_link || follow_links) subdirs.push_back(dir + "/" + name);
        continue;
      }
      if (has_image_extension(name)) d.files.push_back(name);
    }
    std::sort(d.files.begin(), d.files.end());
    dirs.push_back(std::move(d));
    for (const auto& s : subdirs) walk(s);
  };
  walk(class_dir);
  std::sort(dirs.begin(), dirs.end(), [](const Dir& a, const Dir& b) { return a.path < b.path; });
  std::vector<std::string> out;
  for (const auto& d : dirs)
    for (const auto& f : d.files) out.push_back(d.path + "/" + f);
  return out;
}

inline std::string plural(size_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}
}  // namespace folder_detail

// The image files under `dir`, recursively, in Keras' order and by Keras' suffix rule (the
// files of one class folder); problems listing sub-folders are appended to `problems`.
inline std::vector<std::string> find_image_files(const std::string& dir, bool follow_links,
                                                 std::vector<SkippedFile>& problems) {
  return folder_detail::class_files(dir, follow_links, problems);
}

// The class names of a dataset folder: its non-hidden sub-folders in byte order.
inline std::vector<std::string> list_class_folders(const std::string& directory) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(directory, ec))
    throw IoError("dataset folder '" + directory + "' does not exist");
  if (!fs::is_directory(directory, ec))
    throw ConfigError("dataset '" + directory +
                      "' is not a folder; expected a folder with one sub-folder per class");
  std::vector<std::string> classes;
  fs::directory_iterator it(directory, ec), end;
  if (ec) throw IoError("cannot list dataset folder '" + directory + "': " + ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) throw IoError("error while listing '" + directory + "': " + ec.message());
    const std::string name = it->path().filename().string();
    std::error_code e2;
    if (!folder_detail::hidden(name) && it->is_directory(e2)) classes.push_back(name);
  }
  std::sort(classes.begin(), classes.end());
  // Class names go into the model file's JSON metadata, the report and summary.json, all UTF-8.
  for (const auto& c : classes)
    if (!detail::valid_utf8_name(c))
      throw ConfigError("dataset '" + directory + "': the class folder name '" +
                        folder_detail::printable(c) +
                        "' is not valid UTF-8 (class names are stored as UTF-8 text); rename "
                        "the folder, e.g. with convmv -f latin1 -t utf8");
  return classes;
}

// Scans, decodes and resizes a class-folder dataset (see the top of this file).
inline ImageFolder load_image_folder(const std::string& directory, const FolderOptions& o = {}) {
  using folder_detail::plural;
  if (o.height <= 0 || o.width <= 0)
    throw ConfigError("load_image_folder: target size " + std::to_string(o.height) + "x" +
                      std::to_string(o.width) + " must be positive");
  std::string dir = directory;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  ImageFolder ds;
  ds.directory = dir;
  ds.height = o.height;
  ds.width = o.width;
  ds.class_names = o.classes.empty() ? list_class_folders(dir) : o.classes;
  if (o.classes.empty() && ds.class_names.size() < 2) {
    std::string found = ds.class_names.empty() ? "none" : "only '" + ds.class_names[0] + "'";
    throw ConfigError("dataset '" + dir + "' has " +
                      plural(ds.class_names.size(), "class", "classes") + " (" + found +
                      "); a classifier needs at least two: put each class's images in "
                      "its own sub-folder, " +
                      dir + "/<class>/<image>.jpg");
  }
  // Scan every class first, so that all empty classes are named in one error.
  std::vector<std::string> paths;
  std::vector<int> labels;
  std::vector<std::string> empty;
  for (size_t c = 0; c < ds.class_names.size(); ++c) {
    const std::string cdir = dir + "/" + ds.class_names[c];
    std::error_code ec;
    if (!std::filesystem::is_directory(cdir, ec))
      throw IoError("class folder '" + cdir + "' does not exist (classes were given explicitly)");
    const size_t problems_before = ds.skipped.size();
    auto files = folder_detail::class_files(cdir, o.follow_links, ds.skipped);
    if (files.empty()) {
      // A folder that could not be listed is empty only to us: say why.
      std::string why;
      for (size_t k = problems_before; k < ds.skipped.size(); ++k) {
        const SkippedFile& p = ds.skipped[k];
        why += (why.empty() ? " (" : "; ") + (p.path == cdir ? "" : p.path + ": ") + p.reason;
      }
      empty.push_back(cdir + (why.empty() ? "" : why + ")"));
    }
    for (auto& f : files) {
      paths.push_back(std::move(f));
      labels.push_back(static_cast<int>(c));
    }
  }
  if (!empty.empty()) {
    std::string list;
    for (const auto& e : empty) list += "\n  " + e;
    throw ConfigError("dataset '" + dir +
                      "': " + plural(empty.size(), "class folder has", "class folders have") +
                      " no images (files ending in png, jpg, jpeg, bmp, ppm, tif or tiff):" + list);
  }

  // Decode in parallel into per-file slots, then keep what decoded, in order.
  const size_t n = paths.size(), img_bytes = ds.image_bytes();
  std::vector<uint8_t> pixels(n * img_bytes);
  std::vector<std::string> errors(n);
  std::vector<char> rotated(n, 0);
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < n;) {
      try {
        std::vector<char> bytes = read_file_bytes(paths[i]);
        Image img = decode_image_memory(bytes, "'" + paths[i] + "'");
        if (o.exif_orientation) {
          const int orient = jpeg_exif_orientation(bytes);
          if (orient > 1) {
            img = apply_exif_orientation(img, orient);
            rotated[i] = 1;
          }
        }
        img = resize_image(img, o.width, o.height, o.interpolation);
        std::copy(img.pixels.begin(), img.pixels.end(), pixels.begin() + i * img_bytes);
      } catch (const std::exception& e) {
        errors[i] = e.what();
        if (errors[i].empty()) errors[i] = "unknown error";
      }
    }
  };
  const int threads = std::max(1, std::min<int>(o.threads > 0 ? o.threads : num_threads(),
                                                static_cast<int>(std::max<size_t>(n, 1))));
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();

  size_t kept = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!errors[i].empty()) {
      ds.skipped.push_back({paths[i], errors[i]});
      continue;
    }
    if (kept != i)
      std::copy(pixels.begin() + i * img_bytes, pixels.begin() + (i + 1) * img_bytes,
                pixels.begin() + kept * img_bytes);
    ds.files.push_back(std::move(paths[i]));
    ds.labels.push_back(labels[i]);
    ds.exif_rotated += rotated[i];
    ++kept;
  }
  pixels.resize(kept * img_bytes);
  pixels.shrink_to_fit();
  ds.pixels = std::move(pixels);

  const auto counts = ds.class_counts();
  std::vector<std::string> unusable;
  for (size_t c = 0; c < counts.size(); ++c)
    if (counts[c] == 0) unusable.push_back(ds.class_names[c]);
  if (o.verbose) {
    std::cout << "Found " << ds.size() << " images belonging to " << ds.class_names.size()
              << " classes.\n";
    if (!ds.skipped.empty()) {
      std::cout << "Skipped " << plural(ds.skipped.size(), "file", "files")
                << " that could not be used:\n";
      for (const auto& s : ds.skipped) std::cout << "  " << s.path << ": " << s.reason << "\n";
    }
    std::cout.flush();
  }
  if (!unusable.empty()) {
    std::string list;
    for (const auto& u : unusable) {
      list += "\n  class '" + u + "':";
      for (const auto& s : ds.skipped)
        if (s.path.compare(0, dir.size() + u.size() + 2, dir + "/" + u + "/") == 0)
          list += "\n    " + s.path + ": " + s.reason;
    }
    throw FormatError("dataset '" + dir + "': no image of " +
                      plural(unusable.size(), "class", "classes") + " could be decoded:" + list);
  }
  return ds;
}

}  // namespace minicnn
