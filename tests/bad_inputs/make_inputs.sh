# Helpers for the bad-input cases (sourced by run_cases.sh): the prepared tiny runs whose
# files the HDF5 cases corrupt, and generators for inputs too large or too odd to commit.
# Python edits of HDF5 files use the system h5py (scripts/setup.sh installs python3-h5py).
py=/usr/bin/python3

# $RUN: the tiny deck's prepare, seed and experts (three experts) at one rank.
# $RUN_SMALL: one expert of another architecture (hidden_size 16).
# $RUN_OTHER_TOKENIZER: one expert of the tiny architecture with another tokenizer.
prepare_runs() {
  local btm=$1
  export RUN_SMALL=${RUN}_small RUN_OTHER_TOKENIZER=${RUN}_other_tokenizer
  local common=(--set "data.corpus=\"$CORPUS\"" --phases prepare,seed,experts)
  "$btm" run "$TINY" --set "run.out_dir=\"$RUN\"" "${common[@]}" >"$RUN.log" 2>&1 || { tail "$RUN.log"; return 1; }
  "$btm" run "$TINY" --set "run.out_dir=\"$RUN_SMALL\"" "${common[@]}" --set model.hidden_size=16 \
    --set seed.tokens=256 --set experts.tokens=256 --set 'experts.domains=["scripture"]' >"$RUN_SMALL.log" 2>&1 \
    || { tail "$RUN_SMALL.log"; return 1; }
  "$btm" run "$TINY" --set "run.out_dir=\"$RUN_OTHER_TOKENIZER\"" "${common[@]}" --set 'data.train_domains=["scripture","code-go"]' \
    --set seed.tokens=256 --set experts.tokens=256 --set 'experts.domains=["scripture"]' \
    >"$RUN_OTHER_TOKENIZER.log" 2>&1 || { tail "$RUN_OTHER_TOKENIZER.log"; return 1; }
}

# A writable copy of the prepared run, ./run.
copy_run() { cp -r "$RUN" run; }

# truncate_copy SRC DST BYTES: the first BYTES bytes of SRC.
truncate_copy() { head -c "$3" "$1" >"$2"; }

# An HDF5 file that no btm command wrote.
foreign_h5() { "$py" -c 'import h5py, sys; f = h5py.File(sys.argv[1], "w"); f["values"] = [1.0, 2.0]' "$1"; }

# h5_nan FILE DATASET: the dataset's first element becomes NaN.
h5_nan() {
  "$py" - "$@" <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r+") as f:
    d = f[sys.argv[2]]; a = d[...]; a.flat[0] = np.nan; d[...] = a
PY
}

# h5_halve FILE DATASET: the dataset is replaced by its first half (a wrong shape).
h5_halve() {
  "$py" - "$@" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r+") as f:
    a = f[sys.argv[2]][...]; del f[sys.argv[2]]; f[sys.argv[2]] = a[: len(a) // 2]
PY
}

# h5_delete FILE OBJECT: removes a group or dataset.
h5_delete() { "$py" -c 'import h5py, sys; f = h5py.File(sys.argv[1], "r+"); del f[sys.argv[2]]' "$@"; }

# h5_attr FILE OBJECT NAME VALUE: sets an integer attribute.
h5_attr() {
  "$py" -c 'import h5py, sys, numpy as np; f = h5py.File(sys.argv[1], "r+"); f[sys.argv[2]].attrs[sys.argv[3]] = np.int32(sys.argv[4])' "$@"
}

# long_line FILE MB: a JSONL file whose one document is MB megabytes of text on one line.
long_line() {
  { printf '{"domain": "big", "text": "'; head -c "$(($2 * 1024 * 1024))" /dev/zero | tr '\0' 'a'; printf '"}\n'; } >"$1"
}
