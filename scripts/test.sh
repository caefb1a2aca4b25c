#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite (unit, MPI at 1/2/4 ranks, PyTorch
# reference, pipeline, bad inputs). GPU tests are skipped without a GPU. Then the sanitizer
# stage (scripts/sanitize.sh: unit tests under ASan + UBSan, a bounded fuzzing run), unless
# BTM_SANITIZE_STAGE=0 or ctest arguments select tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
build=$(bash scripts/build.sh)
(cd "$build" && ctest --output-on-failure -j "$(nproc)" "$@")
if [[ $# == 0 && ${BTM_SANITIZE_STAGE:-1} != 0 ]]; then
  bash scripts/sanitize.sh
fi
