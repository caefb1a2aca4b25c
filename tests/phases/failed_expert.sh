#!/usr/bin/env bash
# `btm run` with one expert that fails (its checkpoint is unreadable): the other group
# finishes and registers its expert, the run ends with status 3 and one line per failed
# expert, `btm forest list` shows the failure, and the same command, once the cause is
# gone, trains only the failed expert. A file of a newer format version is refused.
#   failed_expert.sh BTM_BINARY SOURCE_DIR
set -uo pipefail
btm=$1
src=$2
out=$(mktemp -d /tmp/btm_failed_expert.XXXXXX)
trap 'rm -rf "$out"' EXIT
fail() { echo "FAIL: $*"; tail -20 "$out/log" 2>/dev/null; exit 1; }
sets=(--set "run.out_dir=\"$out\"" --set "data.corpus=\"$src/tests/data/fixtures/split_jsonl\""
      --set 'experts.domains=["scripture","code-go"]')

mpirun -np 2 "$btm" run "$src/inputs/tiny.toml" "${sets[@]}" --phases prepare,seed >"$out/log" 2>&1 \
  || fail "prepare/seed"
mkdir -p "$out/experts"
echo "not an HDF5 file" >"$out/experts/scripture.h5"

mpirun -np 2 "$btm" run "$src/inputs/tiny.toml" "${sets[@]}" --phases experts,average >"$out/log" 2>&1
status=$?
[[ $status -eq 3 ]] || fail "status $status with a failed expert, expected 3"
grep -q "^btm: error: 1 expert(s) failed; the others are finished and registered in $out/forest.h5" "$out/log" \
  || fail "no summary of the failed experts"
grep -q "^  scripture: not a readable HDF5 file: $out/experts/scripture.h5 (truncated, damaged, or not an HDF5 file)$" "$out/log" || fail "no line for scripture"
grep -q "model=scripture status=failed" "$out/log" || fail "no status=failed log line"
grep -q "^# phase average" "$out/log" && fail "a later phase ran after the failure"
[[ $(grep -c "^btm: error" "$out/log") -eq 1 ]] || fail "the summary is not printed once"
"$btm" forest list "$out/forest.h5" >"$out/list" || fail "forest list"
grep -q "^code-go " "$out/list" || fail "the other group's expert is not registered"
grep -q "^failed: scripture at 20[0-9-]*T[0-9:]*Z: not a readable HDF5 file" "$out/list" || fail "forest list: no failure"
echo "scripture failed alone: status 3, code-go registered, the failure listed"

rm "$out/experts/scripture.h5"
mpirun -np 2 "$btm" run "$src/inputs/tiny.toml" "${sets[@]}" --phases experts >"$out/log" 2>&1 || fail "re-run"
grep -q "model=code-go status=skipped reason=complete" "$out/log" || fail "the finished expert was trained again"
grep -q "model=scripture status=done" "$out/log" || fail "the re-run did not train scripture"
"$btm" forest list "$out/forest.h5" >"$out/list" || fail "forest list"
grep -q "^failed:" "$out/list" && fail "the failure is still listed"
echo "the re-run trained only scripture"

cp "$out/seed.h5" "$out/future.h5"
/usr/bin/python3 -c "import h5py, sys; h5py.File(sys.argv[1], 'r+').attrs['format_version'] = 99" "$out/future.h5" \
  || fail "h5py"
"$btm" inspect "$out/future.h5" >"$out/log" 2>&1 && fail "a file of format version 99 was read"
grep -q "^btm: error: $out/future.h5: format version 99 is newer than this btm reads (format version 2); read it with a newer btm$" \
  "$out/log" || fail "no format version error"
echo "format version 99: refused"
