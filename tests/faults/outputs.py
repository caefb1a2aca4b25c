"""The HDF5 outputs of a run folder, read dataset by dataset: integrity (every file at its
final name opens and reads in full) and comparison with a reference run (same objects,
dtypes, shapes and bytes; the same attributes).

What is not compared, and why:
- /metrics/tokens_per_s of a model file: measured wall-clock throughput.
- the run folder's own path inside strings (the deck stored in /meta and the file names in
  log-like attributes): it is replaced by "<out_dir>" on both sides before comparing.
Temporary files of a writer that was killed (<name>.tmp.<host>.<pid>) are not outputs:
they are listed apart, never opened by btm."""
import os
import re

import h5py
import numpy as np

# Datasets whose values are measurements of the machine, not results.
UNCOMPARED = {"/metrics/tokens_per_s"}
TEMPORARY = re.compile(r"\.tmp\.[^/]+$")


def output_files(run_dir):
    """Relative paths of the HDF5 files at their final names, sorted."""
    out = []
    for root, _, files in os.walk(run_dir):
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), run_dir)
            if rel.endswith(".h5") and not TEMPORARY.search(rel):
                out.append(rel)
    return sorted(out)


def temporary_files(run_dir):
    out = []
    for root, _, files in os.walk(run_dir):
        out += [os.path.relpath(os.path.join(root, n), run_dir) for n in files if TEMPORARY.search(n)]
    return sorted(out)


def _value(v, out_dir):
    """A dataset's or attribute's value as comparable Python data (bytes for numbers)."""
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    if isinstance(v, str):
        return v.replace(out_dir, "<out_dir>")
    a = np.asarray(v)
    if a.dtype.kind in "OSU":
        return [_value(x, out_dir) for x in a.reshape(-1)] + [a.shape]
    return (a.dtype.str, a.shape, a.tobytes())


def read_file(path, out_dir):
    """{object path: value} for every group, dataset and attribute of one HDF5 file; raises
    on a file that does not open or a dataset that does not read in full."""
    objects = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            key = "/" + name
            for a in obj.attrs:
                objects[key + "@" + a] = _value(obj.attrs[a], out_dir)
            if isinstance(obj, h5py.Dataset):
                objects[key] = None if key in UNCOMPARED else _value(obj[()], out_dir)
            else:
                objects[key] = "group"
        for a in f.attrs:
            objects["/@" + a] = _value(f.attrs[a], out_dir)
        f.visititems(visit)
    return objects


def check_integrity(run_dir):
    """Problems (strings) with the files at their final names: each must open and read."""
    problems = []
    for rel in output_files(run_dir):
        try:
            read_file(os.path.join(run_dir, rel), run_dir)
        except Exception as e:  # a torn or foreign file
            problems.append(f"{rel}: does not read: {e}")
    return problems


def model_state(path):
    """(complete, step) of a model file: averages (no /train) are complete."""
    with h5py.File(path, "r") as f:
        if "train" not in f:
            return True, None
        return bool(f["train"].attrs["complete"]), int(f["train"].attrs["step"])


def forest_rows(run_dir):
    """forest.h5's experts as (name, domain, parent, file, architecture, tokens) rows."""
    with h5py.File(os.path.join(run_dir, "forest.h5"), "r") as f:
        g = f["experts"]
        cols = [[_value(v, run_dir) for v in g[k][()]] for k in ("name", "domain", "parent", "file", "architecture")]
        return list(zip(*cols, [int(t) for t in g["tokens"][()]]))


def compare_file(ref_path, ref_dir, run_path, run_dir):
    """Differences (strings) between one file of the reference and of a run."""
    a, b = read_file(ref_path, ref_dir), read_file(run_path, run_dir)
    diffs = [f"{k}: only in the reference" for k in sorted(set(a) - set(b))]
    diffs += [f"{k}: not in the reference" for k in sorted(set(b) - set(a))]
    diffs += [f"{k}: differs" for k in sorted(set(a) & set(b)) if a[k] != b[k]]
    return diffs


def compare_runs(ref_dir, run_dir, files=None):
    """Differences between two run folders: the same output files, each equal object by
    object. `files` limits the comparison to some of them (they must exist in both)."""
    ref_files = output_files(ref_dir)
    problems = []
    if files is None:
        run_files = output_files(run_dir)
        problems += [f"{f}: missing" for f in ref_files if f not in run_files]
        problems += [f"{f}: not in the reference run" for f in run_files if f not in ref_files]
        files = [f for f in ref_files if f in run_files]
    for rel in files:
        for d in compare_file(os.path.join(ref_dir, rel), ref_dir, os.path.join(run_dir, rel), run_dir):
            problems.append(f"{rel}:{d}")
    return problems


def summary(run_dir):
    """Counts for the report: files and datasets compared."""
    n = 0
    for rel in output_files(run_dir):
        n += sum(1 for k, v in read_file(os.path.join(run_dir, rel), run_dir).items() if "@" not in k and v != "group")
    return len(output_files(run_dir)), n
