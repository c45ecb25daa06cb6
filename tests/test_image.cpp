// Image decoding, PIL-compatible resizing and bad image files.
#include <minicnn/data/image.hpp>

#include "test_support.hpp"

using namespace minicnn;

namespace {
// A 24-bit BMP header claiming the given size, followed by `pixel_bytes` zero bytes.
std::vector<char> bmp_bytes(int32_t w, int32_t h, size_t pixel_bytes) {
  std::vector<char> b(54 + pixel_bytes, 0);
  auto put32 = [&](size_t off, uint32_t v) {
    for (int i = 0; i < 4; ++i) b[off + i] = static_cast<char>((v >> (8 * i)) & 0xff);
  };
  b[0] = 'B';
  b[1] = 'M';
  put32(2, static_cast<uint32_t>(b.size()));
  put32(10, 54);
  put32(14, 40);
  put32(18, static_cast<uint32_t>(w));
  put32(22, static_cast<uint32_t>(h));
  b[26] = 1;   // planes
  b[28] = 24;  // bits per pixel
  return b;
}
const char* kPhotos[] = {"cat.bmp",           "cat_720p.jpg",  "resized_cat.bmp",
                         "grace_hopper.bmp",  "panda.jpg",     "parrot.jpg",
                         "bird.bmp",          "dragonfly.bmp", "hot_dog.jpg",
                         "hotdog_test_0.bmp", "sunflower.bmp", "missvickie_potato_chips.bmp"};
}  // namespace

TEST_CASE("decode a small BMP and resize keeps flat colours") {
  auto bytes = bmp_bytes(4, 2, 4 * 3 * 2);
  for (size_t i = 54; i < bytes.size(); ++i) bytes[i] = static_cast<char>(200);
  Image img = decode_image_memory(bytes, "'mem.bmp'");
  CHECK(img.width == 4);
  CHECK(img.height == 2);
  Image r = resize_bilinear(img, 3, 5);
  CHECK(r.width == 3);
  CHECK(r.height == 5);
  for (auto v : r.pixels) CHECK(v == 200);
}

TEST_CASE("resize matches PIL's antialiased bilinear bit for bit on the reference photos") {
  mt::require_shared("imagenet-samples/reference/inputs_224_uint8.npy");
  std::string dir = mt::shared_dir() + "/imagenet-samples/";
  for (int size : {224, 96}) {
    auto ref = load_npy(dir + "reference/inputs_" + std::to_string(size) + "_uint8.npy");
    REQUIRE(ref.dims == std::vector<int64_t>{12, size, size, 3});
    for (int i = 0; i < 12; ++i) {
      std::string name = kPhotos[i];
      Image r = resize_bilinear(decode_image(dir + name), size, size);
      const auto* want =
          reinterpret_cast<const uint8_t*>(ref.bytes.data()) + size_t(i) * size * size * 3;
      int worst = 0;
      for (size_t j = 0; j < r.pixels.size(); ++j)
        worst = std::max(worst, std::abs(int(r.pixels[j]) - int(want[j])));
      // BMPs decode identically everywhere; JPEG decoders (stb vs libjpeg) differ by a few levels.
      bool jpeg = name.find(".jpg") != std::string::npos;
      MESSAGE(name << " @" << size << ": max |ours - PIL| = " << worst);
      if (jpeg)
        CHECK(worst <= 6);
      else
        CHECK(worst == 0);
    }
  }
}

TEST_CASE("bad images give clear errors") {
  std::vector<char> text = {'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd'};
  mt::check_throws_with([&] { decode_image_memory(text, "'notes.txt'"); },
                        {"'notes.txt'", "not a decodable image"});
  mt::check_throws_with([&] { decode_image_memory({}, "'empty.jpg'"); }, {"'empty.jpg'", "empty"});
  mt::check_throws_with([&] { decode_image_memory(bmp_bytes(0, 0, 0), "'zero.bmp'"); },
                        {"'zero.bmp'"});
  mt::check_throws_with([&] { decode_image_memory(bmp_bytes(30000, 30000, 16), "'huge.bmp'"); },
                        {"'huge.bmp'", "30000x30000"});
  // Truncated files: the header promises more pixels than there are (stb alone would decode
  // them, filling the missing rows with zeros).
  mt::check_throws_with([&] { decode_image_memory(bmp_bytes(64, 64, 10), "'short.bmp'"); },
                        {"'short.bmp'", "truncated", "12342", "64"});
  auto header_only = bmp_bytes(2, 2, 0);
  header_only.resize(30);
  mt::check_throws_with([&] { decode_image_memory(header_only, "'cut.bmp'"); }, {"'cut.bmp'"});
  CHECK_NOTHROW(
      decode_image_memory(bmp_bytes(3, 2, 2 * 12), "'exact.bmp'"));  // rows padded to 12 bytes
  CHECK_THROWS(decode_image_memory(bmp_bytes(3, 2, 2 * 12 - 1), "'one-short.bmp'"));
  mt::check_throws_with([&] { decode_image("/nonexistent/x.png"); }, {"/nonexistent/x.png"});
  mt::check_throws_with([&] { preprocess_from_string("caffe"); }, {"caffe"});
}

TEST_CASE("a truncated JPEG is an error, a complete one with trailing bytes is not") {
  // tools/make_image_fixtures.py: a plain baseline JPEG, and the same image with an EXIF-style
  // APP1 segment holding a whole JPEG thumbnail, whose end-of-image marker must not count for
  // the main image.
  for (const char* name : {"gradient.jpg", "camera.jpg"}) {
    CAPTURE(name);
    const std::vector<char> file = read_file_bytes(mt::fixtures_dir() + "/images/" + name);
    Image img = decode_image_memory(file, "'ok.jpg'");
    CHECK(img.width == 40);
    CHECK(img.height == 30);
    std::vector<char> trailing = file;
    trailing.insert(trailing.end(), 100, 'x');
    CHECK_NOTHROW(decode_image_memory(trailing, "'trailing.jpg'"));
    for (size_t cut : {size_t(2), size_t(40), file.size() / 2}) {
      std::vector<char> short_file(file.begin(), file.end() - static_cast<std::ptrdiff_t>(cut));
      mt::check_throws_with([&] { decode_image_memory(short_file, "'cut.jpg'"); },
                            {"'cut.jpg'", "truncated"});
    }
  }
}

TEST_CASE("preprocessing modes") {
  CHECK(preprocess_value(0, Preprocess::Tf) == doctest::Approx(-1.0));
  CHECK(preprocess_value(255, Preprocess::Tf) == doctest::Approx(1.0));
  CHECK(preprocess_value(255, Preprocess::Unit) == doctest::Approx(1.0));
  CHECK(preprocess_value(0, Preprocess::Unit) == 0.0f);
}
