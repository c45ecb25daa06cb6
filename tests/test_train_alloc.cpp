// Heap allocations of a training step, counted by replacing malloc and its relatives for
// this test program (glibc lets an executable interpose them; the replacements count, then
// call glibc's own). Everything that allocates is seen: operator new, std::vector,
// Tensor's aligned_alloc and libgomp's team structures. After the first steps (buffers
// grow to their final sizes) a step of Model::train_on_batch must allocate nothing, both
// for a full fine-tune (every layer trains, BatchNormalization in training mode) and for the
// frozen-base step (folded base, head trained).
// AddressSanitizer replaces malloc itself, so under it the counters stay at zero and the
// cases skip (the sanitizer build excludes this program anyway: label no_sanitizer).
#include <doctest/doctest.h>

#include <execinfo.h>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdio>

#include "test_support.hpp"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define MINICNN_COUNTING_MALLOC 0
#else
#define MINICNN_COUNTING_MALLOC 1
#endif

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0};
std::atomic<size_t> g_largest{0};
thread_local bool t_in_trace = false;
inline void note(size_t n) {
  if (!g_counting.load(std::memory_order_relaxed)) return;
  if (std::getenv("ALLOC_TRACE") && !t_in_trace && g_allocations.load() < 60) {
    t_in_trace = true;
    void* buf[12];
    int k = backtrace(buf, 12);
    std::fprintf(stderr, "--- alloc %zu\n", n);
    backtrace_symbols_fd(buf, k, 2);
    t_in_trace = false;
  }
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  size_t l = g_largest.load(std::memory_order_relaxed);
  while (n > l && !g_largest.compare_exchange_weak(l, n)) {
  }
}
}  // namespace

#if MINICNN_COUNTING_MALLOC
extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
void __libc_free(void*);

void* malloc(size_t n) {
  note(n);
  return __libc_malloc(n);
}
void free(void* p) {
  __libc_free(p);
}
void* calloc(size_t k, size_t n) {
  note(k * n);
  return __libc_calloc(k, n);
}
void* realloc(void* p, size_t n) {
  note(n);
  return __libc_realloc(p, n);
}
void* memalign(size_t a, size_t n) {
  note(n);
  return __libc_memalign(a, n);
}
void* aligned_alloc(size_t a, size_t n) {
  note(n);
  return __libc_memalign(a, n);
}
int posix_memalign(void** out, size_t a, size_t n) {
  note(n);
  void* p = __libc_memalign(a, n);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}
}
#endif

namespace {

using namespace minicnn;

// Allocations made by `fn`, and the largest one.
template <typename F>
std::pair<long, size_t> count_allocations(F&& fn) {
  g_allocations = 0;
  g_largest = 0;
  g_counting = true;
  fn();
  g_counting = false;
  return {g_allocations.load(), g_largest.load()};
}

void require_counting_malloc() {
  if (!MINICNN_COUNTING_MALLOC) {
    std::printf("SKIPPED: the sanitizer replaces malloc; allocations are not counted\n");
    std::fflush(stdout);
    std::_Exit(77);
  }
  // The counter must see an allocation, or every check below would pass vacuously.
  auto [n, largest] = count_allocations([] {
    Tensor<float> t(Shape{100, 10});
    t.fill(1.f);
  });
  REQUIRE(n >= 1);
  REQUIRE(largest >= 4000);
}

// MobileNetV2 alpha 0.35 (random weights) + the notebook's head, 64x64 inputs.
std::unique_ptr<Sequential> small_classifier(bool freeze_base) {
  MobileNetV2Options mo;
  mo.alpha = 0.35;
  mo.size(64);
  auto base = mobilenet_v2<float>(mo);
  base->set_trainable(!freeze_base);
  auto model = std::make_unique<Sequential>("classifier");
  model->add(std::move(base));
  model->add<GlobalAveragePooling2D>("global_average_pooling2d");
  set_global_seed(5);
  model->add<Dense>("dense", 32, DenseOptions{"relu", true});
  model->add<Dropout>("dropout", 0.5, 5);
  model->add<Dense>("dense_1", 5, DenseOptions{"softmax", true});
  model->build(Shape{64, 64, 3});
  return model;
}

struct StepData {
  Tensor<float> x, y;
};
StepData batch(int64_t n, uint64_t seed) {
  Rng rng(seed);
  StepData d{mt::random_tensor<float>(Shape{n, 64, 64, 3}, rng), Tensor<float>(Shape{n, 5}, 0.f)};
  for (int64_t i = 0; i < n; ++i) d.y[i * 5 + i % 5] = 1.f;
  return d;
}

void check_steps_allocate_nothing(Model& model, int threads) {
  set_num_threads(threads);
  StepData d = batch(4, 9);
  // Warm-up: buffers reach their final sizes; the gradient pool settles.
  for (int s = 0; s < 3; ++s) model.train_on_batch(d.x.view(), d.y.view());
  Parameter* w = model.net().find_parameter("dense_1/kernel");
  REQUIRE(w != nullptr);
  const Tensor<float> before = w->value;
  double loss = 0;
  auto [n, largest] = count_allocations([&] {
    for (int s = 0; s < 4; ++s) loss = model.train_on_batch(d.x.view(), d.y.view());
  });
  CAPTURE(threads);
  CAPTURE(largest);
  CHECK(n == 0);
  // The steps did train.
  CHECK(std::isfinite(loss));
  CHECK(mt::max_abs_diff(w->value, before) > 0);
}

}  // namespace

TEST_CASE("a full fine-tune step (every layer trains, BN in training mode) allocates nothing") {
  require_counting_malloc();
  Model model(small_classifier(/*freeze_base=*/false));
  model.compile(std::make_unique<Adam>(1e-3));
  for (int threads : {1, 2}) check_steps_allocate_nothing(model, threads);
}

TEST_CASE("a frozen-base step (folded base, head trained) allocates nothing") {
  require_counting_malloc();
  Model model(small_classifier(/*freeze_base=*/true));
  model.compile(std::make_unique<Adam>(1e-3));
  for (int threads : {1, 2}) check_steps_allocate_nothing(model, threads);
  CHECK(model.graph().has_prefix());
}

TEST_CASE("train_on_batch: bad shapes are refused before anything changes") {
  Model model(small_classifier(false));
  model.compile(std::make_unique<Adam>(1e-3));
  StepData d = batch(2, 1);
  Tensor<float> wrong_x(Shape{2, 32, 32, 3}, 0.f), wrong_y(Shape{2, 4}, 0.f),
      short_y(Shape{1, 5}, 0.f);
  CHECK_THROWS_WITH_AS(model.train_on_batch(wrong_x.view(), d.y.view()),
                       doctest::Contains("takes (None, 64, 64, 3)"), ShapeError);
  CHECK_THROWS_WITH_AS(model.train_on_batch(d.x.view(), wrong_y.view()),
                       doctest::Contains("outputs (None, 5)"), ShapeError);
  CHECK_THROWS_AS(model.train_on_batch(d.x.view(), short_y.view()), ShapeError);
  Model uncompiled(small_classifier(false));
  CHECK_THROWS_WITH_AS(uncompiled.train_on_batch(d.x.view(), d.y.view()),
                       doctest::Contains("compile"), ConfigError);
}

TEST_CASE("a steady-state Sequential::infer allocates nothing, one frame or micro-batches") {
  require_counting_malloc();
  auto model = small_classifier(/*freeze_base=*/true);
  model->fold_for_inference();
  Rng rng(3);
  const Tensor<float> frame = mt::random_tensor<float>(Shape{1, 64, 64, 3}, rng);
  const Tensor<float> frames = mt::random_tensor<float>(Shape{7, 64, 64, 3}, rng);
  // Three samples per pass, so 7 frames run as 3 + 3 + 1.
  model->set_infer_activation_budget(3 * model->infer_bytes_per_sample());
  REQUIRE(model->infer_micro_batch() == 3);
  for (int threads : {1, 2}) {
    CAPTURE(threads);
    set_num_threads(threads);
    for (const Tensor<float>* x : {&frame, &frames}) {
      CAPTURE(x->dim(0));
      const Tensor<float> ref = model->forward(x->view(), false);
      for (int s = 0; s < 2; ++s) model->infer(x->view());  // warm-up: buffers reach their sizes
      float first = 0;
      auto [n, largest] = count_allocations([&] {
        for (int s = 0; s < 3; ++s) first = model->infer(x->view())[0];
      });
      CAPTURE(largest);
      CHECK(n == 0);
      CHECK(std::abs(first - ref[0]) <= 1e-5f * (1.f + std::abs(ref[0])));
      CHECK(mt::max_abs_diff(model->infer(x->view()), ref) <= 1e-5 * (1.0 + mt::max_abs(ref)));
    }
  }
}
