#!/usr/bin/env bash
# Paired A/B comparison of two versions of the depthwise kernels (e.g. HEAD and a working
# copy), robust to the drift of a shared machine; see bench/ab/main.cpp.
#   bench/ab_dwconv2d.sh INCLUDE_DIR_A INCLUDE_DIR_B [C H STRIDE PAIRS [fwd]]...
# Without a shape it runs the large MobileNetV2 depthwise shapes, backward. Example:
#   git worktree add /tmp/head HEAD && bench/ab_dwconv2d.sh /tmp/head/include include
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,7p' "$0"; exit 2; }
a=$(realpath "$1"); b=$(realpath "$2"); shift 2
src=$(cd "$(dirname "$0")/ab" && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
flags="-std=c++17 -O3 -march=native -fopenmp"
g++ $flags -c -I"$a" -DVARIANT=A "$src/kernels.cpp" -o "$out/a.o" &
g++ $flags -c -I"$b" -DVARIANT=B -Ddw_avx512=dw_avx512_b "$src/kernels.cpp" -o "$out/b.o" &
g++ $flags -c -I"$a" "$src/main.cpp" -o "$out/main.o" &
wait
g++ -fopenmp "$out/main.o" "$out/a.o" "$out/b.o" -o "$out/ab"
if [ $# -eq 0 ]; then
  for s in "32 48 1" "96 48 2" "144 24 1" "144 24 2" "192 12 1" "576 6 1"; do "$out/ab" $s 150; done
else
  "$out/ab" "$@"
fi
