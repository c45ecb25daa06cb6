// The caps that keep a crafted file from making minicnn allocate more than the file's size
// justifies (docs/file-format.md "Limits", docs/fuzzing.md): .mcnn tensor count and metadata
// size, the parameter budget of a saved model's config and its input size, and images that
// claim more pixels than their bytes can hold. Each case is a small crafted input; several
// are the regression inputs of tests/fuzz/ in unit-test form, so they run in every ctest.
#include <minicnn/camera/yuyv.hpp>
#include <minicnn/minicnn.hpp>

#include "test_support.hpp"

using namespace minicnn;

namespace {

std::vector<char> tiny_model_file(nlohmann::json config, nlohmann::json input_shape,
                                  std::vector<McnnTensor> tensors = {}) {
  McnnFile f;
  f.metadata = {{"kind", "model"},
                {"model_config", std::move(config)},
                {"input_shape", std::move(input_shape)}};
  for (auto& t : tensors) f.add(std::move(t));
  return serialize_mcnn(f);
}

nlohmann::json dense_config(int64_t units) {
  return {
      {"class_name", "Sequential"},
      {"config",
       {{"name", "m"},
        {"layers",
         {{{"class_name", "Flatten"}, {"config", {{"name", "flat"}}}},
          {{"class_name", "Dense"},
           {"config",
            {{"name", "fc"}, {"units", units}, {"use_bias", true}, {"activation", "linear"}}}}}}}}};
}

std::vector<char> as_chars(const std::string& s) {
  return std::vector<char>(s.begin(), s.end());
}

}  // namespace

TEST_CASE("mcnn limits: a tensor count above the cap is refused before any allocation") {
  // Metadata "{}" and a table of zeros just large enough for kMcnnMaxTensors + 1 entries.
  const uint64_t count = kMcnnMaxTensors + 1, table = count * (kMcnnEntryFixedSize + 1);
  const uint64_t table_end = kMcnnHeaderSize + 2 + table;
  std::vector<char> b(detail::align_up(table_end, kMcnnAlignment), '\0');
  std::memcpy(b.data(), kMcnnMagic, 8);
  detail::store_le<uint32_t>(b.data() + detail::kOffMajor, kMcnnVersionMajor);
  detail::store_le<uint64_t>(b.data() + detail::kOffMetaLen, 2);
  detail::store_le<uint64_t>(b.data() + detail::kOffTableLen, table);
  detail::store_le<uint64_t>(b.data() + detail::kOffCount, count);
  detail::store_le<uint64_t>(b.data() + detail::kOffDataOff, b.size());
  b[kMcnnHeaderSize] = '{', b[kMcnnHeaderSize + 1] = '}';
  detail::mcnn_fix_checksums(b);
  mt::check_throws_with([&] { parse_mcnn(b, "many.mcnn"); },
                        {"many.mcnn", std::to_string(count) + " tensors", "limit"});
  // A count at the cap but larger than a small table can hold is refused by the table size.
  McnnFile f;
  std::vector<char> small = serialize_mcnn(f);
  detail::store_le<uint64_t>(small.data() + detail::kOffCount, kMcnnMaxTensors);
  detail::mcnn_fix_checksums(small);
  mt::check_throws_with([&] { parse_mcnn(small, "many.mcnn"); }, {"cannot fit in a table"});
}

TEST_CASE("mcnn limits: metadata above the cap is refused by the reader and never written") {
  McnnFile big;
  big.metadata = {{"blob", std::string(kMcnnMaxMetadataBytes, 'x')}};
  mt::check_throws_with([&] { serialize_mcnn(big); }, {"metadata", "limit"});
  // A file whose metadata length field says so (the bytes are there: the file is that large).
  McnnFile f;
  std::vector<char> b = serialize_mcnn(f);
  const uint64_t meta = kMcnnMaxMetadataBytes + 1;
  std::vector<char> crafted(kMcnnHeaderSize + meta, ' ');
  std::copy(b.begin(), b.begin() + kMcnnHeaderSize, crafted.begin());
  detail::store_le<uint64_t>(crafted.data() + detail::kOffMetaLen, meta);
  detail::store_le<uint64_t>(crafted.data() + detail::kOffTableLen, 0);
  detail::mcnn_fix_checksums(crafted);
  mt::check_throws_with([&] { parse_mcnn(crafted, "meta.mcnn"); },
                        {"metadata of " + std::to_string(meta) + " bytes", "limit"});
}

TEST_CASE("mcnn limits: JSON nesting deeper than the cap is refused before parsing") {
  McnnFile f;
  std::vector<char> b = serialize_mcnn(f);
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  std::vector<char> crafted(b.begin(), b.begin() + kMcnnHeaderSize);
  crafted.insert(crafted.end(), deep.begin(), deep.end());
  crafted.resize(detail::align_up(crafted.size(), kMcnnAlignment), '\0');
  detail::store_le<uint64_t>(crafted.data() + detail::kOffMetaLen, deep.size());
  detail::store_le<uint64_t>(crafted.data() + detail::kOffTableLen, 0);
  detail::store_le<uint64_t>(crafted.data() + detail::kOffCount, 0);
  detail::store_le<uint64_t>(crafted.data() + detail::kOffDataOff, crafted.size());
  detail::store_le<uint64_t>(crafted.data() + detail::kOffDataLen, 0);
  detail::mcnn_fix_checksums(crafted);
  mt::check_throws_with([&] { parse_mcnn(crafted, "deep.mcnn"); }, {"nests deeper than 64"});
}

TEST_CASE(
    "saved model limits: a config asking for more parameters than the file stores allocates "
    "nothing") {
  // Dense(2^24 units) over a 1024x1024x4 input: 2^46 weights (256 TB), from a file of 1 kB.
  const std::vector<char> b = tiny_model_file(dense_config(1 << 24), {1024, 1024, 4});
  mt::check_throws_with([&] { load_model_file(parse_mcnn(b, "huge.mcnn")); },
                        {"huge.mcnn", "fc/kernel", "more parameters than the file stores"});
  // The same config with its weights present loads: the budget is exactly the file's tensors.
  Tensor<float> k(Shape{12, 3}), bias(Shape{3});
  k.fill(0.5f);
  bias.fill(0);
  const std::vector<char> ok = tiny_model_file(
      dense_config(3), {2, 2, 3}, {McnnTensor("fc/kernel", k), McnnTensor("fc/bias", bias)});
  LoadedNet net = load_model_file(parse_mcnn(ok, "ok.mcnn"));
  CHECK(net.net->output_shape() == Shape{3});
  // One value short: the bias no longer fits.
  const std::vector<char> short_file =
      tiny_model_file(dense_config(3), {2, 2, 3},
                      {McnnTensor("fc/kernel", k), McnnTensor("fc/bias", Tensor<float>(Shape{2}))});
  mt::check_throws_with([&] { load_model_file(parse_mcnn(short_file, "short.mcnn")); },
                        {"fc/bias", "more parameters than the file stores"});
}

TEST_CASE("saved model limits: an input_shape above the cap is refused") {
  const std::vector<char> b = tiny_model_file(dense_config(1), {65536, 65536, 3});
  mt::check_throws_with([&] { load_model_file(parse_mcnn(b, "wide.mcnn")); },
                        {"wide.mcnn", "input_shape", "limit"});
}

TEST_CASE("image limits: uncompressed formats must hold every pixel, 16-bit PNM is refused") {
  // Header of a 10000 x 10000 PPM (300 MB of pixels) and 12 bytes of data.
  mt::check_throws_with(
      [&] {
        decode_image_memory(as_chars("P6 10000 10000 255\n" + std::string(12, 'x')), "big.ppm");
      },
      {"big.ppm", "PNM is truncated", "300000019"});
  // A 2 x 2 PPM with one byte missing, and the complete one.
  const std::string ppm = "P6\n# comment\n2 2\n255\n" + std::string(12, '\x40');
  mt::check_throws_with(
      [&] { decode_image_memory(as_chars(ppm.substr(0, ppm.size() - 1)), "cut.ppm"); },
      {"PNM is truncated"});
  CHECK(decode_image_memory(as_chars(ppm), "ok.ppm").width == 2);
  // 16-bit PNM: stb_image 2.27 overflows its buffer on these (tests/fuzz/regressions/fuzz_image).
  mt::check_throws_with(
      [&] { decode_image_memory(as_chars("P5 3 1 65535\n" + std::string(6, '\1')), "w.pgm"); },
      {"16-bit PNM"});
  // Uncompressed TGA (type 2) of 4000 x 3000 with a few bytes of pixels.
  std::string tga(18, '\0');
  tga[2] = 2;
  tga[12] = char(4000 & 0xff), tga[13] = char(4000 >> 8), tga[14] = char(3000 & 0xff),
  tga[15] = char(3000 >> 8), tga[16] = 24;
  mt::check_throws_with([&] { decode_image_memory(as_chars(tga + std::string(30, 'x')), "t.tga"); },
                        {"TGA is truncated"});
}

TEST_CASE("image limits: PNM header numbers above the caps are refused before stb_image") {
  // stb_image 2.27 reads them into an int without an overflow check (signed overflow, UBSan in
  // stbi__pnm_getinteger; tests/fuzz/regressions/fuzz_image/pnm_width_int_overflow.pgm).
  const std::string pixels(16, '\x40');
  mt::check_throws_with(
      [&] {
        decode_image_memory(as_chars("P5 " + std::string(40, '3') + " 1 255\n" + pixels), "w.pgm");
      },
      {"w.pgm", "PNM header has a width of 333333333333333333333333... (40 digits) at byte 3",
       "expected at most 16777216"});
  mt::check_throws_with(
      [&] { decode_image_memory(as_chars("P6\n# c\n1 16777217 255\n" + pixels), "h.ppm"); },
      {"h.ppm", "height of 16777217 at byte 9", "at most 16777216"});
  mt::check_throws_with(
      [&] { decode_image_memory(as_chars("P5 1 1 4294967296\n" + pixels), "m.pgm"); },
      {"m.pgm", "maxval of 4294967296 at byte 7", "at most 65535"});
  // At the caps the header is sound: refused by the size check, as before.
  mt::check_throws_with(
      [&] { decode_image_memory(as_chars("P5 16777216 1 255\n" + pixels), "cap.pgm"); },
      {"cap.pgm", "PNM is truncated"});
  // Leading zeros are not large numbers.
  const Image ok = decode_image_memory(
      as_chars("P5 0000000000000000000004 0002 255\n" + pixels.substr(0, 8)), "ok.pgm");
  CHECK(ok.width == 4);
  CHECK(ok.height == 2);
  CHECK(ok.pixels[0] == 0x40);
}

TEST_CASE("image limits: a JPEG claiming far more pixels than its bytes can code is refused") {
  // A real JPEG with its frame size patched to 9000 x 9000 (81 megapixels, under the
  // 100-megapixel cap) in under a kilobyte: no JPEG codes 8x8 blocks in under a bit.
  std::vector<char> jpg = read_file_bytes(mt::fixtures_dir() + "/images/gradient.jpg");
  bool patched = false;
  for (size_t i = 2; i + 9 < jpg.size(); ++i)
    if (uint8_t(jpg[i]) == 0xFF && (uint8_t(jpg[i + 1]) == 0xC0 || uint8_t(jpg[i + 1]) == 0xC2)) {
      jpg[i + 5] = char(9000 >> 8), jpg[i + 6] = char(9000 & 0xff);
      jpg[i + 7] = char(9000 >> 8), jpg[i + 8] = char(9000 & 0xff);
      patched = true;
      break;
    }
  REQUIRE(patched);
  mt::check_throws_with([&] { decode_image_memory(jpg, "bomb.jpg"); },
                        {"bomb.jpg", "9000x9000", "more than the format can compress"});
  // The unpatched file decodes.
  CHECK(decode_image(mt::fixtures_dir() + "/images/gradient.jpg").width > 0);
}

TEST_CASE("image limits: FF fill bytes before a JPEG's SOI do not get it past the JPEG checks") {
  // stb_image skips any number of FF bytes before the SOI; the checks took such a file for
  // another format (tests/fuzz/regressions/fuzz_mjpeg/jpeg_fill_bytes_bypass_pixel_cap: a 2.9 kB
  // frame decoding 50240x255 pixels under the general cap of 16384 pixels per byte).
  const std::vector<char> jpg = read_file_bytes(mt::fixtures_dir() + "/images/gradient.jpg");
  std::vector<char> filled = jpg;
  filled.insert(filled.begin(), 3, '\xff');
  CHECK(decode_image_memory(filled, "filled.jpg").width == 40);
  // 4000 x 1000 pixels in under 900 bytes: above 1024 pixels per byte, under 16384.
  std::vector<char> big = filled;
  bool patched = false;
  for (size_t i = 4; i + 9 < big.size() && !patched; ++i)
    if (uint8_t(big[i]) == 0xFF && (uint8_t(big[i + 1]) == 0xC0 || uint8_t(big[i + 1]) == 0xC2)) {
      big[i + 5] = char(1000 >> 8), big[i + 6] = char(1000 & 0xff);
      big[i + 7] = char(4000 >> 8), big[i + 8] = char(4000 & 0xff);
      patched = true;
    }
  REQUIRE(patched);
  mt::check_throws_with([&] { decode_image_memory(big, "big.jpg"); },
                        {"big.jpg", "4000x1000", "more than the format can compress"});
  // Cut off: the end-of-image marker is missing.
  std::vector<char> cut(filled.begin(), filled.end() - 40);
  mt::check_throws_with([&] { decode_image_memory(cut, "cut.jpg"); }, {"cut.jpg", "truncated"});
}

TEST_CASE("image limits: every fuzz_image regression input is a FormatError, never a crash") {
  namespace fs = std::filesystem;
  const std::string dir = mt::source_dir() + "/tests/fuzz/regressions/fuzz_image";
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::vector<char> bytes = read_file_bytes(e.path().string());
    CAPTURE(e.path().filename().string());
    CHECK_THROWS_AS(decode_image_memory(bytes, e.path().filename().string()), FormatError);
    ++n;
  }
  CHECK(n >= 6);
}

TEST_CASE("image limits: a PNG chunk longer than the file and a 257-code Huffman table") {
  // 2x2 PNG header, then an IDAT chunk declaring 1.9 GB.
  std::string png("\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\0\0\0\2\0\0\0\2\x08\x02\0\0\0\0\0\0\0", 33);
  png += std::string("\x73\0\0\x0bIDAT", 8) + std::string(20, 'x');
  mt::check_throws_with([&] { decode_image_memory(as_chars(png), "big.png"); },
                        {"big.png", "chunk at byte 33", "1929379851"});
  // An empty IDAT first: stb_image 2.27 would memcpy 0 bytes to a null pointer
  // (tests/fuzz/regressions/fuzz_mjpeg/png_empty_first_idat).
  const std::string empty_idat = png.substr(0, 33) + std::string("\0\0\0\0IDAT\0\0\0\0", 12) +
                                 std::string("\0\0\0\0IEND\xae\x42\x60\x82", 12);
  mt::check_throws_with([&] { decode_image_memory(as_chars(empty_idat), "e.png"); },
                        {"e.png", "empty IDAT chunk at byte 33 before any image data"});
  // A JPEG whose DHT counts add up to 16 * 20 = 320 codes.
  std::string jpg("\xff\xd8\xff\xc4\x00\x13\x00", 7);
  jpg += std::string(16, '\x14') + std::string("\xff\xd9", 2);
  mt::check_throws_with([&] { decode_image_memory(as_chars(jpg), "dht.jpg"); },
                        {"Huffman table of 320 codes"});
}

TEST_CASE("yuyv: a stride so large that the needed size wraps around is refused") {
  std::vector<uint8_t> frame(64, 128);
  Image out;
  mt::check_throws_with(
      [&] { camera::yuyv_to_rgb(frame.data(), frame.size(), 4, 3, SIZE_MAX / 2 + 8, out); },
      {"YUYV frame", "more than memory can hold"});
  camera::yuyv_to_rgb(frame.data(), frame.size(), 4, 3, 20, out);  // 2 * 20 + 8 = 48 bytes: fits
  CHECK(out.width == 4);
}
