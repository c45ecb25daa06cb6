#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz/fuzz_*.cpp) with clang++-14 into build-fuzz and runs them.
#   tests/fuzz/run_fuzzers.sh regress [HARNESS...]         every seed, regression input and dictionary
#                                                   check once (fails on any crash or leak)
#   tests/fuzz/run_fuzzers.sh smoke SECONDS [HARNESS...]   a bounded fuzz run per harness, starting
#                                                   from the committed corpus (new inputs go to
#                                                   build-fuzz/corpus/<harness>, not the repo)
#   tests/fuzz/run_fuzzers.sh build                        only build
# Environment: FUZZ_JOBS (parallel builds, default 2), FUZZ_NICE (nice level, default 10),
# FUZZ_ARGS (extra libFuzzer flags). Crashes are written to build-fuzz/artifacts/<harness>/;
# keep each fixed one under tests/fuzz/regressions/<harness>/.
set -euo pipefail
cd "$(dirname "$0")/../.."
mode=${1:-regress}
shift || true
secs=30
if [ "$mode" = smoke ]; then secs=${1:?smoke needs SECONDS}; shift; fi
all=(fuzz_mcnn fuzz_image fuzz_npy fuzz_mjpeg fuzz_http fuzz_folder)
harnesses=("$@")
[ ${#harnesses[@]} -eq 0 ] && harnesses=("${all[@]}")
nice_cmd=(nice -n "${FUZZ_NICE:-10}")

CXX=${CXX:-clang++-14}
if ! command -v "$CXX" >/dev/null; then
  echo "run_fuzzers.sh: $CXX not found; install clang-14 and libclang-rt-14-dev" >&2
  exit 1
fi
cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER="$CXX" -DMINICNN_FUZZ=ON -DCMAKE_BUILD_TYPE=None \
  -DMINICNN_BUILD_TESTS=OFF -DMINICNN_BUILD_EXAMPLES=OFF -DMINICNN_BUILD_BENCH=OFF >/dev/null
built=()
for h in "${harnesses[@]}"; do
  if [ -f "tests/fuzz/$h.cpp" ] && grep -q "$h" build-fuzz/tests/fuzz/Makefile 2>/dev/null; then built+=("$h"); fi
done
"${nice_cmd[@]}" cmake --build build-fuzz -j"${FUZZ_JOBS:-2}" --target "${built[@]}"
[ "$mode" = build ] && exit 0

# malloc_fill_byte=255 up to 1 MiB: reads of uninitialised heap memory then behave the same
# in every run (fuzz_mjpeg's jpeg_scan_undefined_huffman_tables reproduces only so).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0:malloc_fill_byte=255:max_malloc_fill_size=1048576}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
for h in "${built[@]}"; do
  bin=build-fuzz/bin/$h
  dict=()
  [ -f "tests/fuzz/dict/$h.dict" ] && dict=(-dict="tests/fuzz/dict/$h.dict")
  inputs=("tests/fuzz/corpus/$h")
  [ -d "tests/fuzz/regressions/$h" ] && inputs+=("tests/fuzz/regressions/$h")
  mkdir -p "build-fuzz/artifacts/$h" "build-fuzz/corpus/$h"
  # fuzz_folder scans as the user nobody when run as root; a crash there is written then.
  [ "$h" = fuzz_folder ] && chmod 0777 "build-fuzz/artifacts/$h"
  common=(-rss_limit_mb=2560 -timeout=20 -artifact_prefix="build-fuzz/artifacts/$h/" "${dict[@]}")
  if [ "$mode" = regress ]; then
    echo "== $h: regress over ${inputs[*]}"
    # Given files (not folders), libFuzzer runs each once and stops.
    mapfile -t files < <(find "${inputs[@]}" -type f | sort)
    if ! "${nice_cmd[@]}" "$bin" "${common[@]}" ${FUZZ_ARGS:-} "${files[@]}" \
      >"build-fuzz/$h.regress.log" 2>&1; then
      echo "FAILED: $h (build-fuzz/$h.regress.log)"; tail -30 "build-fuzz/$h.regress.log"; status=1
    else
      echo "ok: ${#files[@]} inputs"
    fi
  elif [ "$mode" = smoke ]; then
    echo "== $h: fuzzing for $secs s"
    if ! "${nice_cmd[@]}" "$bin" "${common[@]}" -max_total_time="$secs" -print_final_stats=1 \
      ${FUZZ_ARGS:-} "build-fuzz/corpus/$h" "${inputs[@]}" >"build-fuzz/$h.smoke.log" 2>&1; then
      echo "FAILED: $h (build-fuzz/$h.smoke.log)"; tail -40 "build-fuzz/$h.smoke.log"; status=1
    else
      grep -E "DONE|stat::number_of_executed_units" "build-fuzz/$h.smoke.log" || true
    fi
  else
    echo "unknown mode '$mode' (regress, smoke SECONDS, build)" >&2; exit 2
  fi
done
exit $status
