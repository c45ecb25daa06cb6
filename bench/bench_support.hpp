// Shared by the Google Benchmark programs in bench/: the thread count they run with and
// random inputs. Batch 32 and 96x96 MobileNetV2 shapes, as compare_pytorch.py times PyTorch.
#pragma once
#include <cstdlib>

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

}  // namespace bench
