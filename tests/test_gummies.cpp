// The synthetic gummy dataset (examples/gummy_renderer.hpp): every image a pure function of its
// key whatever the thread count, every class drawn and not blank, the PNG files decoded by
// stb_image (an independent decoder, through load_image_folder) equal to the rendered pixels, and
// the manifest that makes a second call a no-op unless an option changed or a file is missing.
// Datasets are small (2 per class at 64x64) to keep the test fast.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "gummy_renderer.hpp"
#include "test_support.hpp"

using namespace minicnn;
using namespace minicnn::gummies;
namespace fs = std::filesystem;

namespace {

// A path for a dataset folder that does not exist yet (the renderer creates it).
std::string gummy_dir(const std::string& tag) {
  return mt::temp_dir("gummies_" + tag, false);
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

double variance(const std::vector<uint8_t>& p) {
  double s = 0, s2 = 0;
  for (uint8_t v : p) s += v, s2 += double(v) * v;
  const double n = double(p.size()), m = s / n;
  return s2 / n - m * m;
}

GummyDatasetOptions small_options() {
  GummyDatasetOptions o;
  o.per_class = 2;
  o.size = 64;
  o.seed = 7;
  return o;
}

}  // namespace

TEST_CASE("render_gummy: the same key gives the same pixels, another key others") {
  const plot::RgbImage a = render_gummy("bear", 11, 64, 3);
  const plot::RgbImage b = render_gummy("bear", 11, 64, 3);
  REQUIRE(a.width == 64);
  REQUIRE(a.height == 64);
  REQUIRE(a.pixels.size() == 64u * 64u * 3u);
  CHECK(a.pixels == b.pixels);
  CHECK(render_gummy("bear", 11, 64, 4).pixels != a.pixels);   // index
  CHECK(render_gummy("bear", 12, 64, 3).pixels != a.pixels);   // seed
  CHECK(render_gummy("heart", 11, 64, 3).pixels != a.pixels);  // class
  CHECK(render_gummy("bear", 11, 96, 3).width == 96);
}

TEST_CASE("render_gummy: every supported class renders, none blank, classes differ") {
  const auto& classes = supported_gummy_classes();
  REQUIRE(classes.size() >= 6);
  std::set<std::vector<uint8_t>> distinct;
  for (const auto& c : classes) {
    CAPTURE(c);
    for (uint64_t i = 0; i < 3; ++i) {
      const plot::RgbImage img = render_gummy(c, 2024, 48, i);
      REQUIRE(img.pixels.size() == 48u * 48u * 3u);
      CHECK(variance(img.pixels) > 50.0);  // a flat picture has 0; noise alone ~ 1-30
      distinct.insert(img.pixels);
    }
  }
  CHECK(distinct.size() == classes.size() * 3);
}

TEST_CASE("render_gummy: unknown classes and sizes out of range are refused") {
  CHECK_THROWS_AS(render_gummy("lollipop", 1, 64), ConfigError);
  CHECK_THROWS_WITH(render_gummy("lollipop", 1, 64), doctest::Contains("bear"));
  CHECK_THROWS_AS(render_gummy("bear", 1, 8), ConfigError);
  GummyDatasetOptions o = small_options();
  o.classes = {"bear", "bear"};
  CHECK_THROWS_AS(render_gummy_dataset(gummy_dir("bad"), o), ConfigError);
  o = small_options();
  o.per_class = 0;
  CHECK_THROWS_AS(render_gummy_dataset(gummy_dir("bad"), o), ConfigError);
  o = small_options();
  o.classes.clear();
  CHECK_THROWS_AS(render_gummy_dataset(gummy_dir("bad"), o), ConfigError);
}

TEST_CASE("render_gummy_dataset: a class-folder dataset load_image_folder reads back exactly") {
  const std::string dir = gummy_dir("load");
  GummyDatasetOptions o = small_options();
  o.threads = 1;
  const GummyDatasetReport r = render_gummy_dataset(dir, o);
  CHECK_FALSE(r.reused);
  CHECK(r.dir == dir);
  CHECK(r.classes == supported_gummy_classes());
  CHECK(r.images == int64_t(2 * supported_gummy_classes().size()));
  CHECK(fs::exists(dir + "/bear/bear_0000.png"));
  CHECK(fs::exists(dir + "/worm/worm_0001.png"));

  FolderOptions fo;
  fo.height = fo.width = 64;  // no resize: the decoded pixels are the PNG's
  fo.verbose = false;
  const ImageFolder data = load_image_folder(dir, fo);
  CHECK(data.class_names == supported_gummy_classes());  // already in byte order
  REQUIRE(data.size() == size_t(r.images));
  CHECK(data.skipped.empty());
  for (size_t i = 0; i < data.size(); ++i) {
    const std::string& c = data.class_names[size_t(data.labels[i])];
    const uint64_t index = i % 2;
    CAPTURE(data.files[i]);
    CHECK(data.files[i] == dir + "/" + c + "/" + c + "_000" + std::to_string(index) + ".png");
    const plot::RgbImage want = render_gummy(c, o.seed, 64, index);
    CHECK(std::equal(want.pixels.begin(), want.pixels.end(), data.image(i)));
  }
  fs::remove_all(dir);
}

TEST_CASE("render_gummy_dataset: the thread count does not change a byte") {
  const std::string a = gummy_dir("threads1"), b = gummy_dir("threads3");
  GummyDatasetOptions o = small_options();
  o.classes = {"ring", "star", "worm"};
  o.per_class = 3;
  o.threads = 1;
  render_gummy_dataset(a, o);
  o.threads = 3;
  render_gummy_dataset(b, o);
  for (const auto& c : o.classes)
    for (int i = 0; i < 3; ++i) {
      const std::string name = "/" + c + "/" + c + "_000" + std::to_string(i) + ".png";
      CAPTURE(name);
      const std::string x = read_bytes(a + name);
      CHECK(x.size() > 100);
      CHECK(x == read_bytes(b + name));
    }
  CHECK(read_bytes(a + "/gummies_manifest.json") == read_bytes(b + "/gummies_manifest.json"));
  fs::remove_all(a);
  fs::remove_all(b);
}

TEST_CASE("render_gummy_dataset: the manifest makes a second call a no-op") {
  const std::string dir = gummy_dir("again");
  const GummyDatasetOptions o = small_options();
  CHECK_FALSE(render_gummy_dataset(dir, o).reused);
  const std::string file = dir + "/heart/heart_0001.png";
  // Marks the file: a render would overwrite the mark, a no-op keeps it.
  const std::string original = read_bytes(file);
  const auto when = fs::last_write_time(file) - std::chrono::hours(1);
  fs::last_write_time(file, when);
  const GummyDatasetReport r = render_gummy_dataset(dir, o);
  CHECK(r.reused);
  CHECK(r.images == int64_t(2 * o.classes.size()));
  CHECK(fs::last_write_time(file) == when);
  CHECK(read_bytes(file) == original);

  // The thread count is not an option of the data: still a no-op.
  GummyDatasetOptions t = o;
  t.threads = 2;
  CHECK(render_gummy_dataset(dir, t).reused);

  // A missing or truncated file is noticed and rendered again.
  fs::remove(file);
  CHECK_FALSE(render_gummy_dataset(dir, o).reused);
  CHECK(read_bytes(file) == original);
  { std::ofstream(dir + "/star/star_0000.png", std::ios::trunc) << "x"; }
  CHECK_FALSE(render_gummy_dataset(dir, o).reused);
  CHECK(read_bytes(dir + "/star/star_0000.png").size() > 100);
  CHECK(render_gummy_dataset(dir, o).reused);
  fs::remove_all(dir);
}

TEST_CASE("render_gummy_dataset: a changed option renders again and leaves no stale files") {
  const std::string dir = gummy_dir("changed");
  GummyDatasetOptions o = small_options();
  render_gummy_dataset(dir, o);
  const std::string first = read_bytes(dir + "/frog/frog_0000.png");

  o.seed = 8;  // another seed: other pictures
  CHECK_FALSE(render_gummy_dataset(dir, o).reused);
  CHECK(read_bytes(dir + "/frog/frog_0000.png") != first);
  CHECK(render_gummy_dataset(dir, o).reused);

  o.size = 48;
  CHECK_FALSE(render_gummy_dataset(dir, o).reused);
  CHECK(decode_image(dir + "/frog/frog_0000.png").width == 48);

  // Fewer images and fewer classes: the files and folders no longer wanted are gone, and a
  // file of the user's own in a class folder stays.
  { std::ofstream(dir + "/bear/notes.txt") << "mine"; }
  o.per_class = 1;
  o.classes = {"frog", "ring"};
  CHECK_FALSE(render_gummy_dataset(dir, o).reused);
  CHECK(fs::exists(dir + "/frog/frog_0000.png"));
  CHECK_FALSE(fs::exists(dir + "/frog/frog_0001.png"));
  CHECK_FALSE(fs::exists(dir + "/star"));
  CHECK_FALSE(fs::exists(dir + "/bear/bear_0000.png"));
  CHECK(fs::exists(dir + "/bear/notes.txt"));
  fs::remove(dir + "/bear/notes.txt");
  fs::remove(dir + "/bear");
  FolderOptions fo;
  fo.verbose = false;
  const ImageFolder data = load_image_folder(dir, fo);
  CHECK(data.class_names == std::vector<std::string>{"frog", "ring"});
  CHECK(data.size() == 2);
  fs::remove_all(dir);
}
