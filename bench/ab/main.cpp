// Paired A/B timing of two builds of the depthwise kernels in one process (ab_dwconv2d.sh):
// calls alternate A, B, A, B on the same buffers and the median of the per-pair ratios is
// reported, so the slow phases of a shared machine hit both builds alike. On this project's
// VM absolute times drift 20-40% between runs; paired ratios of A against itself stay
// within 1-2%. Note that a change of cache behaviour (e.g. non-temporal stores) also changes
// the other build's conditions: compare A/A and B/B runs too.
//   ab_main C H STRIDE PAIRS [fwd]      (batch 32, 3x3, TF 'same', 2 threads)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <minicnn/core/parallel.hpp>
#include <minicnn/core/random.hpp>
#include <minicnn/core/tensor.hpp>
#include <minicnn/kernels/conv_geometry.hpp>
#include <string>
#include <vector>

using namespace minicnn;

void bwd_A(const ConvGeometry&, const float*, const float*, const float*, float*, float*);
void bwd_B(const ConvGeometry&, const float*, const float*, const float*, float*, float*);
void fwd_A(const ConvGeometry&, const float*, const float*, float*);
void fwd_B(const ConvGeometry&, const float*, const float*, float*);

namespace {
double now_us() {
  return std::chrono::duration<double, std::micro>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s C H STRIDE PAIRS [fwd]\n", argv[0]);
    return 2;
  }
  const int64_t C = std::atoll(argv[1]), H = std::atoll(argv[2]), S = std::atoll(argv[3]);
  const int pairs = std::atoi(argv[4]);
  const bool fwd = argc > 5 && std::string(argv[5]) == "fwd";
  set_num_threads(2);
  const ConvGeometry g = make_conv_geometry(32, H, H, C, C, 3, 3, S, S, Padding::Same);
  Rng rng(1);
  TensorF x(Shape{32, H, H, C}), w(Shape{3, 3, C}), dy(Shape{32, g.out_h, g.out_w, C});
  TensorF dx(x.shape()), dw(w.shape(), 0.f), y(dy.shape());
  for (TensorF* t : {&x, &w, &dy})
    for (auto& v : *t) v = static_cast<float>(rng.uniform(-1, 1));
  auto run = [&](bool b) {
    if (fwd)
      (b ? fwd_B : fwd_A)(g, x.data(), w.data(), y.data());
    else
      (b ? bwd_B : bwd_A)(g, x.data(), dy.data(), w.data(), dx.data(), dw.data());
  };
  std::vector<double> ta, tb, ratio;
  for (int i = 0; i < pairs + 5; ++i) {
    const double t0 = now_us();
    run(false);
    const double t1 = now_us();
    run(true);
    const double t2 = now_us();
    if (i < 5) continue;  // warm-up
    ta.push_back(t1 - t0);
    tb.push_back(t2 - t1);
    ratio.push_back((t1 - t0) / (t2 - t1));
  }
  for (auto* v : {&ta, &tb, &ratio}) std::sort(v->begin(), v->end());
  std::printf(
      "%lld@%lld s%lld %s: A min %.0f med %.0f us | B min %.0f med %.0f us | median A/B %.3f\n",
      static_cast<long long>(C), static_cast<long long>(H), static_cast<long long>(S),
      fwd ? "fwd" : "bwd", ta[0], ta[ta.size() / 2], tb[0], tb[tb.size() / 2],
      ratio[ratio.size() / 2]);
  return 0;
}
