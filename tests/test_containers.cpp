// Containers: Sequential (chaining, lookup, smart backward, summary text) and
// InvertedResidual (Keras' _inverted_res_block structure, padding, skip, gradients).
#include "test_support.hpp"

#include <minicnn/layers/activation.hpp>
#include <minicnn/layers/batch_norm.hpp>
#include <minicnn/layers/conv2d.hpp>
#include <minicnn/layers/depthwise_conv2d.hpp>
#include <minicnn/layers/dropout.hpp>
#include <minicnn/layers/flatten.hpp>
#include <minicnn/layers/pooling.hpp>
#include <minicnn/layers/zero_padding2d.hpp>
#include <minicnn/models/inverted_residual.hpp>
#include <minicnn/models/sequential.hpp>

using namespace minicnn;

namespace {

using mt::kGradTol;
using mt::require_gradcheck;

template <typename T>
void randomize_bns(LayerT<T>& root, Rng& rng) {
  std::vector<LayerT<T>*> stack{&root};
  while (!stack.empty()) {
    LayerT<T>* l = stack.back();
    stack.pop_back();
    if (auto* bn = dynamic_cast<BatchNormalizationT<T>*>(l)) {
      for (auto& v : bn->gamma()->value) v = T(rng.uniform(0.5, 1.5));
      for (auto& v : bn->beta()->value) v = T(rng.uniform(-0.5, 0.5));
      for (auto& v : bn->moving_mean()->value) v = T(rng.uniform(-0.3, 0.3));
      for (auto& v : bn->moving_variance()->value) v = T(rng.uniform(0.5, 2.0));
    }
    for (auto* c : l->children()) stack.push_back(c);
  }
}

// Records how backward was called; passes gradients through unchanged.
class Spy : public LayerT<double> {
 public:
  explicit Spy(std::string name) : LayerT<double>(std::move(name)) {}
  std::string type() const override { return "Spy"; }
  int calls = 0;
  bool last_need = false;

 protected:
  Shape build_impl(const Shape& in) override { return in; }
  const TensorD& forward_impl(ConstView<double> x, bool) override {
    output_.copy_from(x);
    return output_;
  }
  const TensorD& backward_impl(ConstView<double> dy, bool need) override {
    ++calls;
    last_need = need;
    if (!need) return empty_;
    dinput_.copy_from(dy);
    return dinput_;
  }
};

}  // namespace

// ---------------------------------------------------------------- Sequential

TEST_CASE("Sequential chains children, looks layers up recursively, rejects duplicates") {
  Sequential m("model");
  CHECK(m.type() == "Sequential");
  auto& pad = m.add<ZeroPadding2D>("pad", 0, 1, 0, 1);
  auto& bn = m.add<BatchNormalization>("bn");
  m.add(std::make_unique<ReLU6>("relu"));
  auto& head = m.add<Sequential>("head");
  head.add<GlobalAveragePooling2D>("gap");
  head.add<Softmax>("probs");
  CHECK(pad.name() == "pad");
  CHECK(m.size() == 4);
  CHECK(m.layers().size() == 4);
  CHECK(m.children()[1] == &bn);
  CHECK(&m.layer("probs") == head.layers()[1]);
  CHECK(m.find_layer("nope") == nullptr);
  mt::check_throws_with([&] { m.layer("nope"); }, {"Sequential 'model'", "'nope'"});
  mt::check_throws_with([&] { m.add<ReLU>("gap"); }, {"Sequential 'model'", "'gap'", "unique"});
  mt::check_throws_with([&] { m.add(std::unique_ptr<Layer>()); }, {"Sequential 'model'", "null"});

  CHECK(m.build(Shape{6, 7, 5}) == Shape{5});
  CHECK(bn.output_shape() == Shape{7, 8, 5});
  auto params = m.parameters();
  REQUIRE(params.size() == 4);
  CHECK(params[0]->name == "bn/gamma");
  CHECK(params[3]->name == "bn/moving_variance");

  Rng rng(1);
  TensorF x = mt::random_tensor<float>(Shape{2, 6, 7, 5}, rng);
  TensorF y = m.forward(x, false);
  // Same as calling the children one after another.
  TensorF expect = head.forward(m.layer("relu").forward(bn.forward(pad.forward(x), false)), false);
  CHECK(mt::max_abs_diff(y, expect) == 0);
  mt::check_throws_with(
      [&] {
        m.forward(TensorF(Shape{2, 6, 7, 4}, 0.f));
      },
      {"Sequential 'model'", "(2, 6, 7, 4)", "(None, 6, 7, 5)"});

  // set_trainable propagates to every sublayer (Keras semantics).
  m.set_trainable(false);
  CHECK(!bn.trainable());
  CHECK(!head.layers()[0]->trainable());
  CHECK(m.count_params(true) == 0);
  m.set_trainable(true);
  CHECK(m.count_params(true) == 10);
}

TEST_CASE("Sequential backward asks for dx only where an earlier layer trains") {
  auto make = [] {
    auto m = std::make_unique<SequentialT<double>>("m");
    m->add<Spy>("a");
    m->add<BatchNormalizationT<double>>("bn1");
    m->add<Spy>("b");
    m->add<BatchNormalizationT<double>>("bn2");
    m->add<Spy>("c");
    return m;
  };
  Rng rng(2);
  TensorD x = mt::random_tensor<double>(Shape{3, 4}, rng);
  TensorD dy = mt::random_tensor<double>(Shape{3, 4}, rng);
  auto spy = [](SequentialT<double>& m, const char* n) -> Spy& {
    return dynamic_cast<Spy&>(m.layer(n));
  };

  SUBCASE("all trainable, caller wants no dx") {
    auto m = make();
    m->forward(x, true);
    CHECK(m->backward(dy, false).empty());
    CHECK((spy(*m, "c").calls == 1 && spy(*m, "c").last_need));
    CHECK((spy(*m, "b").calls == 1 && spy(*m, "b").last_need));
    CHECK(spy(*m, "a").calls == 0);  // bn1 gets need=false and nothing precedes it that trains
  }
  SUBCASE("bn1 frozen: the backward stops at bn2") {
    auto m = make();
    m->layer("bn1").set_trainable(false);
    m->forward(x, true);
    m->backward(dy, false);
    CHECK((spy(*m, "c").calls == 1 && spy(*m, "c").last_need));
    CHECK(spy(*m, "b").calls == 0);
    CHECK(spy(*m, "a").calls == 0);
  }
  SUBCASE("everything frozen: nothing runs") {
    auto m = make();
    m->set_trainable(false);
    m->forward(x, true);
    CHECK(m->backward(dy, false).empty());
    CHECK(spy(*m, "c").calls == 0);
  }
  SUBCASE("frozen but dx wanted: every layer propagates") {
    auto m = make();
    m->set_trainable(false);
    m->forward(x, true);
    const TensorD& dx = m->backward(dy, true);
    CHECK(dx.shape() == x.shape());
    for (const char* n : {"a", "b", "c"}) CHECK((spy(*m, n).calls == 1 && spy(*m, n).last_need));
  }
}

TEST_CASE("Sequential gradcheck through several layers (training mode, nested container)") {
  Rng rng(3);
  SequentialT<double> m("seq");
  m.add<ZeroPadding2DT<double>>("pad", 1, 0, 0, 2);
  m.add<BatchNormalizationT<double>>("bn", 0.9, 1e-3);
  m.add<ReLU6T<double>>("relu6");
  auto& inner = m.add<SequentialT<double>>("inner");
  auto& dw = inner.add<DepthwiseConv2DT<double>>("dw", 3, 2, Padding::Same, true);
  // A nonlinearity keeps dw/bias observable: a training-mode BN right after a
  // bias cancels it exactly (zero gradient, which a relative check cannot score).
  inner.add<ReLUT<double>>("relu_inner");
  inner.add<BatchNormalizationT<double>>("bn_inner");
  auto& drop = m.add<DropoutT<double>>("drop", 0.25, 5);
  m.add<GlobalAveragePooling2DT<double>>("gap");
  m.add<SoftmaxT<double>>("softmax");
  TensorD x = mt::random_tensor<double>(Shape{3, 5, 4, 3}, rng, -1.0, 2.0);
  m.build(x.shape().sample());
  randomize_bns(m, rng);
  // Windows that see only zeros (padding, clamped ReLU6) output the bias; keep it
  // away from relu_inner's kink at 0.
  for (auto* p : dw.parameters())
    if (p->name == "dw/bias")
      for (auto& v : p->value) v = rng.uniform(0.2, 0.5);
  require_gradcheck(m, x, true, [&] { drop.reseed(5); });
  require_gradcheck(m, x, false);
}

TEST_CASE("Sequential summary: Keras layout, thousands separators, frozen counts") {
  Sequential m("tiny");
  m.add<ZeroPadding2D>("pad", 0, 1, 0, 1);
  m.add<Conv2D>("conv", 300, 1, 1, Padding::Same, false);
  m.add<BatchNormalization>("bn");
  m.add<ReLU>("relu");
  auto& head = m.add<Sequential>("head");
  head.add<GlobalAveragePooling2D>("gap");
  head.add<Softmax>("probs");
  mt::check_throws_with([&] { m.summary(); }, {"Sequential 'tiny'", "built"});
  m.build(Shape{3, 4, 2});
  const std::string expected =
      "Model: \"tiny\"\n"
      "__________________________________________________________________\n"
      "Layer (type)                  Output Shape              Param #\n"
      "==================================================================\n"
      "pad (ZeroPadding2D)           (None, 4, 5, 2)           0\n"
      "__________________________________________________________________\n"
      "conv (Conv2D)                 (None, 4, 5, 300)         600\n"
      "__________________________________________________________________\n"
      "bn (BatchNormalization)       (None, 4, 5, 300)         1200\n"
      "__________________________________________________________________\n"
      "relu (ReLU)                   (None, 4, 5, 300)         0\n"
      "__________________________________________________________________\n"
      "gap (GlobalAveragePooling2D)  (None, 300)               0\n"
      "__________________________________________________________________\n"
      "probs (Softmax)               (None, 300)               0\n"
      "==================================================================\n"
      "Total params: 1,800\n"
      "Trainable params: 1,200\n"
      "Non-trainable params: 600\n"
      "__________________________________________________________________\n";
  std::string s = m.summary();
  MESSAGE("\n" << s);
  CHECK(s == expected);
  m.layer("bn").set_trainable(false);
  s = m.summary();
  CHECK(s.find("Total params: 1,800\nTrainable params: 600\nNon-trainable params: 1,200\n") !=
        std::string::npos);
  m.set_trainable(false);
  s = m.summary();
  CHECK(s.find("Trainable params: 0\nNon-trainable params: 1,800\n") != std::string::npos);
  // Unexpanded: the nested container is one row.
  s = m.summary(false);
  CHECK(s.find("head (Sequential)") != std::string::npos);
  CHECK(s.find("gap (GlobalAveragePooling2D)") == std::string::npos);
}

// ---------------------------------------------------------------- InvertedResidual

TEST_CASE("InvertedResidual builds Keras' _inverted_res_block layers") {
  SUBCASE("block 0: no expand, stride 1, no skip when channels change") {
    InvertedResidual b(0, 1, 16, 1);
    CHECK(b.name() == "expanded_conv");
    CHECK(b.type() == "InvertedResidual");
    CHECK(b.build(Shape{48, 48, 32}) == Shape{48, 48, 16});
    std::vector<std::string> names;
    for (auto* l : b.children()) names.push_back(l->name());
    CHECK(names == std::vector<std::string>{"expanded_conv_depthwise", "expanded_conv_depthwise_BN",
                                            "expanded_conv_depthwise_relu", "expanded_conv_project",
                                            "expanded_conv_project_BN"});
    CHECK(!b.has_skip());
    // Keras: depthwise 288 + BN 128 + project 512 + BN 64.
    CHECK(b.count_params(false) == 288 + 128 + 512 + 64);
  }
  SUBCASE("block 1: stride 2 on an even input pads ((0, 1), (0, 1))") {
    InvertedResidual b(1, 6, 24, 2);
    CHECK(b.name() == "block_1");
    CHECK(b.build(Shape{48, 48, 16}) == Shape{24, 24, 24});
    std::vector<std::string> names;
    for (auto* l : b.children()) names.push_back(l->name());
    CHECK(names == std::vector<std::string>{
                       "block_1_expand", "block_1_expand_BN", "block_1_expand_relu", "block_1_pad",
                       "block_1_depthwise", "block_1_depthwise_BN", "block_1_depthwise_relu",
                       "block_1_project", "block_1_project_BN"});
    auto* pad = dynamic_cast<ZeroPadding2D*>(b.children()[3]);
    REQUIRE(pad);
    CHECK((pad->top() == 0 && pad->bottom() == 1 && pad->left() == 0 && pad->right() == 1));
    CHECK(pad->output_shape() == Shape{49, 49, 96});
    auto* bn = dynamic_cast<BatchNormalization*>(b.children()[1]);
    REQUIRE(bn);
    CHECK(bn->momentum() == 0.999);
    CHECK(bn->epsilon() == 1e-3);
    CHECK(!b.has_skip());
    // Keras' summary for block_1 at alpha 1: 1536 + 384 + 864 + 384 + 2304 + 96.
    CHECK(b.count_params(false) == 5568);
    CHECK(b.count_params(true) == 1536 + 192 + 864 + 192 + 2304 + 48);
    CHECK(b.parameters()[0]->name == "block_1_expand/kernel");
  }
  SUBCASE("odd input pads ((1, 1), (1, 1))") {
    InvertedResidual b(3, 6, 32, 2);
    CHECK(b.build(Shape{7, 6, 8}) == Shape{4, 3, 32});
    auto* pad = dynamic_cast<ZeroPadding2D*>(b.children()[3]);
    REQUIRE(pad);
    CHECK((pad->top() == 1 && pad->bottom() == 1 && pad->left() == 0 && pad->right() == 1));
  }
  SUBCASE("stride 1 with equal channels adds the skip") {
    InvertedResidual b(2, 6, 24, 1);
    CHECK(b.build(Shape{24, 24, 24}) == Shape{24, 24, 24});
    REQUIRE(b.has_skip());
    CHECK(b.add_layer()->name() == "block_2_add");
    std::vector<SummaryRow> rows;
    b.summary_rows(rows);
    CHECK(rows.back().name == "block_2_add");
    CHECK(rows.back().type == "Add");
    CHECK(rows.size() == 9);  // 8 layers + Add
  }
  mt::check_throws_with([] { InvertedResidual(4, 6, 32, 3); },
                        {"InvertedResidual 'block_4'", "stride"});
  mt::check_throws_with(
      [] {
        InvertedResidual(4, 6, 32, 1).build(Shape{5, 5});
      },
      {"InvertedResidual 'block_4'", "(None, 5, 5)"});
}

TEST_CASE("InvertedResidual forward with skip equals x + body(x)") {
  Rng rng(4);
  InvertedResidual b(5, 3, 8, 1);
  TensorF x = mt::random_tensor<float>(Shape{2, 5, 5, 8}, rng);
  b.build(x.shape().sample());
  randomize_bns(b, rng);
  TensorF y = b.forward(x, false);
  ConstView<float> cur = x;
  for (auto* l : b.children()) cur = l->forward(cur, false).view();
  for (int64_t i = 0; i < x.size(); ++i)
    CHECK(y[i] == doctest::Approx(x[i] + cur[i]).epsilon(1e-5));
  mt::check_throws_with(
      [&] {
        b.forward(TensorF(Shape{2, 5, 5, 7}, 0.f));
      },
      {"InvertedResidual 'block_5'", "(2, 5, 5, 7)", "(None, 5, 5, 8)"});
}

TEST_CASE("InvertedResidual gradcheck: stride 1 with skip, stride 2, block 0 (training mode)") {
  Rng rng(5);
  SUBCASE("stride 1 + skip") {
    InvertedResidualT<double> b(2, 3, 4, 1);
    TensorD x = mt::random_tensor<double>(Shape{2, 5, 5, 4}, rng, -1.0, 1.0);
    b.build(x.shape().sample());
    REQUIRE(b.has_skip());
    randomize_bns(b, rng);
    require_gradcheck(b, x, true);
  }
  SUBCASE("stride 2, odd size") {
    InvertedResidualT<double> b(3, 4, 6, 2);
    TensorD x = mt::random_tensor<double>(Shape{2, 7, 5, 3}, rng, -1.0, 1.0);
    b.build(x.shape().sample());
    randomize_bns(b, rng);
    require_gradcheck(b, x, true);
  }
  SUBCASE("stride 2, even size") {
    InvertedResidualT<double> b(1, 2, 5, 2);
    TensorD x = mt::random_tensor<double>(Shape{3, 6, 4, 3}, rng, -1.0, 1.0);
    b.build(x.shape().sample());
    randomize_bns(b, rng);
    require_gradcheck(b, x, true);
  }
  SUBCASE("block 0, inference mode") {
    InvertedResidualT<double> b(0, 1, 3, 1);
    TensorD x = mt::random_tensor<double>(Shape{2, 4, 5, 3}, rng, -1.0, 1.0);
    b.build(x.shape().sample());
    REQUIRE(b.has_skip());
    randomize_bns(b, rng);
    require_gradcheck(b, x, false);
  }
  SUBCASE("frozen: dx still flows, no parameter gradients") {
    InvertedResidualT<double> b(6, 3, 4, 1);
    TensorD x = mt::random_tensor<double>(Shape{2, 3, 3, 4}, rng, -1.0, 1.0);
    b.build(x.shape().sample());
    randomize_bns(b, rng);
    b.set_trainable(false);
    CHECK(b.count_params(true) == 0);
    require_gradcheck(b, x, true);
    b.forward(x, true);
    CHECK(b.backward(TensorD(Shape{2, 3, 3, 4}, 1.0), false).empty());
  }
}

TEST_CASE("Sequential of InvertedResidual blocks: gradcheck and flat summary") {
  auto make = [](bool with_block0) {
    auto m = std::make_unique<SequentialT<double>>("mini_mobilenet");
    m->add<Conv2DT<double>>("Conv1", 4, 3, 2, Padding::Same, false);
    m->add<BatchNormalizationT<double>>("bn_Conv1", 0.999, 1e-3);
    m->add<ReLU6T<double>>("Conv1_relu");
    if (with_block0) m->add<InvertedResidualT<double>>(0, 1, 4, 1);
    m->add<InvertedResidualT<double>>(1, 2, 6, 2);
    m->add<InvertedResidualT<double>>(2, 2, 6, 1);
    m->add<GlobalAveragePooling2DT<double>>("gap");
    return m;
  };
  Rng rng(6);
  TensorD x = mt::random_tensor<double>(Shape{2, 9, 8, 3}, rng, -1.0, 1.0);
  // Training mode. Block 0 stays out here: its project_BN/beta feeds only block_1's
  // expand conv and training-mode BN, which cancel a per-channel shift exactly, so
  // that gradient is truly zero and a relative error is meaningless (Keras too).
  auto m = make(false);
  m->build(x.shape().sample());
  randomize_bns(*m, rng);
  require_gradcheck(*m, x, true, {}, 200);
  auto m0 = make(true);
  m0->build(x.shape().sample());
  randomize_bns(*m0, rng);
  require_gradcheck(*m0, x, false, {}, 200);
  CHECK(&m0->layer("block_1_depthwise") == m0->layer("block_1").children()[4]);

  std::string s = m0->summary();
  MESSAGE("\n" << s);
  for (const char* row :
       {"Conv1 (Conv2D)", "expanded_conv_depthwise (DepthwiseConv2D)", "expanded_conv_add (Add)",
        "block_1_pad (ZeroPadding2D)", "block_1_project_BN (BatchNormalization)",
        "block_2_add (Add)", "gap (GlobalAveragePooling2D)"})
    CHECK_MESSAGE(s.find(row) != std::string::npos, row);
  CHECK(s.find("(InvertedResidual)") ==
        std::string::npos);  // expanded, like Keras' functional model
  int64_t total = m0->count_params(false), trainable = m0->count_params(true);
  CHECK(s.find("Total params: " + seq_detail::thousands(total) + "\n") != std::string::npos);
  CHECK(s.find("Trainable params: " + seq_detail::thousands(trainable) + "\n") !=
        std::string::npos);
  CHECK(s.find("Non-trainable params: " + seq_detail::thousands(total - trainable) + "\n") !=
        std::string::npos);
}

TEST_CASE("Sequential and InvertedResidual fold BatchNormalization for inference") {
  Rng rng(7);
  Sequential m("foldme");
  m.add<Conv2D>("Conv1", 8, 3, 2, Padding::Same, false);
  m.add<BatchNormalization>("bn_Conv1", 0.999, 1e-3);
  m.add<ReLU6>("Conv1_relu");
  m.add<InvertedResidual>(1, 3, 8, 1);  // with skip
  m.add<InvertedResidual>(2, 3, 12, 2);
  m.add<GlobalAveragePooling2D>("gap");
  TensorF x = mt::random_tensor<float>(Shape{2, 9, 10, 3}, rng);
  m.build(x.shape().sample());
  randomize_bns(m, rng);
  TensorF y0 = m.forward(x, false);
  const int64_t layers_before = int64_t(m.layer("block_2").children().size());
  m.fold_for_inference();
  CHECK(m.inference_only());
  CHECK(m.find_layer("bn_Conv1") == nullptr);
  CHECK(m.find_layer("Conv1_relu") == nullptr);
  CHECK(m.find_layer("block_1_expand_BN") == nullptr);
  CHECK(m.find_layer("block_2_project_BN") == nullptr);
  CHECK(int64_t(m.layer("block_2").children().size()) < layers_before);
  CHECK(dynamic_cast<InvertedResidual&>(m.layer("block_1")).has_skip());
  TensorF y1 = m.forward(x, false);
  CHECK(mt::max_rel_diff(y1, y0, 1.0) < 1e-4);
  mt::check_throws_with([&] { m.forward(x, true); }, {"Sequential 'foldme'", "folded"});
}

TEST_CASE("inference folding drops a ZeroPadding2D only where TF 'same' padding is exact") {
  Rng rng(9);
  // Even input, stride 2: TF 'same' pads (0, 1) on each axis, so (0,1,0,1) folds and
  // (1,1,1,1) (another output grid) must stay. Odd input: 'same' pads (1, 1).
  struct Case {
    int64_t h, w, top, bottom, left, right;
    bool folds;
  };
  for (const Case c : {Case{10, 8, 0, 1, 0, 1, true}, Case{9, 11, 1, 1, 1, 1, true},
                       Case{10, 8, 1, 1, 1, 1, false}, Case{10, 8, 0, 1, 1, 0, false}}) {
    CAPTURE(c.h);
    CAPTURE(c.top);
    Sequential m("padfold");
    m.add<ZeroPadding2D>("stem_pad", c.top, c.bottom, c.left, c.right);
    m.add<Conv2D>("stem", 6, 3, 2, Padding::Valid, true, Activation::ReLU6);
    m.add<ZeroPadding2D>("dw_pad", c.top, c.bottom, c.left, c.right);
    m.add<DepthwiseConv2D>("dw", 3, 2, Padding::Valid, true);
    TensorF x = mt::random_tensor<float>(Shape{2, c.h, c.w, 3}, rng);
    // The second pad sees the stem's output; it folds only if that size behaves alike.
    const Shape mid = m.build(x.shape().sample());
    TensorF y0 = m.forward(x, false);
    m.fold_for_inference();
    CHECK((m.find_layer("stem_pad") == nullptr) == c.folds);
    auto& stem = dynamic_cast<Conv2D&>(m.layer("stem"));
    CHECK((stem.padding() == Padding::Same) == c.folds);
    CHECK(
        stem.input_shape() ==
        (c.folds ? x.shape().sample() : Shape{c.h + c.top + c.bottom, c.w + c.left + c.right, 3}));
    const TensorF& y1 = m.forward(x, false);
    REQUIRE(y1.shape() == y0.shape());
    CHECK(mt::max_rel_diff(y1, y0, 1.0) < 1e-5);
    CHECK(m.output_shape() == mid);
  }
}

// ---------------------------------------------------------------- deferred batch norm output

TEST_CASE("Sequential: a training BatchNormalization leaves its output and its dx to neighbours") {
  // expand 1x1 -> BN -> ReLU6 -> ZeroPadding2D (correct_pad) -> 3x3 stride-2 'valid'
  // depthwise -> BN, as in MobileNetV2 block 1. With the output deferred, the depthwise layer
  // normalises the batch norm's input itself (kernels/dwconv2d_bn_input.hpp); with dx
  // deferred, the expand convolution makes it from the batch norm's dy (kernels::BnInputGrad).
  // Everything must equal the same model unlinked, where the batch norm writes both. Batches
  // of 8 and 1 (whole images per thread, and the whole-batch fallback); 1 and 2 threads.
  mt::ThreadGuard guard;
  for (int threads : {1, 2})
    for (int64_t n : {8, 1}) {
      CAPTURE(threads);
      CAPTURE(n);
      set_num_threads(threads);
      Sequential m("m");
      auto& conv = m.add<Conv2D>("expand", 24, 1, 1, Padding::Same, false);
      auto& bn = m.add<BatchNormalization>("expand_BN");
      m.add<ReLU6>("expand_relu");
      m.add<ZeroPadding2D>("pad", 0, 1, 0, 1);
      auto& dw = m.add<DepthwiseConv2D>("dw", 3, 2, Padding::Valid, false);
      auto& bn2 = m.add<BatchNormalization>("dw_BN");
      Rng rng(31);
      TensorF x = mt::random_tensor<float>(Shape{n, 40, 30, 5}, rng, -1, 1);
      m.build(x.shape().sample());
      randomize_bns(m, rng);
      REQUIRE(bn.apply_consumer() == &dw);
      REQUIRE(dw.batch_norm_input() == &bn);
      CHECK(bn2.apply_consumer() == nullptr);
      REQUIRE(bn.input_grad_consumer() == &conv);
      REQUIRE(conv.batch_norm_input_grad() == &bn);
      CHECK(bn2.input_grad_consumer() == nullptr);  // a depthwise layer before it
      TensorF dy = mt::random_tensor<float>(m.output_shape().with_leading(n), rng, -1, 1);

      struct Run {
        TensorF y, dx;
        std::vector<TensorF> grads;
      };
      auto run = [&] {
        Run r;
        m.zero_grad();
        r.y = m.forward(x.view(), true);
        r.dx = m.backward(dy.view(), true);
        for (auto* p : m.parameters())
          if (p->trainable) r.grads.push_back(p->grad);
        return r;
      };
      const Run deferred = run();
      CHECK(bn.output_deferred());
      CHECK(bn.input_grad_deferred());  // its dx made by the expand convolution
      CHECK_FALSE(bn2.input_grad_deferred());
      // An inference forward writes the output again (moving statistics as they stand).
      TensorF y_inf = m.forward(x.view(), false);
      CHECK_FALSE(bn.output_deferred());

      bn.defer_apply_to(nullptr);
      dw.read_batch_norm_output(nullptr);
      bn.defer_input_grad_to(nullptr);
      conv.read_batch_norm_input_grad(nullptr);
      TensorF y_inf_plain = m.forward(x.view(), false);
      const Run plain = run();
      CHECK_FALSE(bn.output_deferred());

      CHECK(mt::max_abs_diff(deferred.y, plain.y) <= 1e-5 * mt::max_abs(plain.y));
      CHECK(mt::max_abs_diff(deferred.dx, plain.dx) <= 1e-5 * mt::max_abs(plain.dx));
      REQUIRE(deferred.grads.size() == plain.grads.size());
      REQUIRE(plain.grads.size() == 6);  // conv kernel, 2 x (gamma, beta), dw kernel
      for (size_t i = 0; i < plain.grads.size(); ++i) {
        CAPTURE(i);
        CHECK(mt::max_abs(plain.grads[i]) > 0);
        CHECK(mt::max_abs_diff(deferred.grads[i], plain.grads[i]) <=
              1e-4 * mt::max_abs(plain.grads[i]));
      }
      CHECK(mt::max_abs_diff(y_inf, y_inf_plain) == 0);
    }
}

TEST_CASE(
    "InvertedResidual gradcheck with the expand batch norm deferred, whole images per thread") {
  // The double gradient checks above run small batches; here 4 images on 1 and 2 threads
  // take the per-image path of the deferred depthwise (finite differences as the oracle).
  mt::ThreadGuard guard;
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    Rng rng(9);
    InvertedResidualT<double> b(1, 3, 5, 2);
    TensorD x = mt::random_tensor<double>(Shape{4, 6, 5, 3}, rng, -1.0, 1.0);
    b.build(x.shape().sample());
    randomize_bns(b, rng);
    auto child = [&](const std::string& name) -> LayerT<double>* {
      for (auto* l : b.children())
        if (l->name() == name) return l;
      return nullptr;
    };
    auto* bn = dynamic_cast<BatchNormalizationT<double>*>(child("block_1_expand_BN"));
    REQUIRE(bn);
    REQUIRE(bn->apply_consumer() == child("block_1_depthwise"));
    require_gradcheck(b, x, true);
    CHECK(bn->output_deferred());
  }
}

// ---------------------------------------------------------------- per-layer timing

namespace {
std::vector<std::string>& observed() {
  static std::vector<std::string> v;
  return v;
}
}  // namespace

TEST_CASE("forward and backward observers report each leaf layer that runs, once per call") {
  Sequential m("m");
  m.add<Conv2D>("c", 4, 1, 1, Padding::Same, false);
  m.add<BatchNormalization>("bn");
  m.add<ReLU6>("relu");  // absorbed by bn: neither pass runs it
  auto& inner = m.add<Sequential>("inner");
  inner.add<Flatten>("flat");
  Rng rng(3);
  TensorF x = mt::random_tensor<float>(Shape{2, 3, 3, 2}, rng, -1, 1);
  m.build(x.shape().sample());
  observed().clear();
  forward_observer() = [](const std::string& name, const std::string& type, double s) {
    CHECK(s >= 0);
    observed().push_back("f " + name + " " + type);
  };
  backward_observer() = [](const std::string& name, const std::string& type, double s) {
    CHECK(s >= 0);
    observed().push_back("b " + name + " " + type);
  };
  const TensorF y = m.forward(x.view(), true);
  TensorF dy(y.shape(), 1.0f);
  m.backward(dy.view(), true);
  forward_observer() = nullptr;
  backward_observer() = nullptr;
  const std::vector<std::string> want = {
      "f c Conv2D",     "f bn BatchNormalization", "f flat Flatten",
      "b flat Flatten", "b bn BatchNormalization", "b c Conv2D"};
  CHECK(observed() == want);
}

TEST_CASE("A Conv2D given an activation stops taking the batch norm's deferred dx") {
  Sequential m("m");
  auto& conv = m.add<Conv2D>("c", 4, 1, 1, Padding::Same, false);
  auto& bn = m.add<BatchNormalization>("bn");
  m.build(Shape{3, 3, 2});
  REQUIRE(bn.input_grad_consumer() == &conv);
  conv.set_activation(Activation::Linear);
  CHECK(bn.input_grad_consumer() == &conv);
  conv.set_activation(Activation::ReLU6);
  CHECK(bn.input_grad_consumer() == nullptr);
  CHECK(conv.batch_norm_input_grad() == nullptr);
  // The batch norm writes its dx again, and the gradient reaches the input.
  Rng rng(4);
  TensorF x = mt::random_tensor<float>(Shape{2, 3, 3, 2}, rng, -1, 1);
  const TensorF y = m.forward(x.view(), true);
  TensorF dy = mt::random_tensor<float>(y.shape(), rng, -1, 1);
  const TensorF dx = m.backward(dy.view(), true);
  CHECK_FALSE(bn.input_grad_deferred());
  CHECK(mt::max_abs(dx) > 0);
}
