#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite (unit, MPI at 1/2/4 ranks, PyTorch
# reference, pipeline). GPU tests are skipped without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
build=$(bash scripts/build.sh)
cd "$build"
ctest --output-on-failure -j "$(nproc)" "$@"
