#!/usr/bin/env bash
# bench/train_cpu.sh: btm vs PyTorch CPU training throughput, side by side, in one run.
#
# The same model (Llama-style, d=256, 4 layers, 4 heads, context 256, vocabulary 8192), the
# same data (btm's data.h5 of the quickstart corpus), the same AdamW, clipping, warmup+cosine
# schedule, micro batch and global batch, trained by btm (seed phase of bench/cpu_bench.toml)
# and by bench/train_torch.py, alternately, on 1 and 2 ranks (one BLAS / intra-op thread
# per rank). Prints tokens/s of each and the ratio btm/PyTorch.
#
#   bash bench/train_cpu.sh                      # ~5 minutes on 2 cores
#   bash bench/train_cpu.sh --rounds 1 --steps 4 # a quick look
#   bash bench/train_cpu.sh --help
#
# tok/s of one run = the median over its timed steps of (global batch tokens / step wall
# time on rank 0), after the warm-up steps; both programs log every step. A row of the
# summary = the median over the rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

usage() {
  cat <<EOF
usage: bash bench/train_cpu.sh [options]
  --ranks "1 2"       rank counts to measure (default: "1 2")
  --rounds R          btm/PyTorch pairs per rank count, alternating (default: 3)
  --warmup W          untimed steps first (default: 2)
  --steps N           timed optimizer steps per run (default: 8)
  --micro-batch M     sequences per rank per forward/backward (default: 4)
  --global-batch G    sequences per optimizer step over all ranks (default: 16);
                      must be a multiple of M x ranks (gradient accumulation)
  --out DIR           bench folder: data.h5, seed.h5, logs (default: runs/bench-cpu)
  --btm PATH          btm binary (default: \$BTM, else build/btm, else the newest
                      build*/btm, else build it with scripts/build.sh, cpu preset)
  --malloc M          tuned: glibc malloc keeps freed memory (MALLOC_MMAP_MAX_=0,
                      MALLOC_TRIM_THRESHOLD_, MALLOC_TOP_PAD_), for both programs alike;
                      default: glibc's defaults (default: tuned)
  --max-load L        before measuring, wait until the 1-minute load average is <= L;
                      a btm/PyTorch pair during which more than L other tasks were
                      runnable on average is repeated (default: 0.5)
  --load-wait S       wait at most S seconds for a quiet machine, then go on (default: 180)
  --retries K         repeat a disturbed pair at most K times (default: 2); the table
                      uses the undisturbed pairs when there are any
EOF
}

fail() { echo "train_cpu.sh: error: $*" >&2; exit 1; }

RANKS="1 2" ROUNDS=3 WARMUP=2 STEPS=8 MICRO=4 GLOBAL=16 OUT=runs/bench-cpu
BTM_BIN=${BTM:-} MAX_LOAD=0.5 LOAD_WAIT=180 MALLOC=tuned RETRIES=2
while [[ $# -gt 0 ]]; do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --ranks|--rounds|--warmup|--steps|--micro-batch|--global-batch|--out|--btm|--max-load|--load-wait|--malloc|--retries)
      [[ $# -ge 2 ]] || fail "$1 needs a value" ;;
    *) usage >&2; fail "unknown option '$1'" ;;
  esac
  case $1 in
    --ranks) RANKS=$2 ;;
    --rounds) ROUNDS=$2 ;;
    --warmup) WARMUP=$2 ;;
    --steps) STEPS=$2 ;;
    --micro-batch) MICRO=$2 ;;
    --global-batch) GLOBAL=$2 ;;
    --out) OUT=$2 ;;
    --btm) BTM_BIN=$2 ;;
    --max-load) MAX_LOAD=$2 ;;
    --load-wait) LOAD_WAIT=$2 ;;
    --malloc) MALLOC=$2 ;;
    --retries) RETRIES=$2 ;;
  esac
  shift 2
done
[[ -n ${RANKS// /} ]] || fail "--ranks is empty"
for v in ROUNDS STEPS MICRO GLOBAL; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || fail "--$(tr 'A-Z_' 'a-z-' <<<"$v") must be a positive integer, got '${!v}'"
done
[[ $WARMUP =~ ^[0-9]+$ ]] || fail "--warmup must be a non-negative integer, got '$WARMUP'"
[[ $RETRIES =~ ^[0-9]+$ ]] || fail "--retries must be a non-negative integer, got '$RETRIES'"
[[ $LOAD_WAIT =~ ^[0-9]+$ ]] || fail "--load-wait must be a whole number of seconds, got '$LOAD_WAIT'"
[[ $MALLOC == tuned || $MALLOC == default ]] || fail "--malloc must be 'tuned' or 'default', got '$MALLOC'"
[[ $MAX_LOAD =~ ^[0-9]+([.][0-9]+)?$ ]] || fail "--max-load must be a number, got '$MAX_LOAD'"
for p in $RANKS; do
  [[ $p =~ ^[1-9][0-9]*$ ]] || fail "--ranks: '$p' is not a positive integer"
  (( GLOBAL % (MICRO * p) == 0 )) ||
    fail "--global-batch $GLOBAL is not a multiple of --micro-batch $MICRO x $p ranks"
done

# The benchmark's model and optimizer: passed to both programs, so they cannot differ.
DECK=bench/cpu_bench.toml
HIDDEN=256 LAYERS=4 HEADS=4 CONTEXT=256 VOCAB=8192
LR=1e-3 MIN_LR_RATIO=0.1 WEIGHT_DECAY=0.1 BETA1=0.9 BETA2=0.95 ADAM_EPS=1e-8 CLIP=1.0
TOTAL=$((WARMUP + STEPS))
LR_WARMUP=$(( (TOTAL + 2) / 5 )); (( LR_WARMUP >= 1 )) || LR_WARMUP=1  # ~20% of the steps
# btm: warmup steps = lround(warmup_fraction x total) = LR_WARMUP exactly.
WARMUP_FRACTION=$(awk -v a="$LR_WARMUP" -v b="$TOTAL" 'BEGIN { printf "%.6f", a / b }')
PY=/usr/bin/python3

source scripts/env.sh  # Open MPI as root / oversubscribed, one BLAS thread per rank
if [[ $MALLOC == tuned ]]; then
  # PyTorch allocates its activations afresh every step; with glibc's defaults the big ones
  # are mmap'ed and unmapped each time, and every page is faulted in and zeroed again
  # (~12% of a PyTorch step here). Keeping freed memory in the heap is the usual CPU tuning
  # (as jemalloc/tcmalloc would); btm allocates once and is unaffected. Same for both.
  export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=4000000000 MALLOC_TOP_PAD_=1000000000
fi

# ---------------------------------------------------------------- tools, binary, data
command -v mpirun >/dev/null || fail "mpirun not found (Open MPI; see scripts/setup.sh)"
[[ -x $PY ]] || fail "$PY not found: the PyTorch side needs Debian's python3 with torch and h5py"
$PY -c "import torch, h5py, numpy" 2>/dev/null ||
  fail "$PY cannot import torch, h5py and numpy (apt install python3-torch python3-h5py)"

if [[ -z $BTM_BIN ]]; then
  if [[ -x build/btm ]]; then BTM_BIN=build/btm
  else BTM_BIN=$(ls -t build*/btm 2>/dev/null | head -n 1 || true)
  fi
fi
if [[ -z $BTM_BIN ]]; then
  echo "# no build*/btm: building it (scripts/build.sh, cpu preset)"
  # env.sh set OMP_NUM_THREADS=1, which nproc (the -j of build.sh) obeys.
  build=$(env -u OMP_NUM_THREADS BTM_PRESET=cpu bash scripts/build.sh) || fail "building btm failed (scripts/build.sh)"
  BTM_BIN=$build/btm
fi
[[ -x $BTM_BIN ]] || fail "btm binary '$BTM_BIN' does not exist or is not executable"

mkdir -p "$OUT/logs"
DATA=$OUT/data.h5
if [[ ! -f $DATA ]]; then
  if [[ ! -f data/quickstart/corpus.jsonl ]]; then
    echo "# building the quickstart corpus (scripts/quickstart-corpus.sh)"
    bash scripts/quickstart-corpus.sh data/quickstart ||
      fail "scripts/quickstart-corpus.sh failed: the benchmark needs data/quickstart/corpus.jsonl"
  fi
  echo "# preparing $DATA (btm prepare, vocabulary $VOCAB)"
  mpirun -np 2 "$BTM_BIN" run "$DECK" --phases prepare --set "run.out_dir=$OUT" \
    --set "data.vocab_size=$VOCAB" >"$OUT/logs/prepare.log" 2>&1 ||
    { tail -n 20 "$OUT/logs/prepare.log" >&2; fail "btm prepare failed; log: $OUT/logs/prepare.log"; }
fi
got_vocab=$($PY -c "import h5py, sys; print(int(h5py.File(sys.argv[1], 'r')['tokenizer/model'].attrs['vocab_size']))" "$DATA" 2>/dev/null) ||
  fail "$DATA: cannot read /tokenizer/model attribute vocab_size (delete it to prepare it again)"
[[ $got_vocab == "$VOCAB" ]] ||
  fail "$DATA: vocabulary $got_vocab, the benchmark needs $VOCAB (delete it to prepare it again)"

# ---------------------------------------------------------------- machine and load
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
load1() { cut -d' ' -f1 /proc/loadavg; }
# Other runnable tasks while a run goes (procs_running of /proc/stat minus our ranks and
# this sampler), sampled every 0.5 s: a second program on the cores shows up here.
sample_others() {  # ranks file
  local ranks=$1 file=$2 k v _
  : >"$file"
  while :; do
    while read -r k v _; do
      [[ $k == procs_running ]] && { echo $(( v - ranks - 1 < 0 ? 0 : v - ranks - 1 )) >>"$file"; break; }
    done </proc/stat
    sleep 0.5
  done
}
# Mean number of other runnable tasks over the next 5 s (the load average lags a minute
# behind, and our own runs are in it).
others_now() {
  local f=$OUT/logs/quiet.load pid
  sample_others 0 "$f" & pid=$!
  sleep 5; kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  awk '{ s += $1 } END { printf "%.2f", NR ? s / NR : 0 }' "$f"
}
# Waits (at most LOAD_WAIT s) until the cores are free of other programs.
wait_quiet() {
  local waited=0 now
  now=$(others_now)
  while above "$now" "$MAX_LOAD" && (( waited < LOAD_WAIT )); do
    (( waited == 0 )) && echo "#   $now other tasks runnable: waiting up to ${LOAD_WAIT}s"
    sleep 10; waited=$((waited + 15)); now=$(others_now)
  done
}
above() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'; }
waited=0
while above "$(load1)" "$MAX_LOAD" && (( waited < LOAD_WAIT )); do
  (( waited == 0 )) && echo "# load average $(load1) > $MAX_LOAD: waiting up to ${LOAD_WAIT}s for the machine to calm down"
  sleep 10; waited=$((waited + 10))
done
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
above "$(load1)" "$MAX_LOAD" &&
  echo "# WARNING: load average still $(load1) > $MAX_LOAD after ${waited}s: others share the cores, figures are pessimistic"

echo "# btm vs PyTorch CPU training throughput ($(date -u '+%Y-%m-%d %H:%M UTC'))"
echo "# machine: $cpu_model, $(grep -c "^processor" /proc/cpuinfo) cores; uptime:$(uptime | sed 's/^[^,]*up/ up/')"
echo "# btm: $BTM_BIN ($("$BTM_BIN" --version)); $($PY -c 'import torch; print("torch", torch.__version__)')"
echo "# model d=$HIDDEN layers=$LAYERS heads=$HEADS context=$CONTEXT vocab=$VOCAB; data $DATA"
echo "# batch: micro $MICRO, global $GLOBAL sequences = $((GLOBAL * CONTEXT)) tokens/step;" \
     "AdamW lr=$LR betas=$BETA1,$BETA2 eps=$ADAM_EPS wd=$WEIGHT_DECAY clip=$CLIP;" \
     "lr warmup $LR_WARMUP of $TOTAL steps, cosine to x$MIN_LR_RATIO"
echo "# malloc: $MALLOC${MALLOC_MMAP_MAX_:+ (MALLOC_MMAP_MAX_=$MALLOC_MMAP_MAX_ MALLOC_TRIM_THRESHOLD_=$MALLOC_TRIM_THRESHOLD_ MALLOC_TOP_PAD_=$MALLOC_TOP_PAD_)}; one BLAS/intra-op thread per rank"
echo "# per run: $WARMUP warm-up + $STEPS timed steps; $ROUNDS rounds; ranks: $RANKS"

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) exit 1; print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
mean() { awk '{ s += $1 } END { printf "%.2f", NR ? s / NR : 0 }'; }

RESULTS=$OUT/logs/results.tsv   # impl ranks round tok/s others clean(1/0), one row per kept run
REJECTED=$OUT/logs/repeated.tsv # runs of pairs that were repeated
PAIR=$OUT/logs/pair.tsv
: >"$RESULTS"; : >"$REJECTED"

# run IMPL P ROUND: trains, parses the log, appends "impl P round tok/s others" to PAIR.
run_one() {
  local impl=$1 p=$2 round=$3 log=$OUT/logs/$1-p$2-r$3.log samples=$OUT/logs/$1-p$2-r$3.load
  local accum=$((GLOBAL / (MICRO * p))) rc=0 sampler
  sample_others "$p" "$samples" & sampler=$!
  if [[ $impl == btm ]]; then
    rm -f "$OUT/seed.h5"  # else the seed phase is skipped as complete
    mpirun -np "$p" "$BTM_BIN" run "$DECK" --phases seed --set "run.out_dir=$OUT" \
      --set "data.vocab_size=$VOCAB" --set model.vocab_size=0 \
      --set "model.hidden_size=$HIDDEN" --set "model.num_hidden_layers=$LAYERS" \
      --set "model.num_attention_heads=$HEADS" --set model.num_key_value_heads=0 \
      --set model.intermediate_size=0 --set model.tie_word_embeddings=false \
      --set "model.context=$CONTEXT" --set "train.micro_batch=$MICRO" \
      --set "train.global_batch=$GLOBAL" --set "train.lr=$LR" \
      --set "train.min_lr_ratio=$MIN_LR_RATIO" --set "train.warmup_fraction=$WARMUP_FRACTION" \
      --set "train.weight_decay=$WEIGHT_DECAY" --set "train.beta1=$BETA1" \
      --set "train.beta2=$BETA2" --set "train.adam_eps=$ADAM_EPS" --set "train.grad_clip=$CLIP" \
      --set train.log_every=1 --set train.eval_every=0 --set train.checkpoint_every=0 \
      --set train.eval_batches=1 --set run.blas_threads=1 \
      --set "seed.tokens=$((TOTAL * GLOBAL * CONTEXT))" >"$log" 2>&1 || rc=$?
  else
    mpirun -np "$p" "$PY" bench/train_torch.py --data "$DATA" --hidden "$HIDDEN" \
      --layers "$LAYERS" --heads "$HEADS" --context "$CONTEXT" --vocab "$VOCAB" \
      --micro-batch "$MICRO" --grad-accum "$accum" --lr "$LR" --min-lr-ratio "$MIN_LR_RATIO" \
      --lr-warmup "$LR_WARMUP" --total-steps "$TOTAL" --weight-decay "$WEIGHT_DECAY" \
      --beta1 "$BETA1" --beta2 "$BETA2" --adam-eps "$ADAM_EPS" --clip "$CLIP" \
      --warmup-steps "$WARMUP" --steps "$STEPS" --threads 1 --log-every 1 >"$log" 2>&1 || rc=$?
  fi
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
  if (( rc != 0 )); then
    tail -n 20 "$log" >&2
    fail "$impl on $p rank(s) failed (exit $rc); log: $log"
  fi
  # Both print step=S[/T] ... tok/s=X for every step (btm counts from 1, PyTorch's timed
  # steps are numbered after its warm-up); keep the steps after the warm-up.
  local rates
  rates=$(sed -n 's/.*step=\([0-9]*\)[/ ].* tok\/s=\([0-9.]*\).*/\1 \2/p' "$log" |
          awk -v w="$WARMUP" '$1 > w { print $2 }')
  local n
  n=$(grep -c . <<<"$rates" || true)
  (( n == STEPS )) || fail "$log: expected $STEPS timed step lines with tok/s, found $n"
  if [[ $impl == btm ]]; then
    grep -q "status=start steps=$TOTAL tokens_per_step=$((GLOBAL * CONTEXT)) ranks=$p " "$log" ||
      fail "$log: btm did not train $TOTAL steps of $((GLOBAL * CONTEXT)) tokens on $p ranks"
  else
    grep -q "ranks=$p .*micro_batch=$MICRO grad_accum=$accum " "$log" ||
      fail "$log: PyTorch did not run $p ranks x micro batch $MICRO x $accum accumulation"
  fi
  local rate others
  rate=$(median <<<"$rates")
  others=$(mean <"$samples")
  printf '%s\t%s\t%s\t%.0f\t%s\n' "$impl" "$p" "$round" "$rate" "$others" >>"$PAIR"
  printf '#   round %s  ranks %s  %-7s %8.0f tok/s   (other runnable tasks: %s)\n' \
    "$round" "$p" "$impl" "$rate" "$others"
}

START=$SECONDS
for round in $(seq 1 "$ROUNDS"); do
  for p in $RANKS; do
    for attempt in $(seq 0 "$RETRIES"); do
      : >"$PAIR"
      # Alternate which goes first, so a slow drift of the machine hits both alike.
      if (( round % 2 )); then run_one btm "$p" "$round"; run_one pytorch "$p" "$round"
      else run_one pytorch "$p" "$round"; run_one btm "$p" "$round"
      fi
      # Clean: neither run shared the cores with another program (on average <= MAX_LOAD
      # other runnable tasks; PyTorch's own gloo/autograd threads count a little).
      clean=$(awk -v m="$MAX_LOAD" '$5 > m { d = 1 } END { print d ? 0 : 1 }' "$PAIR")
      if (( clean )) || (( attempt == RETRIES )); then
        awk -v c="$clean" '{ print $0 "\t" c }' "$PAIR" >>"$RESULTS"
        break
      fi
      cat "$PAIR" >>"$REJECTED"
      echo "#   other programs ran alongside: repeating round $round on $p rank(s)"
      wait_quiet
    done
  done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- table
echo
echo "# load average (1, 5, 15 min): before $LOAD_START, after $LOAD_END; $((SECONDS - START)) s of runs"
printf '%-6s %12s %14s %16s %22s   %s\n' ranks "btm tok/s" "pytorch tok/s" "ratio btm/torch" "ratio range (rounds)" "used"
for p in $RANKS; do
  # The undisturbed pairs, or every pair when none was.
  use=1
  awk -v p="$p" '$2 == p && $6 == 1 { f = 1 } END { exit !f }' "$RESULTS" || use=0
  pick() { awk -v p="$p" -v i="$1" -v u="$use" '$2 == p && ($1 == i || i == "") && (!u || $6 == 1)' "$RESULTS"; }
  b=$(pick btm | cut -f4 | median)
  t=$(pick pytorch | cut -f4 | median)
  n=$(pick btm | grep -c . || true)
  range=$(pick "" | awk '{ r[$3, $1] = $4; n[$3] = 1 }
    END { lo = 1e9; hi = 0
          for (k in n) { q = r[k, "btm"] / r[k, "pytorch"]; if (q < lo) lo = q; if (q > hi) hi = q }
          printf "%.2f-%.2f", lo, hi }')
  note="$n rounds"; (( use )) || note="$n rounds, ALL DISTURBED by other programs"
  printf '%-6s %12.0f %14.0f %16.2f %22s   %s\n' "$p" "$b" "$t" \
    "$(awk -v a="$b" -v c="$t" 'BEGIN { print a / c }')" "$range" "$note"
done
echo "# per-run figures: $RESULTS; logs: $OUT/logs/"
