// Depthwise 3x3 convolution on every depthwise shape of MobileNetV2 at 96x96 input, batch 32,
// 'same' padding (equal to Keras' ZeroPadding2D + 'valid' for stride 2 on even sizes).
// Args are {C, H, S} with H the INPUT spatial size. Forward is the inference/training forward
// without bias or activation (as in the training graph, where BN and ReLU6 follow); backward is
// dx and dW together (what a training step needs). Threads: MINICNN_THREADS (default 2).
// Counters: GFLOP/s (2*N*OH*OW*C*9 forward, twice that backward) and GB/s of the minimal
// traffic (forward reads x and writes y; backward reads x and dy and writes dx).
#include <benchmark/benchmark.h>

#include "bench_support.hpp"

#include <cstdlib>
#include <minicnn/core/parallel.hpp>
#include <minicnn/core/random.hpp>
#include <minicnn/core/tensor.hpp>
#include <minicnn/kernels/dwconv2d.hpp>

using namespace minicnn;

namespace {

using bench::kBatch;
using bench::random_tensor;

struct Problem {
  ConvGeometry g;
  TensorF x, w, y, dy, dx, dw;
  explicit Problem(const benchmark::State& st) {
    const int64_t C = st.range(0), H = st.range(1), S = st.range(2);
    g = make_conv_geometry(kBatch, H, H, C, C, 3, 3, S, S, Padding::Same);
    Rng rng(42);
    x = random_tensor(Shape{g.n, g.in_h, g.in_w, C}, rng);
    w = random_tensor(Shape{3, 3, C}, rng);
    dy = random_tensor(Shape{g.n, g.out_h, g.out_w, C}, rng);
    y = TensorF(dy.shape(), 0.f);
    dx = TensorF(x.shape(), 0.f);
    dw = TensorF(w.shape(), 0.f);
  }
  double flops_fwd() const { return 2.0 * g.n * g.out_h * g.out_w * g.in_c * 9; }
};

void set_counters(benchmark::State& st, double flops, double bytes) {
  st.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["GB/s"] =
      benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_dw_fwd(benchmark::State& st) {
  set_num_threads(bench::threads());
  Problem p(st);
  for (auto _ : st) {
    kernels::dwconv2d_nhwc_forward<float>(p.g, p.x.data(), p.w.data(), nullptr, Activation::Linear,
                                          p.y.data());
    benchmark::DoNotOptimize(p.y.data());
    benchmark::ClobberMemory();
  }
  set_counters(st, p.flops_fwd(), 4.0 * double(p.x.size() + p.y.size()));
}

void BM_dw_bwd(benchmark::State& st) {
  set_num_threads(bench::threads());
  Problem p(st);
  for (auto _ : st) {
    kernels::dwconv2d_nhwc_backward<float>(p.g, p.x.data(), p.dy.data(), p.w.data(), p.dx.data(),
                                           p.dw.data(), nullptr);
    benchmark::DoNotOptimize(p.dx.data());
    benchmark::ClobberMemory();
  }
  set_counters(st, 2 * p.flops_fwd(), 4.0 * double(2 * p.x.size() + p.dy.size()));
}

// (C, H, S) of MobileNetV2's depthwise layers at 96x96 input.
void mobilenet_v2_shapes(benchmark::internal::Benchmark* b) {
  const int64_t shapes[][3] = {{32, 48, 1},  {96, 48, 2}, {144, 24, 1}, {144, 24, 2}, {192, 12, 1},
                               {192, 12, 2}, {384, 6, 1}, {576, 6, 1},  {576, 6, 2},  {960, 3, 1}};
  for (const auto& s : shapes) b->Args({s[0], s[1], s[2]});
  b->UseRealTime()->Unit(benchmark::kMicrosecond);
}

}  // namespace

int main(int argc, char** argv) {
  return bench::run_main(argc, argv, [] {
    auto shapes = [](benchmark::internal::Benchmark* b) { b->Apply(mobilenet_v2_shapes); };
    bench::register_all_isas("BM_dw_fwd", BM_dw_fwd, shapes);
    bench::register_all_isas("BM_dw_bwd", BM_dw_bwd, shapes);
  });
}
