#!/usr/bin/env bash
# btm against PyTorch, training throughput on one NVIDIA GPU, side by side in one run.
#
#   bash bench/train_gpu.sh [options]          # from anywhere; works in the repository root
#
# 1. builds btm with the cuda preset (cmake --preset cuda, build-cuda/), finding cuDNN 9 and
#    NCCL also where they exist only as pip wheels (nvidia-cudnn-cu*, nvidia-nccl-cu*);
# 2. writes a synthetic data.h5 (Zipf-distributed tokens, vocabulary 32000, ARCHITECTURE layout),
#    unless --data names one (e.g. from `btm run DECK --phases prepare`);
# 3. measures the bf16 GEMM peak of this GPU (torch.matmul 8192^3, random data), before and
#    after the runs; MFU is quoted against the larger of the two;
# 4. for each model (124m: d=768, 12 layers, 12 heads, context 1024; small: d=256, 4 layers,
#    4 heads, context 256; both vocabulary 32000, untied, 32768 tokens per optimizer step),
#    trains btm (`btm run bench/gpu_bench.toml --phases seed`, one rank, log_every 1) and the
#    PyTorch model (bench/train_torch_gpu.py: bf16 autocast, torch.compile, fused SDPA
#    attention, fused AdamW) with the same batch, micro batch, schedule and clipping;
#    tokens/s is the harmonic mean over the steps after the warm-up steps;
# 5. prints a markdown table (tokens/s, MFU with the PaLM formula 6N + 12LTd, btm/PyTorch)
#    and, when $OUT is set (the device tool collects it), writes it and the logs there.
#
# Options:
#   --data FILE       use this data.h5 instead of synthetic tokens (its vocabulary must be <= 32000)
#   --models LIST     comma-separated, from: 124m, small, tiny (default: 124m,small); none:
#                     only build (and with --tests, test)
#   --steps N         timed optimizer steps per run (default 20)
#   --warmup N        untimed steps first (default 5; PyTorch compiles in them)
#   --work DIR        scratch folder for data and runs (default /tmp/btm-bench-gpu)
#   --build-dir DIR   default build-cuda (configured with the cuda preset)
#   --skip-build      use the btm already built in --build-dir
#   --tests           also build every test and run `ctest -L gpu` (log: gpu_tests.log)
#   --peak-tflops X   skip the GEMM measurement, use X (for a dry check without a GPU)
#   --jobs N          build parallelism (default: nproc)
#   --dry-run         print what would run, run nothing
#   --cpu-check       check this script without a GPU: btm on the cpu backend, PyTorch on the
#                     CPU without torch.compile (use with --models tiny --skip-build
#                     --peak-tflops X); the numbers mean nothing
#   -h, --help
#
# Exit status: 0 when every run (and test) succeeded, 1 otherwise, 2 on bad usage or setup.
# Environment: PYTHON (default python3; needs torch, h5py, numpy), MPIRUN (default mpirun),
# CUDNN_ROOT / NCCL_ROOT (install prefixes; else found automatically), OUT (results folder).
# On the device machine, `source .devdeps/setup.sh "" ""` first provides MPI/HDF5/Kokkos/...;
# this script sources it itself when mpicxx is missing and .devdeps/setup.sh exists.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; }
die() { echo "train_gpu.sh: error: $*" >&2; exit 2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA="" MODELS="124m,small" STEPS=20 WARMUP=5 WORK=/tmp/btm-bench-gpu BUILD="" SKIP_BUILD=0 TESTS=0
PEAK="" JOBS=$(nproc 2>/dev/null || echo 4) DRY=0 CPU_CHECK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --data) DATA=${2:?--data needs a file}; shift 2 ;;
    --models) MODELS=${2:?--models needs a list}; shift 2 ;;
    --steps) STEPS=${2:?--steps needs a number}; shift 2 ;;
    --warmup) WARMUP=${2:?--warmup needs a number}; shift 2 ;;
    --work) WORK=${2:?--work needs a folder}; shift 2 ;;
    --build-dir) BUILD=${2:?--build-dir needs a folder}; shift 2 ;;
    --skip-build) SKIP_BUILD=1; shift ;;
    --tests) TESTS=1; shift ;;
    --peak-tflops) PEAK=${2:?--peak-tflops needs a number}; shift 2 ;;
    --jobs) JOBS=${2:?--jobs needs a number}; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    --cpu-check) CPU_CHECK=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
for v in STEPS WARMUP JOBS; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "--${v,,} expects a non-negative integer, got '${!v}'"
done
[ "$STEPS" -ge 1 ] || die "--steps must be at least 1"
[ -z "$PEAK" ] || [[ $PEAK =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--peak-tflops expects a number, got '$PEAK'"
MODEL_LIST=()
[ "$MODELS" = none ] || IFS=, read -r -a MODEL_LIST <<< "$MODELS"
for m in "${MODEL_LIST[@]+"${MODEL_LIST[@]}"}"; do
  case "$m" in 124m|small|tiny) ;; *) die "--models: unknown model '$m' (expected 124m, small, tiny)" ;; esac
done
[ -z "$DATA" ] || [ -f "$DATA" ] || die "--data: no such file: $DATA"
[ "$CPU_CHECK" = 0 ] || [ -n "$PEAK" ] || die "--cpu-check needs --peak-tflops"
[ -z "$DATA" ] || DATA=$(cd "$(dirname "$DATA")" && pwd)/$(basename "$DATA")
PYTHON=${PYTHON:-python3}
MPIRUN=${MPIRUN:-mpirun}
cd "$ROOT"
BUILD=${BUILD:-$ROOT/build-cuda}
BTM=$BUILD/btm
TORCH_PY=$ROOT/bench/train_torch_gpu.py
DECK=$ROOT/bench/gpu_bench.toml
RESULTS=$WORK/results.jsonl
LOGS=$WORK/logs
exec 3>&2  # the terminal's stderr, for the command trace even where stderr goes to a log
run() {  # echo, then run unless --dry-run
  echo "+ $*" >&3
  [ "$DRY" = 1 ] || "$@"
}

# Model shapes: hidden layers heads context micro_batch global_batch.
shape_of() {
  case "$1" in
    124m) echo "768 12 12 1024 16 32" ;;
    small) echo "256 4 4 256 64 128" ;;
    tiny) echo "64 2 4 64 4 8" ;;  # for --cpu-check
  esac
}
VOCAB=32000

# ---- environment ----------------------------------------------------------------------
if ! command -v mpicxx >/dev/null 2>&1 && [ -f "$ROOT/.devdeps/setup.sh" ]; then
  echo "# sourcing .devdeps/setup.sh (MPI, HDF5, Kokkos, ... for the build and the runs)" >&2
  # shellcheck disable=SC1091
  set +eu
  BTMDEPS_QUIET=1 source "$ROOT/.devdeps/setup.sh" "" ""
  rc=$?
  set -eu
  [ "$rc" = 0 ] || die ".devdeps/setup.sh failed (status $rc)"
fi

if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
if [ -z "${CUDACXX:-}" ] && command -v nvcc >/dev/null 2>&1; then
  CUDACXX=$(command -v nvcc)
  export CUDACXX
fi

# Prints the prefix holding lib*/LIB (a shared library, any version suffix) and include/HEADER,
# searching $ROOT_VAR, the CUDA toolkit, the python package nvidia.PKG, then the file system.
find_prefix() {
  local root_var=$1 lib=$2 header=$3 pkg=$4 cand p
  local -a cands=()
  [ -n "${!root_var:-}" ] && cands+=("${!root_var}")
  cands+=(/usr/local/cuda /usr/local/cuda/targets/x86_64-linux /usr /usr/lib/x86_64-linux-gnu/..)
  p=$("$PYTHON" -c "import nvidia.$pkg as m; print(list(m.__path__)[0])" 2>/dev/null || true)
  [ -n "$p" ] && cands+=("$p")
  p=$("$PYTHON" -c "import nvidia, os; print(' '.join(os.path.join(d, s) for d in nvidia.__path__ for s in os.listdir(d)))" \
      2>/dev/null || true)
  for cand in $p; do cands+=("$cand"); done
  for cand in "${cands[@]}"; do
    if [ -n "$(libs_in "$cand" "$lib")" ] && [ -f "$cand/include/$header" ]; then
      echo "$cand"; return 0
    fi
  done
  # Last resort: any copy of the library with the header next to it.
  while IFS= read -r p; do
    cand=$(dirname "$(dirname "$p")")
    [ -f "$cand/include/$header" ] && { echo "$cand"; return 0; }
  done < <(find / \( -path /proc -o -path /sys -o -path /dev \) -prune -o -name "$lib*" -print 2>/dev/null | head -20)
  return 1
}
# The shared libraries LIB* under PREFIX's library folders, sorted (libx.so before libx.so.9).
libs_in() {
  ls -d "$1"/lib/"$2"* "$1"/lib64/"$2"* "$1"/lib/x86_64-linux-gnu/"$2"* 2>/dev/null | sort || true
}

CMAKE_EXTRA=()
if [ "$SKIP_BUILD" = 0 ] || [ "$DRY" = 0 ]; then
  for spec in "CUDNN_ROOT libcudnn.so cudnn.h cudnn BTM_CUDNN" "NCCL_ROOT libnccl.so nccl.h nccl BTM_NCCL"; do
    read -r var lib header pkg cache <<< "$spec"
    if prefix=$(find_prefix "$var" "$lib" "$header" "$pkg"); then
      libfile=$(libs_in "$prefix" "$lib" | head -1)
      libdir=$(dirname "$libfile")
      echo "# $pkg: $libfile (headers $prefix/include)" >&2
      export "$var=$prefix"
      export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
      export CMAKE_PREFIX_PATH="$prefix${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
      CMAKE_EXTRA+=("-D${cache}_LIBRARY=$libfile" "-D${cache}_INCLUDE_DIR=$prefix/include")
    elif [ "$SKIP_BUILD" = 0 ] && [ "$DRY" = 0 ]; then
      die "$pkg not found (no $lib* with include/$header); set $var to its install prefix"
    else
      echo "# $pkg: not found" >&2
    fi
  done
fi

mkdir -p "$WORK" "$LOGS"
SETUP_LOG=$LOGS/setup.log
FAILED=0
# Whatever happens, the table and the logs go to $OUT (collected by the device tool).
export_out() {
  if [ -n "${OUT:-}" ] && [ "$DRY" = 0 ]; then
    mkdir -p "$OUT"
    [ -f "$WORK/gpu_bench.md" ] && cp "$WORK/gpu_bench.md" "$OUT/"
    cp "$LOGS"/*.log "$OUT/" 2>/dev/null || true
  fi
}
trap export_out EXIT
{
  echo "# $(date -u +%FT%TZ) $(uname -n)"
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
  command -v nvcc >/dev/null 2>&1 && nvcc --version | tail -1 || true
  cmake --version | head -1 || true
  "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())" 2>&1 || true
  echo "CUDNN_ROOT=${CUDNN_ROOT:-} NCCL_ROOT=${NCCL_ROOT:-}"
} > "$SETUP_LOG" 2>&1
cat "$SETUP_LOG" >&2

# ---- build ------------------------------------------------------------------------------
if [ "$SKIP_BUILD" = 0 ]; then
  if [ "$BUILD" = "$ROOT/build-cuda" ]; then
    run cmake --preset cuda "${CMAKE_EXTRA[@]}" >> "$SETUP_LOG" 2>&1 || { tail -40 "$SETUP_LOG" >&2; die "configure failed"; }
  else
    run cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBTM_ENABLE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
      "${CMAKE_EXTRA[@]}" >> "$SETUP_LOG" 2>&1 || { tail -40 "$SETUP_LOG" >&2; die "configure failed"; }
  fi
  start=$SECONDS
  target=(--target btm)
  [ "$TESTS" = 1 ] && target=()
  run cmake --build "$BUILD" -j "$JOBS" "${target[@]}" >> "$SETUP_LOG" 2>&1 || { tail -60 "$SETUP_LOG" >&2; die "build failed"; }
  echo "# build: $((SECONDS - start)) s" | tee -a "$SETUP_LOG" >&2
fi
[ "$DRY" = 1 ] || [ -x "$BTM" ] || die "$BTM is missing (build it, or drop --skip-build)"
if [ "$TESTS" = 1 ]; then
  if ! (cd "$BUILD" && run ctest -L gpu --output-on-failure) > "$LOGS/gpu_tests.log" 2>&1; then
    echo "# gpu tests FAILED (see gpu_tests.log)" >&2
    FAILED=1
  fi
  tail -25 "$LOGS/gpu_tests.log" >&2
fi

[ "${#MODEL_LIST[@]}" -gt 0 ] || exit $FAILED

# ---- data -------------------------------------------------------------------------------
if [ -z "$DATA" ]; then
  DATA=$WORK/data.h5
  [ -f "$DATA" ] || run "$PYTHON" "$TORCH_PY" write-data "$DATA" --vocab $VOCAB --tokens-per-domain 4000000
fi

# ---- peak -------------------------------------------------------------------------------
measure_peak() {
  "$PYTHON" "$TORCH_PY" peak | tee -a "$SETUP_LOG" | sed -n 's/^peak_bf16_tflops=\([0-9.]*\).*/\1/p'
}
PEAK_BEFORE=$PEAK
if [ -z "$PEAK" ] && [ "$DRY" = 0 ]; then
  PEAK_BEFORE=$(measure_peak)
  [ -n "$PEAK_BEFORE" ] || die "the GEMM peak measurement failed (see $SETUP_LOG)"
fi
echo "# bf16 GEMM peak before the runs: ${PEAK_BEFORE:-?} TFLOP/s" >&2

# ---- runs -------------------------------------------------------------------------------
BTM_EXTRA=() TORCH_EXTRA=()
if [ "$CPU_CHECK" = 1 ]; then
  BTM_EXTRA=(--set run.backend=cpu)
  TORCH_EXTRA=(--device cpu --no-compile)
fi
: > "$RESULTS"
record() {  # model impl tok_s shape... [error]
  local model=$1 impl=$2 tok_s=$3 d=$4 l=$5 h=$6 t=$7 gb=$8 err=${9:-}
  "$PYTHON" - "$model" "$impl" "$tok_s" "$d" "$l" "$h" "$t" "$gb" "$err" >> "$RESULTS" <<'EOF'
import json, sys
m, impl, tok_s, d, l, h, t, gb, err = sys.argv[1:]
row = {"model": m, "impl": impl, "tok_s": float(tok_s) if tok_s else None, "hidden": int(d), "layers": int(l),
       "heads": int(h), "kv_heads": int(h), "vocab": 32000, "tie": False, "context": int(t),
       "tokens_per_step": int(gb) * int(t)}
if err:
    row["error"] = err
print(json.dumps(row))
EOF
}

for m in "${MODEL_LIST[@]}"; do
  read -r d l h t mb gb <<< "$(shape_of "$m")"
  steps_total=$((WARMUP + STEPS))
  tokens=$((steps_total * gb * t))
  echo "# ---- $m: d=$d L=$l H=$h T=$t micro_batch=$mb global_batch=$gb steps=$WARMUP+$STEPS" >&2

  # btm: one rank, the seed phase of the bench deck in a fresh folder holding data.h5.
  out=$WORK/btm-$m
  blog=$LOGS/btm_$m.log
  run rm -rf "$out"
  run mkdir -p "$out"
  run ln -s "$DATA" "$out/data.h5"
  launcher=()
  command -v "$MPIRUN" >/dev/null 2>&1 && launcher=("$MPIRUN" -np 1)
  if run "${launcher[@]}" "$BTM" run "$DECK" --phases seed --set "run.out_dir=$out" \
      --set "model.hidden_size=$d" --set "model.num_hidden_layers=$l" --set "model.num_attention_heads=$h" \
      --set "model.context=$t" --set "model.vocab_size=$VOCAB" --set "train.micro_batch=$mb" \
      --set "train.global_batch=$gb" --set "seed.tokens=$tokens" "${BTM_EXTRA[@]}" > "$blog" 2>&1 || [ "$DRY" = 1 ]; then
    if [ "$DRY" = 0 ]; then
      # Harmonic mean of tok/s over the steps after the warm-up: total tokens / total time.
      tok_s=$(awk -v w="$WARMUP" '/phase=seed/ && / step=[0-9]+\// && /tok\/s=/ {
                match($0, / step=[0-9]+\//); s = substr($0, RSTART + 6, RLENGTH - 7) + 0
                match($0, /tok\/s=[0-9.]+/); r = substr($0, RSTART + 6, RLENGTH - 6) + 0
                if (s > w && r > 0) { n++; inv += 1 / r } }
              END { if (n) printf "%.1f", n / inv }' "$blog")
      [ -n "$tok_s" ] || { echo "# btm $m: no timed steps in $blog" >&2; FAILED=1; }
      echo "# btm $m: tok/s=${tok_s:-?} ($(grep -c 'tok/s=' "$blog") step lines)" >&2
      record "$m" btm "$tok_s" "$d" "$l" "$h" "$t" "$gb" "$([ -n "$tok_s" ] || echo "no timed steps in the log")"
    fi
  else
    echo "# btm $m FAILED:" >&2; tail -5 "$blog" >&2
    FAILED=1
    record "$m" btm "" "$d" "$l" "$h" "$t" "$gb" "$(grep -m1 'error' "$blog" | cut -c1-160 || echo 'see log')"
  fi

  # PyTorch: the same model, batch, schedule and clipping.
  tlog=$LOGS/torch_$m.log
  if run "$PYTHON" "$TORCH_PY" train --data "$DATA" --hidden "$d" --layers "$l" --heads "$h" --context "$t" \
      --vocab $VOCAB --micro-batch "$mb" --global-batch "$gb" --lr 6e-4 --min-lr-ratio 0.1 --warmup-fraction 0.1 \
      --weight-decay 0.1 --beta1 0.9 --beta2 0.95 --adam-eps 1e-8 --clip 1.0 --total-steps "$steps_total" \
      --warmup-steps "$WARMUP" --steps "$STEPS" --log-every 5 "${TORCH_EXTRA[@]}" > "$tlog" 2>&1 || [ "$DRY" = 1 ]; then
    if [ "$DRY" = 0 ]; then
      tok_s=$(sed -n 's/^impl=pytorch tok\/s=\([0-9.]*\).*/\1/p' "$tlog" | tail -1)
      echo "# pytorch $m: tok/s=${tok_s:-?}" >&2
      [ -n "$tok_s" ] || FAILED=1
      record "$m" pytorch "$tok_s" "$d" "$l" "$h" "$t" "$gb" "$([ -n "$tok_s" ] || echo "no impl=pytorch line in the log")"
    fi
  else
    echo "# pytorch $m FAILED:" >&2; tail -5 "$tlog" >&2
    FAILED=1
    record "$m" pytorch "" "$d" "$l" "$h" "$t" "$gb" "$(grep -m1 -i 'error' "$tlog" | cut -c1-160 || echo 'see log')"
  fi
done

[ "$DRY" = 1 ] && exit 0
PEAK_AFTER=$PEAK
[ -n "$PEAK" ] || PEAK_AFTER=$(measure_peak)
PEAK_USED=$(awk -v a="$PEAK_BEFORE" -v b="${PEAK_AFTER:-0}" 'BEGIN { print (b > a ? b : a) }')
echo "# bf16 GEMM peak after the runs: ${PEAK_AFTER:-?} TFLOP/s; MFU against $PEAK_USED" >&2
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || true)
TABLE=$WORK/gpu_bench.md
"$PYTHON" "$TORCH_PY" report "$RESULTS" --peak-tflops "$PEAK_USED" --gpu "$GPU" --out "$TABLE"
{
  echo
  echo "Peak measured before/after the runs: $PEAK_BEFORE / ${PEAK_AFTER:-?} TFLOP/s. btm: \`btm run bench/gpu_bench.toml --phases seed\`" \
       "(cuBLASLt, cuDNN attention where it applies, fused kernels); PyTorch: bench/train_torch_gpu.py" \
       "(bf16 autocast, torch.compile, F.scaled_dot_product_attention, AdamW(fused=True)). tokens/s: harmonic mean of" \
       "$STEPS timed steps after $WARMUP warm-up steps; data: $(basename "$DATA")."
} | tee -a "$TABLE"
exit $FAILED
