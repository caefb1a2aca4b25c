#!/usr/bin/env bash
# bench/train_cpu.sh: btm vs PyTorch CPU training throughput, side by side, in one run.
#
# The same model (Llama-style, d=256, 4 layers, 4 heads, context 256, vocabulary 8192), the
# same data (btm's data.h5 of the quickstart corpus), the same AdamW, clipping, warmup+cosine
# schedule, micro batch and global batch, trained by btm (seed phase of bench/cpu_bench.toml)
# and by bench/train_torch.py (PyTorch from PyPI in bench/.venv-torch: eager and
# torch.compile; in bf16 under torch.autocast), in turn, for each layout ranks x threads
# (default 1x1 and 2x1). Prints tokens/s, GFLOP/s and the ratios, and the machine's fp32 and
# bf16 GEMM peaks measured in the same run (btm_gemm_peak).
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
  --layouts "1x1 2x1" ranks x threads per rank to measure (default: "1x1 2x1"; e.g. add
                      1x2 for one rank of two threads: BLAS/oneDNN threads for btm, intra-op
                      threads for PyTorch; PyTorch's ranks are gloo DDP processes)
  --ranks "1 2"       shorthand for --layouts "1x1 2x1"
  --precision "fp32 bf16"  btm's train.precision values to measure; fp32 rows compare with
                      PyTorch fp32, bf16 rows with torch.autocast("cpu", bfloat16)
                      (default: "fp32 bf16")
  --torch-modes "eager compile"  PyTorch variants (default: both)
  --torch PY          the PyTorch side's python (default: bench/.venv-torch/bin/python,
                      made with PyPI's torch, h5py and numpy when absent; Debian's
                      /usr/bin/python3 with python3-torch when PyPI cannot be reached)
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
  --retries K         repeat a disturbed round at most K times (default: 2); the table
                      uses the undisturbed rounds when there are any
EOF
}

fail() { echo "train_cpu.sh: error: $*" >&2; exit 1; }

LAYOUTS="1x1 2x1" PRECISIONS="fp32 bf16" TORCH_MODES="eager compile" PY=${TORCH_PY:-} ROUNDS=3 WARMUP=2 STEPS=8 MICRO=4 GLOBAL=16 OUT=runs/bench-cpu
BTM_BIN=${BTM:-} MAX_LOAD=0.5 LOAD_WAIT=180 MALLOC=tuned RETRIES=2
while [[ $# -gt 0 ]]; do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --layouts|--precision|--torch-modes|--torch|--ranks|--rounds|--warmup|--steps|--micro-batch|--global-batch|--out|--btm|--max-load|--load-wait|--malloc|--retries)
      [[ $# -ge 2 ]] || fail "$1 needs a value" ;;
    *) usage >&2; fail "unknown option '$1'" ;;
  esac
  case $1 in
    --layouts) LAYOUTS=$2 ;;
    --ranks) LAYOUTS=$(for p in $2; do printf '%sx1 ' "$p"; done) ;;
    --precision) PRECISIONS=$2 ;;
    --torch-modes) TORCH_MODES=$2 ;;
    --torch) PY=$2 ;;
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
[[ -n ${LAYOUTS// /} ]] || fail "--layouts is empty"
for x in $PRECISIONS; do [[ $x == fp32 || $x == bf16 ]] || fail "--precision: '$x' is not fp32 or bf16"; done
for x in $TORCH_MODES; do [[ $x == eager || $x == compile ]] || fail "--torch-modes: '$x' is not eager or compile"; done
[[ -n ${PRECISIONS// /} ]] || fail "--precision is empty"
for v in ROUNDS STEPS MICRO GLOBAL; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || fail "--$(tr 'A-Z_' 'a-z-' <<<"$v") must be a positive integer, got '${!v}'"
done
[[ $WARMUP =~ ^[0-9]+$ ]] || fail "--warmup must be a non-negative integer, got '$WARMUP'"
[[ $RETRIES =~ ^[0-9]+$ ]] || fail "--retries must be a non-negative integer, got '$RETRIES'"
[[ $LOAD_WAIT =~ ^[0-9]+$ ]] || fail "--load-wait must be a whole number of seconds, got '$LOAD_WAIT'"
[[ $MALLOC == tuned || $MALLOC == default ]] || fail "--malloc must be 'tuned' or 'default', got '$MALLOC'"
[[ $MAX_LOAD =~ ^[0-9]+([.][0-9]+)?$ ]] || fail "--max-load must be a number, got '$MAX_LOAD'"
for lay in $LAYOUTS; do
  [[ $lay =~ ^([1-9][0-9]*)x([1-9][0-9]*)$ ]] || fail "--layouts: '$lay' is not RANKSxTHREADS (e.g. 2x1)"
  p=${BASH_REMATCH[1]}
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
# The PyTorch a user installs today: PyPI's, in a virtual environment of its own (made once,
# reused); Debian's python3-torch when PyPI cannot be reached, labelled as such.
VENV=bench/.venv-torch TORCH_SOURCE=given
if [[ -z $PY ]]; then
  TORCH_SOURCE=pypi PY=$VENV/bin/python
  if ! "$PY" -c "import torch, h5py, numpy" 2>/dev/null; then
    echo "# installing PyTorch, h5py and numpy from PyPI into $VENV (once; a few minutes)"
    if ! { /usr/bin/python3 -m venv "$VENV" &&
           "$VENV/bin/pip" install --quiet --disable-pip-version-check torch h5py numpy; } \
         >"$OUT.venv.log" 2>&1; then
      echo "# WARNING: PyPI install failed (log: $OUT.venv.log): falling back to Debian's python3-torch"
      TORCH_SOURCE=debian-fallback PY=/usr/bin/python3
    fi
  fi
fi
[[ -x $PY ]] || fail "$PY not found: the PyTorch side needs a python3 with torch, h5py and numpy"
$PY -c "import torch, h5py, numpy" 2>/dev/null ||
  fail "$PY cannot import torch, h5py and numpy (apt install python3-torch python3-h5py)"
if [[ $TORCH_MODES == *compile* ]] && ! $PY -c "import torch, sys; sys.exit(not hasattr(torch, 'compile'))"; then
  echo "# WARNING: $($PY -c 'import torch; print(torch.__version__)') has no torch.compile: eager only"
  TORCH_MODES=eager
fi

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
PEAK_BIN=$(dirname "$BTM_BIN")/btm_gemm_peak
[[ -x $PEAK_BIN ]] || fail "$PEAK_BIN not found (built with btm: cmake --build <build> --target btm_gemm_peak)"

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
# Other runnable tasks while a run goes, sampled every 0.5 s: threads in state R that do not
# descend from this script. The runs do, with every thread they start (BLAS and OpenMP
# workers that spin between calls included), so a second program on the cores is what
# shows up here. (mpirun puts each rank in a process group of its own: ancestry it is.)
sample_others() {  # file
  local file=$1
  : >"$file"
  while :; do
    # grep -s: a task may end between the glob and the read.
    { grep -sH '' /proc/[0-9]*/stat /proc/[0-9]*/task/[0-9]*/stat || true; } | awk -v ours=$$ '
      { path = substr($0, 1, index($0, ":") - 1); depth = split(path, p, "/")
        rest = $0; sub(/^.*\) /, "", rest); split(rest, f, " ")  # f[1] state, f[2] ppid
        if (depth == 4) parent[p[3]] = f[2]                       # /proc/PID/stat
        else if (f[1] == "R") running[++k] = p[3] }               # /proc/PID/task/TID/stat
      END { for (i = 1; i <= k; i++) {
              q = running[i]
              while (q != ours && q > 1) q = parent[q] + 0
              if (q != ours) others++
            }
            print others + 0 }' >>"$file"
    sleep 0.5
  done
}
# Mean number of other runnable tasks over the next 5 s (the load average lags a minute
# behind, and our own runs are in it).
others_now() {
  local f=$OUT/logs/quiet.load pid
  sample_others "$f" & pid=$!
  sleep 5; kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
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

# Training FLOPs per token, the same count for both programs (PaLM: 6 x the matrices'
# parameters, LM head included, embedding excluded, + 12 L T d for attention).
INTER=$(( ((8 * HIDDEN + 2) / 3 + 63) / 64 * 64 ))
FLOPS_PER_TOKEN=$(( 6 * (LAYERS * (4 * HIDDEN * HIDDEN + 3 * HIDDEN * INTER) + VOCAB * HIDDEN)
                    + 12 * LAYERS * CONTEXT * HIDDEN ))
isa=$(grep -o -w -E 'avx512f|avx512_bf16|avx512_vnni|amx_bf16|amx_tile|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ')

echo "# btm vs PyTorch CPU training throughput ($(date -u '+%Y-%m-%d %H:%M UTC'))"
echo "# machine: $cpu_model, $(grep -c "^processor" /proc/cpuinfo) cores; ISA flags: $isa; uptime:$(uptime | sed 's/^[^,]*up/ up/')"
echo "# btm: $BTM_BIN ($("$BTM_BIN" --version)); PyTorch: $PY ($($PY -c 'import torch; print("torch", torch.__version__)'), $TORCH_SOURCE)"
echo "# model d=$HIDDEN layers=$LAYERS heads=$HEADS context=$CONTEXT vocab=$VOCAB SwiGLU=$INTER;" \
     "training FLOPs/token $FLOPS_PER_TOKEN (6N + 12LTd); data $DATA"
echo "# batch: micro $MICRO, global $GLOBAL sequences = $((GLOBAL * CONTEXT)) tokens/step;" \
     "AdamW lr=$LR betas=$BETA1,$BETA2 eps=$ADAM_EPS wd=$WEIGHT_DECAY clip=$CLIP;" \
     "lr warmup $LR_WARMUP of $TOTAL steps, cosine to x$MIN_LR_RATIO"
echo "# malloc: $MALLOC${MALLOC_MMAP_MAX_:+ (MALLOC_MMAP_MAX_=$MALLOC_MMAP_MAX_ MALLOC_TRIM_THRESHOLD_=$MALLOC_TRIM_THRESHOLD_ MALLOC_TOP_PAD_=$MALLOC_TOP_PAD_)}"
echo "# layouts (ranks x threads/rank): $LAYOUTS; btm: run.blas_threads = threads (OpenBLAS + oneDNN);" \
     "PyTorch: gloo DDP over the ranks, torch.set_num_threads(threads)"
echo "# per run: $WARMUP warm-up + $STEPS timed steps (torch.compile compiles in the warm-up); $ROUNDS rounds;" \
     "precision: $PRECISIONS; PyTorch: $TORCH_MODES"

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) exit 1; print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
mean() { awk '{ s += $1 } END { printf "%.2f", NR ? s / NR : 0 }'; }

# ---------------------------------------------------------------- GEMM peaks, same run
# One rank's peak per thread count in use, fp32 (OpenBLAS sgemm) and bf16 (oneDNN), 1024^3.
declare -A PEAK32 PEAK16
for t in $(for lay in $LAYOUTS; do echo "${lay#*x}"; done | sort -u); do
  line=$(OMP_NUM_THREADS=$t "$PEAK_BIN" --blas-threads "$t" --size 1024 --seconds 2 2>"$OUT/logs/peak-t$t.err") ||
    fail "$PEAK_BIN failed: $(cat "$OUT/logs/peak-t$t.err")"
  echo "# GEMM $line"
  PEAK32[$t]=$(sed -n 's/.*fp32_gflops=\([0-9.]*\).*/\1/p' <<<"$line")
  PEAK16[$t]=$(sed -n 's/.*bf16_gflops=\([0-9.a-z]*\).*/\1/p' <<<"$line")
  BF16_ISA=$(sed -n 's/.*bf16_isa=\([^ ]*\).*/\1/p' <<<"$line")
done
if [[ $PRECISIONS == *bf16* && ${PEAK16[1]:-${PEAK16[*]}} == none* ]]; then
  echo "# WARNING: this btm has no bf16 GEMMs (built without oneDNN): measuring fp32 only"
  PRECISIONS=fp32
fi

RESULTS=$OUT/logs/results.tsv   # impl layout round tok/s others clean(1/0), one row per kept run
REJECTED=$OUT/logs/repeated.tsv # runs of rounds that were repeated
ROUND=$OUT/logs/round.tsv
: >"$RESULTS"; : >"$REJECTED"

# run_one IMPL LAYOUT ROUND: IMPL = btm-<precision> or torch-<eager|compile>-<precision>;
# trains, parses the log, appends "impl layout round tok/s others" to ROUND.
run_one() {
  local impl=$1 lay=$2 round=$3 log=$OUT/logs/$1-$2-r$3.log samples=$OUT/logs/$1-$2-r$3.load
  local p=${lay%x*} t=${lay#*x} prec=${impl##*-}
  local accum=$((GLOBAL / (MICRO * p))) rc=0 sampler
  sample_others "$samples" & sampler=$!
  if [[ $impl == btm-* ]]; then
    rm -f "$OUT/seed.h5"  # else the seed phase is skipped as complete
    OMP_NUM_THREADS=$t mpirun -np "$p" "$BTM_BIN" run "$DECK" --phases seed --set "run.out_dir=$OUT" \
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
      --set train.eval_batches=1 --set "run.blas_threads=$t" --set "train.precision=$prec" \
      --set "seed.tokens=$((TOTAL * GLOBAL * CONTEXT))" >"$log" 2>&1 || rc=$?
  else
    local mode=${impl#torch-}; mode=${mode%-*}
    OMP_NUM_THREADS=$t mpirun -np "$p" "$PY" bench/train_torch.py --data "$DATA" --hidden "$HIDDEN" \
      --layers "$LAYERS" --heads "$HEADS" --context "$CONTEXT" --vocab "$VOCAB" \
      --micro-batch "$MICRO" --grad-accum "$accum" --lr "$LR" --min-lr-ratio "$MIN_LR_RATIO" \
      --lr-warmup "$LR_WARMUP" --total-steps "$TOTAL" --weight-decay "$WEIGHT_DECAY" \
      --beta1 "$BETA1" --beta2 "$BETA2" --adam-eps "$ADAM_EPS" --clip "$CLIP" \
      --warmup-steps "$WARMUP" --steps "$STEPS" --threads "$t" --log-every 1 \
      --precision "$prec" $([[ $mode == compile ]] && echo --compile) >"$log" 2>&1 || rc=$?
  fi
  kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
  if (( rc != 0 )); then
    tail -n 20 "$log" >&2
    fail "$impl on $lay failed (exit $rc); log: $log"
  fi
  # Both print step=S[/T] ... tok/s=X for every step (btm counts from 1, PyTorch's timed
  # steps are numbered after its warm-up); keep the steps after the warm-up.
  local rates
  rates=$(sed -n 's/.*step=\([0-9]*\)[/ ].* tok\/s=\([0-9.]*\).*/\1 \2/p' "$log" |
          awk -v w="$WARMUP" '$1 > w { print $2 }')
  local n
  n=$(grep -c . <<<"$rates" || true)
  (( n == STEPS )) || fail "$log: expected $STEPS timed step lines with tok/s, found $n"
  if [[ $impl == btm-* ]]; then
    grep -q "status=start steps=$TOTAL tokens_per_step=$((GLOBAL * CONTEXT)) ranks=$p .*precision=$prec" "$log" ||
      fail "$log: btm did not train $TOTAL steps of $((GLOBAL * CONTEXT)) tokens on $p ranks in $prec"
    [[ $prec == bf16 ]] && BTM_BF16_INFO=$(grep -o 'precision=bf16 isa=[^ ]* impl=[^ ]*' "$log" | head -n 1)
  else
    grep -q "ranks=$p threads/rank=$t .*micro_batch=$MICRO grad_accum=$accum .*precision=$prec" "$log" ||
      fail "$log: PyTorch did not run $p ranks x $t threads x micro batch $MICRO x $accum accumulation in $prec"
  fi
  local rate others
  rate=$(median <<<"$rates")
  others=$(mean <"$samples")
  printf '%s\t%s\t%s\t%.0f\t%s\n' "$impl" "$lay" "$round" "$rate" "$others" >>"$ROUND"
  printf '#   round %s  %s  %-20s %8.0f tok/s   (other runnable tasks: %s)\n' \
    "$round" "$lay" "$impl" "$rate" "$others"
}

IMPLS=()
for prec in $PRECISIONS; do
  IMPLS+=("btm-$prec")
  for mode in $TORCH_MODES; do IMPLS+=("torch-$mode-$prec"); done
done

START=$SECONDS
for round in $(seq 1 "$ROUNDS"); do
  for lay in $LAYOUTS; do
    for attempt in $(seq 0 "$RETRIES"); do
      : >"$ROUND"
      # Rotate the order from round to round, so a slow drift of the machine hits all alike.
      n=${#IMPLS[@]}
      for k in $(seq 0 $((n - 1))); do run_one "${IMPLS[$(( (k + round - 1) % n ))]}" "$lay" "$round"; done
      # Clean: no run shared the cores with another program (on average <= MAX_LOAD other
      # runnable tasks; PyTorch's own gloo/autograd threads count a little).
      clean=$(awk -v m="$MAX_LOAD" '$5 > m { d = 1 } END { print d ? 0 : 1 }' "$ROUND")
      if (( clean )) || (( attempt == RETRIES )); then
        awk -v c="$clean" '{ print $0 "\t" c }' "$ROUND" >>"$RESULTS"
        break
      fi
      cat "$ROUND" >>"$REJECTED"
      echo "#   other programs ran alongside: repeating round $round on $lay"
      wait_quiet
    done
  done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- table
echo
echo "# load average (1, 5, 15 min): before $LOAD_START, after $LOAD_END; $((SECONDS - START)) s of runs;" \
     "mean other runnable tasks over all runs: $(cut -f5 "$RESULTS" | mean)"
[[ -n ${BTM_BF16_INFO:-} ]] && echo "# btm bf16 GEMMs (oneDNN): $BTM_BF16_INFO"
echo "# tok/s: medians over the rounds; GFLOP/s = tok/s x $FLOPS_PER_TOKEN; % of peak: against the GEMM peak of the"
echo "# precision (fp32 for fp32 rows, bf16 for bf16 rows) x ranks, measured above at the same threads per rank"
printf '%-7s %-5s %10s %12s %12s %9s %9s %14s %10s %12s %8s   %s\n' layout prec "btm tok/s" "torch eager" \
  "torch compile" "btm/eager" "btm/comp" "btm/comp range" "btm GF/s" "compile GF/s" "btm %pk" used
for lay in $LAYOUTS; do
  p=${lay%x*} t=${lay#*x}
  for prec in $PRECISIONS; do
    # The undisturbed rounds, or every round when none was.
    use=1
    awk -v l="$lay" '$2 == l && $6 == 1 { f = 1 } END { exit !f }' "$RESULTS" || use=0
    pick() { awk -v l="$lay" -v i="$1" -v u="$use" '$2 == l && $1 == i && (!u || $6 == 1)' "$RESULTS"; }
    med() { local v; v=$(pick "$1" | cut -f4 | median 2>/dev/null) && echo "$v" || echo 0; }
    b=$(med "btm-$prec") e=$(med "torch-eager-$prec") c=$(med "torch-compile-$prec")
    n=$(pick "btm-$prec" | grep -c . || true)
    range=$(awk -v l="$lay" -v u="$use" -v b="btm-$prec" -v c="torch-compile-$prec" \
      '$2 == l && (!u || $6 == 1) { r[$3, $1] = $4; n[$3] = 1 }
       END { lo = 1e9; hi = 0; any = 0
             for (k in n) if (r[k, c] > 0) { q = r[k, b] / r[k, c]; any = 1; if (q < lo) lo = q; if (q > hi) hi = q }
             if (any) printf "%.2f-%.2f", lo, hi; else printf "-" }' "$RESULTS")
    peak=${PEAK32[$t]}; [[ $prec == bf16 ]] && peak=${PEAK16[$t]}
    note="$n rounds"; (( use )) || note="$n rounds, ALL DISTURBED by other programs"
    awk -v lay="$lay" -v prec="$prec" -v b="$b" -v e="$e" -v c="$c" -v f="$FLOPS_PER_TOKEN" -v pk="$peak" \
        -v p="$p" -v r="$range" -v note="$note" 'BEGIN {
      be = e > 0 ? sprintf("%.2f", b / e) : "-"; bc = c > 0 ? sprintf("%.2f", b / c) : "-"
      pct = pk > 0 ? sprintf("%.0f%%", 100 * b * f / 1e9 / (pk * p)) : "-"
      printf "%-7s %-5s %10.0f %12.0f %12.0f %9s %9s %14s %10.1f %12.1f %8s   %s\n", lay, prec, b, e, c, be, bc, r,
             b * f / 1e9, c * f / 1e9, pct, note }'
  done
done
echo "# GEMM peaks (GFLOP/s per rank, 1024^3): fp32 ${PEAK32[*]}, bf16 ${PEAK16[*]} (threads: ${!PEAK32[*]});" \
     "bf16 ISA (oneDNN): ${BF16_ISA:-none}"
echo "# per-run figures: $RESULTS; logs: $OUT/logs/"
