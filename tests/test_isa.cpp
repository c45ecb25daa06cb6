// Run-time instruction-set dispatch (core/cpu.hpp): this file is compiled WITHOUT
// -march=native (tests/CMakeLists.txt), as a distribution would build it, and must still
// pick the best path the CPU has; every path must agree with the portable one on a whole
// MobileNetV2 training step (forward in training mode, backward, every gradient).
#include <cmath>
#include <fstream>
#include <minicnn/models/mobilenet_v2.hpp>
#include <sstream>

#include "test_support.hpp"

using namespace minicnn;
using mt::ThreadGuard;

namespace {

// The CPU's own flags, read from /proc/cpuinfo: an oracle independent of cpu.hpp.
std::string cpu_flags() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("flags", 0) == 0 || line.rfind("Features", 0) == 0) return line + " ";
  return "";
}
[[maybe_unused]] bool has_flag(const std::string& flags, const std::string& f) {
  return flags.find(" " + f + " ") != std::string::npos;
}

struct StepResult {
  TensorF y;
  std::vector<TensorF> grads;
  TensorF dx;
};

StepResult training_step(Sequential& net, const TensorF& x, const TensorF& dy) {
  net.zero_grad();
  StepResult r;
  r.y = net.forward(x, true);
  r.dx = net.backward(dy, true);
  for (auto* p : net.parameters())
    if (p->trainable) r.grads.push_back(p->grad);
  return r;
}

using mt::max_abs;

// max |a - b| / max(max |b|, floor): normwise. Some gradients are zero up to rounding (the
// beta of a BatchNormalization whose output feeds, through a linear 1x1 convolution, a
// BatchNormalization in training mode: its input gradient sums to zero per channel), so
// their noise is measured against `floor`, a small fraction of the largest gradient.
double rel_diff(const TensorF& a, const TensorF& b, double floor = 1e-30) {
  REQUIRE(a.shape() == b.shape());
  double d = 0, m = floor;
  for (int64_t i = 0; i < a.size(); ++i) {
    d = std::max(d, double(std::abs(a.data()[i] - b.data()[i])));
    m = std::max(m, double(std::abs(b.data()[i])));
  }
  return d / m;
}

}  // namespace

TEST_CASE("isa: this file is built for the baseline, as a distribution would") {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#if defined(__AVX2__) || defined(__AVX512F__)
  FAIL("test_isa.cpp must be compiled without -march=native (see tests/CMakeLists.txt)");
#endif
  CHECK(cpu_detail::compiled(Isa::avx512));
  CHECK(cpu_detail::compiled(Isa::avx2));
#endif
  CHECK(cpu_detail::compiled(Isa::portable));
}

TEST_CASE("isa: the best path the CPU supports is selected") {
  [[maybe_unused]] const std::string flags = cpu_flags();
  Isa expect = Isa::portable;
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  if (has_flag(flags, "avx512f") && has_flag(flags, "avx512bw") && has_flag(flags, "avx512dq") &&
      has_flag(flags, "avx512vl"))
    expect = Isa::avx512;
  else if (has_flag(flags, "avx2") && has_flag(flags, "fma"))
    expect = Isa::avx2;
#elif defined(__aarch64__)
  expect = Isa::neon;
#endif
  CHECK(best_isa() == expect);
  const char* env = std::getenv("MINICNN_ISA");
  if (!env || !*env) CHECK(active_isa() == expect);
  MESSAGE("CPU best: " << std::string(isa_name(best_isa()))
                       << ", running: " << std::string(isa_name(active_isa())));
}

TEST_CASE("isa: MINICNN_ISA names are parsed, unknown ones refused") {
  CHECK(parse_isa("avx512") == Isa::avx512);
  CHECK(parse_isa("avx2") == Isa::avx2);
  CHECK(parse_isa("neon") == Isa::neon);
  CHECK(parse_isa("portable") == Isa::portable);
  CHECK(parse_isa("scalar") == Isa::portable);
  CHECK_THROWS_WITH_AS(parse_isa("sse9"), doctest::Contains("unknown instruction set 'sse9'"),
                       Error);
  // A cap above the CPU runs the best the CPU has; a cap below runs the cap.
  const Isa before = active_isa();
  CHECK(set_isa_cap(Isa::avx512) == best_isa());
  CHECK(set_isa_cap(Isa::portable) == Isa::portable);
  set_isa_cap(before);
}

TEST_CASE("isa: every path agrees with the portable one on a MobileNetV2 training step") {
  ThreadGuard guard;
  set_num_threads(2);
  const Isa before = active_isa();
  MobileNetV2Options o;
  o.alpha = 0.35;
  o.size(64);
  o.include_top = false;
  o.pooling = "avg";
  auto net = mobilenet_v2<float>(o);
  Rng rng(7);
  TensorF x(Shape{3, 64, 64, 3});
  for (int64_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.uniform(-1.0, 1.0));
  set_isa_cap(Isa::portable);
  net->forward(x, true);  // builds the layers (same weights for every path from here)
  const TensorF& y0 = net->forward(x, true);
  TensorF dy(y0.shape());
  for (int64_t i = 0; i < dy.size(); ++i) dy.data()[i] = static_cast<float>(rng.uniform(-1.0, 1.0));
  StepResult ref = training_step(*net, x, dy);
  for (Isa isa : runnable_isas()) {
    if (isa == Isa::portable) continue;
    REQUIRE(set_isa_cap(isa) == isa);
    StepResult got = training_step(*net, x, dy);
    double worst = rel_diff(got.y, ref.y);
    worst = std::max(worst, rel_diff(got.dx, ref.dx));
    REQUIRE(got.grads.size() == ref.grads.size());
    double largest = 0;
    for (const TensorF& g : ref.grads) largest = std::max(largest, max_abs(g));
    for (std::size_t i = 0; i < ref.grads.size(); ++i) {
      const double d = rel_diff(got.grads[i], ref.grads[i], 1e-3 * largest);
      if (d > 2e-4)
        MESSAGE("gradient " << i << " differs by " << d << ", max |g| " << max_abs(ref.grads[i])
                            << " of " << largest);
      worst = std::max(worst, d);
    }
    MESSAGE(std::string(isa_name(isa))
            << " vs portable: worst normwise relative difference " << worst
            << " over the output, dx and " << ref.grads.size() << " gradients");
    CHECK(worst < 2e-4);
  }
  set_isa_cap(before);
}
