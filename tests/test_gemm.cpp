// GEMM kernels (kernels/gemm.hpp) against a plain double-precision product, on the shapes
// that reach each code path of the instruction set under test: fewer rows than a tile
// (B read in place or packed), tall products split by rows or by column panels, column
// tails inside a vector, K blocked, strides wider than the matrices, accumulate, bias and
// activation epilogues, 1-3 threads. ctest runs this file once per instruction set.
#include <minicnn/kernels/gemm.hpp>

#include "test_support.hpp"

using namespace minicnn;
using mt::ThreadGuard;

namespace {

struct Mats {
  int64_t M, N, K, lda, ldb, ldc;
  std::vector<float> A, B, Bt, C0, bias;
};

Mats make(int64_t M, int64_t N, int64_t K, Rng& rng) {
  Mats m{M, N, K, K + 3, N + 5, N + 7, {}, {}, {}, {}, {}};
  auto fill = [&](std::vector<float>& v, std::size_t n) {
    v.resize(n);
    for (auto& x : v) x = static_cast<float>(rng.uniform(-1.0, 1.0));
  };
  fill(m.A, static_cast<std::size_t>(M * m.lda));
  fill(m.B, static_cast<std::size_t>(K * m.ldb));
  m.Bt.assign(static_cast<std::size_t>(N * (K + 2)), 0.f);  // B^T with leading dimension K + 2
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < N; ++n) m.Bt[n * (K + 2) + k] = m.B[k * m.ldb + n];
  fill(m.C0, static_cast<std::size_t>(M * m.ldc));
  fill(m.bias, static_cast<std::size_t>(N));
  return m;
}

// The product in double, then the epilogue: the oracle.
double expected(const Mats& m, int64_t r, int64_t n, bool acc, bool bias, Activation act) {
  double s = acc ? m.C0[r * m.ldc + n] : 0.0;
  for (int64_t k = 0; k < m.K; ++k) s += double(m.A[r * m.lda + k]) * m.B[k * m.ldb + n];
  if (bias) s += m.bias[n];
  if (act == Activation::ReLU || act == Activation::ReLU6) s = std::max(0.0, s);
  if (act == Activation::ReLU6) s = std::min(6.0, s);
  return s;
}

// Worst |got - want| / (1 + |sum of |terms||) over C; checks that padding columns of C
// (between N and ldc) were left alone.
double check_c(const Mats& m, const std::vector<float>& C, bool acc, bool bias, Activation act) {
  double worst = 0;
  for (int64_t r = 0; r < m.M; ++r) {
    for (int64_t n = 0; n < m.N; ++n) {
      double scale = 1;
      for (int64_t k = 0; k < m.K; ++k)
        scale += std::abs(double(m.A[r * m.lda + k]) * m.B[k * m.ldb + n]);
      worst =
          std::max(worst, std::abs(C[r * m.ldc + n] - expected(m, r, n, acc, bias, act)) / scale);
    }
    for (int64_t n = m.N; n < m.ldc; ++n) REQUIRE(C[r * m.ldc + n] == m.C0[r * m.ldc + n]);
  }
  return worst;
}

const int64_t kRows[] = {1, 3, 5, 9, 15, 16, 17, 50, 97, 300};
const int64_t kCols[] = {1, 5, 8, 12, 16, 24, 33, 64, 96, 100, 144};
const int64_t kDepth[] = {1, 7, 27, 64, 330, 700};

}  // namespace

TEST_CASE("gemm_nn / gemm_nt / PackedB match a double product (tails, strides, epilogues)") {
  ThreadGuard guard;
  Rng rng(11);
  double worst = 0;
  int64_t cases = 0;
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    for (int64_t M : kRows)
      for (int64_t N : kCols)
        for (int64_t K : kDepth) {
          if (M * N * K > 3'000'000 || (threads > 1 && M * N * K < 20'000)) continue;
          Mats m = make(M, N, K, rng);
          const int variant = static_cast<int>(cases++ % 4);
          const bool acc = variant == 1, bias = variant >= 2;
          const Activation act = variant == 3 ? Activation::ReLU6 : Activation::Linear;
          kernels::Epilogue<float> ep{bias ? m.bias.data() : nullptr, act};
          CAPTURE(M);
          CAPTURE(N);
          CAPTURE(K);
          CAPTURE(threads);
          CAPTURE(variant);
          std::vector<float> C = m.C0;
          kernels::gemm_nn<float>(M, N, K, m.A.data(), m.lda, m.B.data(), m.ldb, C.data(), m.ldc,
                                  acc, ep);
          double e = check_c(m, C, acc, bias, act);
          C = m.C0;
          kernels::gemm_nt<float>(M, N, K, m.A.data(), m.lda, m.Bt.data(), K + 2, C.data(), m.ldc,
                                  acc, ep);
          e = std::max(e, check_c(m, C, acc, bias, act));
          kernels::PackedB<float> pb;
          pb.pack(K, N, m.B.data(), m.ldb, false);
          C = m.C0;
          pb.multiply(M, m.A.data(), m.lda, C.data(), m.ldc, acc, ep);
          e = std::max(e, check_c(m, C, acc, bias, act));
          C = m.C0;
          pb.multiply_rows(M, m.A.data(), m.lda, C.data(), m.ldc, acc, ep);
          e = std::max(e, check_c(m, C, acc, bias, act));
          CHECK(e < 2e-5);
          worst = std::max(worst, e);
        }
  }
  MESSAGE(std::string(isa_name(active_isa())) << ": " << cases << " shapes, worst error " << worst);
}

TEST_CASE("gemm_tn matches a double product (reduction split, swapped tiles, column sums)") {
  ThreadGuard guard;
  Rng rng(12);
  double worst = 0;
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    for (int64_t M : {1, 5, 16, 24, 33, 96, 160})
      for (int64_t N : {1, 7, 16, 24, 40, 144})
        for (int64_t K : {1, 30, 200, 3000}) {
          // C[M,N] += A^T B with A [K, M] (leading dim M + 1), B [K, N] (leading dim N + 2).
          std::vector<float> A(static_cast<std::size_t>(K * (M + 1))),
              B(static_cast<std::size_t>(K * (N + 2))), C0(static_cast<std::size_t>(M * N)),
              cs0(static_cast<std::size_t>(N));
          for (auto* v : {&A, &B, &C0, &cs0})
            for (auto& x : *v) x = static_cast<float>(rng.uniform(-1.0, 1.0));
          for (bool acc : {true, false}) {
            std::vector<float> C = C0, cs = cs0;
            kernels::gemm_tn<float>(M, N, K, A.data(), M + 1, B.data(), N + 2, C.data(), N, acc,
                                    cs.data());
            CAPTURE(M);
            CAPTURE(N);
            CAPTURE(K);
            CAPTURE(threads);
            double e = 0;
            for (int64_t i = 0; i < M; ++i)
              for (int64_t n = 0; n < N; ++n) {
                double s = acc ? C0[i * N + n] : 0.0, scale = 1;
                for (int64_t k = 0; k < K; ++k) {
                  s += double(A[k * (M + 1) + i]) * B[k * (N + 2) + n];
                  scale += std::abs(double(A[k * (M + 1) + i]) * B[k * (N + 2) + n]);
                }
                e = std::max(e, std::abs(C[i * N + n] - s) / scale);
              }
            for (int64_t n = 0; n < N; ++n) {
              double s = cs0[n], scale = 1;
              for (int64_t k = 0; k < K; ++k) {
                s += B[k * (N + 2) + n];
                scale += std::abs(B[k * (N + 2) + n]);
              }
              e = std::max(e, std::abs(cs[n] - s) / scale);
            }
            CHECK(e < 2e-5);
            worst = std::max(worst, e);
          }
        }
  }
  MESSAGE(std::string(isa_name(active_isa())) << ": worst gemm_tn error " << worst);
}

TEST_CASE("gemm: NaN in the product propagates through the ReLU6 epilogue") {
  // x86 max/min return their second operand when one is NaN; the kernels put the
  // constant first so a diverged network shows NaN instead of 0 or 6.
  for (int64_t M : {2, 40}) {
    const int64_t N = 20, K = 30;
    std::vector<float> A(static_cast<std::size_t>(M * K), 0.5f),
        B(static_cast<std::size_t>(K * N), 0.25f), C(static_cast<std::size_t>(M * N));
    A[0] = std::numeric_limits<float>::quiet_NaN();
    kernels::gemm_nn<float>(M, N, K, A.data(), K, B.data(), N, C.data(), N, false,
                            {nullptr, Activation::ReLU6});
    CAPTURE(M);
    for (int64_t n = 0; n < N; ++n) CHECK(std::isnan(C[n]));
    CHECK(C[N] == doctest::Approx(std::min(6.0, 0.5 * 0.25 * K)));
  }
}
