// ActivationPool (layers/activation_pool.hpp): an inference pass that recycles layer outputs
// gives the same numbers as one that keeps them all, allocates nothing after its first pass,
// keeps less alive, and leaves training passes alone. Also the moved-from Tensor it relies on.
#include <minicnn/minicnn.hpp>

#include "doctest/doctest.h"
#include "test_support.hpp"

using namespace minicnn;

namespace {

// A small MobileNetV2-like stack: a stem, an expanding block with a residual Add, a strided
// block, a pooling head. Built and folded, as the training graph's frozen prefix is.
std::unique_ptr<Sequential> small_net(Rng& rng) {
  auto m = std::make_unique<Sequential>("pooled");
  m->add<Conv2D>("Conv1", 8, 3, 2, Padding::Same, false);
  m->add<BatchNormalization>("bn_Conv1", 0.999, 1e-3);
  m->add<ReLU6>("Conv1_relu");
  m->add<InvertedResidual>(1, 4, 8, 1);  // with the skip
  m->add<InvertedResidual>(2, 4, 12, 2);
  m->add<InvertedResidual>(3, 4, 12, 1);  // with the skip
  m->add<GlobalAveragePooling2D>("gap");
  m->build(Shape{17, 14, 3});
  for (auto* p : m->parameters())
    for (int64_t i = 0; i < p->value.size(); ++i)
      p->value[i] = float(p->name.find("variance") != std::string::npos ? rng.uniform(0.5, 1.5)
                                                                        : rng.uniform(-0.5, 0.5));
  return m;
}

}  // namespace

TEST_CASE("a moved-from Tensor is empty and can be resized again") {
  TensorF a(Shape{4, 5}, 1.0f);
  TensorF b(std::move(a));
  CHECK(b.capacity() == 20);
  CHECK(a.capacity() == 0);
  CHECK(a.empty());
  a.resize(Shape{3, 3});  // allocates: writing through a null pointer would crash here
  a.fill(2.0f);
  CHECK(a[8] == 2.0f);
  TensorF c;
  c = std::move(b);
  CHECK(b.capacity() == 0);
  CHECK(c.size() == 20);
}

TEST_CASE("a pooled inference pass equals the unpooled one and stops allocating") {
  Rng rng(11);
  auto net = small_net(rng);
  net->fold_for_inference();
  ActivationPool pool;
  for (int64_t batch : {3, 5, 3, 1, 5}) {
    CAPTURE(batch);
    TensorF x = mt::random_tensor<float>(Shape{batch, 17, 14, 3}, rng);
    // Reference: every layer keeps its output (no pool installed).
    TensorF ref = net->forward(x, false);
    TensorF got;
    {
      ActivationPool::Scope scope(pool);
      got = net->forward(x, false);
    }
    CHECK(got.shape() == ref.shape());
    CHECK(mt::max_abs_diff(got, ref) == 0.0);
    CHECK(pool.buffers() > 0);
  }
  // Same batch again: the pool neither grows nor shrinks (every buffer found a home).
  TensorF x = mt::random_tensor<float>(Shape{5, 17, 14, 3}, rng);
  size_t bytes = 0, buffers = 0;
  for (int pass = 0; pass < 3; ++pass) {
    ActivationPool::Scope scope(pool);
    net->forward(x, false);
    if (pass > 0) {
      CHECK(pool.bytes() == bytes);
      CHECK(pool.buffers() == buffers);
    }
    bytes = pool.bytes();
    buffers = pool.buffers();
  }
}

TEST_CASE("the pool keeps fewer bytes alive than one output per layer") {
  Rng rng(12);
  auto net = small_net(rng);
  net->fold_for_inference();
  TensorF x = mt::random_tensor<float>(Shape{8, 17, 14, 3}, rng);
  // Bytes of every layer output when each layer keeps its own (hand-summed from the shapes).
  int64_t all = 0;
  auto walk = [&](auto& self, Layer& l) -> void {
    auto kids = l.children();
    if (kids.empty()) all += l.output_shape().size() * 8 * int64_t(sizeof(float));
    for (auto* c : kids) self(self, *c);
  };
  walk(walk, *net);
  ActivationPool pool;
  {
    ActivationPool::Scope scope(pool);
    net->forward(x, false);
  }
  CHECK(pool.bytes() > 0);
  CHECK(int64_t(pool.bytes()) < all / 2);
}

TEST_CASE("a training pass ignores an installed pool") {
  Rng rng(13);
  auto a = small_net(rng);
  Rng rng2(13);
  auto b = small_net(rng2);
  TensorF x = mt::random_tensor<float>(Shape{4, 17, 14, 3}, rng);
  TensorF dy(Shape{4, 12}, 0.25f);
  const TensorF ya = a->forward(x, true);
  a->backward(dy, true);
  ActivationPool pool;
  TensorF yb;
  {
    ActivationPool::Scope scope(pool);
    yb = b->forward(x, true);
    b->backward(dy, true);
  }
  CHECK(pool.buffers() == 0);
  CHECK(mt::max_abs_diff(ya, yb) == 0.0);
  auto pa = a->parameters(), pb = b->parameters();
  REQUIRE(pa.size() == pb.size());
  for (size_t i = 0; i < pa.size(); ++i)
    if (!pa[i]->grad.empty()) CHECK(mt::max_abs_diff(pa[i]->grad, pb[i]->grad) == 0.0);
}

TEST_CASE("Sequential::infer recycles outputs through the model's own pool") {
  Rng rng(14);
  auto net = small_net(rng);
  net->fold_for_inference();
  for (int64_t batch : {4, 2, 4}) {
    CAPTURE(batch);
    TensorF x = mt::random_tensor<float>(Shape{batch, 17, 14, 3}, rng);
    const TensorF ref = net->forward(x, false);  // every layer keeps its output
    const TensorF& got = net->infer(x);
    CHECK(got.shape() == ref.shape());
    CHECK(mt::max_abs_diff(got, ref) == 0.0);
    // infer() handed the inner outputs to its pool; a plain forward afterwards allocates
    // them again and still agrees.
    CHECK(mt::max_abs_diff(net->forward(x, false), ref) == 0.0);
  }
  // A caller's pool installed around infer() is left alone: infer() uses its own.
  ActivationPool outer;
  {
    ActivationPool::Scope scope(outer);
    net->infer(mt::random_tensor<float>(Shape{3, 17, 14, 3}, rng));
  }
  CHECK(outer.buffers() == 0);
}

TEST_CASE("Sequential::infer runs a large batch in equal micro-batches") {
  Rng rng(15);
  auto net = small_net(rng);
  net->fold_for_inference();
  // Alive per sample while the widest unit runs: at least the first InvertedResidual's
  // 9x7x8 input, 9x7x32 expansion and 9x7x32 depthwise output; at most twice the input and
  // every layer output (a container counts its output and its last child's; hand-summed).
  const int64_t per_sample = net->infer_bytes_per_sample(), f = int64_t(sizeof(float));
  CHECK(per_sample >= (9 * 7 * 8 + 2 * 9 * 7 * 32) * f);
  CHECK(per_sample <= (17 * 14 * 3 + 9 * 7 * 8 + 9 * 7 * (32 + 32 + 8 + 8) + 9 * 7 * 32 +
                       5 * 4 * (32 + 12) + 5 * 4 * (48 + 48 + 12 + 12) + 12) *
                          f * 2);
  CHECK(net->infer_micro_batch() == Sequential::kInferActivationBudget / per_sample);
  net->set_infer_activation_budget(3 * per_sample);
  CHECK(net->infer_micro_batch() == 3);
  for (int64_t batch : {3, 7, 10, 1}) {  // one pass; 3 + 3 + 1; 3 + 3 + 3 + 1; one
    CAPTURE(batch);
    TensorF x = mt::random_tensor<float>(Shape{batch, 17, 14, 3}, rng);
    const TensorF ref = net->forward(x, false);
    const TensorF& got = net->infer(x);
    REQUIRE(got.shape() == ref.shape());
    CHECK(mt::max_abs_diff(got, ref) <= 1e-5 * (1.0 + mt::max_abs(ref)));
  }
}
