#!/usr/bin/python3
"""Tables and plots of the paper8-cpu study (analysis/replicate_paper8.sh), from its run folders.

    replication_report.py RUNS_DIR [--prefix paper8-cpu] [--out DIR]

Reads RUNS_DIR/<prefix>/eval.h5 (the BTM + BTX run; required) and, where they exist, the
eval.h5 of <prefix>-cbtm (C-BTM, balanced clusters), <prefix>-random (random split),
<prefix>-btxbase (the dense model matched to BTX's FLOPs), <prefix>-seed25 and
<prefix>-seed75 (seed-share sweep) and each folder's wall.txt. Writes to DIR (default
RUNS_DIR/<prefix>/replication):

tables.md        the test perplexity per domain of every method (one column per method,
                 from its folder), the in-domain and held-out means, the four published
                 findings with the numbers they rest on, the seed-share sweep and wall times
perplexity.png   the per-domain table as a heatmap (log colour scale)
means.png        in-domain and held-out mean perplexity per method
seed_share.png   mean perplexity of the BTM ensemble and the uniform average against the
                 seed's share of the training compute, with the main folder's dense model

Means are arithmetic means of per-domain perplexities, as perplexity_table.py's default
(the BTM paper's convention). Exit status 2 when an eval.h5 cannot be read.
"""
import argparse
import os
import re
import sys

import numpy as np

from perplexity_table import TableError, read_results, render
import report

# (column, folder suffix, method in that folder's eval.h5), in table order.
COLUMNS = [
    ("dense", "", "baseline"),
    ("seed", "", "seed"),
    ("avg-uniform", "", "avg-uniform"),
    ("avg-posterior", "", "avg-posterior"),
    ("ensemble-prevtok", "", "ensemble-prevtok"),
    ("ensemble-prevtok-top1", "", "ensemble-prevtok-top1"),
    ("ensemble-prevtok-top2", "", "ensemble-prevtok-top2"),
    ("ensemble", "", "ensemble"),
    ("ensemble-top1", "", "ensemble-top1"),
    ("ensemble-top2", "", "ensemble-top2"),
    ("ensemble-uniform", "", "ensemble-uniform"),
    ("btx-mixed", "", "btx-mixed"),
    ("btx", "", "btx"),
    ("dense-btx", "-btxbase", "baseline"),
    ("cbtm-top1", "-cbtm", "cbtm-top1"),
    ("cbtm-top2", "-cbtm", "cbtm-top2"),
    ("random-top1", "-random", "cbtm-top1"),
    ("random-top2", "-random", "cbtm-top2"),
]

# Seed-share sweep: folder suffix -> the seed's share of the training FLOPs (percent).
SWEEP = [("-seed25", 25), ("", 50), ("-seed75", 75)]
SWEEP_METHODS = [("dense", "baseline"), ("ensemble-prevtok", "ensemble-prevtok"), ("ensemble", "ensemble"),
                 ("avg-uniform", "avg-uniform")]


def load_folder(path):
    """{(method, domain): perplexity} of the test split, train and held-out domain lists."""
    rows, heldout, settings = read_results(path)
    cells = {(r["method"], r["domain"]): r["perplexity"] for r in rows if r["split"] == "test"}
    train = [d for d in settings.get("train_domains", "").split(",") if d]
    if not train:
        raise TableError(f"{path}:/results: attribute train_domains missing")
    return cells, train, [d for d in dict.fromkeys(r["domain"] for r in rows) if d in heldout]


def collect(runs, prefix):
    """Cells per folder suffix that has an eval.h5; the main folder's domain groups."""
    folders = {}
    for suffix in sorted({c[1] for c in COLUMNS} | {s[0] for s in SWEEP}):
        path = os.path.join(runs, prefix + suffix, "eval.h5")
        if os.path.exists(path):
            folders[suffix] = load_folder(path)
        elif suffix == "":
            raise TableError(f"{path}: missing (the main run has not been evaluated)")
    _, train, heldout = folders[""]
    return folders, train, heldout


def mean(values):
    return None if not values or any(v is None for v in values) else sum(values) / len(values)


def table(folders, train, heldout):
    """(row labels, columns present, cells) of the combined test table with both means."""
    columns = [c for c in COLUMNS if c[1] in folders and any(k[0] == c[2] for k in folders[c[1]][0])]
    labels, cells = [], []
    for d in train + heldout:
        labels.append(d + (" (held out)" if d in heldout else ""))
        cells.append([folders[s][0].get((m, d)) for _, s, m in columns])
    for name, group in (("in-domain mean", train), ("held-out mean", heldout)):
        labels.append(name)
        cells.append([mean([folders[s][0].get((m, d)) for d in group]) for _, s, m in columns])
    return labels, [c[0] for c in columns], cells


def means_of(labels, names, cells):
    """{column: (in-domain mean, held-out mean)}."""
    i, h = labels.index("in-domain mean"), labels.index("held-out mean")
    return {n: (cells[i][j], cells[h][j]) for j, n in enumerate(names)}


def _fmt(v):
    return "-" if v is None else f"{v:.2f}"


def compare(means, a, b):
    """One finding line: is a below b on both means? None when a number is missing."""
    if a not in means or b not in means or None in means[a] + means[b]:
        return None
    (ai, ah), (bi, bh) = means[a], means[b]
    return ai < bi, ah < bh, f"{a} {_fmt(ai)} / {_fmt(ah)} vs {b} {_fmt(bi)} / {_fmt(bh)}"


def verdict(results):
    """'holds', 'does not hold' or 'partly' over the measured comparisons of a finding."""
    got = [r for r in results if r is not None]
    if not got:
        return "not measured"
    wins = [w for r in got for w in r[:2]]
    text = "holds" if all(wins) else "does not hold" if not any(wins) else "partly (see the numbers)"
    return text + ("" if len(got) == len(results) else " (some comparisons not measured)")


FINDINGS = [
    ("(1) the BTM ensemble beats the compute-matched dense LM",
     [("ensemble-prevtok", "dense"), ("ensemble", "dense")]),
    ("(2) posterior-weighted averaging beats uniform averaging", [("avg-posterior", "avg-uniform")]),
    ("(3) balanced clusters beat random splits (C-BTM, same top-k)",
     [("cbtm-top1", "random-top1"), ("cbtm-top2", "random-top2")]),
    ("(4) BTX beats BTM averaging and the dense LM",
     [("btx", "avg-uniform"), ("btx", "dense-btx"), ("btx", "dense"), ("btx-mixed", "dense")]),
]


def findings(means):
    lines = ["| finding | comparison (in-domain mean / held-out mean) | in-domain | held-out | verdict |",
             "|---|---|---|---|---|"]
    for title, pairs in FINDINGS:
        results = [compare(means, a, b) for a, b in pairs]
        for k, ((a, b), r) in enumerate(zip(pairs, results)):
            first = title if k == 0 else ""
            what = r[2] if r else f"{a} vs {b}: not measured"
            yes = ("-", "-") if r is None else tuple("yes" if w else "no" for w in r[:2])
            last = verdict(results) if k == len(pairs) - 1 else ""
            lines.append(f"| {first} | {what} | {yes[0]} | {yes[1]} | {last} |")
    return "\n".join(lines)


def sweep(folders):
    """[(share, {name: (in-domain, held-out)})] for the sweep folders that are evaluated. The
    dense model is the main folder's at every share: the sweep folders train none (the dense
    model at equal FLOPs does not depend on how BTM splits them)."""
    main, train, heldout = folders[""]
    out = []
    for suffix, share in SWEEP:
        if suffix not in folders:
            continue
        cells = folders[suffix][0]
        got = {}
        for name, method in SWEEP_METHODS:
            source = main if name == "dense" else cells
            got[name] = tuple(mean([source.get((method, d)) for d in g]) for g in (train, heldout))
        out.append((share, got))
    return out


def sweep_table(points):
    names = [n for n, _ in SWEEP_METHODS]
    head = "| seed share | " + " | ".join(f"{n} in-domain | {n} held-out" for n in names) + " |"
    lines = [head, "|" + "---:|" * (1 + 2 * len(names))]
    for share, got in points:
        lines.append(f"| {share}% | " + " | ".join(f"{_fmt(got[n][0])} | {_fmt(got[n][1])}" for n in names) + " |")
    return "\n".join(lines)


WALL = re.compile(r"start=(\S+) end=(\S+) wall_s=(\d+) ranks=(\d+)(?: phases=(\S+))?")


def wall_times(runs, prefix):
    lines = ["| folder | phases | start (UTC) | end (UTC) | wall s | ranks |", "|---|---|---|---|---:|---:|"]
    for suffix in ["", "-cbtm", "-random", "-btxbase", "-seed25", "-seed75"]:
        path = os.path.join(runs, prefix + suffix, "wall.txt")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            for m in filter(None, map(WALL.search, f)):
                lines.append(f"| {prefix + suffix} | {m[5] or 'all'} | {m[1]} | {m[2]} | {m[3]} | {m[4]} |")
    return "\n".join(lines)


def save_figure(fig, out, name, plt):
    """Lays out, writes out/name and closes `fig`; returns the path."""
    fig.tight_layout()
    path = os.path.join(out, name)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_heatmap(labels, names, cells, out, plt):
    values = np.array([[np.nan if v is None else v for v in line] for line in cells])
    fig, ax = plt.subplots(figsize=(2.5 + 0.7 * len(names), 1.5 + 0.32 * len(labels)))
    image = report._heatmap(ax, values, labels, names, log=True, fmt="{:.1f}")
    ax.axhline(len(labels) - 2.5, color="w", lw=1.5)
    fig.colorbar(image, ax=ax, label="perplexity (log scale)")
    ax.set_title("test perplexity per domain (paper8-cpu, every method at equal FLOPs but btx)", fontsize=9)
    return save_figure(fig, out, "perplexity.png", plt)


def plot_means(means, out, plt):
    names = [n for n, v in means.items() if None not in v]
    x = np.arange(len(names))
    fig, axes = plt.subplots(1, 2, figsize=(2 + 0.55 * len(names) * 2, 3.6))
    for k, (ax, title) in enumerate(zip(axes, ("in-domain mean", "held-out mean"))):
        vals = [means[n][k] for n in names]
        bars = ax.bar(x, vals, color=["0.45" if n.startswith("dense") else "C0" for n in names])
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=50, ha="right", fontsize=7)
        ax.set_ylim(min(vals) * 0.9, max(vals) * 1.03)
        ax.set_title(title + " perplexity (test)", fontsize=9)
        for b, v in zip(bars, vals):
            ax.text(b.get_x() + b.get_width() / 2, v, f"{v:.1f}", ha="center", va="bottom", fontsize=6)
    return save_figure(fig, out, "means.png", plt)


def plot_sweep(points, out, plt):
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    shares = [s for s, _ in points]
    for k, (ax, title) in enumerate(zip(axes, ("in-domain mean", "held-out mean"))):
        for name, _ in SWEEP_METHODS:
            ys = [got[name][k] for _, got in points]
            xs = [s for s, y in zip(shares, ys) if y is not None]
            ax.plot(xs, [y for y in ys if y is not None], "o-", label=name)
        ax.set_xlabel("seed share of the training FLOPs (%)")
        ax.set_ylabel("perplexity (test)")
        ax.set_xticks(shares)
        ax.set_title(title, fontsize=9)
    axes[0].legend(fontsize=7)
    return save_figure(fig, out, "seed_share.png", plt)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", help="folder holding the run folders (runs/)")
    ap.add_argument("--prefix", default="paper8-cpu", help="the main run folder's name")
    ap.add_argument("--out", help="output folder (default RUNS/<prefix>/replication)")
    args = ap.parse_args(argv)
    out = args.out or os.path.join(args.runs, args.prefix, "replication")
    try:
        folders, train, heldout = collect(args.runs, args.prefix)
        labels, names, cells = table(folders, train, heldout)
        means = means_of(labels, names, cells)
        points = sweep(folders)
    except (TableError, OSError, KeyError) as e:
        print(f"replication_report: error: {e}", file=sys.stderr)
        return 2
    os.makedirs(out, exist_ok=True)
    text = ["## Test perplexity per domain", "", render(labels, names, cells, True), "",
            "## Findings", "", findings(means), ""]
    if len(points) > 1:
        text += ["## Seed share (same total training FLOPs)", "", sweep_table(points), ""]
    text += ["## Wall times", "", wall_times(args.runs, args.prefix), ""]
    with open(os.path.join(out, "tables.md"), "w") as f:
        f.write("\n".join(text))
    print(f"wrote {os.path.join(out, 'tables.md')}")
    plt = report._pyplot()
    print(f"wrote {plot_heatmap(labels, names, cells, out, plt)}")
    print(f"wrote {plot_means(means, out, plt)}")
    if len(points) > 1:
        print(f"wrote {plot_sweep(points, out, plt)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
