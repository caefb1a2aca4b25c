#!/usr/bin/env bash
# Configures and builds btm: the cuda preset when nvcc is on PATH (the CUDA backend must
# always compile where it can), else the cpu preset. Prints the build folder.
set -euo pipefail
cd "$(dirname "$0")/.."
preset=cpu
if [[ "${BTM_PRESET:-}" != "" ]]; then preset=$BTM_PRESET
elif command -v nvcc >/dev/null 2>&1; then preset=cuda
fi
build=build
[[ $preset == cuda ]] && build=build-cuda
cmake --preset "$preset" >/dev/null
cmake --build "$build" -j "$(nproc)" >&2
echo "$build"
