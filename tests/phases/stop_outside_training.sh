#!/usr/bin/env bash
# A stop signal outside training (here: while prepare tokenizes) does not kill the run: it
# stops at the next phase boundary with status 75, and the same command then finishes.
#   stop_outside_training.sh BTM_BINARY SOURCE_DIR
set -uo pipefail
btm=$1
src=$2
out=$(mktemp -d /tmp/btm_stop.XXXXXX)
trap 'rm -rf "$out"' EXIT
fail() { echo "FAIL: $*"; tail -20 "$out/log" 2>/dev/null; exit 1; }
sets=(--set "run.out_dir=\"$out\"" --set "data.corpus=\"$src/tests/data/fixtures/split_jsonl\"")

mpirun -np 2 "$btm" run "$src/inputs/tiny.toml" "${sets[@]}" --phases prepare,seed >"$out/log" 2>&1 &
run=$!
for _ in $(seq 300); do grep -q "^# phase prepare" "$out/log" 2>/dev/null && break; sleep 0.02; done
grep -q "^# phase prepare" "$out/log" || fail "prepare never started"
kill -USR1 "$run"  # mpirun forwards SIGUSR1 to every rank
wait "$run"
status=$?
[[ $status -eq 75 ]] || fail "status $status after SIGUSR1 during prepare, expected 75"
grep -Eq "# stopped before the seed phase|model=seed status=interrupted" "$out/log" || fail "no stop message"
echo "SIGUSR1 during prepare: status 75, $(grep -Eo '# stopped before the seed phase|model=seed status=interrupted' "$out/log")"

mpirun -np 2 "$btm" run "$src/inputs/tiny.toml" "${sets[@]}" --phases prepare,seed >"$out/log" 2>&1 || fail "re-run"
grep -q "model=seed status=done" "$out/log" || fail "the re-run did not finish the seed"
echo "the re-run finished"
