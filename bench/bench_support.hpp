// Shared by the Google Benchmark programs in bench/: the thread count they run with and
// random inputs. Batch 32 and 96x96 MobileNetV2 shapes, as compare_pytorch.py times PyTorch.
// Each benchmark runs under its plain name (the instruction set the dispatcher picks, as a
// user's program runs it) and as name@<isa> for every path this CPU runs (register_all_isas).
#pragma once
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <minicnn/core/cpu.hpp>
#include <string>

#include <minicnn/core/random.hpp>
#include <minicnn/core/tensor.hpp>

namespace bench {

constexpr int64_t kBatch = 32;

// MINICNN_THREADS, default 2 (the project machine's core count).
inline int threads() {
  const char* e = std::getenv("MINICNN_THREADS");
  int n = e ? std::atoi(e) : 2;
  return n > 0 ? n : 2;
}

// Uniform in [-scale, scale).
inline minicnn::TensorF random_tensor(const minicnn::Shape& s, minicnn::Rng& rng,
                                      double scale = 1.0) {
  minicnn::TensorF t(s);
  for (auto& v : t) v = static_cast<float>(rng.uniform(-scale, scale));
  return t;
}

// Registers fn as `name` and as `name@<isa>` for each runnable instruction set (forced through
// minicnn::set_isa_cap while it runs); setup(b) applies arguments and units to each.
template <class Fn, class Setup>
void register_all_isas(const std::string& name, Fn fn, Setup setup) {
  setup(benchmark::RegisterBenchmark(name.c_str(), fn));
  for (minicnn::Isa isa : minicnn::runnable_isas()) {
    auto capped = [fn, isa](benchmark::State& st) {
      const minicnn::Isa before = minicnn::active_isa();
      minicnn::set_isa_cap(isa);
      fn(st);
      minicnn::set_isa_cap(before);
    };
    setup(benchmark::RegisterBenchmark((name + "@" + minicnn::isa_name(isa)).c_str(), capped));
  }
}

// main() of the benchmark programs: register(), then Google Benchmark's usual flags.
template <class Register>
int run_main(int argc, char** argv, Register reg) {
  reg();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace bench
