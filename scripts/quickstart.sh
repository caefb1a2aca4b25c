#!/usr/bin/env bash
# Sets up, builds, makes the quickstart corpus from Debian packages, and runs every phase
# of inputs/quickstart.toml on 2 ranks. Results: runs/quickstart/ (eval.h5 and the table).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
build=$(BTM_PRESET=${BTM_PRESET:-cpu} bash scripts/build.sh)
bash scripts/quickstart-corpus.sh data/quickstart
mpirun -np "${RANKS:-2}" "$build/btm" run inputs/quickstart.toml "$@"
