// Seeded random numbers. One generator type (std::mt19937_64) everywhere so a
// seed reproduces a run exactly, across platforms (we avoid std:: distributions,
// whose output is implementation-defined, and derive floats from raw bits).
#pragma once
#include <cmath>
#include <cstdint>
#include <random>

namespace minicnn {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0x6d696e69636e6eULL) : gen_(seed) {}
  void seed(uint64_t s) { gen_.seed(s); }
  uint64_t next_u64() { return gen_(); }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(gen_() >> 11) * (1.0 / 9007199254740992.0); }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [0, n).
  uint64_t below(uint64_t n) { return n ? gen_() % n : 0; }
  // Standard normal by Box-Muller (deterministic, platform independent).
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = uniform(), u2 = uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(6.283185307179586 * u2);
    has_spare_ = true;
    return r * std::cos(6.283185307179586 * u2);
  }
  std::mt19937_64& engine() { return gen_; }

 private:
  std::mt19937_64 gen_;
  double spare_ = 0;
  bool has_spare_ = false;
};

}  // namespace minicnn

namespace minicnn {

// The generator layers draw their initial weights from (Keras' global seed).
inline Rng& global_rng() {
  static Rng rng;
  return rng;
}
inline void set_global_seed(uint64_t seed) {
  global_rng().seed(seed);
}

}  // namespace minicnn

namespace minicnn {

// Counter-based random numbers for draws that must not depend on order or threads.
// A KeyedRng is a pure function of (seed, key_a, key_b) and the number of draws taken:
// the augmentation of image i in epoch e uses KeyedRng(seed, e, i), the shuffle of epoch e
// KeyedRng(seed, e, kShuffleKey), so any number of loader threads (or a resumed run)
// sees exactly the same numbers. The mixer is splitmix64's finaliser (Steele et al.,
// "Fast splittable pseudorandom number generators", 2014), applied to a counter.
class KeyedRng {
 public:
  KeyedRng(uint64_t seed, uint64_t key_a = 0, uint64_t key_b = 0)
      : state_(mix(mix(mix(seed ^ 0x9e3779b97f4a7c15ULL) + key_a) + key_b)) {}
  static uint64_t mix(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  uint64_t next_u64() {
    state_ += 0x9e3779b97f4a7c15ULL;
    uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * (1.0 / 9007199254740992.0); }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [0, n) without modulo bias (Lemire's multiply-and-reject).
  uint64_t below(uint64_t n) {
    if (n == 0) return 0;
    for (;;) {
      __uint128_t m = static_cast<__uint128_t>(next_u64()) * n;
      uint64_t lo = static_cast<uint64_t>(m);
      if (lo >= n || lo >= (0 - n) % n) return static_cast<uint64_t>(m >> 64);
    }
  }

 private:
  uint64_t state_;
};

}  // namespace minicnn
