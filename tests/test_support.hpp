// Helpers shared by the tests: random tensors, comparisons, the finite-difference
// gradient checker (double precision) and the skip rule for ../shared data.
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include <unistd.h>

#include <minicnn/minicnn.hpp>

namespace mt {

using namespace minicnn;

inline std::string source_dir() {
  return MINICNN_SOURCE_DIR;
}
inline std::string fixtures_dir() {
  return source_dir() + "/tests/fixtures";
}
inline std::string shared_dir() {
  if (const char* e = std::getenv("MINICNN_SHARED_DIR")) return e;
  return MINICNN_SHARED_DIR;
}
inline std::string bin_dir() {
  return MINICNN_BIN_DIR;
}

// Tests that read ../shared call this first. ctest runs each test case in its own
// process and treats exit code 77 as "skipped", so a user's clone without ../shared
// sees the test listed as skipped, with this message in its output.
inline void require_shared(const std::string& rel) {
  std::string p = shared_dir() + "/" + rel;
  if (!std::filesystem::exists(p)) {
    std::printf("SKIPPED: %s not found (the ../shared data is absent in this checkout)\n",
                p.c_str());
    std::fflush(stdout);
    std::_Exit(77);
  }
}

template <typename T>
Tensor<T> random_tensor(const Shape& s, Rng& rng, double lo = -1.0, double hi = 1.0) {
  Tensor<T> t(s);
  for (int64_t i = 0; i < t.size(); ++i) t[i] = static_cast<T>(rng.uniform(lo, hi));
  return t;
}

template <typename A, typename B>
double max_abs_diff(const A& a, const B& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (int64_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(double(a[i]) - double(b[i])));
  return m;
}
// max |t|: the scale that normwise errors are measured against.
template <typename A>
double max_abs(const A& t) {
  double m = 0;
  for (int64_t i = 0; i < t.size(); ++i) m = std::max(m, std::abs(double(t[i])));
  return m;
}
// max |a-b| / max(|b|, floor): relative where values are large, absolute near zero.
template <typename A, typename B>
double max_rel_diff(const A& a, const B& b, double floor = 1e-3) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (int64_t i = 0; i < a.size(); ++i)
    m = std::max(m,
                 std::abs(double(a[i]) - double(b[i])) / std::max(std::abs(double(b[i])), floor));
  return m;
}

// max |a - ref| / max(|ref|, 1e-2 * max|ref|): relative, except near zero where float
// rounding of a long sum is measured against the tensor's scale (fast vs reference kernels).
template <typename A, typename B>
double scaled_rel_diff(const A& a, const B& ref) {
  REQUIRE(a.size() == ref.size());
  double mx = 0;
  for (int64_t i = 0; i < ref.size(); ++i) mx = std::max(mx, std::abs(double(ref[i])));
  double floor = std::max(1e-2 * mx, 1e-30), m = 0;
  for (int64_t i = 0; i < ref.size(); ++i)
    m = std::max(
        m, std::abs(double(a[i]) - double(ref[i])) / std::max(std::abs(double(ref[i])), floor));
  return m;
}

// Restores the OpenMP thread count a test changed.
struct ThreadGuard {
  int saved = minicnn::num_threads();
  ~ThreadGuard() { minicnn::set_num_threads(saved); }
};

// ||a - n|| / max(||a|| + ||n||, tiny): relative error of a whole gradient tensor.
inline double rel_error(const std::vector<double>& a, const std::vector<double>& n) {
  double d = 0, na = 0, nn = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    d += (a[i] - n[i]) * (a[i] - n[i]);
    na += a[i] * a[i];
    nn += n[i] * n[i];
  }
  double denom = std::sqrt(na) + std::sqrt(nn);
  return denom < 1e-300 ? 0.0 : std::sqrt(d) / denom;
}

struct GradCheckResult {
  double input_error = 0;  // relative error of dL/dx
  double param_error = 0;  // worst relative error over parameters
  std::string worst_param;
  double worst() const { return std::max(input_error, param_error); }
};

// Worst error seen by any gradient check in this process; printed when the process exits,
// so every test log (and CI's) carries each executable's figure.
inline double& worst_gradcheck_error() {
  static double w = 0;
  static struct Report {
    ~Report() {
      if (w > 0) std::fprintf(stderr, "worst gradient-check relative error in this run: %.3g\n", w);
    }
  } report;
  (void)report;
  return w;
}

// Finite-difference check of layer.backward against L = sum(forward(x) * r) for a
// fixed random r. Central differences with step h in double precision. `before_forward`
// runs before every forward (e.g. to reseed Dropout so every call draws the same mask).
// At most max_points entries per tensor are probed (spread evenly) to keep it fast.
inline GradCheckResult check_gradients(LayerT<double>& layer, TensorD x, bool training = true,
                                       uint64_t seed = 1, double h = 1e-6, int64_t max_points = 400,
                                       std::function<void()> before_forward = {}) {
  Rng rng(seed);
  auto run = [&](const TensorD& in) -> const TensorD& {
    if (before_forward) before_forward();
    return layer.forward(in, training);
  };
  const TensorD& y0 = run(x);
  TensorD r = random_tensor<double>(y0.shape(), rng);
  auto loss = [&](const TensorD& in) {
    const TensorD& y = run(in);
    double s = 0;
    for (int64_t i = 0; i < y.size(); ++i) s += y[i] * r[i];
    return s;
  };
  run(x);
  layer.zero_grad();
  TensorD dx = layer.backward(r, true);
  // Snapshot analytic parameter gradients before numeric probing touches anything.
  std::vector<ParameterT<double>*> params;
  std::vector<TensorD> analytic;
  for (auto* p : layer.parameters())
    if (p->trainable) {
      params.push_back(p);
      analytic.push_back(p->grad);
    }

  auto probe = [&](double* data, int64_t n, const TensorD& grad, const TensorD& in) {
    std::vector<double> a, num;
    int64_t step = std::max<int64_t>(1, n / max_points);
    for (int64_t i = 0; i < n; i += step) {
      double old = data[i];
      data[i] = old + h;
      double lp = loss(in);
      data[i] = old - h;
      double lm = loss(in);
      data[i] = old;
      a.push_back(grad[i]);
      num.push_back((lp - lm) / (2 * h));
    }
    return rel_error(a, num);
  };
  GradCheckResult res;
  res.input_error = probe(x.data(), x.size(), dx, x);
  for (size_t k = 0; k < params.size(); ++k) {
    double e = probe(params[k]->value.data(), params[k]->value.size(), analytic[k], x);
    if (e >= res.param_error) {
      res.param_error = e;
      res.worst_param = params[k]->name;
    }
  }
  worst_gradcheck_error() = std::max(worst_gradcheck_error(), res.worst());
  MESSAGE(layer.type() << " '" << layer.name() << "' gradcheck: dx rel err " << res.input_error
                       << ", worst param rel err " << res.param_error << " (" << res.worst_param
                       << ")");
  return res;
}

// The tolerance of every layer's finite-difference check (relative error, double precision).
constexpr double kGradTol = 1e-6;

inline void require_gradcheck(LayerT<double>& layer, const TensorD& x, bool training = true,
                              std::function<void()> before = {}, int64_t max_points = 400) {
  auto r = check_gradients(layer, x, training, 7, 1e-6, max_points, std::move(before));
  REQUIRE(r.input_error < kGradTol);
  REQUIRE(r.param_error < kGradTol);
}

// A scratch folder, removed with everything in it when the test leaves its scope. The
// process id and a counter keep tests that run side by side (ctest -j) apart.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    static int n = 0;
    path = std::filesystem::temp_directory_path() /
           ("minicnn_test_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path / name).string(); }
  std::string str() const { return path.string(); }
  // Temporaries an atomic write leaves if it fails midway ("name.tmp.*"); none may remain.
  size_t temporaries() const {
    size_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator(path))
      n += e.path().filename().string().find(".tmp.") != std::string::npos;
    return n;
  }
};

// A fresh, empty folder "minicnn_<tag>_<pid>" under the system temp dir (or none with that
// name when create is false), left for inspection after the test.
inline std::string temp_dir(const std::string& tag, bool create = true) {
  const std::filesystem::path d = std::filesystem::temp_directory_path() /
                                  ("minicnn_" + tag + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(d);
  if (create) std::filesystem::create_directories(d);
  return d.string();
}

inline std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Asserts that `fn` throws minicnn::Error whose message contains every fragment.
template <typename F>
void check_throws_with(F&& fn, std::initializer_list<std::string> fragments) {
  try {
    fn();
    FAIL("expected an exception");
  } catch (const minicnn::Error& e) {
    std::string msg = e.what();
    for (const auto& f : fragments)
      CHECK_MESSAGE(msg.find(f) != std::string::npos,
                    "message '" << msg << "' lacks '" << f << "'");
  }
}

}  // namespace mt

namespace mt {

// A .mcnn converted from ../shared/weights-src by tools/keras_h5_to_mcnn.py, cached in
// the build tree. Callers run require_shared first. The converter writes atomically,
// so tests converting the same file in parallel cannot see a half-written one.
// kind: "1.0" (no top), "0.35" (no top) or "1.0_top" (with the approximate top).
inline std::string converted_weights(const std::string& kind) {
  std::string ws = shared_dir() + "/weights-src/";
  std::string src, extra;
  if (kind == "1.0" || kind == "1.0_top")
    src = ws + "mobilenet_v2_1.0_224_no_top__from_slim_ckpt_npy.h5";
  else if (kind == "0.35")
    src = ws + "mobilenet_v2_0.35_224_no_top__from_teachable_machine.h5";
  else
    FAIL("unknown weights kind " << kind);
  if (kind == "1.0_top")
    extra = " --top " + ws + "mobilenet_v2_1.0_224_top_only__dequant_int8_approx.h5 --labels " +
            shared_dir() + "/imagenet-samples/imagenet_labels_1000_keras_order.txt";
  std::string dir = bin_dir() + "/../test-weights";
  std::filesystem::create_directories(dir);
  std::string out = dir + "/mobilenet_v2_" + kind + ".mcnn";
  if (!std::filesystem::exists(out)) {
    std::string cmd = "/usr/bin/python3 " + source_dir() + "/tools/keras_h5_to_mcnn.py " + src +
                      " " + out + extra + " > /dev/null";
    int rc = std::system(cmd.c_str());
    REQUIRE_MESSAGE(rc == 0, "converter failed: " << cmd);
  }
  return out;
}

}  // namespace mt
