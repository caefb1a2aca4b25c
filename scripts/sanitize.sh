#!/usr/bin/env bash
# CI's sanitizer stage: the asan preset (Clang 14, AddressSanitizer + UndefinedBehavior-
# Sanitizer, cpu backend) builds the single-process unit tests and runs them, then every
# libFuzzer target but fuzz_forest runs for BTM_FUZZ_SECONDS (default 45) on its seed
# corpus (scripts/fuzz.sh). The MPI suites at 2 and 4 ranks stay with the Release build: under
# ASan they would cost more CI time than they add.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
tests=(test_group_layout test_config test_data_readers test_llama test_schedule test_cpu_kernels
       test_ensemble test_routing test_cluster_units test_comm)
cmake --preset asan >/dev/null
cmake --build build-asan -j "$(nproc)" --target "${tests[@]}" >&2
# Open MPI and HDF5 leave start-up allocations behind at exit: tests/fuzz/lsan.supp.
export LSAN_OPTIONS=suppressions=$PWD/tests/fuzz/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
pattern=$(IFS='|'; echo "${tests[*]}")
(cd build-asan && ctest --output-on-failure -j "$(nproc)" -R "^(${pattern})(_np1)?\$")
# fuzz_forest is left to the long runs: its input reaches HDF5 1.10's global-heap reader,
# whose own memory errors on damaged files (tests/fuzz/README.md) btm cannot fix.
bash scripts/fuzz.sh "${BTM_FUZZ_SECONDS:-45}" deck corpus model
