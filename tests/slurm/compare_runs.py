"""Checks that btm runs made through Slurm equal a direct mpirun run of the same deck:
forest.h5 lists the experts in the deck's order, eval.h5's /results table is identical
(every column, bit for bit), and every model's /params are bitwise equal.
  compare_runs.py EXPECTED_ORDER(comma-separated) REFERENCE_DIR RUN_DIR [RUN_DIR ...]
Exit status 1 with one line per difference."""
import glob
import os
import sys

import h5py
import numpy as np


def strings(ds):
    return [v.decode() if isinstance(v, bytes) else str(v) for v in ds[()]]


def forest_order(run):
    with h5py.File(os.path.join(run, "forest.h5"), "r") as f:
        return strings(f["/experts/name"])


def results(run):
    with h5py.File(os.path.join(run, "eval.h5"), "r") as f:
        g = f["/results"]
        return {k: (strings(g[k]) if g[k].dtype.kind in "OSU" else g[k][()]) for k in g}


def params(path):
    out = {}
    with h5py.File(path, "r") as f:
        f["/params"].visititems(lambda name, ds: out.__setitem__(name, ds[()]) if isinstance(ds, h5py.Dataset) else None)
    return out


def models(run):
    files = ["seed.h5", "baseline.h5"] + [os.path.relpath(p, run) for p in
                                          sorted(glob.glob(os.path.join(run, "experts", "*.h5")) +
                                                 glob.glob(os.path.join(run, "averages", "*.h5")))]
    return [m for m in files if os.path.exists(os.path.join(run, m))]


def main():
    order, ref, runs = sys.argv[1].split(","), sys.argv[2], sys.argv[3:]
    problems = []
    if forest_order(ref) != order:
        problems.append(f"{ref}: forest order {forest_order(ref)}, expected {order}")
    ref_results, ref_models = results(ref), models(ref)
    for run in runs:
        if forest_order(run) != order:
            problems.append(f"{run}: forest order {forest_order(run)}, expected the deck's {order}")
        res = results(run)
        for k in sorted(set(ref_results) | set(res)):
            a, b = ref_results.get(k), res.get(k)
            same = a is not None and b is not None and (a == b if isinstance(a, list) else np.array_equal(a, b))
            if not same:
                problems.append(f"{run}: eval.h5 /results/{k} differs from {ref}")
        if models(run) != ref_models:
            problems.append(f"{run}: model files {models(run)} != {ref_models}")
        for m in ref_models:
            if not os.path.exists(os.path.join(run, m)):
                continue
            p, q = params(os.path.join(ref, m)), params(os.path.join(run, m))
            bad = [n for n in p if n not in q or p[n].tobytes() != q[n].tobytes()]
            if bad or set(p) != set(q):
                problems.append(f"{run}/{m}: parameters differ from {ref} ({', '.join(bad[:3]) or 'names'})")
        print(f"compared {run}: forest={','.join(forest_order(run))} eval_rows={len(res.get('nll', []))} "
              f"models={len(ref_models)}")
    for p in problems:
        print("DIFF:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
