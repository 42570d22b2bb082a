#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz, docs/fuzzing.md) in build-fuzz with
# clang, ASan and UBSan, and runs each one for a bounded time on a copy of its
# seed corpus. Prints the executions of each harness; exits non-zero when any
# harness finds a crash, a sanitizer report, a timeout or an out-of-memory.
#
#   usage: scripts/fuzz.sh [SECONDS_PER_HARNESS] [HARNESS...]    (default: 60, every harness)
#   env:   FUZZ_BUILD_DIR  build directory (default build-fuzz)
#          FUZZ_RSS_MB     memory limit per harness (default 2048)
#          FUZZ_MERGE=1    afterwards, add the inputs that found new coverage to
#                          tests/fuzz/corpus/<harness>/ (otherwise the repository's
#                          corpus is left untouched)
#          FUZZ_JOBS       build parallelism (default: nproc)
#          FUZZ_PARALLEL   harnesses run at once (default 1)
#          FUZZ_OPT        optimisation of the fuzz build (default -O1; scripts/test.sh's
#                          short pass uses -O0 in build-fuzz-quick: half the compile time)
# Findings (the crashing input and libFuzzer's log) are kept in
# $FUZZ_BUILD_DIR/findings/<harness>/; reproduce one with
#   $FUZZ_BUILD_DIR/tests/fuzz/<harness>_fuzz <file>
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
case "$seconds" in ''|*[!0-9]*) echo "usage: $0 [SECONDS_PER_HARNESS] [HARNESS...]" >&2; exit 2 ;; esac
all_harnesses=(esp_image byte_ranges multipart request_target json_body config)
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=("${all_harnesses[@]}")
for h in "${harnesses[@]}"; do
  [ -f "tests/fuzz/${h}_fuzz.cpp" ] || { echo "fuzz: no harness '$h' (have: ${all_harnesses[*]})" >&2; exit 2; }
done

build_dir=${FUZZ_BUILD_DIR:-build-fuzz}
rss_mb=${FUZZ_RSS_MB:-2048}
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}

scripts/install-deps.sh fuzz

t0=$SECONDS
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=${FUZZ_OPT:--O1} -gline-tables-only" -DOTAD_FUZZ=ON -DOTAD_BUILD_TESTS=OFF \
  "${launcher[@]}" >/dev/null
targets=()
for h in "${harnesses[@]}"; do targets+=("${h}_fuzz"); done
cmake --build "$build_dir" -j"$jobs" --target "${targets[@]}"
echo "== fuzz build took $((SECONDS - t0)) s"

work=$(mktemp -d "${TMPDIR:-/tmp}/otad-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
# Sanitizer reports end the run with a stack; a leak is a finding too.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# Runs one harness on a copy of its corpus; its exit status lands in $work/$h.status.
run_harness() {
  local h=$1 bin="$build_dir/tests/fuzz/${1}_fuzz" seeds="tests/fuzz/corpus/$1"
  local findings="$build_dir/findings/$1" status=0
  local dict=()
  mkdir -p "$work/$h" "$findings"
  [ -d "$seeds" ] && cp -R "$seeds/." "$work/$h/"
  [ -f "tests/fuzz/corpus/$h.dict" ] && dict=("-dict=tests/fuzz/corpus/$h.dict")
  "$bin" "$work/$h" "${dict[@]}" -max_total_time="$seconds" -rss_limit_mb="$rss_mb" -timeout=30 \
    -print_final_stats=1 -artifact_prefix="$findings/" >"$findings/last-run.log" 2>&1 || status=$?
  echo "$status" >"$work/$h.status"
}

# FUZZ_PARALLEL harnesses at a time (default 1: one after the other).
parallel=${FUZZ_PARALLEL:-1}
running=0
for h in "${harnesses[@]}"; do
  echo "== fuzz $h for ${seconds} s"
  if [ "$parallel" -le 1 ]; then
    run_harness "$h"
  else
    run_harness "$h" &
    running=$((running + 1))
    if [ "$running" -ge "$parallel" ]; then wait -n || true; running=$((running - 1)); fi
  fi
done
wait

failed=()
summary=()
total_execs=0
for h in "${harnesses[@]}"; do
  bin="$build_dir/tests/fuzz/${h}_fuzz"
  seeds="tests/fuzz/corpus/$h"
  findings="$build_dir/findings/$h"
  log="$findings/last-run.log"
  status=$(cat "$work/$h.status" 2>/dev/null || echo 1)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  execs=${execs:-0}
  total_execs=$((total_execs + execs))
  corpus_size=$(find "$work/$h" -type f | wc -l)
  if [ "$status" -ne 0 ]; then
    failed+=("$h")
    summary+=("$(printf '%-16s %12s execs  %6s inputs  FINDING (exit %s; see %s)' "$h" "$execs" "$corpus_size" "$status" "$findings")")
    echo "fuzz: $h found a defect; libFuzzer's report:" >&2
    grep -v -e '^#[0-9]' -e 'NEW_FUNC' "$log" | tail -60 | cut -c1-400 >&2
  else
    summary+=("$(printf '%-16s %12s execs  %6s inputs  ok' "$h" "$execs" "$corpus_size")")
    if [ "${FUZZ_MERGE:-0}" = 1 ]; then
      mkdir -p "$seeds"
      "$bin" -merge=1 "$seeds" "$work/$h" >"$work/$h.merge.log" 2>&1 ||
        { echo "fuzz: merging the corpus of $h failed:" >&2; tail -20 "$work/$h.merge.log" >&2; failed+=("$h(merge)"); }
    fi
  fi
done

echo "== fuzz results (${seconds} s per harness, total $total_execs executions)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi
