#!/usr/bin/python3
"""The C-BTM table: a C-BTM run's eval.h5 next to the random-split run's (inputs/cbtm.toml).

    cbtm_table.py CBTM_EVAL.h5 [RANDOM_EVAL.h5] [--methods a,b,...] [--random-methods a,b]
                  [--markdown] [--digits 2]

Rows: the corpus's training domains, the held-out domains and the clusters of the first run
(/results attributes train_domains, heldout_domains, cluster_domains), then the mean
perplexity of each group. Columns: the first run's methods (all, or --methods), then the
second run's --random-methods (default cbtm-top1, cbtm-all) prefixed "random-". The second
run's clusters are other document sets than the first's, so its cluster rows are left out
("-"). The best (lowest) value of each row is marked.
"""
import argparse
import sys

import h5py

from perplexity_table import TableError, _attr_string, read_results, render


def _groups(path):
    with h5py.File(path, "r") as h5:
        a = h5["results"].attrs

        def names(key):
            return [d for d in _attr_string(a[key]).split(",") if d] if key in a else []

        return names("train_domains"), names("heldout_domains"), names("cluster_domains")


def build(first, second, methods, random_methods):
    rows, _, _ = read_results(first)
    train, heldout, clusters = _groups(first)
    cell = {(r["domain"], r["method"]): r["perplexity"] for r in rows if r["split"] == "test"}
    if not methods:
        methods = list(dict.fromkeys(r["method"] for r in rows))
    columns = list(methods)
    if second:
        other, _, _ = read_results(second)
        for r in other:
            if r["split"] == "test" and r["method"] in random_methods and r["domain"] not in clusters:
                cell[(r["domain"], "random-" + r["method"])] = r["perplexity"]
        columns += ["random-" + m for m in random_methods]
    labels, cells = [], []
    for group in (train, heldout, clusters):
        for d in group:
            labels.append(d + (" (held out)" if d in heldout else ""))
            cells.append([cell.get((d, m)) for m in columns])
    for name, group in (("in-domain mean", train), ("held-out mean", heldout), ("cluster mean", clusters)):
        if not group:
            continue
        labels.append(name)
        line = []
        for m in columns:
            got = [cell.get((d, m)) for d in group]
            line.append(None if any(g is None for g in got) else sum(got) / len(got))
        cells.append(line)
    return labels, columns, cells


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cbtm", help="eval.h5 of the C-BTM run")
    ap.add_argument("random", nargs="?", help="eval.h5 of the random-split run")
    ap.add_argument("--methods", help="comma-separated columns of the first run (default: all)")
    ap.add_argument("--random-methods", default="cbtm-top1,cbtm-all")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--digits", type=int, default=2)
    args = ap.parse_args(argv)
    try:
        methods = [m for m in (args.methods or "").split(",") if m]
        random_methods = [m for m in args.random_methods.split(",") if m]
        labels, columns, cells = build(args.cbtm, args.random, methods, random_methods)
    except (TableError, OSError, KeyError) as e:
        print(f"cbtm_table: error: {e}", file=sys.stderr)
        return 2
    print(render(labels, columns, cells, args.markdown, args.digits))
    return 0


if __name__ == "__main__":
    sys.exit(main())
