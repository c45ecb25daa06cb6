// Image-folder datasets: Keras' scan order and extension rule, PIL-exact nearest resizing,
// EXIF orientation (against PIL's exif_transpose), colour-mode conversion (against PIL's
// convert('RGB')), bad input (skipped files, empty or missing folders), and the splits
// (Keras' validation_split on the real jellybeans12 folder, stratified random, grouped).
#include <doctest/doctest.h>

#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <set>

#include "test_support.hpp"

using namespace minicnn;
namespace fs = std::filesystem;

namespace {

std::string dataset_fixture(const std::string& name) {
  return mt::fixtures_dir() + "/dataset/" + name;
}

Image npy_image(const std::string& path) {
  NpyArray a = load_npy(path);
  REQUIRE(a.dtype == "u1");
  REQUIRE(a.dims.size() == 3);
  Image img;
  img.height = int(a.dims[0]);
  img.width = int(a.dims[1]);
  img.pixels.assign(reinterpret_cast<const uint8_t*>(a.bytes.data()),
                    reinterpret_cast<const uint8_t*>(a.bytes.data()) + a.bytes.size());
  return img;
}

using mt::TempDir;

void copy_to(const std::string& src, const fs::path& dst) {
  fs::create_directories(dst.parent_path());
  fs::copy_file(src, dst, fs::copy_options::overwrite_existing);
}

void write_bytes(const fs::path& p, const std::string& bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << bytes;
}

std::string file_text(const std::string& p) {
  auto v = read_file_bytes(p);
  return std::string(v.begin(), v.end());
}

}  // namespace

TEST_CASE("resize_nearest equals PIL's Image.resize(NEAREST) exactly") {
  const Image src = npy_image(dataset_fixture("nearest_src.npy"));
  for (auto [w, h] :
       std::vector<std::pair<int, int>>{{96, 96}, {7, 5}, {23, 40}, {10, 17}, {11, 3}, {50, 33}}) {
    CAPTURE(w);
    CAPTURE(h);
    const Image want = npy_image(
        dataset_fixture("nearest_" + std::to_string(w) + "x" + std::to_string(h) + ".npy"));
    const Image got = resize_nearest(src, w, h);
    REQUIRE(got.width == w);
    REQUIRE(got.height == h);
    CHECK(got.pixels == want.pixels);
  }
}

TEST_CASE("EXIF orientation 1..8 turns JPEGs upright as PIL's exif_transpose") {
  for (int k = 1; k <= 8; ++k) {
    CAPTURE(k);
    const std::string path = dataset_fixture("orient_" + std::to_string(k) + ".jpg");
    auto bytes = read_file_bytes(path);
    CHECK(jpeg_exif_orientation(bytes) == k);
    Image img = apply_exif_orientation(decode_image_memory(bytes, path), k);
    const Image want = npy_image(dataset_fixture("orient_" + std::to_string(k) + "_upright.npy"));
    REQUIRE(img.width == want.width);
    REQUIRE(img.height == want.height);
    // Decoders differ by a few levels (and blur at the quadrant edges): compare cores.
    int worst = 0;
    for (int y = 0; y < img.height; ++y)
      for (int x = 0; x < img.width; ++x) {
        const bool edge_x = std::abs(2 * x + 1 - img.width) <= 4,
                   edge_y = std::abs(2 * y + 1 - img.height) <= 4;
        if (edge_x || edge_y) continue;
        for (int c = 0; c < 3; ++c)
          worst =
              std::max(worst, std::abs(int(img.row(y)[x * 3 + c]) - int(want.row(y)[x * 3 + c])));
      }
    CHECK(worst <= 12);
  }
  // No EXIF, a PNG, and garbage: orientation 1.
  CHECK(jpeg_exif_orientation(read_file_bytes(dataset_fixture("mode_RGB.png"))) == 1);
  const unsigned char junk[] = {0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x08, 'E', 'x', 'i', 'f', 0, 0};
  CHECK(jpeg_exif_orientation(junk, sizeof junk) == 1);
}

TEST_CASE("grey, grey+alpha, palette and RGBA PNGs become RGB as PIL's convert('RGB')") {
  for (const std::string mode : {"L", "LA", "P", "RGBA", "RGB"}) {
    CAPTURE(mode);
    Image got = decode_image(dataset_fixture("mode_" + mode + ".png"));
    const Image want = npy_image(dataset_fixture("mode_" + mode + ".npy"));
    REQUIRE(got.width == want.width);
    REQUIRE(got.height == want.height);
    CHECK(got.pixels == want.pixels);
  }
}

TEST_CASE("image folder: Keras' class and file order, extensions, hidden files, nesting") {
  TempDir d;
  const std::string png = dataset_fixture("mode_RGB.png");
  // Classes in byte order: upper case before lower case, '10' before '2'.
  for (const std::string c : {"b", "B", "10", "2"}) copy_to(png, d.path / c / "x.png");
  // Nested folders: sorted by path, then files by name.
  copy_to(png, d.path / "b" / "z.PNG");  // extension case-insensitive
  copy_to(png, d.path / "b" / "a.jpeg.png");
  copy_to(png, d.path / "b" / "sub" / "a.png");
  copy_to(png, d.path / "b" / "sub b" / "a.png");
  copy_to(png, d.path / "b" / "sub" / "deep" / "a.png");  // "sub b" < "sub/deep": ' ' < '/'
  copy_to(png, d.path / "b" / "notes.txt");               // not an image extension
  copy_to(png, d.path / "b" / ".hidden.png");             // hidden file
  copy_to(png, d.path / "b" / ".cache" / "a.png");        // hidden folder
  copy_to(png, d.path / ".ipynb_checkpoints" / "x.png");  // hidden class folder
  write_bytes(d.path / "loose.png", file_text(png));      // loose files are not classes

  FolderOptions o;
  o.height = o.width = 8;
  o.verbose = false;
  ImageFolder ds = load_image_folder(d.str(), o);
  CHECK(ds.class_names == std::vector<std::string>{"10", "2", "B", "b"});
  std::vector<std::string> rel;
  for (const auto& f : ds.files) rel.push_back(f.substr(d.str().size() + 1));
  // os.walk roots sorted as strings: "b" < "b/sub" < "b/sub b" < "b/sub/deep".
  CHECK(rel == std::vector<std::string>{"10/x.png", "2/x.png", "B/x.png", "b/a.jpeg.png", "b/x.png",
                                        "b/z.PNG", "b/sub/a.png", "b/sub b/a.png",
                                        "b/sub/deep/a.png"});
  CHECK(ds.labels == std::vector<int>{0, 1, 2, 3, 3, 3, 3, 3, 3});
  CHECK(ds.pixels.size() == 9 * 8 * 8 * 3);
  CHECK(ds.skipped.empty());
  // Keras' suffix check has no dot: "x.xpng" counts (and then fails to decode).
  write_bytes(d.path / "2" / "odd.xpng", "not an image");
  ImageFolder ds2 = load_image_folder(d.str(), o);
  REQUIRE(ds2.skipped.size() == 1);
  CHECK(ds2.skipped[0].path.find("odd.xpng") != std::string::npos);
}

TEST_CASE("image folder: corrupt, truncated and unreadable files are skipped and reported") {
  TempDir d;
  const std::string png = dataset_fixture("mode_RGB.png");
  for (int i = 0; i < 3; ++i) copy_to(png, d.path / "a" / ("ok" + std::to_string(i) + ".png"));
  copy_to(png, d.path / "b" / "ok.png");
  write_bytes(d.path / "b" / "garbage.jpg", "this is not a jpeg at all");
  const std::string jpg = file_text(mt::fixtures_dir() + "/images/gradient.jpg");
  write_bytes(d.path / "b" / "truncated.jpg", jpg.substr(0, jpg.size() / 2));
  write_bytes(d.path / "b" / "empty.png", "");
  fs::create_directories(d.path / "b" /
                         "dir.png");  // a folder with an image name: skipped as a folder
  fs::create_symlink(d.path / "nowhere.png", d.path / "a" / "broken_link.png");

  FolderOptions o;
  o.height = o.width = 4;
  o.verbose = false;
  ImageFolder ds = load_image_folder(d.str(), o);
  CHECK(ds.size() == 4);
  REQUIRE(ds.skipped.size() == 4);
  std::set<std::string> names;
  for (const auto& s : ds.skipped) {
    names.insert(fs::path(s.path).filename().string());
    CHECK(!s.reason.empty());
  }
  CHECK(names ==
        std::set<std::string>{"garbage.jpg", "truncated.jpg", "empty.png", "broken_link.png"});
  for (const auto& s : ds.skipped)
    if (s.path.find("truncated") != std::string::npos)
      CHECK(s.reason.find("truncated") != std::string::npos);
}

// Permissions do not bind root, who runs CI; a folder with unreadable parts is therefore
// loaded in a child process that first gives up root for the user "nobody" (uid and gid
// 65534). The child reports through its exit code: `body`'s result, 4 for an exception it
// let out, 10 when it could not drop root.
int exit_code_as_nobody(const std::function<int()>& body) {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    if (::geteuid() == 0 &&
        (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
         ::setresuid(65534, 65534, 65534) != 0))
      ::_exit(10);
    int code = 0;
    try {
      code = body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s\n", e.what());
      code = 4;
    }
    ::_exit(code);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  return WEXITSTATUS(status);
}

// Two readable images in a/, and b/ holding ok.png, locked.png and locked_dir/inside.png, all
// readable by everyone until the caller locks some.
void write_two_class_folder(const TempDir& d) {
  const std::string png = dataset_fixture("mode_RGB.png");
  for (int i = 0; i < 2; ++i) copy_to(png, d.path / "a" / ("ok" + std::to_string(i) + ".png"));
  copy_to(png, d.path / "b" / "ok.png");
  copy_to(png, d.path / "b" / "locked.png");
  copy_to(png, d.path / "b" / "locked_dir" / "inside.png");
  const auto open = fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                    fs::perms::others_read | fs::perms::others_exec;
  fs::permissions(d.path, open);
  for (const auto& e : fs::recursive_directory_iterator(d.path)) fs::permissions(e.path(), open);
}

// Exit codes: 1 wrong image count, 2 wrong skipped entries, 3 a reason that does not name
// the permission problem.
TEST_CASE("image folder: a file and a folder without read permission are skipped and reported") {
  TempDir d;
  write_two_class_folder(d);
  fs::permissions(d.path / "b" / "locked.png", fs::perms::none);
  fs::permissions(d.path / "b" / "locked_dir", fs::perms::none);
  const int code = exit_code_as_nobody([&] {
    FolderOptions o;
    o.height = o.width = 4;
    o.verbose = false;
    ImageFolder ds = load_image_folder(d.str(), o);
    std::set<std::string> names;
    bool named = true;
    for (const auto& sk : ds.skipped) {
      names.insert(fs::path(sk.path).filename().string());
      named = named && sk.reason.find("Permission denied") != std::string::npos;
      std::fprintf(stderr, "skipped %s: %s\n", sk.path.c_str(), sk.reason.c_str());
    }
    if (ds.size() != 3) return 1;
    if (names != std::set<std::string>{"locked.png", "locked_dir"}) return 2;
    return named ? 0 : 3;
  });
  fs::permissions(d.path / "b" / "locked.png", fs::perms::owner_all);
  fs::permissions(d.path / "b" / "locked_dir", fs::perms::owner_all);
  CHECK(code == 0);
}

// Exit codes: 1 no error, 2 an error that does not say which folder could not be listed and
// why.
TEST_CASE("image folder: a class folder without read permission is an error that says why") {
  TempDir d;
  write_two_class_folder(d);
  fs::permissions(d.path / "b", fs::perms::none);
  const int code = exit_code_as_nobody([&] {
    FolderOptions o;
    o.height = o.width = 4;
    o.verbose = false;
    try {
      (void)load_image_folder(d.str(), o);
    } catch (const ConfigError& e) {
      const std::string m = e.what();
      std::fprintf(stderr, "%s\n", m.c_str());
      const std::string want = (d.path / "b").string() + " (cannot list folder: Permission denied)";
      return m.find(want) != std::string::npos && m.find("no images") != std::string::npos ? 0 : 2;
    }
    return 1;
  });
  fs::permissions(d.path / "b", fs::perms::owner_all);
  CHECK(code == 0);
}

TEST_CASE("image folder: missing folder, one class, empty class and undecodable class are errors") {
  FolderOptions o;
  o.verbose = false;
  mt::check_throws_with([&] { load_image_folder("/nonexistent/minicnn/data", o); },
                        {"/nonexistent/minicnn/data", "does not exist"});
  TempDir d;
  const std::string png = dataset_fixture("mode_RGB.png");
  copy_to(png, d.path / "only" / "a.png");
  mt::check_throws_with([&] { load_image_folder(d.str(), o); },
                        {"1 class", "'only'", "at least two"});
  fs::create_directories(d.path / "empty");
  copy_to(png, d.path / "empty" / "readme.txt");
  mt::check_throws_with([&] { load_image_folder(d.str(), o); }, {"empty", "no images"});
  write_bytes(d.path / "empty" / "bad.png", "xx");
  mt::check_throws_with([&] { load_image_folder(d.str(), o); }, {"class 'empty'", "bad.png"});
  mt::check_throws_with([&] { load_image_folder(png, o); }, {"not a folder"});
}

TEST_CASE("splits: Keras validation_split takes the first int(v*n) sorted files per class") {
  mt::require_shared("datasets/jellybeans12");
  FolderOptions o;
  o.verbose = false;
  ImageFolder ds = load_image_folder(mt::shared_dir() + "/datasets/jellybeans12", o);
  REQUIRE(ds.size() == 675);
  REQUIRE(ds.class_names.size() == 12);
  CHECK(ds.class_names.front() == "berry_blue");
  CHECK(ds.pixels.size() == 675u * 96 * 96 * 3);  // the stated bound: 18.7 MB
  Split s = keras_validation_split(ds, 0.2);
  CHECK(s.validation.size() == 132);  // sum of int(0.2 * n) over the 12 classes
  CHECK(s.train.size() == 543);
  // berry_blue has 56 images: validation is 00001.png .. 00011.png.
  std::vector<std::string> first;
  for (size_t i : s.validation)
    if (ds.labels[i] == 0) first.push_back(fs::path(ds.files[i]).filename().string());
  REQUIRE(first.size() == 11);
  CHECK(first.front() == "00001.png");
  CHECK(first.back() == "00011.png");
  // int() truncates the double product: int(0.29 * 100) == 28 in Python.
  CHECK(split_detail::quota(0.29, 100) == 28);
  mt::check_throws_with([&] { keras_validation_split(ds, 1.0); },
                        {"validation_split", "between 0 and 1"});
}

TEST_CASE(
    "splits: random split is stratified, seeded and disjoint; grouped split keeps groups "
    "together") {
  TempDir d;
  const std::string png = dataset_fixture("mode_RGB.png");
  // Burst photos: IMG_<time>_<k>.png, 5 bursts of 4 per class.
  for (const std::string c : {"bear", "ring"})
    for (int b = 0; b < 5; ++b)
      for (int k = 0; k < 4; ++k)
        copy_to(png, d.path / c /
                         ("IMG_2019070" + std::to_string(b) + "_1530" + c + "_" +
                          std::to_string(k) + ".png"));
  FolderOptions o;
  o.height = o.width = 4;
  o.verbose = false;
  ImageFolder ds = load_image_folder(d.str(), o);
  REQUIRE(ds.size() == 40);
  Split r1 = random_split(ds, 0.25, 7), r2 = random_split(ds, 0.25, 7),
        r3 = random_split(ds, 0.25, 8);
  CHECK(r1.validation == r2.validation);
  CHECK(r1.validation != r3.validation);
  CHECK(r1.validation.size() == 10);  // 5 per class
  std::vector<int> per(2, 0);
  for (size_t i : r1.validation) ++per[size_t(ds.labels[i])];
  CHECK(per == std::vector<int>{5, 5});
  std::set<size_t> all(r1.train.begin(), r1.train.end());
  for (size_t i : r1.validation) CHECK(all.insert(i).second);
  CHECK(all.size() == 40);

  const std::string re = "^(IMG_\\d{8}_\\d{4}[a-z]+)_\\d+";
  CHECK(count_groups(ds, re) == 10);
  Split g = grouped_split(ds, 0.25, re, 3);
  std::set<std::string> val_keys, train_keys;
  const FileNameRegex rx(re);
  for (size_t i : g.validation)
    val_keys.insert(group_key(fs::path(ds.files[i]).filename().string(), rx));
  for (size_t i : g.train)
    train_keys.insert(group_key(fs::path(ds.files[i]).filename().string(), rx));
  for (const auto& k : val_keys) CHECK(train_keys.count(k) == 0);
  CHECK(g.validation.size() == 8);  // one whole burst (4) per class fits the quota of 5
  CHECK(g.validation.size() + g.train.size() == 40);
  mt::check_throws_with([&] { grouped_split(ds, 0.25, "([", 1); },
                        {"grouped split", "regular expression"});
  // Perl classes become bracket expressions, also inside brackets; no group: the whole match.
  CHECK(group_key("IMG_20190707_153012_3.jpg", FileNameRegex("^IMG_\\d{8}_\\d{4}")) ==
        "IMG_20190707_1530");
  CHECK(group_key("a b_7.png", FileNameRegex("^[\\w\\s]+")) == "a b_7");
  CHECK(group_key("nomatch.png", FileNameRegex("^IMG")) == "nomatch.png");
}

TEST_CASE("real photos: sign_digits10's EXIF-rotated originals are turned upright") {
  mt::require_shared("datasets/sign_digits10/7/IMG_5874.JPG");
  for (const std::string f : {"IMG_5874.JPG", "IMG_5935.JPG", "IMG_5978.JPG"})
    CHECK(jpeg_exif_orientation(
              read_file_bytes(mt::shared_dir() + "/datasets/sign_digits10/7/" + f)) == 6);
  FolderOptions o;
  o.verbose = false;
  o.height = o.width = 32;
  o.classes = {"7", "8"};
  ImageFolder ds = load_image_folder(mt::shared_dir() + "/datasets/sign_digits10", o);
  CHECK(ds.exif_rotated == 3);
  CHECK(ds.size() == 206 + 208);
  o.exif_orientation = false;
  CHECK(load_image_folder(mt::shared_dir() + "/datasets/sign_digits10", o).exif_rotated == 0);
}
