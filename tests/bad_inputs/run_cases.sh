#!/usr/bin/env bash
# The bad-input catalogue: runs every case of cases.txt against the btm binary and checks
# that btm refuses the input the way a user needs:
#   - a non-zero exit, within the time limit (no hang), with every rank stopped;
#   - one "btm: error" line per failing rank (never more), containing the case's fragment,
#     and no crash text (terminate, signal, sanitizer report, HDF5 error stack);
#   - every file that existed before the command (the case folder and the shared prepared
#     run) byte-identical afterwards.
#
#   run_cases.sh BTM_BINARY SOURCE_DIR [CASE_NAME_REGEX]
#
# cases.txt: one case per line, fields separated by " | " (so no field holds a '|'):
#   name | ranks | setup | btm arguments | expected fragment
# Each case runs in a fresh folder ($CASE, also the working directory). `setup` (or "-") is
# shell code run there first, with the helpers of make_inputs.sh; the arguments are parsed
# as shell words after variable expansion. Variables: $FILES (tests/bad_inputs/files),
# $TINY (inputs/tiny.toml), $CORPUS (the tiny corpus), $RUN (the prepared tiny run: data,
# seed, three experts, forest), $RUN_SMALL and $RUN_OTHER_TOKENIZER (one expert of another
# architecture, of another tokenizer), $AT_RUN (the --set options that point the tiny deck at
# ./run, a copy made by `copy_run`), $PREPARE (the --set options that make the tiny deck
# prepare the corpus named by a further --set data.corpus=... into ./out), $CASE. The
# fragment may name $CASE, $RUN and $FILES.
set -uo pipefail
btm=$(realpath "$1")
[[ -x $btm ]] || { echo "FAIL: $1 is not an executable"; exit 1; }
src=$(cd "$2" && pwd)
only=${3:-}
here=$src/tests/bad_inputs
case_timeout=${BTM_BAD_INPUT_TIMEOUT:-90}

work=$(mktemp -d /tmp/btm_bad_inputs.XXXXXX)
trap 'rm -rf "$work"' EXIT
export FILES=$here/files TINY=$src/inputs/tiny.toml CORPUS=$src/tests/data/fixtures/split_jsonl
export RUN=$work/prepared AT_RUN="--set run.out_dir=\"run\" --set data.corpus=\"$CORPUS\""
export PREPARE="--set run.out_dir=\"out\" --set data.format=\"auto\" --set data.train_domains=[] --set data.heldout_domains=[] --phases prepare"
source "$here/make_inputs.sh"

prepare_runs "$btm" || { echo "FAIL: could not prepare the tiny runs"; exit 1; }

# sha256 of every file under the given folders, one "hash  path" line each, sorted.
hashes() { find "$@" -type f ! -name btm_output.txt -print0 2>/dev/null | xargs -0 -r sha256sum | sort; }

# Whether a btm process still runs in the case folder (a rank that did not stop).
still_running() {
  local p
  for p in $(pgrep -f -- "$btm"); do
    [[ $(readlink "/proc/$p/cwd" 2>/dev/null) == "$CASE" ]] && return 0
  done
  return 1
}

# The error lines, each with the indented lines that belong to it (a failed-experts summary
# lists one expert and its reason per line).
error_message() { awk '/^btm: error/ { p = 1; print; next } p && /^  / { print; next } { p = 0 }' "$1"; }
trim() { local s=$1; s=${s#"${s%%[![:space:]]*}"}; s=${s%"${s##*[![:space:]]}"}; printf '%s' "$s"; }

tried=0 passed=0
failures=()
while IFS= read -r line || [[ -n $line ]]; do
  [[ -z ${line// } || $line == \#* ]] && continue
  IFS='|' read -r name ranks setup args fragment <<<"$line"
  name=$(trim "$name"); ranks=$(trim "$ranks"); setup=$(trim "$setup")
  args=$(trim "$args"); fragment=$(trim "$fragment")
  [[ -n $only && ! $name =~ $only ]] && continue
  tried=$((tried + 1))
  export CASE=$work/cases/$name
  mkdir -p "$CASE"
  ln -s "$CORPUS" "$CASE/corpus"  # the decks of files/ name ./corpus
  problem=""
  grep -qF "| $name |" "$here/README.md" || problem="no row for it in tests/bad_inputs/README.md"
  if [[ -z $problem && $setup != "-" ]] && ! (cd "$CASE" && eval "$setup") </dev/null >"$CASE/setup.log" 2>&1; then
    problem="setup failed: $(tail -3 "$CASE/setup.log")"
  fi
  if [[ -z $problem ]]; then
    fragment=${fragment//\$CASE/$CASE}; fragment=${fragment//\$RUN/$RUN}; fragment=${fragment//\$FILES/$FILES}
    eval "set -- $args"
    before=$(hashes "$CASE" "$RUN" "$RUN_SMALL" "$RUN_OTHER_TOKENIZER")
    start=$SECONDS
    if [[ $ranks == 1 ]]; then
      (cd "$CASE" && timeout -k 10 "$case_timeout" "$btm" "$@") </dev/null >"$CASE/btm_output.txt" 2>&1
    else
      (cd "$CASE" && timeout -k 10 "$case_timeout" mpirun -np "$ranks" --oversubscribe "$btm" "$@") \
        </dev/null >"$CASE/btm_output.txt" 2>&1
    fi
    rc=$?
    seconds=$((SECONDS - start))
    out=$CASE/btm_output.txt
    errors=$(grep -c "^btm: error" "$out")
    if [[ $rc == 124 || $rc == 137 ]]; then problem="no answer within ${case_timeout}s (hang)"
    elif [[ $rc == 0 ]]; then problem="exit status 0; expected a failure"
    elif [[ $errors == 0 ]]; then problem="no 'btm: error' line"
    elif ((errors > ranks)); then problem="$errors error lines from $ranks rank(s); expected one per rank at most"
    elif ! error_message "$out" | grep -qF -- "$fragment"; then problem="no error line contains: $fragment"
    elif grep -qE "terminate called|Segmentation fault|Aborted|core dumped|Sanitizer|runtime error:|HDF5-DIAG" "$out"; then
      problem="crash or library noise in the output"
    elif changed=$(comm -23 <(printf '%s\n' "$before") <(hashes "$CASE" "$RUN" "$RUN_SMALL" "$RUN_OTHER_TOKENIZER")) && [[ -n $changed ]]; then
      problem="a file that existed before changed or is gone: $(awk '{print $2}' <<<"$changed" | head -3 | xargs)"
    elif still_running; then
      problem="a rank is still running"
    fi
  fi
  if [[ -z $problem ]]; then
    passed=$((passed + 1))
    echo "ok   $name (${ranks} rank(s), ${seconds}s): $(grep -m1 "^btm: error" "$out" | cut -c1-200)"
  else
    failures+=("$name")
    echo "FAIL $name: $problem"
    [[ -f $CASE/btm_output.txt ]] && sed 's/^/     | /' "$CASE/btm_output.txt" | grep -v "^     | #" | tail -8
  fi
  rm -rf "$CASE"
done <"$here/cases.txt"

echo "bad inputs: tried=$tried handled=$passed failed=${#failures[@]}"
[[ ${#failures[@]} == 0 ]] || { echo "failed: ${failures[*]}"; exit 1; }
[[ $tried -gt 0 ]] || { echo "FAIL: no case matched"; exit 1; }
