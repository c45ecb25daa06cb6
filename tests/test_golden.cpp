// Golden values from PyTorch (tools/make_golden_fixtures.py, adapted to Keras'
// conventions): every layer's forward output, dL/dx and dL/dparams for L = sum(y * r),
// BatchNormalization's moving statistics, both crossentropy forms, and 5-step Adam /
// SGD / Nesterov trajectories of a tiny Conv-BN-ReLU6-Depthwise-GAP-Dense network.
// Layers are built from tests/fixtures/golden/index.json; parameters are set by name.
// minicnn runs in float32; the fixtures are float64 results rounded to float32.
#include "test_support.hpp"

#include <fstream>
#include <functional>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include <minicnn/layers/activation.hpp>
#include <minicnn/layers/add.hpp>
#include <minicnn/layers/batch_norm.hpp>
#include <minicnn/layers/conv2d.hpp>
#include <minicnn/layers/dense.hpp>
#include <minicnn/layers/depthwise_conv2d.hpp>
#include <minicnn/layers/pooling.hpp>
#include <minicnn/layers/zero_padding2d.hpp>
#include <minicnn/losses/categorical_crossentropy.hpp>
#include <minicnn/models/mobilenet_v2.hpp>
#include <minicnn/models/sequential.hpp>
#include <minicnn/optim/adam.hpp>
#include <minicnn/optim/sgd.hpp>

using namespace minicnn;
using json = nlohmann::json;

namespace {

constexpr double kTolerance = 1e-4;

std::string golden_dir() {
  return mt::fixtures_dir() + "/golden";
}

const json& golden_index() {
  static const json index = [] {
    std::ifstream f(golden_dir() + "/index.json");
    REQUIRE_MESSAGE(f.good(), "missing " << golden_dir() << "/index.json; run "
                                         << "/usr/bin/python3 tools/make_golden_fixtures.py");
    return json::parse(f);
  }();
  return index;
}

std::vector<std::string> cases_of(const std::string& layer) {
  std::vector<std::string> out;
  for (auto& [name, c] : golden_index()["cases"].items())
    if (c["layer"] == layer) out.push_back(name);
  REQUIRE_MESSAGE(!out.empty(), "no golden cases for " << layer);
  return out;
}

TensorF load(const std::string& case_name, const std::string& key) {
  return load_npy_tensor<float>(golden_dir() + "/" + case_name + "/" + key + ".npy");
}

// max |got - want| / max(|want|, floor) with floor = 1% of the largest |want|: relative
// for the values that matter, absolute (against the tensor's scale) for those near zero,
// where float32 cancellation leaves no meaningful relative precision.
double golden_error(ConstView<float> got, const TensorF& want) {
  double scale = 0;
  for (float v : want) scale = std::max(scale, std::abs(double(v)));
  return mt::max_rel_diff(got, want, std::max(1e-2 * scale, 1e-6));
}

void compare(const std::string& where, ConstView<float> got, const TensorF& want) {
  REQUIRE_MESSAGE(got.shape() == want.shape(),
                  where << ": shape " << got.shape().str() << ", golden " << want.shape().str());
  double e = golden_error(got, want);
  MESSAGE(where << ": max rel err " << e);
  CHECK_MESSAGE(e < kTolerance, where << ": max rel err " << e << " exceeds " << kTolerance);
}

bool is_weight_key(const std::string& k) {
  static const std::vector<std::string> io = {"x", "y", "r", "dx", "x0", "x1", "dx0", "dx1"};
  if (std::find(io.begin(), io.end(), k) != io.end()) return false;
  if (k.rfind("grad_", 0) == 0) return false;
  return k.size() < 6 || k.compare(k.size() - 6, 6, "_after") != 0;
}

// Sets the layer's weights from the case, runs forward and backward with r, compares all.
void run_layer_case(LayerT<float>& layer, const std::string& case_name) {
  const json& c = golden_index()["cases"][case_name];
  const std::string type = c["layer"];
  TensorF x = load(case_name, "x");
  layer.build(x.shape().sample());
  std::vector<std::string> weights;
  for (auto& [key, shape] : c["arrays"].items())
    if (is_weight_key(key)) weights.push_back(key);
  for (const auto& w : weights) {
    ParameterT<float>* p = layer.find_parameter(layer.name() + "/" + w);
    REQUIRE_MESSAGE(p != nullptr,
                    case_name << ": layer has no parameter '" << layer.name() << "/" << w << "'");
    TensorF v = load(case_name, w);
    REQUIRE_MESSAGE(p->value.shape() == v.shape(), case_name << ": " << p->name << " has shape "
                                                             << p->value.shape().str()
                                                             << ", golden " << v.shape().str());
    p->value = v;
  }
  const bool training = c["training"];
  const TensorF& y = layer.forward(x, training);
  compare(case_name + " y", y, load(case_name, "y"));
  for (const auto& w : weights) {
    ParameterT<float>* p = layer.find_parameter(layer.name() + "/" + w);
    if (p->is_state)
      compare(case_name + " " + w + " after forward", p->value, load(case_name, w + "_after"));
  }
  layer.zero_grad();
  TensorF r = load(case_name, "r");
  const TensorF& dx = layer.backward(r, true);
  compare(case_name + " dx", dx, load(case_name, "dx"));
  for (const auto& w : weights) {
    ParameterT<float>* p = layer.find_parameter(layer.name() + "/" + w);
    if (!p->is_state) compare(case_name + " d" + w, p->grad, load(case_name, "grad_" + w));
  }
}

Padding padding_of(const json& cfg) {
  return padding_from_string(cfg["padding"].get<std::string>());
}

}  // namespace

TEST_CASE("golden Conv2D: 3x3 s1 same, 3x3 s2 same (even and odd), 1x1, valid 5x3") {
  for (const auto& name : cases_of("Conv2D")) {
    const json& cfg = golden_index()["cases"][name]["config"];
    auto ks = cfg["kernel_size"].get<std::vector<int64_t>>();
    const int64_t s = cfg["strides"].get<int64_t>();
    // The (kh, kw) form covers the square kernels too.
    Conv2DT<float> layer(name, cfg["filters"].get<int64_t>(), {ks[0], ks[1]}, {s, s},
                         padding_of(cfg), cfg["use_bias"].get<bool>());
    run_layer_case(layer, name);
  }
}

TEST_CASE("golden DepthwiseConv2D: 3x3 s1 same, 3x3 s2 same on even input, 3x3 s2 valid") {
  for (const auto& name : cases_of("DepthwiseConv2D")) {
    const json& cfg = golden_index()["cases"][name]["config"];
    DepthwiseConv2DT<float> layer(name, cfg["kernel_size"][0].get<int64_t>(),
                                  cfg["strides"].get<int64_t>(), padding_of(cfg),
                                  cfg["use_bias"].get<bool>());
    run_layer_case(layer, name);
  }
}

TEST_CASE("golden BatchNormalization: training (with moving statistics) and inference") {
  for (const auto& name : cases_of("BatchNormalization")) {
    const json& cfg = golden_index()["cases"][name]["config"];
    BatchNormalizationT<float> layer(name, cfg["momentum"].get<double>(),
                                     cfg["epsilon"].get<double>());
    run_layer_case(layer, name);
  }
}

TEST_CASE(
    "golden ReLU, ReLU6, Softmax, GlobalAveragePooling2D, GlobalMaxPooling2D, ZeroPadding2D, "
    "Dense") {
  {
    ReLUT<float> relu("relu");
    run_layer_case(relu, "relu");
    ReLU6T<float> relu6("relu6");
    run_layer_case(relu6, "relu6");
    SoftmaxT<float> softmax("softmax");
    run_layer_case(softmax, "softmax");
    GlobalAveragePooling2DT<float> gap("global_average_pooling2d");
    run_layer_case(gap, "global_average_pooling2d");
    GlobalMaxPooling2DT<float> gmp("global_max_pooling2d");
    run_layer_case(gmp, "global_max_pooling2d");
  }
  {
    const json& pad = golden_index()["cases"]["zero_padding2d"]["config"]["padding"];
    ZeroPadding2DT<float> zp("zero_padding2d", pad[0][0].get<int64_t>(), pad[0][1].get<int64_t>(),
                             pad[1][0].get<int64_t>(), pad[1][1].get<int64_t>());
    run_layer_case(zp, "zero_padding2d");
  }
  {
    const json& cfg = golden_index()["cases"]["dense"]["config"];
    DenseT<float> dense("dense", cfg["units"].get<int64_t>(), cfg["use_bias"].get<bool>());
    run_layer_case(dense, "dense");
  }
}

TEST_CASE("golden Add") {
  const std::string name = "add";
  AddT<float> add(name);
  TensorF x0 = load(name, "x0"), x1 = load(name, "x1");
  compare("add y", add.forward(x0, x1), load(name, "y"));
  TensorF r = load(name, "r");
  ConstView<float> d = add.backward(r);
  compare("add dx0", d, load(name, "dx0"));
  compare("add dx1", d, load(name, "dx1"));
}

TEST_CASE(
    "golden CategoricalCrossentropy: probabilities (clipped, smoothed) and logits (+-1000, "
    "smoothed)") {
  for (const auto& name : cases_of("CategoricalCrossentropy")) {
    const json& cfg = golden_index()["cases"][name]["config"];
    CategoricalCrossentropy loss(cfg["from_logits"].get<bool>(),
                                 cfg["label_smoothing"].get<double>());
    TensorF y_pred = load(name, "y_pred"), y_true = load(name, "y_true");
    TensorF value(Shape{1});
    value[0] = float(loss.forward(y_pred, y_true));
    compare(name + " loss", value, load(name, "loss"));
    compare(name + " grad", loss.backward(), load(name, "grad"));
  }
}

TEST_CASE("golden optimiser trajectories: 5 steps of Adam, SGD+momentum, Nesterov") {
  const std::string name = "trajectory";
  const json& cfg = golden_index()["cases"][name]["config"];
  const int steps = cfg["steps"];
  TensorF x = load(name, "x"), labels = load(name, "labels");
  for (auto& [run, oc] : cfg["runs"].items()) {
    SequentialT<float> model("trajectory");
    // The network tools/make_golden_fixtures.py describes in TRAJ_LAYERS.
    model.add<Conv2DT<float>>("conv", 4, 3, 2, Padding::Same, false);
    model.add<BatchNormalizationT<float>>("bn", 0.99, 1e-3);
    model.add<ReLU6T<float>>("relu6");
    model.add<DepthwiseConv2DT<float>>("dw", 3, 1, Padding::Same, true);
    model.add<GlobalAveragePooling2DT<float>>("gap");
    model.add<DenseT<float>>("dense", 3, true);
    model.build(x.shape().sample());
    for (auto* p : model.parameters()) p->value = load(name, "init/" + p->name);

    std::unique_ptr<OptimizerT<float>> opt;
    if (oc["name"] == "Adam")
      opt = std::make_unique<AdamT<float>>(oc["learning_rate"].get<double>());
    else
      opt = std::make_unique<SGDT<float>>(oc["learning_rate"].get<double>(),
                                          oc["momentum"].get<double>(), oc["nesterov"].get<bool>());
    CategoricalCrossentropy loss(true);
    TensorF losses(Shape{steps});
    for (int t = 0; t < steps; ++t) {
      const TensorF& logits = model.forward(x, true);
      losses[t] = float(loss.forward(logits, labels));
      model.zero_grad();
      model.backward(loss.backward(), false);
      opt->step(model.parameters());
    }
    CHECK(opt->iterations() == steps);
    const std::string type =
        "trajectory " + oc["name"].get<std::string>() + (run == "nesterov" ? " (nesterov)" : "");
    compare(run + " losses", losses, load(name, run + "/losses"));
    for (auto* p : model.parameters())
      compare(run + " " + p->name + " after " + std::to_string(steps) + " steps", p->value,
              load(name, run + "/" + p->name));
  }
}

// doctest runs test cases in file order by default: this one summarises the others.
TEST_CASE("golden fixtures cover every layer type of MobileNetV2 and its heads") {
  // A layer type added to the model without PyTorch golden values fails here.
  std::set<std::string> types;
  std::function<void(LayerT<float>&)> visit = [&](LayerT<float>& l) {
    if (l.children().empty()) types.insert(l.type());
    for (auto* c : l.children()) visit(*c);
  };
  for (std::string pooling : {"avg", "max"}) {
    MobileNetV2Options o;
    o.alpha = 0.35;
    o.size(96);
    o.include_top = false;
    o.pooling = pooling;
    auto net = mobilenet_v2<float>(o);
    net->template add<DenseT<float>>("dense", 3);
    net->template add<SoftmaxT<float>>("softmax");
    visit(*net);
  }
  std::set<std::string> covered;
  for (auto& [name, c] : golden_index()["cases"].items()) covered.insert(c["layer"]);
  for (const std::string& t : types) {
    CAPTURE(t);
    CHECK(covered.count(t) == 1);
  }
  CHECK(types.size() >= 9);
  MESSAGE(types.size() << " layer types, all with golden cases");
}
