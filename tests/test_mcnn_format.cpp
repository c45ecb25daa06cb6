// The .mcnn container (io/format.hpp) and weight loading (io/weights.hpp): bit-exact round
// trips, byte-identity with the Python writer (tests/fixtures/mcnn_v1_small.mcnn, made by
// tests/py_converter.py --write-fixture), atomic writes, a FormatError for every kind of
// corruption (run under MINICNN_SANITIZE to show it is never UB), and strict / non-strict
// loading. Models here are tiny test-local layers, independent of the real ones.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <minicnn/io/format.hpp>
#include <minicnn/io/weights.hpp>
#include <random>

#include "test_support.hpp"

using namespace minicnn;
namespace fs = std::filesystem;

namespace {

// A layer that is only a bag of named parameters (identity forward).
template <typename T>
class Bag : public LayerT<T> {
 public:
  Bag(std::string name, std::vector<std::pair<std::string, Shape>> weights,
      std::vector<std::pair<std::string, Shape>> state = {})
      : LayerT<T>(std::move(name)) {
    for (auto& [w, s] : weights) this->add_parameter(w, s);
    for (auto& [w, s] : state) this->add_parameter(w, s, true);
  }
  std::string type() const override { return "Bag"; }

 protected:
  Shape build_impl(const Shape& s) override { return s; }
  const Tensor<T>& forward_impl(ConstView<T> x, bool) override {
    this->output_.copy_from(x);
    return this->output_;
  }
  const Tensor<T>& backward_impl(ConstView<T> dy, bool) override {
    this->dinput_.copy_from(dy);
    return this->dinput_;
  }
};

// A container: parameters of its children in order.
template <typename T>
class Stack : public Bag<T> {
 public:
  explicit Stack(std::string name) : Bag<T>(std::move(name), {}) {}
  std::string type() const override { return "Stack"; }
  Bag<T>& add(std::unique_ptr<Bag<T>> l) {
    kids_.push_back(std::move(l));
    return *kids_.back();
  }
  std::vector<ParameterT<T>*> parameters() override {
    std::vector<ParameterT<T>*> out;
    for (auto& k : kids_)
      for (auto* p : k->parameters()) out.push_back(p);
    return out;
  }
  std::vector<LayerT<T>*> children() override {
    std::vector<LayerT<T>*> out;
    for (auto& k : kids_) out.push_back(k.get());
    return out;
  }

 private:
  std::vector<std::unique_ptr<Bag<T>>> kids_;
};

// Conv1 (3,3,3,4) + bn_Conv1 (4 x 4 incl. moving stats) + Logits (4,3)+(3,): a miniature
// MobileNetV2.
template <typename T = float>
std::unique_ptr<Stack<T>> tiny_model(int classes = 3) {
  auto m = std::make_unique<Stack<T>>("tiny");
  m->add(std::make_unique<Bag<T>>(
      "Conv1", std::vector<std::pair<std::string, Shape>>{{"kernel", Shape{3, 3, 3, 4}}}));
  m->add(std::make_unique<Bag<T>>(
      "bn_Conv1",
      std::vector<std::pair<std::string, Shape>>{{"gamma", Shape{4}}, {"beta", Shape{4}}},
      std::vector<std::pair<std::string, Shape>>{{"moving_mean", Shape{4}},
                                                 {"moving_variance", Shape{4}}}));
  m->add(std::make_unique<Bag<T>>(
      "Logits", std::vector<std::pair<std::string, Shape>>{{"kernel", Shape{4, classes}},
                                                           {"bias", Shape{classes}}}));
  return m;
}

template <typename T>
void fill_params(LayerT<T>& m, uint64_t seed) {
  Rng rng(seed);
  for (auto* p : m.parameters())
    for (int64_t i = 0; i < p->value.size(); ++i) p->value[i] = static_cast<T>(rng.uniform(-1, 1));
}

using mt::temp_dir;

std::vector<std::string> dir_entries(const std::string& d) {
  std::vector<std::string> out;
  for (auto& e : fs::directory_iterator(d)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<char> file_bytes(const std::string& p) {
  return read_file_bytes(p);
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// A file with every dtype, ranks 0..4, an empty tensor, odd float bit patterns and UTF-8 names.
McnnFile sample_file() {
  McnnFile f;
  f.metadata = {{"kind", "weights"},
                {"architecture",
                 {{"name", "mobilenet_v2"},
                  {"alpha", 0.35},
                  {"input_size", 96},
                  {"include_top", false},
                  {"pooling", nullptr},
                  {"classes", 0}}},
                {"class_names", {"bär", "ring"}},
                {"preprocessing", "tf"},
                {"extra", {{"note", "x"}}}};
  Tensor<float> k(Shape{3, 3, 3, 5});
  for (int64_t i = 0; i < k.size(); ++i) k[i] = 0.01f * float(i) - 0.3f;
  f.add({"Conv1/kernel", k});
  Tensor<float> specials(Shape{6});
  const uint32_t pats[6] = {0x80000000u, 0x7fc00001u, 0x7f800000u,
                            0x00000001u, 0xff800000u, 0x3f800000u};
  for (int i = 0; i < 6; ++i) specials[i] = from_bits(pats[i]);
  f.add({"bn_Conv1/moving_mean", specials});
  Tensor<float> scalar{Shape{}};
  scalar[0] = 2.5f;
  f.add({"scalar", scalar});
  f.add({"empty", Tensor<float>(Shape{0, 7})});
  Tensor<float> r3(Shape{2, 1, 3}, 1.25f);
  f.add({"Ünïcode/名前", r3});
  Tensor<int64_t> step(Shape{2});
  step[0] = -7;
  step[1] = int64_t(1) << 40;
  f.add({"Conv1/kernel/m_step", step, TensorKind::training});
  Tensor<uint8_t> rng(Shape{5});
  for (int i = 0; i < 5; ++i) rng[i] = uint8_t(250 + i);
  f.add({"rng/state", rng, TensorKind::training});
  return f;
}

bool same_tensor(const McnnTensor& a, const McnnTensor& b) {
  if (a.name != b.name || a.dtype != b.dtype || a.kind != b.kind || a.shape() != b.shape())
    return false;
  return a.byte_size() == 0 || std::memcmp(a.raw(), b.raw(), a.byte_size()) == 0;
}

// Byte position of table entry `i` in a serialized file.
std::size_t entry_pos(const std::vector<char>& b, int i) {
  std::size_t p = 64 + detail::load_le<uint64_t>(b.data() + 16);
  for (int k = 0; k < i; ++k) {
    uint16_t name_len = detail::load_le<uint16_t>(b.data() + p);
    uint8_t rank = static_cast<uint8_t>(b[p + 3]);
    p += 24 + 8 * rank + name_len;
  }
  return p;
}

// parse_mcnn must throw FormatError mentioning the file and every fragment.
void expect_format_error(const std::vector<char>& b, std::initializer_list<std::string> fragments) {
  try {
    parse_mcnn(b, "'damaged.mcnn'");
    FAIL("expected a FormatError");
  } catch (const FormatError& e) {
    std::string msg = e.what();
    CHECK_MESSAGE(msg.find("damaged.mcnn") != std::string::npos, msg);
    for (const auto& f : fragments)
      CHECK_MESSAGE(msg.find(f) != std::string::npos, "'" << msg << "' lacks '" << f << "'");
  }
}

}  // namespace

TEST_CASE("crc32 (slicing by 8) equals zlib's and a byte-at-a-time CRC at any length") {
  // zlib.crc32 values, computed in Python.
  CHECK(detail::crc32(0, "123456789", 9) == 0xCBF43926u);
  CHECK(detail::crc32(0, "The quick brown fox jumps over the lazy dog", 43) == 0x414FA339u);
  std::vector<unsigned char> ramp(256 * 40);
  for (size_t i = 0; i < ramp.size(); ++i) ramp[i] = static_cast<unsigned char>(i);
  CHECK(detail::crc32(0, ramp.data(), ramp.size()) == 0xBBCE3B9Du);
  // Against the textbook bit-by-bit definition, every length 0..80 at every alignment.
  auto bitwise = [](const unsigned char* p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; ++i) {
      c ^= p[i];
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return ~c;
  };
  std::mt19937 gen(5);
  std::vector<unsigned char> buf(100);
  for (auto& b : buf) b = static_cast<unsigned char>(gen());
  for (size_t off = 0; off < 8; ++off)
    for (size_t n = 0; n <= 80; ++n) {
      CAPTURE(off);
      CAPTURE(n);
      REQUIRE(detail::crc32(0, buf.data() + off, n) == bitwise(buf.data() + off, n));
    }
  // Chaining, as zlib: crc(crc(a), b) == crc(a ++ b), split anywhere.
  for (size_t cut = 0; cut <= 37; cut += 5)
    CHECK(detail::crc32(detail::crc32(0, buf.data(), cut), buf.data() + cut, 37 - cut) ==
          bitwise(buf.data(), 37));
}

TEST_CASE("mcnn: write/read round trip is bit-identical for every dtype and rank") {
  std::string d = temp_dir("mcnn_rt");
  std::string path = d + "/w.mcnn";
  McnnFile f = sample_file();
  write_mcnn(path, f);
  McnnFile g = read_mcnn(path);
  REQUIRE(g.tensors.size() == f.tensors.size());
  for (std::size_t i = 0; i < f.tensors.size(); ++i)
    CHECK_MESSAGE(same_tensor(f.tensors[i], g.tensors[i]), f.tensors[i].name);
  CHECK(bits(g.find("bn_Conv1/moving_mean")->value[1]) == 0x7fc00001u);  // NaN payload kept
  CHECK(g.find("scalar")->value[0] == 2.5f);
  CHECK(g.find("Conv1/kernel/m_step")->ivalue[1] == int64_t(1) << 40);
  CHECK(g.find("rng/state")->bvalue[4] == 254);
  CHECK(g.find("nope") == nullptr);
  CHECK(g.metadata["class_names"][0] == "bär");
  CHECK(g.metadata["format"] == "mcnn 1.0");
  CHECK(g.metadata["library_version"] == kMcnnLibraryVersion);
  CHECK(g.source == "'" + path + "'");
  CHECK(g.count_values(TensorKind::model) == 135 + 6 + 1 + 0 + 6);
  CHECK(g.count_values(TensorKind::training) == 7);
  // Every tensor starts on a 64-byte boundary of the file.
  auto bytes = file_bytes(path);
  uint64_t data_off = detail::load_le<uint64_t>(bytes.data() + 40);
  CHECK(data_off % 64 == 0);
  for (std::size_t i = 0; i < f.tensors.size(); ++i)
    CHECK(detail::load_le<uint64_t>(bytes.data() + entry_pos(bytes, int(i)) + 8) % 64 == 0);
  // Serializing what was read gives the same bytes again.
  CHECK(serialize_mcnn(g) == bytes);
  fs::remove_all(d);
}

TEST_CASE("mcnn: the Python writer's fixture reads back and re-serializes byte for byte") {
  std::string path = mt::fixtures_dir() + "/mcnn_v1_small.mcnn";
  REQUIRE_MESSAGE(fs::exists(path),
                  path << " missing (regenerate: python3 tests/py_converter.py --write-fixture)");
  McnnFile f = read_mcnn(path);
  REQUIRE(f.tensors.size() == 8);
  const char* order[] = {"Conv1/kernel", "specials",     "scalar",   "empty",
                         "rank1",        "Ünïcode/名前", "opt/step", "rng/state"};
  for (int i = 0; i < 8; ++i) CHECK(f.tensors[i].name == order[i]);
  CHECK(f.find("Conv1/kernel")->shape() == Shape{3, 3, 3, 2});
  CHECK(f.find("Conv1/kernel")->value[53] == 53 * 0.1f);
  const uint32_t pats[8] = {0x00000000u, 0x80000000u, 0x7F800000u, 0xFF800000u,
                            0x7FC00001u, 0x00000001u, 0x3F800000u, 0xC0490FDBu};
  for (int i = 0; i < 8; ++i) CHECK(bits(f.find("specials")->value[i]) == pats[i]);
  CHECK(f.find("scalar")->shape().rank() == 0);
  CHECK(f.find("empty")->shape() == Shape{0, 5});
  CHECK(f.find("rank1")->value[1] == -2.f / 3.f);
  CHECK(f.find("opt/step")->dtype == DType::int64);
  CHECK(f.find("opt/step")->kind == TensorKind::training);
  CHECK(f.find("opt/step")->ivalue[1] == int64_t(1) << 40);
  CHECK(f.find("rng/state")->bvalue[12] == uint8_t(12 * 19));
  CHECK(f.metadata["architecture"]["input_size"] == nlohmann::json({96, 128}));
  CHECK(f.metadata["class_names"][1] == "ring \xF0\x9F\x90\xBB");
  CHECK(f.metadata["extra"]["big"] == 123456789012345678LL);
  // The C++ writer produces exactly the bytes the Python writer produced.
  CHECK(serialize_mcnn(f, f.metadata["library_version"].get<std::string>()) == file_bytes(path));
}

TEST_CASE("mcnn: kMcnnLibraryVersion matches project(VERSION) in CMakeLists.txt") {
  std::ifstream in(mt::source_dir() + "/CMakeLists.txt");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Plain string search: <regex> draws GCC 12 -Wmaybe-uninitialized false positives from
  // libstdc++ in the sanitizer build.
  const std::string key = "project(minicnn VERSION ";
  const std::size_t at = text.find(key);
  REQUIRE(at != std::string::npos);
  std::size_t end = at + key.size();
  while (end < text.size() &&
         (std::isdigit(static_cast<unsigned char>(text[end])) || text[end] == '.'))
    ++end;
  CHECK(text.substr(at + key.size(), end - at - key.size()) == kMcnnLibraryVersion);
}

TEST_CASE("mcnn: a write that fails midway keeps the previous file and leaves no temporary file") {
  std::string d = temp_dir("mcnn_atomic");
  std::string path = d + "/model.mcnn";
  McnnFile small;
  small.add({"a", Tensor<float>(Shape{4}, 1.f)});
  write_mcnn(path, small);
  auto before = file_bytes(path);

  // The kernel refuses writes past RLIMIT_FSIZE (EFBIG): a real disk-full-like failure.
  McnnFile big;
  big.add({"a", Tensor<float>(Shape{64, 1024}, 2.f)});
  struct rlimit old;
  REQUIRE(getrlimit(RLIMIT_FSIZE, &old) == 0);
  auto old_handler = signal(SIGXFSZ, SIG_IGN);
  struct rlimit lim = old;
  lim.rlim_cur = 64 * 1024;
  REQUIRE(setrlimit(RLIMIT_FSIZE, &lim) == 0);
  bool threw = false;
  std::string msg;
  try {
    write_mcnn(path, big);
  } catch (const IoError& e) {
    threw = true;
    msg = e.what();
  }
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, old_handler);
  CHECK(threw);
  CHECK_MESSAGE(msg.find("model.mcnn") != std::string::npos, msg);
  CHECK_MESSAGE(msg.find("unchanged") != std::string::npos, msg);
  CHECK(file_bytes(path) == before);
  CHECK(dir_entries(d) == std::vector<std::string>{"model.mcnn"});

  // The rename fails when the target is a directory: temp file removed, directory untouched.
  fs::create_directories(d + "/sub.mcnn/keep");
  mt::check_throws_with([&] { write_mcnn(d + "/sub.mcnn", small); }, {"sub.mcnn", "rename"});
  CHECK(fs::is_directory(d + "/sub.mcnn/keep"));
  CHECK(dir_entries(d) == (std::vector<std::string>{"model.mcnn", "sub.mcnn"}));

  // A directory that does not exist.
  mt::check_throws_with([&] { write_mcnn(d + "/no/such/dir/x.mcnn", small); },
                        {"x.mcnn", "temporary file"});

  // A read-only directory (root ignores permissions, so only checked for other users).
  if (::geteuid() != 0) {
    fs::permissions(d, fs::perms::owner_read | fs::perms::owner_exec);
    mt::check_throws_with([&] { write_mcnn(path, big); }, {"model.mcnn"});
    fs::permissions(d, fs::perms::owner_all);
    CHECK(file_bytes(path) == before);
  }

  // And a successful overwrite replaces the content completely.
  write_mcnn(path, big);
  CHECK(read_mcnn(path).find("a")->value[65535] == 2.f);
  CHECK(dir_entries(d) == (std::vector<std::string>{"model.mcnn", "sub.mcnn"}));
  fs::remove_all(d);
}

TEST_CASE("mcnn: truncation anywhere is a FormatError that says so") {
  auto good = serialize_mcnn(sample_file());
  uint64_t meta_len = detail::load_le<uint64_t>(good.data() + 16);
  uint64_t data_off = detail::load_le<uint64_t>(good.data() + 40);
  std::vector<std::size_t> cuts = {0,
                                   1,
                                   7,
                                   8,
                                   40,
                                   63,
                                   64,
                                   64 + meta_len / 2,
                                   64 + meta_len + 10,
                                   data_off - 1,
                                   data_off,
                                   data_off + 100,
                                   good.size() - 1};
  for (std::size_t cut : cuts) {
    CAPTURE(cut);
    std::vector<char> b(good.begin(), good.begin() + cut);
    expect_format_error(b, {"truncated"});
  }
  mt::check_throws_with([&] { read_mcnn("/nonexistent/dir/w.mcnn"); },
                        {"/nonexistent/dir/w.mcnn", "cannot open"});
  mt::check_throws_with([&] { read_mcnn(fs::temp_directory_path().string()); }, {"is a directory"});
}

TEST_CASE("mcnn: wrong magic, HDF5 input, text-mode damage and a future version") {
  auto good = serialize_mcnn(sample_file());
  auto b = good;
  b[0] = 'X';
  expect_format_error(b, {"not a .mcnn file", "magic"});
  std::vector<char> h5 = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n', 0, 0, 0, 0};
  expect_format_error(h5, {"HDF5", "keras_h5_to_mcnn.py"});
  // CRLF -> LF conversion, as a text-mode copy would do.
  std::vector<char> text;
  for (std::size_t i = 0; i < good.size(); ++i)
    if (!(good[i] == '\r' && i + 1 < good.size() && good[i + 1] == '\n')) text.push_back(good[i]);
  expect_format_error(text, {"text mode"});
  b = good;
  detail::store_le<uint32_t>(b.data() + 8, 2);
  expect_format_error(b, {"format version 2.0", "newer", "1.x"});
  b = good;
  detail::store_le<uint32_t>(b.data() + 8, 0);
  expect_format_error(b, {"version 0"});
  // A newer minor version of the same major is readable.
  b = good;
  detail::store_le<uint32_t>(b.data() + 12, 7);
  detail::mcnn_fix_checksums(b);
  CHECK_NOTHROW(parse_mcnn(b, "minor.mcnn"));
}

TEST_CASE("mcnn: every flipped bit in header, metadata and table, and in the data, is detected") {
  auto good = serialize_mcnn(sample_file());
  uint64_t data_off = detail::load_le<uint64_t>(good.data() + 40);
  int checked = 0;
  for (std::size_t i = 0; i < good.size(); i += (i < data_off ? 1 : 5)) {
    for (unsigned char mask : {0x01, 0x10, 0x80}) {
      auto b = good;
      b[i] = static_cast<char>(b[i] ^ mask);
      CAPTURE(i);
      CHECK_THROWS_AS(parse_mcnn(b, "flip.mcnn"), FormatError);
      ++checked;
    }
  }
  CHECK(checked > 1000);
  auto b = good;
  b[data_off + 70] ^= 0x04;
  expect_format_error(b, {"data checksum mismatch"});
  b = good;
  b[100] ^= 0x04;
  expect_format_error(b, {"header checksum mismatch"});
}

TEST_CASE("mcnn: well-checksummed but inconsistent tables are rejected with a precise message") {
  const auto good = serialize_mcnn(sample_file());
  const std::size_t e0 = entry_pos(good, 0);  // Conv1/kernel, rank 4
  const uint64_t data_len = detail::load_le<uint64_t>(good.data() + 48);
  auto forged = [&](auto&& edit) {
    auto b = good;
    edit(b);
    detail::mcnn_fix_checksums(b);
    return b;
  };
  expect_format_error(forged([&](auto& b) {
                        detail::store_le<uint64_t>(b.data() + e0 + 8,
                                                   detail::align_up(data_len, 64) + 64);
                      }),
                      {"'Conv1/kernel'", "past the end of the data section"});
  expect_format_error(
      forged([&](auto& b) { detail::store_le<uint64_t>(b.data() + e0 + 8, ~uint64_t(63)); }),
      {"'Conv1/kernel'", "past the end"});
  expect_format_error(forged([&](auto& b) { detail::store_le<uint64_t>(b.data() + e0 + 8, 4); }),
                      {"not a multiple of 64"});
  expect_format_error(forged([&](auto& b) { detail::store_le<uint64_t>(b.data() + e0 + 16, 4); }),
                      {"declares 4 bytes", "(3, 3, 3, 5)", "needs 540"});
  // "Negative" sizes are huge unsigned values.
  expect_format_error(
      forged([&](auto& b) { detail::store_le<uint64_t>(b.data() + e0 + 16, ~uint64_t(0)); }),
      {"declares"});
  expect_format_error(forged([&](auto& b) {
                        detail::store_le<uint64_t>(b.data() + e0 + 24, uint64_t(1) << 40);
                        detail::store_le<uint64_t>(b.data() + e0 + 32, uint64_t(1) << 40);
                      }),
                      {"absurd shape"});
  expect_format_error(
      forged([&](auto& b) { detail::store_le<uint64_t>(b.data() + e0 + 24, ~uint64_t(0)); }),
      {"absurd shape"});
  expect_format_error(forged([&](auto& b) { b[e0 + 3] = 5; }), {"rank 5", "at most 4"});
  expect_format_error(forged([&](auto& b) { b[e0 + 3] = static_cast<char>(200); }), {"rank 200"});
  expect_format_error(forged([&](auto& b) { b[e0 + 2] = 9; }), {"unknown dtype code 9"});
  expect_format_error(forged([&](auto& b) { b[e0 + 4] = 2; }), {"unknown kind code 2"});
  expect_format_error(forged([&](auto& b) { detail::store_le<uint16_t>(b.data() + e0, 0); }),
                      {"name of 0 bytes"});
  expect_format_error(forged([&](auto& b) { detail::store_le<uint16_t>(b.data() + e0, 60000); }),
                      {"name of 60000 bytes"});
  // The second tensor moved onto the first: overlap.
  const std::size_t e1 = entry_pos(good, 1);
  expect_format_error(forged([&](auto& b) { detail::store_le<uint64_t>(b.data() + e1 + 8, 0); }),
                      {"overlap"});
  // Two tensors with one name.
  {
    McnnFile two;
    two.add({"aa", Tensor<float>(Shape{1}, 1.f)});
    two.add({"bb", Tensor<float>(Shape{1}, 2.f)});
    auto b = serialize_mcnn(two);
    std::memcpy(b.data() + entry_pos(b, 1) + 24 + 8, "aa", 2);
    detail::mcnn_fix_checksums(b);
    expect_format_error(b, {"tensor name 'aa' appears twice"});
  }
  expect_format_error(forged([&](auto& b) { b[entry_pos(b, 0) + 24 + 32] = '\xff'; }),
                      {"not valid UTF-8"});
  expect_format_error(forged([&](auto& b) { detail::store_le<uint64_t>(b.data() + 32, 1000000); }),
                      {"tensor count 1000000 cannot fit"});
  expect_format_error(forged([&](auto& b) { detail::store_le<uint64_t>(b.data() + 32, 6); }),
                      {"bytes left after 6 entries"});
  expect_format_error(forged([&](auto& b) { detail::store_le<uint64_t>(b.data() + 40, 64); }),
                      {"data section offset 64"});
  expect_format_error(forged([&](auto& b) { b.push_back(0); }),
                      {"1 unexpected bytes after the data section"});
  expect_format_error(
      forged([&](auto& b) { detail::store_le<uint64_t>(b.data() + 48, data_len + 1000); }),
      {"truncated", "data section should end"});
  expect_format_error(
      forged([&](auto& b) { detail::store_le<uint64_t>(b.data() + 16, ~uint64_t(0) - 10); }),
      {"truncated or corrupted"});
}

TEST_CASE("mcnn: bad metadata JSON is a FormatError, not a crash") {
  auto with_meta = [](const std::string& text) {
    McnnFile f;
    f.add({"x", Tensor<float>(Shape{2}, 1.f)});
    auto b = serialize_mcnn(f);
    uint64_t old_len = detail::load_le<uint64_t>(b.data() + 16);
    std::vector<char> out(b.begin(), b.begin() + 64);
    out.insert(out.end(), text.begin(), text.end());
    out.insert(out.end(), b.begin() + 64 + old_len, b.end());
    // Re-align the data section for the new metadata length.
    uint64_t table_len = detail::load_le<uint64_t>(b.data() + 24);
    uint64_t old_doff = detail::load_le<uint64_t>(b.data() + 40);
    uint64_t table_end = 64 + text.size() + table_len;
    uint64_t new_doff = detail::align_up(table_end, 64);
    std::vector<char> fixed(out.begin(), out.begin() + table_end);
    fixed.resize(new_doff, 0);
    fixed.insert(fixed.end(), b.begin() + old_doff, b.end());
    detail::store_le<uint64_t>(fixed.data() + 16, text.size());
    detail::store_le<uint64_t>(fixed.data() + 40, new_doff);
    detail::mcnn_fix_checksums(fixed);
    return fixed;
  };
  CHECK_NOTHROW(parse_mcnn(with_meta(R"({"a":1})"), "ok.mcnn"));
  expect_format_error(with_meta("{\"a\":"), {"not valid UTF-8 JSON"});
  expect_format_error(with_meta("[1,2]"), {"must be a JSON object", "array"});
  expect_format_error(with_meta("{\"a\":\"\xff\"}"), {"not valid UTF-8 JSON"});
  expect_format_error(with_meta(std::string(100000, '[') + std::string(100000, ']')),
                      {"nests deeper"});
}

TEST_CASE("mcnn: random damage never crashes the reader (run under the sanitizer build)") {
  const auto good = serialize_mcnn(sample_file());
  std::mt19937_64 gen(1234);
  int rejected = 0, accepted = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    auto b = good;
    int edits = 1 + int(gen() % 4);
    for (int k = 0; k < edits; ++k) {
      // Bias towards the header and table, where the structure lives.
      std::size_t limit = (gen() % 4) ? std::min<std::size_t>(b.size(), 600) : b.size();
      std::size_t pos = gen() % limit;
      switch (gen() % 3) {
        case 0: b[pos] = static_cast<char>(gen()); break;
        case 1: b[pos] = static_cast<char>(b[pos] ^ (1 << (gen() % 8))); break;
        default: b.resize(pos); break;
      }
      if (b.empty()) break;
    }
    // Half the time re-seal the checksums so the structural checks behind them are exercised.
    if (gen() % 2) detail::mcnn_fix_checksums(b);
    try {
      McnnFile f = parse_mcnn(b, "fuzz.mcnn");
      ++accepted;  // a consistent file (e.g. a flipped data byte with re-sealed checksum)
    } catch (const FormatError&) {
      ++rejected;
    }
  }
  MESSAGE("random damage: " << rejected << " rejected, " << accepted << " still consistent");
  CHECK(rejected > 2000);
}

TEST_CASE("mcnn: the writer refuses what it could not read back") {
  McnnFile f;
  f.add({"a", Tensor<float>(Shape{2}, 1.f)});
  mt::check_throws_with([&] { f.add({"a", Tensor<float>(Shape{1}, 1.f)}); }, {"duplicate", "'a'"});
  McnnFile g;
  g.tensors.push_back({"x", Tensor<float>(Shape{1})});
  g.tensors.push_back({"x", Tensor<float>(Shape{1})});
  mt::check_throws_with([&] { serialize_mcnn(g); }, {"duplicate tensor name 'x'"});
  McnnFile h;
  h.tensors.push_back({"", Tensor<float>(Shape{1})});
  mt::check_throws_with([&] { serialize_mcnn(h); }, {"tensor name"});
  McnnFile n;
  n.tensors.push_back({"nodata", Tensor<float>()});  // default tensor: rank 0, no storage
  mt::check_throws_with([&] { serialize_mcnn(n); }, {"nodata", "no data"});
  McnnFile m;
  m.metadata = nlohmann::json::array();
  mt::check_throws_with([&] { serialize_mcnn(m); }, {"JSON object"});
  m.metadata = {{"bad", std::string("\xff\xfe")}};
  mt::check_throws_with([&] { serialize_mcnn(m); }, {"metadata"});
  nlohmann::json deep = 1;
  for (int i = 0; i < 70; ++i) deep = nlohmann::json::array({deep});
  m.metadata = {{"deep", deep}};
  mt::check_throws_with([&] { serialize_mcnn(m); }, {"nests deeper than 64"});
}

TEST_CASE(
    "weights: save then load restores every parameter, BN statistics included, in model order") {
  std::string d = temp_dir("mcnn_weights");
  auto a = tiny_model();
  fill_params(*a, 7);
  save_weights(*a, d + "/tiny.mcnn", {{"architecture", {{"name", "tiny"}}}});
  McnnFile f = read_mcnn(d + "/tiny.mcnn");
  std::vector<std::string> names;
  for (auto& t : f.tensors) names.push_back(t.name);
  CHECK(names == (std::vector<std::string>{"Conv1/kernel", "bn_Conv1/gamma", "bn_Conv1/beta",
                                           "bn_Conv1/moving_mean", "bn_Conv1/moving_variance",
                                           "Logits/kernel", "Logits/bias"}));
  CHECK(f.metadata["architecture"]["name"] == "tiny");
  auto b = tiny_model();
  LoadReport r = load_weights(*b, d + "/tiny.mcnn");
  CHECK(r.complete());
  CHECK(r.loaded.size() == 7);
  auto pa = a->parameters(), pb = b->parameters();
  for (std::size_t i = 0; i < pa.size(); ++i)
    CHECK(mt::max_abs_diff(pa[i]->value, pb[i]->value) == 0);
  // A double model (used by gradient checks) saves as float32 and loads back.
  auto c = tiny_model<double>();
  LoadReport rc = load_weights(*c, f);
  CHECK(rc.complete());
  CHECK(c->parameters()[0]->value[5] == double(a->parameters()[0]->value[5]));
  McnnFile cf = collect_weights(*c);
  CHECK(cf.find("Conv1/kernel")->dtype == DType::float32);
  CHECK(cf.find("Conv1/kernel")->value[5] == a->parameters()[0]->value[5]);
  fs::remove_all(d);
}

TEST_CASE(
    "weights: strict load lists every missing, unexpected and wrong-shape tensor in ONE error") {
  auto src = tiny_model(3);
  fill_params(*src, 1);
  McnnFile f = collect_weights(*src);
  f.source = "'tiny.mcnn'";
  // Damage: drop bn_Conv1/beta, add two strangers, and the model below has 5 classes.
  f.tensors.erase(f.tensors.begin() + 2);
  f.add({"block_99_project/kernel", Tensor<float>(Shape{1, 1, 2, 2}, 0.f)});
  f.add({"stray", Tensor<float>(Shape{3}, 0.f)});
  f.find("Conv1/kernel")->value = Tensor<float>(Shape{3, 3, 3, 8}, 0.f);
  f.add({"Conv1/kernel/m", Tensor<float>(Shape{3}, 0.f),
         TensorKind::training});  // ignored: training state

  auto dst = tiny_model(5);
  fill_params(*dst, 2);
  std::vector<Tensor<float>> before;
  for (auto* p : dst->parameters()) before.push_back(p->value);

  try {
    load_weights(*dst, f);
    FAIL("strict load accepted a mismatching file");
  } catch (const FormatError& e) {
    std::string msg = e.what();
    MESSAGE(msg);
    for (const char* frag :
         {"tiny.mcnn", "6 problem(s), nothing was loaded", "missing from the file (1)",
          "bn_Conv1/beta (4,)", "not in the model (2)", "block_99_project/kernel (1, 1, 2, 2)",
          "stray (3,)", "wrong shape (3)",
          "Conv1/kernel: model expects (3, 3, 3, 4) float32, file has (3, 3, 3, 8) float32",
          "Logits/kernel: model expects (4, 5) float32, file has (4, 3) float32"})
      CHECK_MESSAGE(msg.find(frag) != std::string::npos, "message lacks '" << frag << "'");
    CHECK(msg.find("Conv1/kernel/m") == std::string::npos);
    CHECK(msg.find("Logits/bias: model expects (5,) float32, file has (3,) float32") !=
          std::string::npos);
  }
  auto after = dst->parameters();
  for (std::size_t i = 0; i < after.size(); ++i)
    CHECK_MESSAGE(mt::max_abs_diff(after[i]->value, before[i]) == 0,
                  after[i]->name << " changed by a failed load");
}

TEST_CASE("weights: non-strict load copies what matches and reports the rest (replaced head)") {
  auto src = tiny_model(1000);
  fill_params(*src, 3);
  McnnFile f = collect_weights(*src);
  f.add({"extra/thing", Tensor<float>(Shape{2}, 0.f)});
  auto dst = tiny_model(5);
  fill_params(*dst, 4);
  Tensor<float> head_before = dst->find_parameter("Logits/kernel")->value;
  LoadOptions opt;
  opt.strict = false;
  LoadReport r = load_weights(*dst, f, opt);
  CHECK_FALSE(r.complete());
  CHECK(r.loaded.size() == 5);
  CHECK(r.wrong_shape.size() == 2);
  CHECK(r.wrong_shape[0].name == "Logits/kernel");
  CHECK(r.wrong_shape[0].expected == Shape{4, 5});
  CHECK(r.wrong_shape[0].found == Shape{4, 1000});
  REQUIRE(r.unexpected.size() == 1);
  CHECK(r.unexpected[0].name == "extra/thing");
  CHECK(r.missing.empty());
  CHECK(r.str().find("loaded 5 tensors") == 0);
  CHECK(mt::max_abs_diff(dst->find_parameter("Conv1/kernel")->value,
                         src->find_parameter("Conv1/kernel")->value) == 0);
  CHECK(mt::max_abs_diff(dst->find_parameter("bn_Conv1/moving_variance")->value,
                         src->find_parameter("bn_Conv1/moving_variance")->value) == 0);
  CHECK(mt::max_abs_diff(dst->find_parameter("Logits/kernel")->value, head_before) == 0);

  // Strict on the base, head skipped by prefix: the same file loads without complaint about Logits.
  auto dst2 = tiny_model(5);
  LoadReport r2 = load_weights(*dst2, f, {true, {"Logits/", "extra/"}});
  CHECK(r2.complete());
  CHECK(r2.loaded.size() == 5);
  // Logits/kernel and Logits/bias (listed once, not once per side) and extra/thing.
  CHECK(r2.skipped.size() == 3);
}

TEST_CASE("weights: loading into a model without parameters explains why") {
  Stack<float> empty("empty");
  McnnFile f;
  f.add({"Conv1/kernel", Tensor<float>(Shape{1}, 0.f)});
  mt::check_throws_with([&] { load_weights(empty, f); },
                        {"has no parameters", "build it", "Conv1/kernel"});
  auto dup = std::make_unique<Stack<float>>("dup");
  dup->add(std::make_unique<Bag<float>>(
      "L", std::vector<std::pair<std::string, Shape>>{{"w", Shape{1}}}));
  dup->add(std::make_unique<Bag<float>>(
      "L", std::vector<std::pair<std::string, Shape>>{{"w", Shape{1}}}));
  mt::check_throws_with([&] { collect_weights(*dup); }, {"L/w", "unique"});
  mt::check_throws_with([&] { load_weights(*dup, f); }, {"L/w"});
}

TEST_CASE("mcnn: converted Keras weights from ../shared read back in C++ (converter end to end)") {
  mt::require_shared("weights-src/mobilenet_v2_0.35_224_no_top__from_teachable_machine.h5");
  if (std::system("/usr/bin/python3 -c 'import h5py, numpy' >/dev/null 2>&1") != 0) {
    std::printf("SKIPPED: /usr/bin/python3 with h5py and numpy is needed to run the converter\n");
    std::fflush(stdout);
    std::_Exit(77);
  }
  std::string d = temp_dir("mcnn_e2e");
  std::string out = d + "/a035.mcnn";
  std::string cmd = "/usr/bin/python3 '" + mt::source_dir() + "/tools/keras_h5_to_mcnn.py' -q '" +
                    mt::shared_dir() +
                    "/weights-src/mobilenet_v2_0.35_224_no_top__from_teachable_machine.h5' '" +
                    out + "'";
  REQUIRE(std::system(cmd.c_str()) == 0);
  McnnFile f = read_mcnn(out);
  CHECK(f.tensors.size() == 260);
  CHECK(f.count_values() == 410208);
  CHECK(f.tensors.front().name == "Conv1/kernel");
  CHECK(f.tensors.front().shape() == Shape{3, 3, 3, 16});
  CHECK(f.tensors.back().name == "Conv_1_bn/moving_variance");
  CHECK(f.find("block_3_depthwise/depthwise_kernel")->shape() == Shape{3, 3, 48, 1});
  CHECK(f.metadata["architecture"]["alpha"] == 0.35);
  CHECK(f.metadata["architecture"]["include_top"] == false);
  CHECK(f.metadata["preprocessing"] == "tf");
  CHECK(f.metadata["source"]["sha256"] ==
        "da4716f5155e4e235391fd7140df3e3dfa052ad5479c7657cad36a87b3a689ca");
  for (const auto& t : f.tensors)
    for (int64_t i = 0; i < t.value.size(); ++i) REQUIRE(std::isfinite(t.value[i]));
  // Re-serializing in C++ reproduces the Python converter's bytes exactly.
  CHECK(serialize_mcnn(f) == file_bytes(out));
  fs::remove_all(d);
}
