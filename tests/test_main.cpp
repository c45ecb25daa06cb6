// doctest's main() for every test executable.
// --require-isa=NAME (tests/CMakeLists.txt, with MINICNN_ISA=NAME in the environment): the
// run is meant to exercise that instruction-set path; it skips (exit 77) when this CPU or
// build lacks it, and fails when the kernels would run another path.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstring>
#include <minicnn/core/cpu.hpp>
#include <vector>

int main(int argc, char** argv) {
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    const char* opt = "--require-isa=";
    if (std::strncmp(argv[i], opt, std::strlen(opt)) != 0) {
      args.push_back(argv[i]);
      continue;
    }
    const minicnn::Isa want = minicnn::parse_isa(argv[i] + std::strlen(opt));
    bool runnable = false;
    for (minicnn::Isa isa : minicnn::runnable_isas()) runnable = runnable || isa == want;
    if (!runnable) {
      std::printf("SKIP: this CPU or build has no %s path\n", minicnn::isa_name(want));
      return 77;
    }
    if (minicnn::active_isa() != want) {
      std::printf("FAIL: --require-isa=%s but the kernels run %s (is MINICNN_ISA set?)\n",
                  minicnn::isa_name(want), minicnn::isa_name(minicnn::active_isa()));
      return 1;
    }
    std::printf("instruction set: %s\n", minicnn::isa_name(want));
  }
  doctest::Context ctx;
  ctx.applyCommandLine(static_cast<int>(args.size()), args.data());
  return ctx.run();
}
