// Transfer learning on the real ImageNet MobileNetV2 weights and real photos (../shared):
// the notebook's classifier (alpha 1.0 and 0.35, any input size), its parameter counts,
// fine-tuning's unfreezing, the frozen base running folded inside a trainable model, a
// smoke training run on a small subset of jellybeans12 (loss falls, validation accuracy
// well above chance), and the saved model classifying on its own.
#include <doctest/doctest.h>

#include "test_support.hpp"

using namespace minicnn;

TEST_CASE("the notebook's classifier: frozen ImageNet base, Keras head, parameter counts") {
  mt::require_shared("weights-src");
  ClassifierOptions o;
  o.base_weights = mt::converted_weights("1.0");
  o.classes = 12;
  auto m = mobilenet_v2_classifier(o);
  // Keras: 2,257,984 base (34,112 BN statistics non-trainable) + 163,968 + 1,548.
  CHECK(m->count_params(false) == 2257984 + 163968 + 1548);
  CHECK(m->count_params(true) == 163968 + 1548);
  const std::string s = m->summary(false);
  CHECK(s.find("mobilenetv2_1.00_96 (Sequential)") != std::string::npos);
  CHECK(s.find("Trainable params: 165,516") != std::string::npos);
  CHECK(s.find("Non-trainable params: 2,257,984") != std::string::npos);
  CHECK(m->layer("dense_1").softmax_output());
  // Fine-tuning the top 3 blocks: blocks 14-16 and Conv_1 train again, BN included.
  const std::string what = unfreeze_top_blocks(*m, 3);
  CHECK(what.find("top 3 blocks") != std::string::npos);
  CHECK(m->layer("block_14_expand").trainable());
  CHECK(m->layer("Conv_1_bn").trainable());
  CHECK_FALSE(m->layer("block_13_project").trainable());
  int64_t top = 0;
  for (auto* p : m->parameters())
    if (p->trainable) top += p->value.size();
  CHECK(top == m->count_params(true));
  unfreeze_top_blocks(*m, -1, /*train_batchnorm=*/false);
  CHECK(m->layer("Conv1").trainable());
  CHECK_FALSE(m->layer("bn_Conv1").trainable());
  // alpha 0.35 at a non-square size.
  ClassifierOptions small = o;
  small.base_weights = mt::converted_weights("0.35");
  small.input_height = 128;
  small.input_width = 160;
  small.classes = 3;
  small.dense_units = 0;
  auto m2 = mobilenet_v2_classifier(small);
  CHECK(m2->output_shape() == Shape{3});
  CHECK(m2->count_params(true) == 1280 * 3 + 3);
  mt::check_throws_with([&] { small.classes = 1, mobilenet_v2_classifier(small); },
                        {"classes", ">= 2"});
}

TEST_CASE("a frozen base inside a trainable model runs folded and matches the unfolded base") {
  mt::require_shared("weights-src");
  ClassifierOptions o;
  o.base_weights = mt::converted_weights("1.0");
  o.classes = 4;
  auto m = mobilenet_v2_classifier(o);
  TrainingGraph g;
  g.prepare(*m);
  CHECK(g.has_prefix());
  CHECK(g.rest_input_shape() == Shape{1280});  // the base and the pooling are folded and cached
  Rng r(3);
  TensorF x = mt::random_tensor<float>(Shape{3, 96, 96, 3}, r);
  TensorF want = m->forward(x, false);
  CHECK(mt::scaled_rel_diff(g.forward(x, false), want) < 1e-4);
  // Fine-tuning moves the boundary: the top blocks now run unfolded and train.
  unfreeze_top_blocks(*m, 2);
  CHECK(g.prepare(*m));
  CHECK(g.rest_input_shape() == Shape{3, 3, 160});  // the output of block 14
  CHECK(mt::scaled_rel_diff(g.forward(x, false), want) < 1e-4);
}

TEST_CASE("smoke training on a real subset: loss falls, validation accuracy well above chance") {
  mt::require_shared("datasets/jellybeans12");
  FolderOptions fo;
  fo.height = fo.width = 64;
  fo.verbose = false;
  fo.classes = {"blueberry", "cantaloupe", "green_apple", "very_cherry"};
  ImageFolder d = load_image_folder(mt::shared_dir() + "/datasets/jellybeans12", fo);
  Split s = keras_validation_split(d, 0.25);
  ClassifierOptions co;
  co.base_weights = mt::converted_weights("1.0");
  co.input_height = co.input_width = 64;
  co.classes = 4;
  co.seed = 1;
  Model m(mobilenet_v2_classifier(co));
  m.info().class_names = d.class_names;
  m.compile(std::make_unique<Adam>(1e-3));
  FlowOptions tf;
  tf.batch_size = 16;
  tf.seed = 2;
  FlowOptions vf = tf;
  vf.shuffle = false;
  ImageFlow train(d, s.train, tf), val(d, s.validation, vf);
  FitOptions o;
  o.epochs = 8;
  o.verbose = 0;
  History h = m.fit(train, &val, o);  // no augmentation: the frozen base runs once per image
  MESSAGE("loss " << h["loss"].front() << " -> " << h["loss"].back() << ", val_accuracy "
                  << h["val_accuracy"].back());
  CHECK(h["loss"].back() < 0.6 * h["loss"].front());
  CHECK(h["val_accuracy"].back() >= 0.8);  // chance is 0.25
  // The saved model classifies on its own, with the same numbers.
  const std::string path = mt::bin_dir() + "/../test_transfer_model.mcnn";
  m.save(path);
  LoadedNet l = load_model_file(path);
  CHECK(l.info.class_names == d.class_names);
  fold_for_inference(*l.net);
  TensorF x(Shape{4, 64, 64, 3});
  for (int i = 0; i < 4; ++i)
    preprocess_into(d.image(s.validation[size_t(i) * 5]), 64 * 64 * 3, l.info.preprocess,
                    x.data() + i * 64 * 64 * 3);
  TensorF want = m.predict(x.view());
  CHECK(mt::scaled_rel_diff(l.net->forward(x, false), want) < 1e-4);
  std::filesystem::remove(path);
}
