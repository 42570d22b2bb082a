#!/usr/bin/env bash
# README command 2: installs what is missing, builds, and runs every test (unit +
# end-to-end), first in a normal build, then in an AddressSanitizer +
# UndefinedBehaviorSanitizer build, then the concurrent unit tests under
# ThreadSanitizer, then a short fuzzing pass over every libFuzzer
# harness (scripts/fuzz.sh, FUZZ_SECONDS each, default 20). Exits non-zero on any
# failure, a fuzzing finding included.
#   SKIP_SANITIZE=1 scripts/test.sh   skips the sanitizer pass (local iteration only)
#   SKIP_FUZZ=1 scripts/test.sh       skips the fuzzing pass (local iteration only)
#   SKIP_TSAN=1 scripts/test.sh       skips the ThreadSanitizer pass (local iteration only)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test

jobs=$(nproc 2>/dev/null || echo 2)
run_suite() {  # build dir, extra cmake args...
  local dir=$1; shift
  cmake -S . -B "$dir" -G Ninja "$@" >/dev/null
  local t0=$SECONDS
  cmake --build "$dir" -j"$jobs"
  echo "== build of $dir took $((SECONDS - t0)) s"
  (cd "$dir" && ctest --output-on-failure -j2 --timeout 600)
}

run_suite build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOTAD_BUILD_TESTS=ON
if [ "${SKIP_SANITIZE:-0}" != 1 ]; then
  echo "== sanitizer pass (ASan + UBSan)"
  SANITIZED_BUILD=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_suite build-asan -DCMAKE_BUILD_TYPE=Debug -DOTAD_SANITIZE=ON -DOTAD_BUILD_TESTS=ON
fi
if [ "${SKIP_TSAN:-0}" != 1 ]; then
  # The unit tests whose code runs on several threads (blob cache, catalogue, device
  # registry, rollouts, the server and its sessions), under ThreadSanitizer.
  echo "== ThreadSanitizer pass (domain, storage and net unit tests)"
  cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOTAD_TSAN=ON -DOTAD_BUILD_TESTS=ON >/dev/null
  t0=$SECONDS
  cmake --build build-tsan -j"$jobs" --target otad_unit_domain otad_unit_storage otad_unit_net
  echo "== build of build-tsan took $((SECONDS - t0)) s"
  for layer in domain storage net; do
    TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" SANITIZED_BUILD=1 build-tsan/tests/otad_unit_$layer --gtest_brief=1
  done
fi
if [ "${SKIP_FUZZ:-0}" != 1 ]; then
  echo "== fuzzing pass (libFuzzer + ASan + UBSan, ${FUZZ_SECONDS:-20} s per harness)"
  t0=$SECONDS
  # -O0 builds the instrumented libraries in about a third less time, and two harnesses
  # run at once; 20 s each still replays every seed and regression input and runs
  # thousands to hundreds of thousands of new ones per harness (bench/RESULTS.md).
  FUZZ_OPT=-O0 FUZZ_BUILD_DIR=build-fuzz-quick FUZZ_PARALLEL=${FUZZ_PARALLEL:-2} \
    scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
  echo "== fuzzing pass took $((SECONDS - t0)) s"
fi
