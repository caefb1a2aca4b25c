#!/usr/bin/env bash
# The Slurm scripts on a real Slurm: starts a private one-node cluster (slurm-wlm + munge,
# installed with apt-get when missing), submits a small deck through slurm/pipeline.sh in
# single-job and in array mode — the single job gets SIGUSR1 in the middle of its seed
# training and must checkpoint, requeue itself and resume, appending to its log; the array
# tasks finish in the reverse of the deck's order — and checks that the outputs equal a
# direct mpirun run: forest order, eval.h5 and every model's parameters bit for bit.
# Exits 77 (skipped) when the cluster cannot be started here.
#   slurm_pipeline.sh BTM_BINARY SOURCE_DIR [PYTHON_WITH_H5PY]
set -uo pipefail
btm=$(realpath "$1")
src=$(realpath "$2")
python=${3:-python3}
here=$(dirname "$(realpath "$0")")
source "$here/cluster.sh"
started=$(date +%s)
skip() { echo "SKIPPED: $* (no Slurm test on this machine)"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
"$python" -c 'import h5py, numpy' 2>/dev/null || skip "$python has no h5py/numpy to compare the outputs"
cluster_install || skip "slurm-wlm/munge are not available"

tmp=$(mktemp -d /tmp/btm_slurm.XXXXXX)
cleanup() {
  cluster_stop "$tmp/cluster"
  if [[ -n ${BTM_KEEP_SLURM_TEST:-} ]]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Every job gets the whole node: one rank per CPU, at most 3 (one per expert of the deck).
ranks=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
[[ $ranks -le 3 ]] || ranks=3
cluster_start "$tmp/cluster" "$ranks" || skip "the Slurm daemons did not start"
echo "cluster up in $(($(date +%s) - started)) s: $(sinfo -h -o '%n cpus=%c state=%t')"

deck=$src/inputs/tiny.toml
# The tiny deck with a seed long enough to be interrupted in the middle.
sets() { echo --set "run.out_dir=\"$tmp/$1\"" --set "data.corpus=\"$src/tests/data/fixtures/split_jsonl\"" --set seed.tokens=12288; }
order=scripture,code-go,dictionary
mkdir -p "$tmp/submit" && cd "$tmp/submit" || exit 1
export BTM=$btm BTM_ROOT=$src
# The environment every job loads first (on a cluster: spack env activate / module load).
echo 'echo "btm_env=loaded host=$(hostname -s)"' >"$tmp/env.sh"
export BTM_ENV=$tmp/env.sh
# srun reads the script's limits; a hung job must not outlive the test.
export BTM_SBATCH_ARGS="--time=5"

# shellcheck disable=SC2046
single=$(bash "$src/slurm/pipeline.sh" "$deck" $(sets single)) || fail "pipeline.sh (single job) failed"
single=${single#job=}
# Reverse order: task 0 (dictionary) finishes first; forest.h5 must still be the deck's order.
# shellcheck disable=SC2046
array=$(BTM_EXPERT_SBATCH_ARGS="--ntasks=1" bash "$src/slurm/pipeline.sh" "$deck" $(sets array) -- \
          dictionary code-go scripture) || fail "pipeline.sh (array) failed"
echo "submitted single: job=$single array: $array"
read -r -a jobs <<<"$single ${array//[a-z]*=/}"

# Direct reference run, meanwhile, at the rank count of the single job and the final jobs
# (its expert groups then have one rank each, like the array tasks).
source "$src/scripts/env.sh"
# shellcheck disable=SC2046
mpirun -np "$ranks" "$btm" run "$deck" $(sets direct) >"$tmp/direct.log" 2>&1 &
direct=$!

# SIGUSR1 to the single job's ranks once its seed is training (Slurm's --signal does the same).
log=$tmp/submit/btm-$single.out
for _ in $(seq 1200); do grep -q "model=seed step=" "$log" 2>/dev/null && break; sleep 0.1; done
grep -q "model=seed step=" "$log" 2>/dev/null || fail "the single job never started its seed: $(tail -5 "$log" 2>/dev/null)"
scancel --signal=USR1 "$single" || fail "scancel --signal=USR1 $single"
echo "sent SIGUSR1 to job $single during its seed phase"

wait $direct || fail "the direct mpirun run failed: $(tail -20 "$tmp/direct.log")"
deadline=$(($(date +%s) + 300))
while [[ -n $(squeue -h -j "$(IFS=,; echo "${jobs[*]}")" 2>/dev/null) ]]; do
  if [[ $(date +%s) -gt $deadline ]]; then
    squeue
    tail -n 5 "$tmp"/submit/*.out
    fail "jobs still running after 300 s"
  fi
  sleep 1
done

status=0
for j in "${jobs[@]}"; do
  for rec in $(scontrol -o show job "$j" | tr ' ' '\n' | grep -E '^(JobId|JobState|ExitCode|Restarts)=' | paste -sd' ' | tr ' ' '|'); do
    if [[ $rec != *JobState=COMPLETED*ExitCode=0:0* ]]; then
      echo "FAIL: job ${rec//|/ }"
      status=1
    fi
  done
done
for f in "$tmp"/submit/*.out; do
  if [[ $status -ne 0 ]]; then echo "--- $f"; tail -n 15 "$f"; fi
done
[[ $status -eq 0 ]] || exit 1

# The interrupted job: checkpointed (or stopped between phases), requeued once, resumed, one log.
restarts=$(scontrol -o show job "$single" | grep -o 'Restarts=[0-9]*' | cut -d= -f2)
[[ ${restarts:-0} -ge 1 ]] || fail "job $single was not requeued (Restarts=${restarts:-?})"
grep -Eq "status=interrupted|# stopped before" "$log" || fail "job $single did not stop with a checkpoint: $(tail "$log")"
[[ $(grep -c '^btm_step ' "$log") -ge 2 ]] || fail "the log of job $single does not hold both attempts (--open-mode=append)"
grep -q "mpi=pmix" "$log" || fail "srun did not use PMIx"
for f in "$tmp"/submit/*.out; do grep -q "^btm_env=loaded" "$f" || fail "$f: BTM_ENV was not sourced"; done
echo "job $single: interrupted, requeued (Restarts=$restarts), resumed, log appended"

"$python" "$here/compare_runs.py" "$order" "$tmp/direct" "$tmp/single" "$tmp/array" || fail "the Slurm runs differ from the direct run"
echo "PASS in $(($(date +%s) - started)) s"
