// BackgroundWriter (io/background_writer.hpp) and AtomicFile (io/format.hpp): files written
// by the thread hold exactly the bytes submitted, as they were at submit time; a pending
// write to the same path is replaced by the newer one; a folder that is missing fails at
// once in the caller; a write that fails on the thread is reported later, and the file it
// would have replaced is untouched; an abandoned AtomicFile leaves no temporary file.
#include <minicnn/minicnn.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "doctest/doctest.h"
#include "test_support.hpp"

using namespace minicnn;
namespace fs = std::filesystem;

namespace {

using mt::read_all;
using mt::TempDir;

std::vector<char> bytes_of(const std::string& s) {
  return std::vector<char>(s.begin(), s.end());
}

size_t entries(const fs::path& dir) {
  return size_t(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

}  // namespace

TEST_CASE("BackgroundWriter writes what was submitted, newest state per path") {
  TempDir t;
  std::string big(3 << 20, 'x');
  big[12345] = 'y';
  {
    BackgroundWriter w;
    std::vector<char> b = bytes_of(big);
    w.submit(t.file("big.bin"), b);
    b[0] = 'z';  // the writer has its own copy
    for (int i = 0; i < 20; ++i) w.submit(t.file("counter.txt"), bytes_of(std::to_string(i)));
    w.submit(t.file("small.txt"), bytes_of("hello"));
    w.wait();
    CHECK(w.pending() == 0);
    CHECK(w.take_errors().empty());
  }
  CHECK(read_all(t.file("big.bin")) == big);
  CHECK(read_all(t.file("counter.txt")) == "19");  // replaced or written in order: the last wins
  CHECK(read_all(t.file("small.txt")) == "hello");
  CHECK(entries(t.path) == 3);  // no temporary files left behind
}

TEST_CASE("BackgroundWriter: a missing folder fails at submit, a late failure at wait") {
  TempDir t;
  BackgroundWriter w;
  mt::check_throws_with([&] { w.submit(t.file("no/such/dir/f.bin"), bytes_of("x")); },
                        {"no/such/dir/f.bin", "temporary file"});
  // A path that is a non-empty folder: the temporary file is created, the rename fails on
  // the writer's thread; the folder and what it holds stay.
  fs::create_directories(t.file("taken"));
  std::ofstream(t.file("taken/keep.txt")) << "kept";
  w.submit(t.file("taken"), bytes_of("new"));
  w.submit(t.file("fine.txt"), bytes_of("fine"));
  mt::check_throws_with([&] { w.wait(); }, {"taken", "rename", "unchanged"});
  CHECK(read_all(t.file("taken/keep.txt")) == "kept");
  CHECK(read_all(t.file("fine.txt")) == "fine");
  CHECK(entries(t.path) == 2);  // taken/ and fine.txt, no temporary file
  w.wait();                     // errors are reported once
}

TEST_CASE("AtomicFile: abandoned leaves nothing, committed replaces") {
  TempDir t;
  std::ofstream(t.file("f.txt")) << "old";
  {
    AtomicFile f(t.file("f.txt"));
    CHECK(entries(t.path) == 2);  // the target and the temporary file
  }
  CHECK(entries(t.path) == 1);
  CHECK(read_all(t.file("f.txt")) == "old");
  AtomicFile f(t.file("f.txt"));
  f.commit("new", 3);
  CHECK(read_all(t.file("f.txt")) == "new");
  CHECK(entries(t.path) == 1);
  mt::check_throws_with([&] { f.commit("again", 5); }, {"already committed"});
}
