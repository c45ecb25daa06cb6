// Layer configs and model files: every layer's config rebuilds an equal layer, a clone with
// the same weights computes what the original computes, Dense's softmax activation (forward
// against the Softmax layer, backward against finite differences, the logits path against
// p - y by hand), broken configs are clear errors, and a saved model with any head loads
// again with its architecture, frozen layers, class names and preprocessing.
#include <doctest/doctest.h>

#include "test_support.hpp"

using namespace minicnn;

namespace {

template <typename T>
std::unique_ptr<SequentialT<T>> every_layer_model() {
  auto m = std::make_unique<SequentialT<T>>("every");
  m->template add<ZeroPadding2DT<T>>("pad", 0, 1, 1, 0);
  m->template add<Conv2DT<T>>("conv", 6, std::pair<int64_t, int64_t>{3, 2},
                              std::pair<int64_t, int64_t>{2, 1}, Padding::Valid, true,
                              Activation::ReLU);
  m->template add<BatchNormalizationT<T>>("bn", 0.9, 1e-2, true, false);
  m->template add<ReLU6T<T>>("relu6");
  m->template add<DepthwiseConv2DT<T>>("dw", 3, 1, Padding::Same, false, Activation::ReLU6);
  m->template add<InvertedResidualT<T>>(3, 2, 6, 1);
  m->template add<GlobalMaxPooling2DT<T>>("gmp");
  m->template add<DenseT<T>>("fc", 5, DenseOptions{"relu", false});
  m->template add<DropoutT<T>>("drop", 0.25, 9);
  m->template add<DenseT<T>>("out", 3);
  m->template add<SoftmaxT<T>>("softmax");
  m->build(Shape{9, 7, 3});
  return m;
}

}  // namespace

TEST_CASE("layer configs rebuild equal layers; clones compute what the originals compute") {
  auto m = every_layer_model<float>();
  Rng rng(3);
  for (auto* p : m->parameters())
    for (auto& v : p->value) v = float(rng.uniform(p->is_state ? 0.5 : -1.0, 1.0));
  const nlohmann::json node = layer_config_node(*m);
  auto rebuilt = layer_from_config<float>(node);
  CHECK(layer_config_node(*rebuilt) == node);
  auto clone = clone_layer<float>(*m);
  TensorF x = mt::random_tensor<float>(Shape{2, 9, 7, 3}, rng);
  TensorF a = m->forward(x, false);
  const TensorF& b = clone->forward(x, false);
  CHECK(mt::max_abs_diff(a, b) == 0.0);
  // The clone is independent: changing it leaves the original alone.
  clone->find_parameter("conv/kernel")->value[0] += 1.0f;
  CHECK(mt::max_abs_diff(m->forward(x, false), a) == 0.0);
  // MobileNetV2's own config (ZeroPadding2D, InvertedResidual with skips) round-trips too.
  MobileNetV2Options o;
  o.alpha = 0.35;
  o.input_height = o.input_width = 32;
  auto base = mobilenet_v2<float>(o);
  auto base2 = layer_from_config<float>(layer_config_node(*base));
  base2->build(base->input_shape());
  CHECK(base2->count_params(false) == base->count_params(false));
  CHECK(layer_config_node(*base2) == layer_config_node(*base));
}

TEST_CASE("broken layer configs are FormatErrors naming the layer and the field") {
  auto bad = [](const std::string& text, std::initializer_list<std::string> parts) {
    mt::check_throws_with([&] { layer_from_config<float>(nlohmann::json::parse(text)); }, parts);
  };
  bad(R"({"class_name": "Conv2D", "config": {"name": "c", "kernel_size": [3, 3], "strides": 1}})",
      {"Conv2D 'c'", "filters"});
  bad(R"({"class_name": "Conv2D", "config": {"name": "c", "filters": -2, "kernel_size": 3, "strides": 1}})",
      {"Conv2D 'c'", "filters", "-2"});
  bad(R"({"class_name": "Dense", "config": {"name": "d", "units": 4, "activation": "gelu"}})",
      {"Dense 'd'", "gelu"});
  bad(R"({"class_name": "Teleporter", "config": {"name": "t"}})",
      {"unknown layer class", "Teleporter"});
  bad(R"({"class_name": "Dense", "config": {}})", {"Dense", "name"});
  bad(R"([1, 2])", {"class_name"});
  bad(R"({"class_name": "Conv2D", "config": {"name": "c", "filters": 2, "kernel_size": 3, "strides": 1, "padding": "full"}})",
      {"'c'", "full"});
  // Nesting deeper than any real model.
  std::string deep = R"({"class_name": "Dense", "config": {"name": "d", "units": 1}})";
  for (int i = 0; i < 20; ++i)
    deep = R"({"class_name": "Sequential", "config": {"name": "s)" + std::to_string(i) +
           R"(", "layers": [)" + deep + "]}}";
  bad(deep, {"deeper"});
}

TEST_CASE("Dense softmax: forward equals Dense + Softmax, backward passes finite differences") {
  Rng rng(11);
  DenseT<double> fused("fc", 5, DenseOptions{"softmax", true});
  fused.build(Shape{4});
  CHECK(fused.softmax_output());
  SequentialT<double> split("split");
  auto& lin = split.add<DenseT<double>>("fc", 5);
  split.add<SoftmaxT<double>>("sm");
  split.build(Shape{4});
  lin.kernel().value.copy_from(fused.kernel().value.view());
  for (auto& v : fused.bias().value) v = rng.uniform(-1, 1);
  lin.bias().value.copy_from(fused.bias().value.view());
  TensorD x = mt::random_tensor<double>(Shape{3, 4}, rng);
  CHECK(mt::max_abs_diff(fused.forward(x, true), split.forward(x, true)) < 1e-15);
  auto res = mt::check_gradients(fused, x);
  CHECK(res.worst() < 1e-7);
  // From logits: dL/dz given directly reaches the kernel as x^T dz.
  fused.forward(x, true);
  TensorD dz(Shape{3, 5});
  for (auto& v : dz) v = rng.uniform(-1, 1);
  fused.zero_grad();
  TensorD dx = fused.backward_from_logits(dz.view(), true);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 5; ++j) {
      double want = 0;
      for (int n = 0; n < 3; ++n) want += x.at(n, i) * dz.at(n, j);
      CHECK(fused.kernel().grad.at(i, j) == doctest::Approx(want).epsilon(1e-12));
    }
  CHECK(dx.shape() == Shape{3, 4});
  mt::check_throws_with(
      [] {
        DenseT<float>("d", 3).backward_from_logits(TensorF(Shape{1, 3}).view());
      },
      {"Dense 'd'", "without softmax"});
}

TEST_CASE("a saved model with any head loads with its architecture, frozen layers and info") {
  auto m = every_layer_model<float>();
  m->layer("conv").set_trainable(false);
  Rng rng(5);
  for (auto* p : m->parameters())
    for (auto& v : p->value) v = float(rng.uniform(p->is_state ? 0.5 : -1.0, 1.0));
  ModelInfo info;
  info.class_names = {"bear", "ring", "<script>"};
  info.preprocess = Preprocess::Unit;
  info.interpolation = Interpolation::Bilinear;
  info.exif_orientation = false;
  info.extra = {{"note", "test"}};
  const std::string path = mt::bin_dir() + "/../test_saved_model.mcnn";
  save_model_file(*m, info, path);
  LoadedNet l = load_model_file(path);
  CHECK(l.info.class_names == info.class_names);
  CHECK(l.info.preprocess == Preprocess::Unit);
  CHECK(l.info.interpolation == Interpolation::Bilinear);
  CHECK_FALSE(l.info.exif_orientation);
  CHECK(l.info.extra["note"] == "test");
  CHECK_FALSE(l.net->layer("conv").trainable());
  CHECK(l.net->layer("fc").trainable());
  CHECK(l.net->count_params(true) == m->count_params(true));
  TensorF x = mt::random_tensor<float>(Shape{2, 9, 7, 3}, rng);
  CHECK(mt::max_abs_diff(l.net->forward(x, false), m->forward(x, false)) == 0.0);
  // Class names must match the outputs.
  McnnFile f = read_mcnn(path);
  f.metadata["class_names"] = {"a", "b"};
  f.source = "'edited'";
  mt::check_throws_with([&] { load_model_file(f); }, {"edited", "3", "2 classes"});
  // Converted ImageNet weights load through the same function.
  McnnFile g = read_mcnn(path);
  g.metadata.erase("model_config");
  mt::check_throws_with([&] { load_model_file(g); }, {"not a minicnn model"});
  std::filesystem::remove(path);
}
