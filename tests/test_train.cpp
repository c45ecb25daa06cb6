// Training: fit / evaluate / predict, the frozen prefix (folded, cached), the loader,
// Keras' callbacks on scripted metric sequences, checkpoints (exact resume, writes killed
// midway) and Ctrl-C. Oracles: per-sample losses computed one sample at a time, the
// unfolded network in inference mode, Keras' rules applied by hand to known sequences.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <csignal>
#include <fstream>
#include <set>

#include "test_support.hpp"

using namespace minicnn;
namespace fs = std::filesystem;

namespace {

// Two-feature blobs: class c centred at (2c, -c) plus noise, easy to separate.
struct Blobs {
  TensorF x;
  std::vector<int> y;
};
Blobs blobs(int n, int classes, uint64_t seed) {
  Blobs b{TensorF(Shape{n, 2}), std::vector<int>(size_t(n))};
  Rng r(seed);
  for (int i = 0; i < n; ++i) {
    const int c = i % classes;
    b.y[size_t(i)] = c;
    b.x.at(i, 0) = float(2.0 * c + r.normal() * 0.4);
    b.x.at(i, 1) = float(-1.0 * c + r.normal() * 0.4);
  }
  return b;
}

std::unique_ptr<Sequential> mlp(int classes, uint64_t seed, bool dropout = false) {
  set_global_seed(seed);
  auto m = std::make_unique<Sequential>("mlp");
  m->add<Dense>("hidden", 16, DenseOptions{"relu"});
  if (dropout) m->add<Dropout>("drop", 0.3, seed);
  m->add<Dense>("out", classes, DenseOptions{"softmax"});
  m->build(Shape{2});
  return m;
}

// A small image classifier: conv stem (trainable or not), BN, ReLU6, pooling, softmax head.
std::unique_ptr<Sequential> small_cnn(int classes, uint64_t seed, bool freeze_stem) {
  set_global_seed(seed);
  auto m = std::make_unique<Sequential>("cnn");
  auto stem = std::make_unique<Sequential>("stem");
  stem->add<ZeroPadding2D>("pad", 0, 1, 0, 1);
  stem->add<Conv2D>("conv", 8, 3, 2, Padding::Valid, false);
  stem->add<BatchNormalization>("bn", 0.9, 1e-3);
  stem->add<ReLU6>("relu");
  stem->add<DepthwiseConv2D>("dw", 3, 1, Padding::Same, false);
  stem->add<BatchNormalization>("dw_bn", 0.9, 1e-3);
  stem->add<ReLU6>("dw_relu");
  if (freeze_stem) stem->set_trainable(false);
  m->add(std::move(stem));
  m->add<GlobalAveragePooling2D>("gap");
  m->add<Dense>("fc", 8, DenseOptions{"relu"});
  m->add<Dropout>("drop", 0.2, seed);
  m->add<Dense>("out", classes, DenseOptions{"softmax"});
  m->build(Shape{12, 12, 3});
  Rng r(seed + 100);
  for (auto* p : m->parameters())
    if (p->is_state)
      for (auto& v : p->value) v = float(r.uniform(0.5, 1.5));
  return m;
}

// An in-memory folder of 12x12 images: class c has a bright square in corner c.
ImageFolder corner_images(int per_class, int classes, uint64_t seed) {
  ImageFolder d;
  d.height = d.width = 12;
  Rng r(seed);
  for (int c = 0; c < classes; ++c) d.class_names.push_back("c" + std::to_string(c));
  for (int i = 0; i < per_class * classes; ++i) {
    const int c = i / per_class;
    d.files.push_back("mem/c" + std::to_string(c) + "/" + std::to_string(i) + ".png");
    d.labels.push_back(c);
    for (int y = 0; y < 12; ++y)
      for (int x = 0; x < 12; ++x) {
        const bool in = (c % 2 ? x >= 6 : x < 6) && (c / 2 ? y >= 6 : y < 6);
        for (int k = 0; k < 3; ++k)
          d.pixels.push_back(uint8_t(std::min(255.0, (in ? 180.0 : 40.0) + r.uniform(0, 60))));
      }
  }
  return d;
}

using mt::TempDir;

// Sets a log value before the callbacks after it see the logs (scripted metric sequences).
std::shared_ptr<LambdaCallback> script(const std::string& key, std::vector<double> values) {
  auto l = std::make_shared<LambdaCallback>();
  l->on_epoch_end_fn = [key, values](int e, Logs& logs) {
    logs.set(key, values[size_t(e) < values.size() ? size_t(e) : values.size() - 1]);
  };
  return l;
}

FitOptions quiet(int epochs) {
  FitOptions o;
  o.epochs = epochs;
  o.verbose = 0;
  return o;
}

}  // namespace

TEST_CASE("fit learns separable data; History has Keras' keys; evaluate and predict agree") {
  Blobs b = blobs(120, 3, 1), v = blobs(60, 3, 2);
  Model m(mlp(3, 1));
  m.compile(std::make_unique<Adam>(0.02), {0.0, {"accuracy", "top_k_categorical_accuracy"}, 2});
  ArraySource train(b.x, b.y, 3, 16, true, 4), val(v.x, v.y, 3, 16, false);
  History h = m.fit(train, &val, quiet(25));
  REQUIRE(h.size() == 25);
  CHECK(h.keys == std::vector<std::string>{"loss", "accuracy", "top_k_categorical_accuracy",
                                           "val_loss", "val_accuracy",
                                           "val_top_k_categorical_accuracy", "learning_rate"});
  CHECK(h["loss"].back() < 0.5 * h["loss"].front());
  CHECK(h["val_accuracy"].back() > 0.9);
  CHECK(h["learning_rate"].front() == doctest::Approx(0.02));
  CHECK(h.epoch == std::vector<int>{0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12,
                                    13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24});
  Logs e = m.evaluate(val);
  CHECK(e.at("loss") == doctest::Approx(h["val_loss"].back()).epsilon(1e-9));
  TensorF p = m.predict(v.x.view(), 7);
  REQUIRE(p.shape() == Shape{60, 3});
  int correct = 0;
  for (int i = 0; i < 60; ++i) correct += argmax_row(p.data() + i * 3, 3) == v.y[size_t(i)];
  CHECK(double(correct) / 60 == doctest::Approx(e.at("accuracy")));
}

TEST_CASE("epoch loss and accuracy are sample-weighted means over the epoch (partial last batch)") {
  // Learning rate 0: the model does not change, so the epoch means equal the means of the
  // per-sample losses computed one sample at a time.
  Blobs b = blobs(20, 3, 3);
  Model m(mlp(3, 2));
  m.compile(std::make_unique<SGD>(0.0));
  ArraySource train(b.x, b.y, 3, 7, true, 1);  // batches of 7, 7, 6
  History h = m.fit(train, nullptr, quiet(1));
  double loss = 0;
  int correct = 0;
  for (int i = 0; i < 20; ++i) {
    const TensorF& p = m.net().forward(b.x.view().batch_slice(i, 1), false);
    loss += -std::log(double(p[b.y[size_t(i)]]));
    correct += argmax_row(p.data(), 3) == b.y[size_t(i)];
  }
  CHECK(h["loss"][0] == doctest::Approx(loss / 20).epsilon(1e-6));
  CHECK(h["accuracy"][0] == doctest::Approx(correct / 20.0));
}

TEST_CASE("the frozen prefix runs folded and cached: same outputs as the unfolded network") {
  auto net = small_cnn(4, 5, /*freeze_stem=*/true);
  TrainingGraph g;
  CHECK(g.prepare(*net));
  CHECK_FALSE(g.prepare(*net));  // nothing changed: no rebuild
  // Units: pad conv bn relu dw dw_bn dw_relu gap | fc drop out.
  CHECK(g.boundary() == 8);
  CHECK(g.has_prefix());
  CHECK(g.rest_input_shape() == Shape{8});
  Rng r(7);
  TensorF x = mt::random_tensor<float>(Shape{5, 12, 12, 3}, r);
  TensorF want = net->forward(x, false);
  CHECK(mt::max_abs_diff(g.forward(x, false), want) < 1e-5);
  // Changing a frozen weight (e.g. loading weights) rebuilds the folded copy.
  net->find_parameter("conv/kernel")->value[3] += 0.5f;
  CHECK(g.prepare(*net));
  CHECK(mt::max_abs_diff(g.forward(x, false), net->forward(x, false)) < 1e-5);
  // A trainable stem leaves no prefix (a lone ZeroPadding2D is not worth one); a frozen
  // Dropout ends the prefix.
  auto trainable = small_cnn(4, 5, false);
  TrainingGraph g2;
  g2.prepare(*trainable);
  CHECK(g2.boundary() == 0);
  CHECK_FALSE(g2.has_prefix());
  trainable->set_trainable(false);
  trainable->layer("out").set_trainable(true);
  g2.prepare(*trainable);
  CHECK(g2.boundary() == 9);  // stops at the Dropout, which is random in training
}

TEST_CASE("a frozen prefix stops before a ZeroPadding2D that the convolution after it absorbs") {
  set_global_seed(11);
  Sequential net("net");
  auto& pre = net.add<Conv2D>("pre", 6, 1, 1, Padding::Valid, true);
  auto& pad = net.add<ZeroPadding2D>("pad", 0, 1, 0, 1);
  auto& dw = net.add<DepthwiseConv2D>("dw", 3, 2, Padding::Valid, true);
  auto& gap = net.add<GlobalAveragePooling2D>("gap");
  auto& out = net.add<Dense>("out", 3, DenseOptions{"softmax"});
  net.build(Shape{10, 8, 4});
  pre.set_trainable(false);
  REQUIRE(dw.absorbed_previous() == &pad);
  TrainingGraph g;
  g.prepare(net);
  CHECK(g.has_prefix());
  CHECK(g.boundary() == 1);  // the pad goes with the layer that pads for it
  CHECK(g.rest_input_shape() == Shape{10, 8, 6});
  Rng r(5);
  const TensorF x = mt::random_tensor<float>(Shape{3, 10, 8, 4}, r);
  const TensorF dz = mt::random_tensor<float>(Shape{3, 3}, r);
  g.zero_grad();
  const TensorF y = g.forward(x, true);
  g.backward(dz, /*from_logits=*/true);
  const TensorF dw_grad = dw.kernel().grad, out_grad = out.parameters()[0]->grad;
  // The same layers one by one, the depthwise one reading the padded copy.
  const TensorF h = pad.forward(pre.forward(x, false).view(), false);
  const TensorF y_ref =
      out.forward(gap.forward(dw.forward(h.view(), true).view(), true).view(), true);
  CHECK(mt::max_rel_diff(y, y_ref, 1.0) < 1e-6);
  g.zero_grad();
  dw.backward(gap.backward(out.backward_from_logits(dz.view()).view()).view(), false);
  CHECK(mt::max_rel_diff(dw.kernel().grad, dw_grad, 1.0) < 1e-5);
  CHECK(mt::max_rel_diff(out.parameters()[0]->grad, out_grad, 1.0) < 1e-5);
}

TEST_CASE("frozen-prefix training: cached features and per-step forward give the same run") {
  ImageFolder d = corner_images(10, 4, 1);
  auto run = [&](bool cache) {
    Model m(small_cnn(4, 9, true));
    m.compile(std::make_unique<Adam>(0.01));
    FlowOptions fo;
    fo.batch_size = 8;
    fo.seed = 3;
    ImageFlow train(d, fo);
    FitOptions o = quiet(3);
    o.cache_features = cache;
    return m.fit(train, nullptr, o);
  };
  History a = run(true), b = run(false);
  for (size_t i = 0; i < 3; ++i) CHECK(a["loss"][i] == doctest::Approx(b["loss"][i]).epsilon(1e-5));
  // Augmented inputs cannot be cached.
  Model m(small_cnn(4, 9, true));
  m.compile(std::make_unique<Adam>(0.01));
  FlowOptions fo;
  fo.augment.rotation_range = 10;
  ImageFlow train(d, fo);
  FitOptions o = quiet(1);
  o.cache_features = true;
  mt::check_throws_with([&] { m.fit(train, nullptr, o); }, {"cache_features", "augmented"});
}

TEST_CASE(
    "ImageFlow: same batches for any number of workers, reshuffled each epoch, partial last") {
  ImageFolder d = corner_images(7, 3, 2);  // 21 images
  auto collect = [&](int workers, int epoch) {
    FlowOptions fo;
    fo.batch_size = 5;
    fo.seed = 11;
    fo.workers = workers;
    fo.queue = 2;
    fo.augment = AugmentOptions::notebook();
    ImageFlow f(d, fo);
    CHECK(f.steps() == 5);
    f.start_epoch(epoch);
    std::vector<float> all;
    std::vector<size_t> ids;
    for (int s = 0; s < 5; ++s) {
      const Batch& b = f.next();
      CHECK(b.size() == (s < 4 ? 5 : 1));
      all.insert(all.end(), b.x.begin(), b.x.end());
      ids.insert(ids.end(), b.ids.begin(), b.ids.end());
      for (int64_t i = 0; i < b.size(); ++i) CHECK(b.y.at(i, d.labels[b.ids[size_t(i)]]) == 1.0f);
    }
    return std::make_pair(all, ids);
  };
  auto w0 = collect(0, 1), w1 = collect(1, 1), w3 = collect(3, 1), e2 = collect(2, 2);
  CHECK(w0.first == w1.first);
  CHECK(w0.first == w3.first);
  CHECK(w0.second == w1.second);
  CHECK(w0.second != e2.second);
  std::set<size_t> seen(w0.second.begin(), w0.second.end());
  CHECK(seen.size() == 21);
  // Values are preprocessed (x/127.5 - 1): inside [-1, 1].
  for (float v : w0.first) CHECK((v >= -1.0f && v <= 1.0f));
  // Not augmented: exactly the stored pixels, preprocessed.
  FlowOptions plain;
  plain.shuffle = false;
  plain.preprocess = Preprocess::Unit;
  ImageFlow f(d, {2, 5}, plain);
  f.start_epoch(0);
  const Batch& b = f.next();
  CHECK(b.x[0] == doctest::Approx(d.image(2)[0] / 255.0f));
  CHECK(b.x[12 * 12 * 3] == doctest::Approx(d.image(5)[0] / 255.0f));
  CHECK_THROWS_AS(f.next(), Error);
}

TEST_CASE("EarlyStopping: patience, min_delta, baseline, start_from_epoch, best weights") {
  Blobs b = blobs(30, 3, 4);
  auto run = [&](EarlyStoppingOptions eo, std::vector<double> seq, int epochs) {
    const std::string key = eo.monitor;
    Model m(mlp(3, 3));
    m.compile(std::make_unique<Adam>(0.01));
    ArraySource train(b.x, b.y, 3, 10, true, 1);
    auto es = std::make_shared<EarlyStopping>(eo);
    FitOptions o = quiet(epochs);
    o.callbacks = {script(key, seq), es};
    History h = m.fit(train, nullptr, o);
    return std::make_pair(h, es);
  };
  // Best at epoch index 2; patience 3 stops at the end of epoch 2 + 3 = 5 (6 epochs).
  EarlyStoppingOptions eo;
  eo.patience = 3;
  auto [h1, e1] = run(eo, {1.0, 0.9, 0.5, 0.6, 0.7, 0.8, 0.1, 0.1}, 10);
  CHECK(h1.size() == 6);
  CHECK(e1->stopped_epoch() == 5);
  CHECK(e1->best_epoch() == 2);
  // min_delta 0.1: 1.0 -> 0.95 is no improvement (stop), 1.0 -> 0.85 is one.
  eo.min_delta = 0.1;
  eo.patience = 1;
  auto [h2, e2] = run(eo, {1.0, 0.95, 0.8, 0.1}, 10);
  CHECK(h2.size() == 2);
  auto [h2b, e2b] = run(eo, {1.0, 0.85, 0.8, 0.1}, 10);
  CHECK(h2b.size() == 3);
  // patience 0 stops at the first epoch without improvement (never at epoch 0).
  EarlyStoppingOptions p0;
  auto [h3, e3] = run(p0, {1.0, 0.9, 0.95, 0.1}, 10);
  CHECK(h3.size() == 3);
  // baseline never beaten: `wait` is not reset by improvements; Keras 3 returns early on an
  // improvement, so the stop comes at the first epoch that does not improve with wait >= patience.
  EarlyStoppingOptions bl;
  bl.patience = 2;
  bl.baseline = 0.3;
  auto [h4, e4] = run(bl, {1.0, 1.1, 1.2, 1.3}, 10);
  CHECK(h4.size() == 2);
  auto [h4b, e4b] = run(bl, {1.0, 0.9, 0.8, 0.8}, 10);
  CHECK(h4b.size() == 4);
  auto [h4c, e4c] = run(bl, {1.0, 0.2, 0.3, 0.4, 0.5}, 10);  // beaten at epoch 1: normal patience
  CHECK(h4c.size() == 4);
  // start_from_epoch: epochs before it are ignored.
  EarlyStoppingOptions sf;
  sf.patience = 1;
  sf.start_from_epoch = 3;
  auto [h5, e5] = run(sf, {1.0, 2.0, 3.0, 4.0, 5.0, 6.0}, 10);
  CHECK(h5.size() == 5);
  // mode auto: accuracy is maximised.
  EarlyStoppingOptions acc;
  acc.monitor = "val_accuracy";
  acc.patience = 1;
  auto [h6, e6] = run(acc, {0.5, 0.7, 0.6, 0.9}, 10);
  CHECK(h6.size() == 3);
  mt::check_throws_with([] { EarlyStopping({"val_f00", 0, 0, 0, "auto"}); }, {"val_f00", "mode"});

  // restore_best_weights at the end even when training was not stopped early (Keras 3).
  Model m(mlp(3, 3));
  m.compile(std::make_unique<Adam>(0.05));
  ArraySource train(b.x, b.y, 3, 10, true, 1);
  EarlyStoppingOptions rb;
  rb.patience = 10;
  rb.restore_best_weights = true;
  std::vector<std::pair<std::string, TensorF>> at_best;
  auto snap = std::make_shared<LambdaCallback>();
  snap->on_epoch_end_fn = [&](int e, Logs&) {
    if (e == 1) at_best = m.trainable_state();
  };
  FitOptions o = quiet(4);
  o.callbacks = {script("val_loss", {0.9, 0.2, 0.5, 0.6}), std::make_shared<EarlyStopping>(rb),
                 snap};
  History h = m.fit(train, nullptr, o);
  CHECK(h.size() == 4);
  for (const auto& [name, value] : at_best)
    CHECK(mt::max_abs_diff(m.net().find_parameter(name)->value, value) == 0.0);
}

TEST_CASE("ModelCheckpoint: file names from {epoch} and logs, best only, write errors") {
  TempDir t;
  Blobs b = blobs(30, 3, 5);
  Model m(mlp(3, 4));
  m.info().class_names = {"a", "b", "c"};
  m.compile(std::make_unique<Adam>(0.01));
  ArraySource train(b.x, b.y, 3, 10, true, 1);
  ModelCheckpointOptions every;
  every.filepath = t.file("m-{epoch:02d}-{val_loss:.2f}.mcnn");
  ModelCheckpointOptions best;
  best.filepath = t.file("best.mcnn");
  best.save_best_only = true;
  auto cb_best = std::make_shared<ModelCheckpoint>(best);
  // The same files written at once, in fit's thread: the background writes must equal them.
  ModelCheckpointOptions every_now = every;
  every_now.filepath = t.file("now-{epoch:02d}.mcnn");
  every_now.background = false;
  FitOptions o = quiet(4);
  o.callbacks = {script("val_loss", {0.5, 0.7, 0.25, 0.25}),
                 std::make_shared<ModelCheckpoint>(every), cb_best,
                 std::make_shared<ModelCheckpoint>(every_now)};
  m.fit(train, nullptr, o);
  for (const char* f : {"m-01-0.50.mcnn", "m-02-0.70.mcnn", "m-03-0.25.mcnn", "m-04-0.25.mcnn"})
    CHECK(fs::exists(t.file(f)));
  auto bytes = [&](const std::string& f) {
    std::ifstream in(t.file(f), std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  CHECK(bytes("m-01-0.50.mcnn") == bytes("now-01.mcnn"));
  CHECK(bytes("m-04-0.25.mcnn") == bytes("now-04.mcnn"));
  CHECK(bytes("m-01-0.50.mcnn") != bytes("m-04-0.25.mcnn"));  // the weights as of each epoch
  CHECK(cb_best->last_saved_epoch() == 2);                    // ties do not save
  Model loaded = Model::load(t.file("best.mcnn"));
  CHECK(loaded.info().class_names == m.info().class_names);
  CHECK(format_checkpoint_path("w.{epoch:03d}.{accuracy}.mcnn", 7, [] {
          Logs l;
          l.set("accuracy", 0.5);
          return l;
        }()) == "w.007.0.5.mcnn");
  mt::check_throws_with([] { format_checkpoint_path("{nope}", 1, Logs{}); }, {"nope", "epoch"});
  // A file that cannot be written stops training; the earlier file is untouched.
  const auto before = fs::last_write_time(t.file("best.mcnn"));
  ModelCheckpointOptions broken;
  broken.filepath = t.file("no/such/dir/m.mcnn");
  FitOptions o2 = quiet(3);
  o2.callbacks = {std::make_shared<ModelCheckpoint>(broken)};
  History h = m.fit(train, nullptr, o2);
  CHECK(h.size() == 1);
  CHECK(fs::last_write_time(t.file("best.mcnn")) == before);
}

TEST_CASE("ReduceLROnPlateau, CSVLogger and TerminateOnNaN follow Keras") {
  TempDir t;
  Blobs b = blobs(30, 3, 6);
  Model m(mlp(3, 5));
  m.compile(std::make_unique<SGD>(0.1));
  ArraySource train(b.x, b.y, 3, 10, true, 1);
  ReduceLROnPlateauOptions ro;
  ro.factor = 0.5;
  ro.patience = 2;
  ro.cooldown = 1;
  ro.min_lr = 0.03;
  FitOptions o = quiet(9);
  o.callbacks = {script("val_loss", {1, 1, 1, 1, 1, 1, 1, 1, 1}),
                 std::make_shared<ReduceLROnPlateau>(ro),
                 std::make_shared<CSVLogger>(t.file("log.csv"))};
  History h = m.fit(train, nullptr, o);
  // Worked by hand with Keras' rule (wait counts non-improving epochs outside cooldown; the
  // learning rate logged for an epoch is the one it trained with).
  CHECK(h["learning_rate"] ==
        std::vector<double>{0.1, 0.1, 0.1, 0.05, 0.05, 0.03, 0.03, 0.03, 0.03});
  std::ifstream csv(t.file("log.csv"));
  std::string header, first;
  std::getline(csv, header);
  std::getline(csv, first);
  CHECK(header == "epoch,accuracy,learning_rate,loss,val_loss");
  CHECK(first.rfind("0,", 0) == 0);
  int rows = 1;
  for (std::string l; std::getline(csv, l);) ++rows;
  CHECK(rows == 9);

  // A NaN input makes the loss NaN: training stops at that batch, nothing is updated.
  Blobs bad = blobs(30, 3, 7);
  bad.x.at(25, 0) = std::numeric_limits<float>::quiet_NaN();
  ArraySource nan_train(bad.x, bad.y, 3, 10, false);
  Model n(mlp(3, 6));
  n.compile(std::make_unique<Adam>(0.01));
  FitOptions no = quiet(3);
  no.callbacks = {std::make_shared<TerminateOnNaN>()};
  History hn = n.fit(nan_train, nullptr, no);
  CHECK(hn.stop_reason == "non-finite loss");
  CHECK(hn.size() == 0);
  for (auto* p : n.net().parameters())
    for (float v : p->value) CHECK(std::isfinite(v));
}

TEST_CASE("resuming from a checkpoint continues exactly as the uninterrupted run") {
  TempDir t;
  ImageFolder d = corner_images(9, 4, 3);
  Split s = keras_validation_split(d, 0.25);
  auto make = [&] {
    Model m(small_cnn(4, 21, false));  // everything trains: BN statistics, Dropout masks
    m.compile(std::make_unique<Adam>(0.01));
    return m;
  };
  FlowOptions fo;
  fo.batch_size = 6;
  fo.seed = 8;
  fo.augment = AugmentOptions::notebook();
  FlowOptions vo;
  vo.shuffle = false;
  auto callbacks = [&](const std::string& ck) {
    EarlyStoppingOptions eo;
    eo.patience = 10;
    eo.restore_best_weights = true;
    return std::vector<std::shared_ptr<Callback>>{std::make_shared<EarlyStopping>(eo),
                                                  std::make_shared<BackupAndRestore>(ck)};
  };
  // Uninterrupted: 4 epochs.
  Model a = make();
  ImageFlow ta(d, s.train, fo), va(d, s.validation, vo);
  FitOptions oa = quiet(4);
  oa.callbacks = callbacks(t.file("a.mcnn"));
  History ha = a.fit(ta, &va, oa);
  // Interrupted after 2 epochs, resumed in a fresh model from the checkpoint.
  {
    Model b = make();
    ImageFlow tb(d, s.train, fo), vb(d, s.validation, vo);
    FitOptions ob = quiet(2);
    ob.callbacks = callbacks(t.file("b.mcnn"));
    b.fit(tb, &vb, ob);
  }
  Model c = make();
  ImageFlow tc(d, s.train, fo), vc(d, s.validation, vo);
  FitOptions oc = quiet(4);
  oc.callbacks = callbacks(t.file("b.mcnn"));
  oc.initial_epoch = c.load_checkpoint(t.file("b.mcnn"));
  CHECK(oc.initial_epoch == 2);
  History hc = c.fit(tc, &vc, oc);
  REQUIRE(hc.size() == 4);  // the resumed History continues the saved one
  for (const char* k : {"loss", "accuracy", "val_loss", "val_accuracy"})
    for (size_t i = 0; i < 4; ++i) {
      CAPTURE(k);
      CAPTURE(i);
      CHECK(hc[k][i] == ha[k][i]);  // bit for bit
    }
  // Same final weights (EarlyStopping restored the same best epoch in both).
  auto pa = a.net().parameters(), pc = c.net().parameters();
  for (size_t i = 0; i < pa.size(); ++i) CHECK(mt::max_abs_diff(pa[i]->value, pc[i]->value) == 0.0);
  // A checkpoint is also a self-contained model file.
  Model loaded = Model::load(t.file("a.mcnn"));
  CHECK(loaded.net().count_params(false) == a.net().count_params(false));
  // Wrong optimizer or architecture: clear errors.
  Model wrong(small_cnn(4, 21, false));
  wrong.compile(std::make_unique<SGD>(0.1));
  mt::check_throws_with([&] { wrong.load_checkpoint(t.file("a.mcnn")); }, {"Adam", "SGD"});
  Model other(mlp(3, 1));
  other.compile(std::make_unique<Adam>(0.1));
  mt::check_throws_with([&] { other.load_checkpoint(t.file("a.mcnn")); }, {"architecture"});
}

TEST_CASE("a checkpoint write killed midway leaves the previous checkpoint loadable") {
  TempDir t;
  const std::string path = t.file("ck.mcnn");
  auto net = small_cnn(4, 1, false);
  Model m(std::move(net));
  m.compile(std::make_unique<Adam>(0.01));
  ImageFolder d = corner_images(4, 4, 1);
  FlowOptions fo;
  ImageFlow train(d, fo);
  FitOptions o = quiet(1);
  o.callbacks = {std::make_shared<BackupAndRestore>(path)};
  m.fit(train, nullptr, o);
  REQUIRE(fs::exists(path));
  Rng r(5);
  int killed_during_write = 0;
  for (int round = 0; round < 20; ++round) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      // Child: rewrite the checkpoint (with changing weights) until killed.
      for (int k = 0;; ++k) {
        m.net().find_parameter("out/bias")->value[0] = float(k);
        m.save_checkpoint(path);
      }
    }
    ::usleep(useconds_t(200 + r.below(3000)));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    // Leftover temporary files show a write was cut off; the target must still load.
    for (const auto& e : fs::directory_iterator(t.path))
      if (e.path().filename().string().find(".tmp.") != std::string::npos) {
        ++killed_during_write;
        fs::remove(e.path());
      }
    Model back(small_cnn(4, 1, false));
    back.compile(std::make_unique<Adam>(0.01));
    CHECK(back.load_checkpoint(path) == 1);
  }
  MESSAGE("kills that interrupted a write: " << killed_during_write << " of 20");
}

TEST_CASE("Ctrl-C finishes the batch, keeps saved files and returns the History") {
  TempDir t;
  Blobs b = blobs(60, 3, 8);
  Model m(mlp(3, 7));
  m.compile(std::make_unique<Adam>(0.01));
  ArraySource train(b.x, b.y, 3, 10, true, 1);
  ModelCheckpointOptions best;
  best.filepath = t.file("best.mcnn");
  auto ctrl_c = std::make_shared<LambdaCallback>();
  int batches_after = 0;
  bool raised = false;
  ctrl_c->on_batch_end_fn = [&](int batch, const Logs&) {
    if (raised) ++batches_after;
    if (m.current_epoch() == 1 && batch == 2 && !raised) {
      raised = true;
      std::raise(SIGINT);
    }
  };
  FitOptions o = quiet(5);
  o.callbacks = {std::make_shared<ModelCheckpoint>(best), ctrl_c};
  History h = m.fit(train, nullptr, o);
  CHECK(h.stop_reason == "interrupted");
  CHECK(h.size() == 1);       // the interrupted epoch is not recorded
  CHECK(batches_after == 0);  // stopped right after the batch in progress
  CHECK(fs::exists(t.file("best.mcnn")));
  CHECK_FALSE(interrupt_requested());
  // The handler is gone after fit: SIGINT is back to what it was (ignored here, to check).
  struct sigaction now {};
  ::sigaction(SIGINT, nullptr, &now);
  CHECK((now.sa_handler != &interrupt_detail::on_sigint));
}
