#!/usr/bin/env bash
# Cross-compiles the kernel and layer tests for ARM64 (AArch64, NEON path) with Debian's
# g++-aarch64-linux-gnu and runs them under qemu-user-static: correctness only, emulated
# speed means nothing. Usage: tools/arm64_tests.sh [build-dir] (default build-arm64).
# Exits 77 (skipped) when the cross compiler or qemu is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build-arm64}
cxx=aarch64-linux-gnu-g++
qemu=qemu-aarch64-static
for tool in "$cxx" "$qemu"; do
  if ! command -v "$tool" > /dev/null; then
    echo "SKIPPED: $tool not found (apt-get install g++-aarch64-linux-gnu qemu-user-static)"
    exit 77
  fi
done

# Header-only dependencies from the host's Debian packages, without the host's /usr/include
# (its glibc headers are x86-64's): a folder of links to just those libraries.
inc="$out/include"
mkdir -p "$inc"
ln -sfn /usr/include/eigen3/Eigen "$inc/Eigen"
ln -sfn /usr/include/doctest "$inc/doctest"
ln -sfn /usr/include/nlohmann "$inc/nlohmann"
ln -sfn /usr/include/stb "$inc/stb"

tests=(test_gemm test_conv2d test_dwconv2d test_dense test_layers test_optim test_isa)
flags=(-std=gnu++17 -O1 -fopenmp -Wall -Wextra -Iinclude -isystem "$inc" -static
  -DMINICNN_SOURCE_DIR="\"$PWD\"" -DMINICNN_SHARED_DIR="\"$PWD/../shared\""
  -DMINICNN_BIN_DIR="\"$PWD/$out\"")
# One unity file: the tests share most of what they instantiate (kernels, layers), which
# is then compiled once. -O1: the emulated run is short either way, and compiling is most
# of this script's time.
unity="$out/arm64_tests.cpp"
printf '#include "%s"\n' "${tests[@]/#/$PWD/tests/}" | sed 's/"$/.cpp"/' > "$unity"
"$cxx" "${flags[@]}" -c tests/test_main.cpp -o "$out/test_main.o" &
main_pid=$!
"$cxx" "${flags[@]}" -Itests -c "$unity" -o "$out/arm64_tests.o" ||
  { echo "FAILED: cross-compiling the ARM64 tests"; exit 1; }
wait "$main_pid" || { echo "FAILED: cross-compiling tests/test_main.cpp"; exit 1; }
"$cxx" "${flags[@]}" "$out/arm64_tests.o" "$out/test_main.o" -o "$out/arm64_tests"
failed=0
for t in "${tests[@]}"; do
  echo "== $t (aarch64, $qemu) =="
  if ! OMP_NUM_THREADS=2 "$qemu" "$out/arm64_tests" --require-isa=neon "--source-file=*/$t.cpp"; then
    echo "FAILED: $t under $qemu"
    failed=1
  fi
done
exit $failed
