// Write faults (issue 13, item 6): a file that cannot be written, because the disk is full or a
// write fails after N bytes, is reported with its path and the reason, leaves the previous file
// byte for byte and no temporary file, and stops training or lets it go on, as the callback's
// on_write_error says. Injection: RLIMIT_FSIZE, under which write() fails with EFBIG once a
// file would pass N bytes (SIGXFSZ ignored), for any user; and temporary files left by a
// process that was killed (remove_stale_temporaries). End-to-end with haribo_train, a full
// tmpfs included: tests/py_write_errors.py.
#include <doctest/doctest.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <csignal>
#include <fstream>
#include <iterator>

#include "test_support.hpp"

using namespace minicnn;
namespace fs = std::filesystem;

namespace {

using mt::TempDir;

using mt::read_all;

// Files may not grow past `bytes` while it lives (this process only).
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &old_) == 0);
    old_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    struct rlimit l = old_;
    l.rlim_cur = bytes;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &l) == 0);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &old_);
    std::signal(SIGXFSZ, old_handler_);
  }

 private:
  struct rlimit old_ {};
  void (*old_handler_)(int) = nullptr;
};

std::unique_ptr<Sequential> mlp(int classes) {
  set_global_seed(3);
  auto m = std::make_unique<Sequential>("mlp");
  m->add<Dense>("hidden", 64, DenseOptions{"relu"});
  m->add<Dense>("out", classes, DenseOptions{"softmax"});
  m->build(Shape{2});
  return m;
}

ArraySource blobs(int n) {
  TensorF x(Shape{n, 2});
  std::vector<int> y(static_cast<size_t>(n), 0);
  Rng r(5);
  for (int i = 0; i < n; ++i) {
    y[size_t(i)] = i % 2;
    x.at(i, 0) = float(2.0 * (i % 2) + r.normal() * 0.4);
    x.at(i, 1) = float(r.normal() * 0.4);
  }
  return ArraySource(x, y, 2, 8, true, 1);
}

}  // namespace

TEST_CASE("AtomicFile: a write that fails after N bytes names the file and keeps the old one") {
  TempDir t;
  const std::string path = t.file("model.mcnn");
  std::ofstream(path) << "the previous version";
  const std::string big(200000, 'x');
  {
    FileSizeLimit limit(50000);
    mt::check_throws_with([&] { write_file_atomic(path, big.data(), big.size()); },
                          {path, "write failed after", "of 200000 bytes", "File too large",
                           "previous file", "unchanged"});
    // A write that fits still works under the limit.
    write_file_atomic(t.file("small.txt"), "ok", 2);
  }
  CHECK(read_all(path) == "the previous version");
  CHECK(read_all(t.file("small.txt")) == "ok");
  CHECK(t.temporaries() == 0);
}

TEST_CASE("BackgroundWriter: a failed write is reported to its owner only, at wait") {
  TempDir t;
  BackgroundWriter w;
  int a = 0, b = 0;
  std::ofstream(t.file("a.bin")) << "old a";
  const std::vector<char> big(200000, 'y');
  {
    FileSizeLimit limit(50000);
    w.submit(t.file("a.bin"), big, &a);
    w.submit(t.file("b.bin"), std::vector<char>{'b'}, &b);
    mt::check_throws_with([&] { w.wait(&a); }, {"a.bin", "File too large"});
  }
  CHECK(w.take_errors(&b).empty());
  CHECK(w.take_errors().empty());  // the error was handed out once
  CHECK(read_all(t.file("a.bin")) == "old a");
  CHECK(read_all(t.file("b.bin")) == "b");
  CHECK(t.temporaries() == 0);
}

TEST_CASE("BackgroundWriter: a checkpoint is not written after the file it describes failed") {
  TempDir t;
  BackgroundWriter w;
  int model = 0, checkpoint = 0;
  std::ofstream(t.file("ck")) << "old ck";
  auto text = [](const std::string& s) { return std::vector<char>(s.begin(), s.end()); };
  {
    FileSizeLimit limit(50000);
    w.submit(t.file("best"), std::vector<char>(200000, 'b'), &model);
    w.submit(t.file("ck"), text("new ck"), &checkpoint, /*only_if_earlier_written=*/true);
    mt::check_throws_with([&] { w.wait(&checkpoint); },
                          {"ck'", "not written because", "best", "unchanged"});
  }
  CHECK(read_all(t.file("ck")) == "old ck");
  CHECK(w.take_errors(&model).size() == 1);
  // The next epoch, nothing failed before it: written.
  w.submit(t.file("best"), text("best 2"), &model);
  w.submit(t.file("ck"), text("ck 2"), &checkpoint, true);
  w.wait();
  CHECK(read_all(t.file("ck")) == "ck 2");
  // Without the flag a file is written whatever failed before it.
  {
    FileSizeLimit limit(50000);
    w.submit(t.file("best"), std::vector<char>(200000, 'b'), &model);
    w.submit(t.file("ck"), text("ck 3"), &checkpoint);
    w.wait(&checkpoint);
  }
  CHECK(read_all(t.file("ck")) == "ck 3");
  CHECK(read_all(t.file("best")) == "best 2");
  CHECK(w.take_errors(&model).size() == 1);
  // A new owner (the next fit's callback) is not held back by a failure before its begin().
  int next = 0;
  w.begin(&next);
  w.submit(t.file("ck"), text("ck 4"), &next, true);
  w.wait();
  w.end(&next);
  CHECK(read_all(t.file("ck")) == "ck 4");
  CHECK(t.temporaries() == 0);
}

TEST_CASE(
    "BackgroundWriter: alternating paths wait instead of overtaking and the newest state wins") {
  TempDir t;
  BackgroundWriter w;
  // Alternating paths, as a model file and a checkpoint after every epoch: a newer state of a
  // path that is not the last one submitted waits for the older one instead of overtaking.
  const std::vector<char> big(4 << 20, 'z');
  for (int i = 0; i < 20; ++i) {
    std::vector<char> m = big;
    m[0] = char('A' + i);
    w.submit(t.file("model"), std::move(m));
    w.submit(t.file("checkpoint"), std::vector<char>{char('A' + i)});
  }
  w.wait();
  CHECK(read_all(t.file("model"))[0] == 'A' + 19);
  CHECK(read_all(t.file("checkpoint")) == std::string(1, char('A' + 19)));
  CHECK(t.temporaries() == 0);
}

TEST_CASE("remove_stale_temporaries removes what dead processes left, nothing else") {
  TempDir t;
  const pid_t dead = ::fork();
  REQUIRE(dead >= 0);
  if (dead == 0) ::_exit(0);
  ::waitpid(dead, nullptr, 0);  // reaped: its pid no longer runs
  const std::string target = t.file("best_model.mcnn");
  const std::string d = std::to_string(dead), me = std::to_string(::getpid());
  for (const std::string& n : std::vector<std::string>{
           ".best_model.mcnn.tmp." + d + ".0", ".best_model.mcnn.tmp." + d + ".17",
           ".best_model.mcnn.tmp." + me + ".3",  // a live writer: ours
           ".best_model.mcnn.tmp.1.2",           // a live writer: init
           ".other.mcnn.tmp." + d + ".0",        // another file's
           ".best_model.mcnn.tmp." + d + ".x",   // not AtomicFile's pattern
           "best_model.mcnn"})
    std::ofstream(t.file(n)) << "x";
  CHECK(remove_stale_temporaries(target) == 2);
  CHECK(!fs::exists(t.file(".best_model.mcnn.tmp." + d + ".0")));
  CHECK(!fs::exists(t.file(".best_model.mcnn.tmp." + d + ".17")));
  for (const std::string& n :
       std::vector<std::string>{".best_model.mcnn.tmp." + me + ".3", ".best_model.mcnn.tmp.1.2",
                                ".other.mcnn.tmp." + d + ".0", ".best_model.mcnn.tmp." + d + ".x",
                                std::string("best_model.mcnn")})
    CHECK(fs::exists(t.file(n)));
  CHECK(remove_stale_temporaries(t.file("no/such/folder/f")) == 0);
}

TEST_CASE(
    "callbacks: on_write_error stop ends training and continue goes on with old files intact") {
  for (const bool background : {true, false}) {
    for (const std::string policy : {"stop", "continue"}) {
      CAPTURE(background);
      CAPTURE(policy);
      TempDir t;
      const std::string best = t.file("best.mcnn"), ck = t.file("ck.mcnn");
      auto make = [&] {
        ModelCheckpointOptions mo;
        mo.filepath = best;
        mo.monitor = "loss";
        mo.on_write_error = policy;
        mo.background = background;
        return std::vector<std::shared_ptr<Callback>>{
            std::make_shared<ModelCheckpoint>(mo),
            std::make_shared<BackupAndRestore>(ck, policy, background)};
      };
      Model m(mlp(2));
      m.compile(std::make_unique<Adam>(0.01));
      ArraySource train = blobs(32);
      FitOptions o;
      o.verbose = 0;
      o.epochs = 2;
      o.callbacks = make();
      m.fit(train, nullptr, o);
      const std::string best_before = read_all(best), ck_before = read_all(ck);
      REQUIRE(best_before.size() < ck_before.size());
      // The model file fits under the limit, the checkpoint (optimizer slots too) does not.
      o.epochs = 6;
      o.initial_epoch = m.load_checkpoint(ck);
      o.callbacks = make();
      History h;
      {
        FileSizeLimit limit((best_before.size() + ck_before.size()) / 2);
        h = m.fit(train, nullptr, o);
      }
      auto* b = static_cast<BackupAndRestore*>(o.callbacks[1].get());
      CHECK(b->write_errors() >= 1);
      CHECK(static_cast<ModelCheckpoint*>(o.callbacks[0].get())->write_errors() == 0);
      if (policy == "stop")
        CHECK(h.size() < 6);  // stopped at the first epoch end that knew
      else
        CHECK(h.size() == 6);
      CHECK(read_all(ck) == ck_before);  // the checkpoint of epoch 2, byte for byte
      Model back(mlp(2));
      back.compile(std::make_unique<Adam>(0.01));
      CHECK(back.load_checkpoint(ck) == 2);
      CHECK(t.temporaries() == 0);
    }
  }
}
