// Conv2D kernels on the MobileNetV2 (alpha 1.0, 96x96 input, batch 32) layer shapes:
// every pointwise (1x1, stride 1, 'same') convolution, BM_pw_{fwd,bwd}/Cin/Cout/H, and
// the stem 3x3 stride-2 convolution, BM_conv_{fwd,bwd}/Cin/Cout/H/stride.
// fwd = y = conv(x, w) + b; bwd = input gradient + weight gradient (as PyTorch's
// convolution_backward with output_mask {true, true, false}).
// Threads: MINICNN_THREADS (default 2). Run with --benchmark_repetitions=N and read the
// medians; compare with PyTorch in the same session (the machine is shared and noisy).
#include <benchmark/benchmark.h>

#include "bench_support.hpp"

#include <cstdlib>
#include <vector>

#include <minicnn/core/parallel.hpp>
#include <minicnn/core/random.hpp>
#include <minicnn/core/tensor.hpp>
#include <minicnn/kernels/conv2d.hpp>

using namespace minicnn;

namespace {

using bench::kBatch;
using bench::random_tensor;

struct ConvSetup {
  ConvGeometry g;
  TensorF x, w, b, y, dy, dx, dw;
  double flops = 0;  // of one forward (multiply-adds count 2)

  ConvSetup(int64_t cin, int64_t cout, int64_t h, int64_t k, int64_t stride) {
    g = make_conv_geometry(kBatch, h, h, cin, cout, k, k, stride, stride, Padding::Same);
    Rng rng(42);
    x = random_tensor(Shape{g.n, g.in_h, g.in_w, g.in_c}, rng, 1.0);
    w = random_tensor(Shape{k, k, cin, cout}, rng, 0.1);
    b = random_tensor(Shape{cout}, rng, 0.1);
    y = TensorF(Shape{g.n, g.out_h, g.out_w, cout});
    dy = random_tensor(y.shape(), rng, 1.0);
    dx = TensorF(x.shape());
    dw = TensorF(w.shape(), 0.f);
    flops = 2.0 * g.n * g.out_h * g.out_w * cout * k * k * cin;
  }
};

void set_counters(benchmark::State& st, double flops) {
  st.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["threads"] = bench::threads();
}

void run_fwd(benchmark::State& st, int64_t k, int64_t stride) {
  set_num_threads(bench::threads());
  ConvSetup s(st.range(0), st.range(1), st.range(2), k, stride);
  for (auto _ : st) {
    kernels::conv2d_forward<float>(s.g, s.x.data(), s.w.data(), s.b.data(), Activation::Linear,
                                   s.y.data());
    benchmark::DoNotOptimize(s.y.data());
    benchmark::ClobberMemory();
  }
  set_counters(st, s.flops);
}

void run_bwd(benchmark::State& st, int64_t k, int64_t stride) {
  set_num_threads(bench::threads());
  ConvSetup s(st.range(0), st.range(1), st.range(2), k, stride);
  for (auto _ : st) {
    kernels::conv2d_backward<float>(s.g, s.x.data(), s.w.data(), s.dy.data(), s.dx.data(),
                                    s.dw.data(), nullptr);
    benchmark::DoNotOptimize(s.dx.data());
    benchmark::DoNotOptimize(s.dw.data());
    benchmark::ClobberMemory();
  }
  set_counters(st, 2.0 * s.flops);
}

void BM_pw_fwd(benchmark::State& st) {
  run_fwd(st, 1, 1);
}
void BM_pw_bwd(benchmark::State& st) {
  run_bwd(st, 1, 1);
}
void BM_conv_fwd(benchmark::State& st) {
  run_fwd(st, 3, st.range(3));
}
void BM_conv_bwd(benchmark::State& st) {
  run_bwd(st, 3, st.range(3));
}

// (Cin, Cout, H): MobileNetV2 alpha 1.0 at 96x96, in network order.
void pointwise_shapes(benchmark::internal::Benchmark* b) {
  const int64_t shapes[][3] = {{32, 16, 48},  {16, 96, 48},  {96, 24, 24},  {24, 144, 24},
                               {144, 24, 24}, {144, 32, 12}, {32, 192, 12}, {192, 32, 12},
                               {192, 64, 6},  {64, 384, 6},  {384, 64, 6},  {384, 96, 6},
                               {96, 576, 6},  {576, 96, 6},  {576, 160, 3}, {160, 960, 3},
                               {960, 160, 3}, {960, 320, 3}, {320, 1280, 3}};
  for (const auto& s : shapes) b->Args({s[0], s[1], s[2]});
}

}  // namespace

int main(int argc, char** argv) {
  return bench::run_main(argc, argv, [] {
    auto pw = [](benchmark::internal::Benchmark* b) {
      b->Apply(pointwise_shapes)->UseRealTime()->Unit(benchmark::kMicrosecond);
    };
    auto stem = [](benchmark::internal::Benchmark* b) {
      b->Args({3, 32, 96, 2})->UseRealTime()->Unit(benchmark::kMicrosecond);
    };
    bench::register_all_isas("BM_pw_fwd", BM_pw_fwd, pw);
    bench::register_all_isas("BM_pw_bwd", BM_pw_bwd, pw);
    bench::register_all_isas("BM_conv_fwd", BM_conv_fwd, stem);
    bench::register_all_isas("BM_conv_bwd", BM_conv_bwd, stem);
  });
}
