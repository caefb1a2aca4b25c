#!/usr/bin/python3
"""Perplexity table from a btm eval.h5: rows = domains, columns = methods.

    perplexity_table.py eval.h5 [--split test] [--markdown] [--metric perplexity|nll]
                        [--mean domain|token] [--heldout a,b]

eval.h5 holds `/results` as parallel datasets, one row per (method, domain, split):
`method`, `domain`, `split` (strings), `tokens` (uint64), `nll` (mean, nats), `perplexity`.
The optional attribute `heldout_domains` on /results (comma-separated) says which domains
were held out of training; every other domain is in-domain. After the domain rows come
"in-domain mean" and "held-out mean": by default the arithmetic mean of the per-domain values
(as the BTM paper averages perplexities over domains); --mean token instead gives
exp(token-weighted mean NLL) over the group. A mean is "-" when a method lacks a domain of
the group or the group is empty. The best (lowest) value of each row is marked.
"""
import argparse
import math
import signal
import sys

import h5py
import numpy as np

COLUMNS = ("method", "domain", "split", "tokens", "nll", "perplexity")


class TableError(Exception):
    pass


def _strings(ds, where):
    arr = ds[()]
    if arr.dtype.kind in "SO":
        return [x.decode() if isinstance(x, bytes) else str(x) for x in arr]
    if arr.dtype.kind == "U":
        return [str(x) for x in arr]
    raise TableError(f"{where}: expected strings, found {arr.dtype}")


def _attr_string(value):
    if isinstance(value, bytes):
        return value.decode()
    arr = np.asarray(value)
    if arr.dtype.kind in "SO" and arr.size == 1:
        v = arr.reshape(()).item()
        return v.decode() if isinstance(v, bytes) else str(v)
    if arr.dtype.kind in "SOU" and arr.ndim == 1:  # an array of names
        return ",".join(v.decode() if isinstance(v, bytes) else str(v) for v in arr)
    return str(value)


def read_results(path):
    """Rows as a list of dicts, the set of held-out domains, and /results' other attributes."""
    try:
        h5 = h5py.File(path, "r")
    except OSError as e:
        raise TableError(f"{path}: cannot open as HDF5: {e}")
    with h5:
        if "results" not in h5 or not isinstance(h5["results"], h5py.Group):
            raise TableError(f"{path}:/results: group missing (not a btm eval.h5?)")
        g = h5["results"]
        cols = {}
        for name in COLUMNS:
            where = f"{path}:/results/{name}"
            if name not in g:
                raise TableError(f"{where}: dataset missing")
            if g[name].ndim != 1:
                raise TableError(f"{where}: expected 1-D, found shape {list(g[name].shape)}")
            if name in ("method", "domain", "split"):
                cols[name] = _strings(g[name], where)
            else:
                if g[name].dtype.kind not in "iuf":
                    raise TableError(f"{where}: expected numbers, found {g[name].dtype}")
                cols[name] = g[name][()]
        n = len(cols["method"])
        for name in COLUMNS:
            if len(cols[name]) != n:
                raise TableError(f"{path}:/results/{name}: {len(cols[name])} rows, but "
                                 f"/results/method has {n}")
        heldout = set()
        if "heldout_domains" in g.attrs:
            text = _attr_string(g.attrs["heldout_domains"])
            heldout = {d.strip() for d in text.split(",") if d.strip()}
        # Short settings only: the resolved deck (multi-line TOML) is for btm inspect.
        settings = {k: _attr_string(v) for k, v in g.attrs.items() if k != "heldout_domains"}
        settings = {k: v for k, v in settings.items() if "\n" not in v}
    rows, seen = [], {}
    for i in range(n):
        key = (cols["method"][i], cols["domain"][i], cols["split"][i])
        if key in seen:
            raise TableError(f"{path}:/results: rows {seen[key]} and {i} are both "
                             f"method={key[0]} domain={key[1]} split={key[2]}")
        seen[key] = i
        rows.append({"method": key[0], "domain": key[1], "split": key[2],
                     "tokens": int(cols["tokens"][i]), "nll": float(cols["nll"][i]),
                     "perplexity": float(cols["perplexity"][i])})
    return rows, heldout, settings


def _ordered(values):
    return list(dict.fromkeys(values))


def build_table(rows, split, heldout, metric="perplexity", mean="domain"):
    """(row labels, column labels, cells[r][c] float or None) for one split."""
    rows = [r for r in rows if r["split"] == split]
    methods = _ordered(r["method"] for r in rows)
    domains = _ordered(r["domain"] for r in rows)
    domains = [d for d in domains if d not in heldout] + [d for d in domains if d in heldout]
    cell = {(r["domain"], r["method"]): r for r in rows}
    labels, cells = [], []
    for d in domains:
        labels.append(d + (" (held out)" if d in heldout else ""))
        cells.append([cell[(d, m)][metric] if (d, m) in cell else None for m in methods])
    for name, group in (("in-domain mean", [d for d in domains if d not in heldout]),
                        ("held-out mean", [d for d in domains if d in heldout])):
        labels.append(name)
        line = []
        for m in methods:
            got = [cell.get((d, m)) for d in group]
            if not group or any(g is None for g in got):
                line.append(None)
            elif mean == "token":
                tokens = sum(g["tokens"] for g in got)
                nll = sum(g["nll"] * g["tokens"] for g in got) / tokens if tokens else math.nan
                line.append(math.exp(nll) if metric == "perplexity" else nll)
            else:
                line.append(sum(g[metric] for g in got) / len(got))
        cells.append(line)
    return labels, methods, cells


def render(labels, methods, cells, markdown, digits=2):
    def fmt(v):
        return "-" if v is None else f"{v:.{digits}f}"

    text = []
    for line in cells:
        present = [v for v in line if v is not None and not math.isnan(v)]
        best = min(present) if len(present) > 1 else None
        out = []
        for v in line:
            s = fmt(v)
            if best is not None and v == best:
                s = f"**{s}**" if markdown else s + "*"
            elif not markdown:
                s += " "  # keep the digits aligned with the starred best
            out.append(s)
        text.append(out)
    header = ["domain"] + methods
    body = [[lab] + line for lab, line in zip(labels, text)]
    if markdown:
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join(["---"] + ["---:"] * len(methods)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                       for i, (h, w) in enumerate(zip(r, widths))) for r in [header] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("eval", help="eval.h5 written by btm's eval phase")
    ap.add_argument("--split", help="which split (default: every split, 'test' first)")
    ap.add_argument("--markdown", action="store_true", help="GitHub markdown, best in bold")
    ap.add_argument("--metric", choices=("perplexity", "nll"), default="perplexity")
    ap.add_argument("--mean", choices=("domain", "token"), default="domain",
                    help="domain: mean of per-domain values; token: token-weighted")
    ap.add_argument("--heldout", help="comma-separated held-out domains (overrides the file)")
    ap.add_argument("--digits", type=int, default=2)
    args = ap.parse_args(argv)
    try:
        rows, heldout, settings = read_results(args.eval)
        if not rows:
            raise TableError(f"{args.eval}:/results: no rows")
        if args.heldout is not None:
            heldout = {d.strip() for d in args.heldout.split(",") if d.strip()}
        splits = _ordered(r["split"] for r in rows)
        if args.split:
            if args.split not in splits:
                raise TableError(f"{args.eval}:/results: no rows with split '{args.split}' "
                                 f"(splits: {', '.join(splits)})")
            splits = [args.split]
        else:
            first = list(splits)
            splits.sort(key=lambda s: (s != "test", s != "valid", first.index(s)))
        unknown = heldout - {r["domain"] for r in rows}
        if unknown:
            print(f"perplexity_table: warning: held-out domains not in the results: "
                  f"{', '.join(sorted(unknown))}", file=sys.stderr)
    except TableError as e:
        print(f"perplexity_table: error: {e}", file=sys.stderr)
        return 2
    what = "perplexity" if args.metric == "perplexity" else "mean NLL (nats)"
    for i, split in enumerate(splits):
        if i:
            print()
        title = f"{what}, split '{split}' ({args.eval})"
        print(f"### {title}\n" if args.markdown else f"# {title}")
        print(render(*build_table(rows, split, heldout, args.metric, args.mean), args.markdown,
                     args.digits))
    if settings:
        short = {k: v if len(v) <= 60 else v[:57] + "..." for k, v in settings.items()}
        pairs = ", ".join(f"{k}={v}" for k, v in sorted(short.items()))
        print(f"\nsettings: {pairs}" if args.markdown else f"# settings: {pairs}")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quiet when piped into head
    sys.exit(main())
