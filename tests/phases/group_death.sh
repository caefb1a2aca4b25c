#!/usr/bin/env bash
# When a rank of one expert group dies, the other groups' experts still finish, are
# registered in forest.h5 and stay intact; a re-run skips them and trains the rest.
# Needs Open MPI's recovery mode (mpirun --mca orte_enable_recovery 1), without which
# mpirun stops every rank as soon as one dies.
#   group_death.sh BTM_BINARY SOURCE_DIR
set -euo pipefail
btm=$1
src=$2
out=$(mktemp -d /tmp/btm_group_death.XXXXXX)
trap 'pkill -9 -f "$out" 2>/dev/null || true; rm -rf "$out"' EXIT
sets=(--set "run.out_dir=\"$out\"" --set "data.corpus=\"$src/tests/data/fixtures/split_jsonl\""
      --set 'experts.domains=["scripture","code-go"]' --set experts.tokens=120000
      --set train.checkpoint_every=20)
fail() { echo "FAIL: $*"; cat "$out/log" 2>/dev/null | tail -20; exit 1; }

mpirun -np 2 "$btm" run "$src/inputs/tiny.toml" "${sets[@]}" --phases prepare,seed >"$out/prep.log" 2>&1 \
  || fail "prepare/seed"

# Group 0 (rank 0) trains scripture, group 1 (rank 1) trains code-go.
mpirun -np 2 --mca orte_enable_recovery 1 "$btm" run "$src/inputs/tiny.toml" "${sets[@]}" --phases experts \
  >"$out/log" 2>&1 &
victim=""
for _ in $(seq 600); do
  if grep -q "model=code-go step=" "$out/log" 2>/dev/null; then
    for p in $(pgrep -f "$out" || true); do
      if tr '\0' '\n' </proc/"$p"/environ 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1; then victim=$p; fi
    done
    [[ -n $victim ]] && break
  fi
  sleep 0.1
done
[[ -n $victim ]] || fail "group 1 never started training"
kill -9 "$victim"
echo "killed rank 1 (pid $victim) while it trained code-go"

for _ in $(seq 600); do
  "$btm" forest list "$out/forest.h5" 2>/dev/null | grep -q "^scripture " && break
  sleep 0.1
done
"$btm" forest list "$out/forest.h5" | grep -q "^scripture " || fail "group 0's expert was not registered"
if "$btm" forest list "$out/forest.h5" | grep -q "^code-go "; then fail "the dead group's expert was registered"; fi
"$btm" inspect "$out/experts/scripture.h5" | grep -q "complete = 1" || fail "group 0's expert is not a complete model"
echo "group 0 finished and registered scripture after rank 1 died"
# The survivor cannot learn that rank 1 is gone (MPI has no failure notice): it says what
# it waits for and what to do, instead of hanging silently.
for _ in $(seq 150); do
  grep -q "phase=experts group=0 status=waiting .*registered in .*forest.h5" "$out/log" && break
  sleep 0.1
done
grep -q "phase=experts group=0 status=waiting" "$out/log" || fail "the surviving group did not report its wait"
echo "group 0 reported that it waits for the other groups"
pkill -9 -f "$out" || true
sleep 0.5

mpirun -np 2 "$btm" run "$src/inputs/tiny.toml" "${sets[@]}" --phases experts >"$out/log" 2>&1 \
  || fail "re-run of the experts phase"
grep -q "model=scripture status=skipped" "$out/log" || fail "the finished expert was trained again"
"$btm" forest list "$out/forest.h5" | grep -q "^code-go " || fail "re-run did not finish code-go"
echo "re-run skipped scripture and finished code-go"
