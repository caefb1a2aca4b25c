#!/usr/bin/env bash
# Fuzzes btm's readers of outside input with libFuzzer: the deck reader (fuzz_deck), the
# JSONL corpus reader (fuzz_corpus), the model file reader (fuzz_model) and the forest
# reader (fuzz_forest), each for SECONDS (default 60), starting from its committed seed
# corpus tests/fuzz/corpus/<target>/. Builds the asan preset's fuzz targets (Clang,
# AddressSanitizer + UndefinedBehaviorSanitizer) first. Exits non-zero when a target
# crashes; the input that did it is kept in build-asan/fuzz/<target>/ to be replayed:
#   build-asan/tests/fuzz/fuzz_<target> <crash file>
#
#   scripts/fuzz.sh [SECONDS] [TARGET ...]     CI: scripts/fuzz.sh 45; a long run: scripts/fuzz.sh 3600
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(deck corpus model forest)

source scripts/env.sh
cmake --preset asan >/dev/null
cmake --build build-asan -j "$(nproc)" --target "${targets[@]/#/fuzz_}" >&2

# Open MPI and HDF5 keep allocations past exit that they never free (reachable only through
# their own globals at teardown): suppressed by library, so a leak in btm still fails.
export LSAN_OPTIONS=suppressions=$PWD/tests/fuzz/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# HDF5 asks for absurd sizes when a damaged file declares them and handles the NULL that
# malloc returns outside ASan; let ASan's malloc return NULL too instead of stopping.
export ASAN_OPTIONS=allocator_may_return_null=1
failed=()
for t in "${targets[@]}"; do
  work=build-asan/fuzz/$t
  rm -rf "$work" && mkdir -p "$work/corpus"
  # New inputs go to the scratch corpus (first folder); the committed seeds are only read.
  # Fork mode goes on after a timeout: HDF5 1.10's global-heap reader can loop forever on a
  # damaged file (tests/fuzz/README.md), which btm cannot bound; timeouts are listed, and
  # crashes, sanitizer reports and out-of-memory still fail.
  if build-asan/tests/fuzz/fuzz_"$t" -fork=1 -ignore_timeouts=1 -max_total_time="$seconds" -timeout=20 \
       -rss_limit_mb=4096 -artifact_prefix="$work/" "$work/corpus" "tests/fuzz/corpus/$t" >"$work/log" 2>&1; then
    runs=$(grep -o "^#[0-9]*" "$work/log" | tail -1 | tr -d '#' || true)
    timeouts=$(find "$work" -maxdepth 1 -name 'timeout-*' | wc -l)
    echo "fuzz target=$t seconds=$seconds runs=${runs:-?} crashes=0 timeouts=$timeouts"
  else
    echo "fuzz target=$t seconds=$seconds status=crash log=$work/log"
    grep -E "ERROR|SUMMARY|runtime error|uncaught|Test unit written" "$work/log" | head -8
    failed+=("$t")
  fi
done
[[ ${#failed[@]} == 0 ]] || { echo "fuzzing found crashes in: ${failed[*]}"; exit 1; }
