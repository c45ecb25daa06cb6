// Image decoding, PIL-compatible resizing and bad image files.
#include <algorithm>
#include <cctype>
#include <filesystem>

#include <minicnn/data/image.hpp>

#include "jpeg_bytes.hpp"
#include "test_support.hpp"

using namespace minicnn;
using minicnn_test_jpeg::many_scan_jpeg;
using minicnn_test_jpeg::tiny_jpeg;

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

// A gray JPEG of `blocks` 8x8 blocks in one row, written byte by byte. DC table 0 has one
// 1-bit code, for size 15; AC table 0 one 1-bit code, end of block. Each block is that code,
// 15 one bits (a DC difference of +32767) and end of block, so the DC prediction of block k
// is 32767 k and stb_image computes 32767 k * q0 in int.
std::vector<char> dc_ramp_jpeg(int blocks, unsigned q0, bool sixteen_bit) {
  const std::string dc_size_15("\x01\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x0f", 17);
  const std::string end_of_block("\x01\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 17);
  std::string j("\xff\xd8", 2);
  if (sixteen_bit) {
    j += std::string("\xff\xdb\x00\x83\x10", 5) + char(q0 >> 8) + char(q0 & 255);
    for (int i = 1; i < 64; ++i) j += std::string("\0\1", 2);
  } else {
    j += std::string("\xff\xdb\x00\x43\x00", 5) + char(q0) + std::string(63, '\x01');
  }
  const int w = 8 * blocks;
  j += std::string("\xff\xc0\x00\x0b\x08\x00\x08", 7) + char(w >> 8) + char(w & 255);
  j += std::string("\x01\x01\x11\x00", 4);
  j += std::string("\xff\xc4\x00\x14\x00", 5) + dc_size_15;
  j += std::string("\xff\xc4\x00\x14\x10", 5) + end_of_block;
  j += std::string("\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00", 10);
  std::string bits;
  for (int b = 0; b < blocks; ++b) bits += "0" + std::string(15, '1') + "0";
  bits += std::string((8 - bits.size() % 8) % 8, '1');
  for (size_t i = 0; i < bits.size(); i += 8) {
    const char byte = char(std::stoi(bits.substr(i, 8), nullptr, 2));
    j += byte;
    if (byte == '\xff') j += '\0';  // stuffed
  }
  j += "\xff\xd9";
  return std::vector<char>(j.begin(), j.end());
}

// A 2x1 RGBA PSD (8 bits, raw or PackBits planes) with the given pixels, each {r, g, b, a}.
std::string tiny_psd(const unsigned char (&px)[2][4], bool packbits) {
  std::string f("8BPS\0\1\0\0\0\0\0\0\0\4\0\0\0\1\0\0\0\2\0\x08\0\3", 26);
  f += std::string(12, '\0');  // no mode data, image resources or reserved data
  f += packbits ? std::string("\0\1", 2) + std::string("\0\3\0\3\0\3\0\3", 8)  // row lengths
                : std::string("\0\0", 2);
  for (int c = 0; c < 4; ++c) {
    if (packbits) f += '\1';  // a literal run of 2
    f += std::string{char(px[0][c]), char(px[1][c])};
  }
  return f;
}
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

TEST_CASE(
    "a JPEG using a Huffman or quantisation table it never defines is refused before stb_image") {
  // stb_image 2.27 would read such a table from uninitialised memory (UBSan: index 18 out of
  // bounds, negative shift in stbi__jpeg_huff_decode; tests/fuzz/regressions/fuzz_mjpeg).
  auto bytes = [](const std::string& s) { return std::vector<char>(s.begin(), s.end()); };
  for (bool progressive : {false, true}) {
    CAPTURE(progressive);
    const Image ok = decode_image_memory(bytes(tiny_jpeg(progressive)), "'tiny.jpg'");
    CHECK(ok.width == 8);
    CHECK(ok.height == 8);
    CHECK(std::all_of(ok.pixels.begin(), ok.pixels.end(), [](uint8_t v) { return v == 128; }));
    mt::check_throws_with(
        [&] { decode_image_memory(bytes(tiny_jpeg(progressive, 0x00, false)), "'noac.jpg'"); },
        {"'noac.jpg'", "uses AC Huffman table 0, which no DHT segment before it defines"});
    mt::check_throws_with(
        [&] { decode_image_memory(bytes(tiny_jpeg(progressive, 0x10)), "'dc1.jpg'"); },
        {"'dc1.jpg'", "uses DC Huffman table 1", progressive ? "byte 106" : "byte 128"});
    // No DQT: stb_image would dequantise with uninitialised memory, and dc * dequant[0]
    // overflows int (tests/fuzz/regressions/fuzz_image/jpeg_undefined_quant_table_dc_overflow.jpg).
    mt::check_throws_with(
        [&] { decode_image_memory(bytes(tiny_jpeg(progressive, 0x00, true, false)), "'noq.jpg'"); },
        {"'noq.jpg'", "component 1 uses quantisation table 0, which no DQT segment"});
  }
  // A progressive DC scan does not use its AC selector: table 3 is never defined, no error.
  CHECK(decode_image_memory(bytes(tiny_jpeg(true, 0x03)), "'p.jpg'").width == 8);
  // Three 1-bit codes: more than 1 bit can tell apart. stb_image refuses it as "Corrupt JPEG".
  std::string over = tiny_jpeg(false);
  over[2 + 69 + 13 + 5] = 3;
  mt::check_throws_with([&] { decode_image_memory(bytes(over), "'over.jpg'"); },
                        {"'over.jpg'", "Huffman table at byte 88", "over-subscribe"});
}

TEST_CASE("the replay of stb_image's entropy decoding keeps step on every scan layout") {
  // tools/make_image_fixtures.py: progressive 4:2:0, grey and CMYK; restart markers in a
  // baseline and a progressive file. The replay must reach the end-of-image marker through
  // every scan, as stb does, and find nothing; then stb decodes each file.
  const char* names[] = {"gradient.jpg",
                         "camera.jpg",
                         "scan_progressive_420.jpg",
                         "scan_progressive_grey.jpg",
                         "scan_progressive_cmyk.jpg",
                         "scan_baseline_restart3.jpg",
                         "scan_progressive_restart_rows.jpg"};
  for (const char* name : names) {
    CAPTURE(name);
    const std::vector<char> file = read_file_bytes(mt::fixtures_dir() + "/images/" + name);
    image_detail::StbJpegReplay replay(reinterpret_cast<const unsigned char*>(file.data()),
                                       file.size());
    CHECK(replay.run().empty());
    CHECK(replay.reached_end());
    const Image img = decode_image_memory(file, name);
    CHECK(img.width == (name[0] == 's' ? 61 : 40));
  }
}

TEST_CASE("the replay keeps step with stb_image on every JPEG of ../shared") {
  mt::require_shared("datasets/sign_digits10");
  namespace fs = std::filesystem;
  int files = 0;
  for (const char* dir : {"datasets", "imagenet-samples"})
    for (const auto& e : fs::recursive_directory_iterator(mt::shared_dir() + "/" + dir)) {
      std::string ext = e.path().extension().string();
      std::transform(ext.begin(), ext.end(), ext.begin(),
                     [](unsigned char c) { return std::tolower(c); });
      if (!e.is_regular_file() || (ext != ".jpg" && ext != ".jpeg")) continue;
      const std::vector<char> file = read_file_bytes(e.path().string());
      image_detail::StbJpegReplay replay(reinterpret_cast<const unsigned char*>(file.data()),
                                         file.size());
      const std::string problem = replay.run();
      if (!problem.empty() || !replay.reached_end())
        FAIL_CHECK(e.path().string() << ": " << problem);
      ++files;
    }
  MESSAGE("replayed " << files << " JPEG photos");
  CHECK(files >= 2000);
}

TEST_CASE("a JPEG whose DC value leaves int is refused before stb_image") {
  // stb_image 2.27 computes dc_pred + diff and dc * dequant[0] in int with no check (clang's
  // UBSan: "65534 * 65535 cannot be represented in type 'int'" in stbi__jpeg_decode_block).
  // One block of the largest DC difference with a 16-bit quantiser of 65535 still fits.
  const Image one = decode_image_memory(dc_ramp_jpeg(1, 65535, true), "'one.jpg'");
  CHECK(one.width == 8);
  mt::check_throws_with([&] { decode_image_memory(dc_ramp_jpeg(2, 65535, true), "'two.jpg'"); },
                        {"'two.jpg'", "block 2 of component 1", "DC value of 65534",
                         "times its quantiser 65535 is 4294770690"});
  // With 8-bit tables it takes 258 such blocks: 32767 * 257 * 255 still fits in int.
  CHECK(decode_image_memory(dc_ramp_jpeg(257, 255, false), "'257.jpg'").width == 8 * 257);
  mt::check_throws_with([&] { decode_image_memory(dc_ramp_jpeg(258, 255, false), "'258.jpg'"); },
                        {"'258.jpg'", "block 258 of component 1", "DC value of 8453886"});
}

TEST_CASE("a JPEG with more than 500 scans is refused before stb_image, as libjpeg-turbo does") {
  // Each scan is a pass over the whole image: 11 bytes per scan would otherwise buy a pass
  // over up to 1024 pixels per byte of the file (kMaxJpegPixelsPerByte).
  CHECK(decode_image_memory(many_scan_jpeg(2), "'two.jpg'").width == 8);
  CHECK(decode_image_memory(many_scan_jpeg(500), "'500.jpg'").width == 8);
  const std::vector<char> too_many = many_scan_jpeg(501);
  size_t at = 0;  // where the 501st scan starts
  for (int seen = 0; seen < 501; ++at)
    if (uint8_t(too_many[at]) == 0xFF && uint8_t(too_many[at + 1]) == 0xDA) ++seen;
  mt::check_throws_with(
      [&] { decode_image_memory(too_many, "'501.jpg'"); },
      {"'501.jpg'", "more than 500 scans", "scan 501 starts at byte " + std::to_string(at - 1)});
}

TEST_CASE("a JPEG scan whose data runs out inside a block is refused before stb_image") {
  // fuzz_mjpeg's finding 14 as a still image (its first byte is the harness's mode byte):
  // stb_image's bit reader would count a negative number of bits and then shift by 32.
  std::vector<char> frame =
      read_file_bytes(mt::source_dir() +
                      "/tests/fuzz/regressions/fuzz_mjpeg/jpeg_fill_bytes_scan_past_marker_shift");
  frame.erase(frame.begin());
  mt::check_throws_with([&] { decode_image_memory(frame, "'frame.jpg'"); },
                        {"'frame.jpg'", "runs out of data inside its block"});
  // Every cut of a scan, closed with an end-of-image marker, either decodes (stb fills the
  // rest with zero bits, which is defined) or is refused so; under the sanitizer build
  // UBSan watches stb on each one that decodes.
  for (const char* name :
       {"gradient.jpg", "scan_progressive_420.jpg", "scan_baseline_restart3.jpg"}) {
    CAPTURE(name);
    const std::vector<char> file = read_file_bytes(mt::fixtures_dir() + "/images/" + name);
    size_t sos = 0;
    while (!(uint8_t(file[sos]) == 0xFF && uint8_t(file[sos + 1]) == 0xDA)) ++sos;
    int refused = 0, decoded = 0;
    for (size_t cut = sos + 14; cut + 2 < file.size(); ++cut) {
      std::vector<char> cut_file(file.begin(), file.begin() + std::ptrdiff_t(cut));
      cut_file.push_back('\xff');
      cut_file.push_back('\xd9');
      try {
        decode_image_memory(cut_file, "'cut.jpg'");
        ++decoded;
      } catch (const FormatError& e) {
        const std::string what = e.what();
        if (what.find("runs out of data inside its block") != std::string::npos) ++refused;
      }
    }
    CAPTURE(decoded);
    CHECK(refused > 0);
  }
}

TEST_CASE("a PSD whose alpha pixels are not matted on white is refused before stb_image") {
  // stb_image 2.27 un-mattes 4-channel PSDs in float and converts a negative result to
  // unsigned char (UBSan float-cast-overflow; tests/fuzz/regressions/fuzz_image/psd_matte_*).
  auto bytes = [](const std::string& s) { return std::vector<char>(s.begin(), s.end()); };
  for (bool packbits : {false, true}) {
    CAPTURE(packbits);
    // Matted on white: 200 at alpha 128 was 145 on black; 155 at alpha 100 is the edge (0).
    const unsigned char ok[2][4] = {{200, 200, 255, 128}, {155, 155, 155, 100}};
    const Image img = decode_image_memory(bytes(tiny_psd(ok, packbits)), "'ok.psd'");
    REQUIRE(img.width == 2);
    CHECK(int(img.pixels[0]) == 145);
    CHECK(int(img.pixels[2]) >= 254);  // 255 up to float rounding
    CHECK(int(img.pixels[3]) <= 1);
    const unsigned char dark[2][4] = {{200, 200, 255, 128}, {155, 154, 155, 100}};
    mt::check_throws_with(
        [&] { decode_image_memory(bytes(tiny_psd(dark, packbits)), "'dark.psd'"); },
        {"'dark.psd'", "PSD pixel 1,0 has alpha 100 and a colour value of 154",
         "at least about 155"});
  }
}

TEST_CASE("preprocessing modes") {
  CHECK(preprocess_value(0, Preprocess::Tf) == doctest::Approx(-1.0));
  CHECK(preprocess_value(255, Preprocess::Tf) == doctest::Approx(1.0));
  CHECK(preprocess_value(255, Preprocess::Unit) == doctest::Approx(1.0));
  CHECK(preprocess_value(0, Preprocess::Unit) == 0.0f);
}
