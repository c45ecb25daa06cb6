// MobileNetV2: Keras-exact architecture (parameter counts, names), real ImageNet
// weights reproduce the independent reference features, folding preserves outputs,
// and weights survive a save/load round trip bit for bit.
#include <minicnn/models/model.hpp>

#include "test_support.hpp"

using namespace minicnn;

namespace {
MobileNetV2Options opts(double alpha, int64_t size, bool top = false) {
  MobileNetV2Options o;
  o.alpha = alpha;
  o.size(size);
  o.include_top = top;
  return o;
}
}  // namespace

TEST_CASE("channel rounding follows Keras' _make_divisible") {
  CHECK(make_divisible(32 * 0.35) == 16);
  CHECK(make_divisible(5) == 8);
  CHECK(make_divisible(16 * 1.4) == 24);
  CHECK(make_divisible(1280 * 1.3) == 1664);
  CHECK(make_divisible(32 * 0.75) == 24);
}

TEST_CASE("parameter counts equal Keras'") {
  struct Case {
    double alpha;
    bool top;
    int64_t total, trainable;
  };
  // Keras' figures: model.count_params() and its trainable part (BN moving stats are not
  // trainable).
  for (Case c : {Case{1.0, false, 2257984, 2223872}, Case{0.35, false, 410208, 396128},
                 Case{1.0, true, 3538984, 3504872}}) {
    auto m = mobilenet_v2(opts(c.alpha, 96, c.top));
    CAPTURE(c.alpha);
    CAPTURE(c.top);
    CHECK(m->count_params(false) == c.total);
    CHECK(m->count_params(true) == c.trainable);
  }
  auto m = mobilenet_v2(opts(1.0, 224));
  CHECK(m->output_shape() == Shape{7, 7, 1280});
  CHECK(mobilenet_v2(opts(1.0, 96))->output_shape() == Shape{3, 3, 1280});
  CHECK(mobilenet_v2(opts(1.0, 97))->output_shape() == Shape{4, 4, 1280});
  CHECK(m->parameters().size() == 260);
  CHECK(m->find_parameter("block_3_depthwise/depthwise_kernel")->value.shape() ==
        Shape{3, 3, 144, 1});
  CHECK(m->find_parameter("Conv_1_bn/moving_variance") != nullptr);
  CHECK(m->find_parameter("expanded_conv_project/kernel")->value.shape() == Shape{1, 1, 32, 16});
  std::string s = m->summary();
  CHECK(s.find("Total params: 2,257,984") != std::string::npos);
  CHECK(s.find("block_16_project_BN") != std::string::npos);
}

TEST_CASE("bad options are refused") {
  mt::check_throws_with([] { mobilenet_v2(opts(0.6, 224)); }, {"alpha", "0.35"});
  mt::check_throws_with([] { mobilenet_v2(opts(1.0, 31)); }, {"31x31", "32x32"});
  MobileNetV2Options o;
  o.pooling = "min";
  mt::check_throws_with([&] { mobilenet_v2(o); }, {"pooling", "min"});
}

TEST_CASE("features of the real ImageNet weights match the reference within 1e-4") {
  mt::require_shared("weights-src/mobilenet_v2_1.0_224_no_top__from_slim_ckpt_npy.h5");
  std::string ref = mt::shared_dir() + "/imagenet-samples/reference/";
  for (std::string alpha : {"1.0", "0.35"}) {
    std::string weights = mt::converted_weights(alpha);
    for (int size : {96, 224}) {
      auto inputs = load_npy(ref + "inputs_" + std::to_string(size) + "_uint8.npy");
      TensorF want = load_npy_tensor<float>(ref + "feat_gap_alpha" + alpha + "_" +
                                            std::to_string(size) + ".npy");
      TensorF x(Shape{12, size, size, 3});
      preprocess_into(reinterpret_cast<const uint8_t*>(inputs.bytes.data()), x.size(),
                      Preprocess::Tf, x.data());
      for (bool fold : {true, false}) {
        ModelLoadOptions o;
        o.include_top = false;
        o.pooling = "avg";
        o.input_height = o.input_width = size;
        o.fold_for_inference = fold;
        LoadedModel m = load_mobilenet_v2(weights, o);
        const TensorF& f = m.net->forward(x, false);
        REQUIRE(f.shape() == want.shape());
        double err = mt::max_abs_diff(f, want);
        MESSAGE("alpha " << alpha << " @" << std::to_string(size)
                         << std::string(fold ? " folded" : " unfolded")
                         << ": max |features - reference| = " << err);
        CHECK(err < 1e-4);
      }
    }
  }
}

TEST_CASE("h5 -> mcnn -> load -> save -> load is bit-identical") {
  mt::require_shared("weights-src/mobilenet_v2_0.35_224_no_top__from_teachable_machine.h5");
  std::string path = mt::converted_weights("0.35");
  McnnFile a = read_mcnn(path);
  ModelLoadOptions o;
  o.fold_for_inference = false;
  LoadedModel m = load_mobilenet_v2(path, o);
  std::string out = std::filesystem::temp_directory_path() / "minicnn_roundtrip.mcnn";
  save_weights(*m.net, out, a.metadata);
  McnnFile b = read_mcnn(out);
  REQUIRE(a.tensors.size() == b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    CHECK(a.tensors[i].name == b.tensors[i].name);
    REQUIRE(a.tensors[i].value.size() == b.tensors[i].value.size());
    CHECK(std::memcmp(a.tensors[i].value.data(), b.tensors[i].value.data(),
                      4 * a.tensors[i].value.size()) == 0);
  }
  LoadedModel m2 = load_mobilenet_v2(out, o);
  auto p1 = m.net->parameters(), p2 = m2.net->parameters();
  REQUIRE(p1.size() == p2.size());
  for (size_t i = 0; i < p1.size(); ++i)
    CHECK(std::memcmp(p1[i]->value.data(), p2[i]->value.data(), 4 * p1[i]->value.size()) == 0);
  std::filesystem::remove(out);
}

TEST_CASE("folding preserves outputs on random weights and odd sizes") {
  set_global_seed(11);
  auto a = mobilenet_v2(opts(0.35, 45));
  Rng rng(5);
  // Non-trivial BN statistics so folding has something to fold.
  for (auto* p : a->parameters())
    if (p->name.find("moving_variance") != std::string::npos)
      for (auto& v : p->value) v = static_cast<float>(rng.uniform(0.5, 2.0));
    else if (p->name.find("moving_mean") != std::string::npos ||
             p->name.find("beta") != std::string::npos)
      for (auto& v : p->value) v = static_cast<float>(rng.uniform(-0.5, 0.5));
  auto b = mobilenet_v2(opts(0.35, 45));
  auto pa = a->parameters(), pb = b->parameters();
  for (size_t i = 0; i < pa.size(); ++i) pb[i]->value = pa[i]->value;
  b->fold_for_inference();
  TensorF x = mt::random_tensor<float>(Shape{2, 45, 45, 3}, rng);
  TensorF ya = a->forward(x, false);
  const TensorF& yb = b->forward(x, false);
  double err = mt::max_rel_diff(yb, ya, 1e-2);
  MESSAGE("folded vs unfolded max rel diff " << err);
  CHECK(err < 1e-4);
  CHECK(b->parameters().size() < a->parameters().size());
  // 45 is odd at every stride-2 stage but one (23 -> 12 -> 6 -> 3: 12 and 6 are even);
  // Keras' correct_pad matches TF 'same' either way, so every ZeroPadding2D folds.
  for (const char* pad :
       {"Conv1_pad", "block_1_pad", "block_3_pad", "block_6_pad", "block_13_pad"}) {
    CAPTURE(pad);
    CHECK(a->find_layer(pad) != nullptr);
    CHECK(b->find_layer(pad) == nullptr);
  }
  mt::check_throws_with([&] { b->forward(x, true); }, {"folded for inference"});
}
