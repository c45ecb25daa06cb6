// Tensor, Shape and .npy basics.
#include "test_support.hpp"

using namespace minicnn;

TEST_CASE("tensor storage is 64-byte aligned and resize reuses capacity") {
  TensorF t(Shape{2, 3, 5, 7});
  CHECK(reinterpret_cast<uintptr_t>(t.data()) % 64 == 0);
  CHECK(t.size() == 210);
  float* p = t.data();
  t.resize(Shape{1, 3, 5, 7});
  CHECK(t.data() == p);
  t.resize(Shape{4, 3, 5, 7});
  CHECK(reinterpret_cast<uintptr_t>(t.data()) % 64 == 0);
}

TEST_CASE("NHWC indexing, views and batch slices") {
  TensorF t(Shape{2, 3, 4, 5});
  for (int64_t i = 0; i < t.size(); ++i) t[i] = float(i);
  CHECK(t.at(1, 2, 3, 4) == float(((1 * 3 + 2) * 4 + 3) * 5 + 4));
  ConstView<float> v = t;
  auto s = v.batch_slice(1, 1);
  CHECK(s.shape() == Shape{1, 3, 4, 5});
  CHECK(s.at(0, 0, 0, 0) == 60.f);
  CHECK_THROWS_AS(v.batch_slice(1, 2), ShapeError);
  CHECK_THROWS_AS(v.reshaped(Shape{7}), ShapeError);
  CHECK(v.reshaped(Shape{6, 20}).at(1, 0) == 20.f);
}

TEST_CASE("shape printing and errors") {
  CHECK(Shape{32, 96, 96, 3}.str() == "(32, 96, 96, 3)");
  CHECK(Shape{7}.str() == "(7,)");
  CHECK(Shape{48, 48, 32}.batched_str() == "(None, 48, 48, 32)");
  CHECK_THROWS_AS((Shape{1, 2, 3, 4, 5}), ShapeError);
  CHECK_THROWS_AS((Shape{1, -2}), ShapeError);
  CHECK(Shape{3, 0, 2}.size() == 0);
}

TEST_CASE("npy round trip and truncated file") {
  TensorF t(Shape{2, 3});
  for (int i = 0; i < 6; ++i) t[i] = 0.5f * i;
  std::string path = std::filesystem::temp_directory_path() / "minicnn_test_rt.npy";
  save_npy<float>(path, t);
  TensorF u = load_npy_tensor<float>(path);
  CHECK(u.shape() == t.shape());
  CHECK(mt::max_abs_diff(u, t) == 0);
  auto bytes = read_file_bytes(path);
  bytes.resize(bytes.size() - 4);
  mt::check_throws_with([&] { parse_npy(bytes, "x.npy"); }, {"x.npy", "truncated"});
  std::vector<char> junk(20, 'a');
  mt::check_throws_with([&] { parse_npy(junk, "junk.npy"); }, {"junk.npy", "magic"});
}
