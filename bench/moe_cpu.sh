#!/usr/bin/env bash
# bench/moe_cpu.sh: the cost of an MoE training step against the dense model of the same
# shape, side by side, in one run, on the cpu backend.
#
# The model of bench/train_cpu.sh (d=256, 4 layers, 4 heads, context 256, vocabulary 8192,
# SwiGLU 704), trained as the seed phase of bench/cpu_bench.toml on the quickstart corpus:
# dense, and with every feed-forward block an MoE of E experts of the same width (top-2
# routing by default, BTX's setting). Runs alternate dense / MoE; a row is the median
# over the rounds of each run's median step time after the warm-up steps.
#
#   bash bench/moe_cpu.sh                       # ~3 minutes on 2 cores
#   bash bench/moe_cpu.sh --experts 8 --routing switch
#
# A top-2 MoE does about twice the FFN work of the dense model per token (each token runs
# through 2 experts) plus routing, dispatch and combine; the ratio shows how close the
# implementation comes to that.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<EOF
usage: bash bench/moe_cpu.sh [options]
  --experts E      experts per layer (default: 4)
  --k K            experts per token for top_k routing (default: 2)
  --routing R      top_k | switch | soft | sample_top1 (default: top_k)
  --rounds R       dense/MoE pairs (default: 3)
  --warmup W       untimed steps first (default: 2)
  --steps N        timed steps per run (default: 6)
  --ranks P        MPI ranks (default: 1)
  --out DIR        bench folder: data.h5, logs (default: runs/bench-cpu, shared with train_cpu.sh)
  --btm PATH       btm binary (default: \$BTM, else build/btm)
EOF
}
fail() { echo "moe_cpu.sh: error: $*" >&2; exit 1; }

EXPERTS=4 K=2 ROUTING=top_k ROUNDS=3 WARMUP=2 STEPS=6 RANKS=1 OUT=runs/bench-cpu BTM_BIN=${BTM:-build/btm}
while [[ $# -gt 0 ]]; do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --experts|--k|--routing|--rounds|--warmup|--steps|--ranks|--out|--btm) [[ $# -ge 2 ]] || fail "$1 needs a value" ;;
    *) usage >&2; fail "unknown option '$1'" ;;
  esac
  case $1 in
    --experts) EXPERTS=$2 ;; --k) K=$2 ;; --routing) ROUTING=$2 ;; --rounds) ROUNDS=$2 ;;
    --warmup) WARMUP=$2 ;; --steps) STEPS=$2 ;; --ranks) RANKS=$2 ;; --out) OUT=$2 ;; --btm) BTM_BIN=$2 ;;
  esac
  shift 2
done
for v in EXPERTS K ROUNDS STEPS RANKS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || fail "--$(tr 'A-Z' 'a-z' <<<"$v") must be a positive integer, got '${!v}'"
done
[[ $WARMUP =~ ^[0-9]+$ ]] || fail "--warmup must be a non-negative integer, got '$WARMUP'"
[[ -x $BTM_BIN ]] || fail "btm binary '$BTM_BIN' not found (build it: cmake --preset cpu && cmake --build build)"

source scripts/env.sh  # Open MPI as root / oversubscribed, one BLAS thread per rank
DECK=bench/cpu_bench.toml
mkdir -p "$OUT/logs"
if [[ ! -f $OUT/data.h5 ]]; then
  [[ -f data/quickstart/corpus.jsonl ]] || bash scripts/quickstart-corpus.sh data/quickstart ||
    fail "scripts/quickstart-corpus.sh failed: the benchmark needs data/quickstart/corpus.jsonl"
  echo "# preparing $OUT/data.h5"
  mpirun -np 2 "$BTM_BIN" run "$DECK" --phases prepare --set "run.out_dir=$OUT" >"$OUT/logs/prepare.log" 2>&1 ||
    { tail -n 20 "$OUT/logs/prepare.log" >&2; fail "btm prepare failed; log: $OUT/logs/prepare.log"; }
fi

TOTAL=$((WARMUP + STEPS))
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) exit 1; print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# run NAME [--set ...]: one seed run; prints its median step time in seconds.
run_one() {
  local name=$1 log=$OUT/logs/moe-$1.log
  shift
  rm -f "$OUT/seed.h5"  # else the seed phase is skipped as complete
  mpirun -np "$RANKS" "$BTM_BIN" run "$DECK" --phases seed --set "run.out_dir=$OUT" \
    --set train.log_every=1 --set "seed.tokens=$((TOTAL * 16 * 256))" "$@" >"$log" 2>&1 ||
    { tail -n 20 "$log" >&2; fail "$name run failed; log: $log"; }
  # tokens per step / tok/s of every step after the warm-up
  sed -n 's/.*step=\([0-9]*\)\/.* tok\/s=\([0-9.]*\).*/\1 \2/p' "$log" |
    awk -v w="$WARMUP" '$1 > w { printf "%.6f\n", 4096 / $2 }' | median
}

MOE=(--set "model.num_local_experts=$EXPERTS" --set "model.num_experts_per_tok=$K" --set "model.moe_routing=$ROUTING")
echo "# MoE vs dense training step on the cpu backend ($(date -u '+%Y-%m-%d %H:%M UTC'))"
echo "# machine: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(grep -c ^processor /proc/cpuinfo) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# btm: $BTM_BIN ($("$BTM_BIN" --version)); $RANKS rank(s), 4096 tokens per step; $WARMUP warm-up + $STEPS timed steps; $ROUNDS rounds"
echo "# MoE: $EXPERTS experts, routing $ROUTING, k=$K"
dense=() moe=()
for ((r = 1; r <= ROUNDS; r++)); do
  d=$(run_one dense); m=$(run_one moe "${MOE[@]}")
  printf '#   round %d  dense %.3f s/step  moe %.3f s/step  ratio %.2f\n' "$r" "$d" "$m" "$(awk -v a="$m" -v b="$d" 'BEGIN { print a / b }')"
  dense+=("$d"); moe+=("$m")
done
D=$(printf '%s\n' "${dense[@]}" | median); M=$(printf '%s\n' "${moe[@]}" | median)
printf '| model | s/step | tok/s | vs dense |\n|---|---:|---:|---:|\n'
printf '| dense | %.3f | %.0f | 1.00 |\n' "$D" "$(awk -v d="$D" 'BEGIN { print 4096 / d }')"
printf '| MoE E=%s %s k=%s | %.3f | %.0f | %.2f |\n' "$EXPERTS" "$ROUTING" "$K" "$M" "$(awk -v d="$M" 'BEGIN { print 4096 / d }')" \
  "$(awk -v a="$M" -v b="$D" 'BEGIN { print a / b }')"
