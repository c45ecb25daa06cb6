// Fuzz target: the dataset folder scan and load (data/folder.hpp). Each input is a small
// program that builds a tree in a fresh temporary folder, then the tree is scanned
// (find_image_files, list_class_folders) and loaded (load_image_folder) with and without
// following links. The tree can hold folders and files with odd names (spaces, Unicode,
// newlines, leading dots, image-like suffixes, raw fuzz bytes), empty files, decodable tiny
// images, garbage named .jpg, symbolic links (to a file, to a folder, to an ancestor: a loop,
// dangling, to itself) and unreadable entries (chmod 000). Permissions do not bind root, who
// runs CI, so under root the scan and load run with the effective user and group "nobody"
// (65534): the tree is built, and removed, as root.
// Input: a sequence of 3-byte ops, [op, a, b], names picked by `a`, parents by `b`.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <minicnn/data/folder.hpp>

using namespace minicnn;
namespace fs = std::filesystem;

namespace {
const char* const kNames[] = {
    "a", "b", "class one", "gr\xc3\xbcn \xe2\x9c\x93", "new\nline", ".hidden", "x.jpg", "Y.JPEG",
    "pic.png", "img.bmp", "p.ppm", "t.tif", "jpg", ".jpg", "tab\there.png", "\xff\xfe bad utf8.ppm",
    "back\\slash.bmp", "quote\"'<&>.ppm", "-dash.ppm", "trailing space .ppm ",
    // One name split over two lines: the parentheses tell clang's
    // -Wstring-concatenation that no comma is missing.
    ("very_long_name_very_long_name_very_long_name_very_long_name_"
     "very_long_name_very_long_name.ppm")};
constexpr int kNameCount = sizeof(kNames) / sizeof(kNames[0]);

// A 2x2 binary PPM and a 2x2 BMP: tiny images every build decodes.
std::string tiny_ppm() {
  return std::string("P6 2 2 255\n") + std::string(12, '\x7f');
}
std::string tiny_bmp() {
  std::string b(54 + 16, '\0');
  auto put32 = [&](size_t at, uint32_t v) {
    for (int i = 0; i < 4; ++i) b[at + i] = static_cast<char>(v >> (8 * i));
  };
  b[0] = 'B', b[1] = 'M';
  put32(2, uint32_t(b.size()));
  put32(10, 54);
  put32(14, 40);
  put32(18, 2);
  put32(22, 2);
  b[26] = 1, b[28] = 24;
  return b;
}

void write(const std::string& path, const std::string& content) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return;
  std::fwrite(content.data(), 1, content.size(), f);
  std::fclose(f);
}

std::string fresh_root() {
  static int n = 0;
  // Whatever the caller's umask, "nobody" must be able to read what is not made unreadable.
  static const bool umask_set = (::umask(022), true);
  (void)umask_set;
  // Never destroyed: the exit handler that removes it runs after static destructors.
  static const std::string* const base = [] {
    auto* b = new std::string((fs::temp_directory_path() / "minicnn_fuzz_folder").string() + "." +
                              std::to_string(::getpid()));
    fs::create_directories(*b);
    std::atexit([] {  // each input's tree is gone already; only the empty base is left
      std::error_code ec;
      fs::remove(*base, ec);
    });
    return b;
  }();
  return *base + "/t" + std::to_string(n++ % 4);
}

void make_writable(const std::string& root) {
  std::error_code ec;
  ::chmod(root.c_str(), 0755);
  for (auto it = fs::recursive_directory_iterator(
           root, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_symlink(ec)) ::chmod(it->path().c_str(), it->is_directory(ec) ? 0755 : 0644);
    ec.clear();
  }
}

// While alive, file access is checked as the user nobody when the process runs as root:
// the kernel drops the effective capabilities with the effective uid and gives them back
// when it returns to 0 (the real and saved uid stay 0). glibc applies both to every thread.
class AsNobodyWhenRoot {
 public:
  AsNobodyWhenRoot() : active_(::getuid() == 0) {
    if (active_ && (::setegid(65534) != 0 || ::seteuid(65534) != 0)) std::abort();
  }
  ~AsNobodyWhenRoot() {
    if (active_ && (::seteuid(0) != 0 || ::setegid(0) != 0)) std::abort();
  }
  AsNobodyWhenRoot(const AsNobodyWhenRoot&) = delete;
  AsNobodyWhenRoot& operator=(const AsNobodyWhenRoot&) = delete;

 private:
  bool active_;
};

// Scans and loads the tree both ways; anything but an Error, or a dataset out of step with
// its own sizes, is a finding.
void scan_and_load(const std::string& root) {
  const AsNobodyWhenRoot as_nobody;
  std::vector<SkippedFile> problems;
  (void)find_image_files(root, true, problems);
  (void)find_image_files(root, false, problems);
  for (bool follow : {false, true}) {
    FolderOptions o;
    o.height = 3;
    o.width = 2;
    o.threads = 1;
    o.verbose = false;
    o.follow_links = follow;
    try {
      const ImageFolder ds = load_image_folder(root + "/", o);
      if (ds.pixels.size() != ds.size() * ds.image_bytes() || ds.labels.size() != ds.size())
        std::abort();
      for (int l : ds.labels)
        if (l < 0 || size_t(l) >= ds.class_names.size()) std::abort();
    } catch (const Error&) {
    }
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 3 * 48) return 0;  // bounded trees keep each run to milliseconds
  const std::string root = fresh_root();
  std::error_code ec;
  fs::remove_all(root, ec);
  fs::create_directories(root);
  std::vector<std::string> dirs = {root};
  std::vector<std::string> entries;  // every path created, for links and chmod
  size_t raw = 0;                    // next raw-bytes name
  auto name_of = [&](uint8_t a) -> std::string {
    if (a < 0xF0) return kNames[a % kNameCount];
    // A name from the input's own bytes: up to 12 of them, '/' and NUL replaced.
    std::string s;
    for (size_t k = 0; k < 12 && raw < size; ++k, ++raw) {
      char c = static_cast<char>(data[raw]);
      s += (c == '/' || c == 0) ? '_' : c;
    }
    if (s.empty() || s == "." || s == "..") s = "r" + std::to_string(a);
    return s;
  };
  for (size_t i = 0; i + 3 <= size; i += 3) {
    const uint8_t op = data[i] % 10, a = data[i + 1], b = data[i + 2];
    const std::string& parent = dirs[b % dirs.size()];
    const std::string path = parent + "/" + name_of(a);
    switch (op) {
      case 0:
      case 1:
        if (fs::create_directory(path, ec)) dirs.push_back(path);
        break;
      case 2: write(path, ""); break;
      case 3: write(path, b & 1 ? tiny_ppm() : tiny_bmp()); break;
      case 4: write(path, std::string(reinterpret_cast<const char*>(data), size)); break;
      case 5:  // link to an ancestor folder: a loop when followed
        fs::create_directory_symlink(dirs[a % dirs.size()], path, ec);
        break;
      case 6:  // link to something created before (file or folder), relative or absolute
        if (!entries.empty()) fs::create_symlink(entries[a % entries.size()], path, ec);
        break;
      case 7:  // dangling link, or a link to itself
        fs::create_symlink(a & 1 ? path : parent + "/missing", path, ec);
        break;
      case 8:  // unreadable
        if (!entries.empty()) ::chmod(entries[a % entries.size()].c_str(), 0);
        continue;
      default: write(path, std::string(b % 7, char(a))); break;  // short garbage
    }
    entries.push_back(path);
  }

  scan_and_load(root);
  make_writable(root);
  fs::remove_all(root, ec);
  return 0;
}
