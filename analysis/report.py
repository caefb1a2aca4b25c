#!/usr/bin/python3
"""Every plot that applies to one btm run folder, as PNGs in one folder.

    report.py RUN_DIR [--out DIR]        (default DIR: RUN_DIR/report)

perplexity.png   eval.h5 /results: perplexity per domain x method (log colour scale)
loss_curves.png  training loss vs tokens of seed.h5, baseline.h5, experts/*.h5 and the
                 finetuned MoE models <name>.h5 (/meta phase finetune)
priors.png       eval.h5 /priors/<ensemble>/<domain>: cached BTM prior weights per expert
clusters.png     clusters.h5 (C-BTM): /sizes, purity and nmi, and the cluster x domain
                 composition of the training documents (/assignments/<domain>/<split>)
routing-<m>.png  eval.h5 /routing/<m>/<domain>/tokens of each MoE method (routing_heatmap.py)

What does not apply to the run is skipped with one line. Exit status 2 when the folder is
missing or a file it has cannot be read (the other plots are still written).
"""
import argparse
import glob
import os
import sys

import h5py
import numpy as np

import loss_curves
import perplexity_table
import routing_heatmap


class ReportError(Exception):
    pass


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _open(path):
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise ReportError(f"{path}: cannot open as HDF5: {e}")


def _names(values):
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _heatmap(ax, values, rows, cols, log=False, fmt="{:.2f}"):
    """values [rows, cols] with NaN for missing cells, annotated."""
    from matplotlib.colors import LogNorm
    masked = np.ma.masked_invalid(values)
    norm = None
    if log and masked.count():
        norm = LogNorm(vmin=max(masked.min(), 1e-12), vmax=max(masked.max(), masked.min() * 1.0001))
    image = ax.imshow(masked, cmap="viridis_r" if log else "viridis", aspect="auto", norm=norm,
                      vmin=None if log else 0)
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels(cols, rotation=50, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows, fontsize=7)
    for (r, c), v in np.ndenumerate(values):
        if not np.isnan(v):
            ax.text(c, r, fmt.format(v), ha="center", va="center", fontsize=6, color="w",
                    path_effects=_outline())
    return image


def _outline():
    from matplotlib import patheffects
    return [patheffects.withStroke(linewidth=1.2, foreground="k")]


def perplexity(run, out, plt):
    path = os.path.join(run, "eval.h5")
    if not os.path.exists(path):
        return "skipped perplexity.png: no eval.h5"
    rows, heldout, _ = perplexity_table.read_results(path)
    if not rows:
        return "skipped perplexity.png: eval.h5 /results has no rows"
    splits = list(dict.fromkeys(r["split"] for r in rows))
    split = "test" if "test" in splits else splits[0]
    labels, methods, cells = perplexity_table.build_table(rows, split, heldout)
    values = np.array([[np.nan if v is None else v for v in line] for line in cells])
    fig, ax = plt.subplots(figsize=(2.5 + 0.75 * len(methods), 1.5 + 0.32 * len(labels)))
    image = _heatmap(ax, values, labels, methods, log=True,
                     fmt="{:.1f}" if np.nanmax(values) < 1000 else "{:.0f}")
    ax.axhline(len(labels) - 2.5, color="w", lw=1.5)  # the two mean rows below
    fig.colorbar(image, ax=ax, label="perplexity (log scale)")
    ax.set_title(f"perplexity, split '{split}'", fontsize=10)
    fig.tight_layout()
    target = os.path.join(out, "perplexity.png")
    fig.savefig(target, dpi=100)
    plt.close(fig)
    return f"wrote {target} ({len(labels) - 2} domains x {len(methods)} methods)"


def _phase(path):
    with _open(path) as h5:
        return loss_curves._meta(h5, "phase")


NOT_MODELS = {"data.h5", "clustered.h5", "clusters.h5", "eval.h5", "forest.h5"}


def model_files(run):
    """The trained model files of a run folder, in training order."""
    files = [os.path.join(run, f) for f in ("seed.h5", "baseline.h5")]
    files += sorted(glob.glob(os.path.join(run, "experts", "*.h5")))
    for f in sorted(glob.glob(os.path.join(run, "*.h5"))):
        if f not in files and os.path.basename(f) not in NOT_MODELS and _phase(f) == "finetune":
            files.append(f)
    return [f for f in files if os.path.exists(f)]


def curves(run, out, plt):
    files = model_files(run)
    if not files:
        return "skipped loss_curves.png: no seed.h5, baseline.h5, experts/*.h5 or finetuned model"
    runs = []
    for f in files:
        r = loss_curves.read_metrics(f)
        r["valid"] = {}  # one panel of training losses; validation is in perplexity.png
        if r["phase"] == "finetune":  # no domain: the model's name tells the MoE models apart
            r["label"] = "finetune:" + os.path.splitext(os.path.basename(f))[0]
        if r["tokens_per_step"] is None:
            raise ReportError(f"{f}:/train: attributes tokens and step missing (cannot put the "
                              "loss against tokens)")
        runs.append(r)
    target = os.path.join(out, "loss_curves.png")
    window = max(1, min(20, min(len(r["step"]) for r in runs) // 10))
    loss_curves.plot(runs, target, "training loss", window=window, x_tokens=True)
    return f"wrote {target} ({len(runs)} model files)"


def priors(run, out, plt):
    path = os.path.join(run, "eval.h5")
    if not os.path.exists(path):
        return "skipped priors.png: no eval.h5"
    with _open(path) as h5:
        if "priors" not in h5 or "experts" not in h5["priors"]:
            return "skipped priors.png: eval.h5 has no /priors (no BTM ensemble with a cached prior)"
        experts = _names(h5["priors/experts"][()])
        ensembles = {}
        for name, g in h5["priors"].items():
            if not isinstance(g, h5py.Group):
                continue
            domains = list(g.keys())
            for d in domains:
                if g[d].shape != (len(experts),):
                    raise ReportError(f"{path}:/priors/{name}/{d}: shape {g[d].shape}, expected "
                                      f"[{len(experts)}] (one weight per /priors/experts)")
            ensembles[name] = (domains, np.array([g[d][()] for d in domains], dtype=np.float64))
    if not ensembles:
        return "skipped priors.png: eval.h5 /priors has no ensembles"
    n = len(ensembles)
    width = 1.5 + 0.6 * len(experts)
    fig, axes = plt.subplots(1, n, figsize=(width * n + 1, 1.5 + 0.3 * max(len(d) for d, _ in ensembles.values())),
                             squeeze=False)
    for ax, (name, (domains, w)) in zip(axes[0], ensembles.items()):
        image = _heatmap(ax, w, domains, experts)
        image.set_clim(0, 1)
        ax.set_title(name, fontsize=9)
    fig.colorbar(image, ax=axes[0].tolist(), label="prior weight")
    fig.suptitle("cached priors of the BTM ensembles (rows: evaluation domain)", fontsize=10, y=1.04)
    target = os.path.join(out, "priors.png")
    fig.savefig(target, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return f"wrote {target} ({n} ensemble(s), {len(experts)} experts)"


def read_clusters(path):
    """(sizes [k], ["purity=...", "nmi=..."], domains, counts [k, domains] or None, split):
    counts are the documents of each domain per cluster, over the training split (over every
    split when no domain has one)."""
    with _open(path) as h5:
        if "sizes" not in h5:
            raise ReportError(f"{path}:/sizes: dataset missing")
        sizes = h5["sizes"][()].astype(np.int64)
        k = len(sizes)
        scores = [f"{key}={float(h5.attrs[key]):.3f}" for key in ("purity", "nmi") if key in h5.attrs]
        counts, domains, split = None, [], "train"
        if "assignments" in h5:
            a = h5["assignments"]
            domains = [d for d in a if split in a[d]]
            if not domains:  # no training split: every split there is
                split, domains = "all splits", list(a.keys())
            counts = np.zeros((k, len(domains)))
            for j, d in enumerate(domains):
                for s in ([split] if split == "train" else a[d].keys()):
                    ids = a[d][s][()]
                    if ids.size and (ids.min() < 0 or ids.max() >= k):
                        raise ReportError(f"{path}:/assignments/{d}/{s}: cluster ids outside "
                                          f"0..{k - 1}")
                    counts[:, j] += np.bincount(ids, minlength=k)
    return sizes, scores, domains, counts, split


def clusters(run, out, plt):
    path = os.path.join(run, "clusters.h5")
    if not os.path.exists(path):
        return "skipped clusters.png: no clusters.h5 (not a C-BTM run)"
    sizes, scores, domains, counts, split = read_clusters(path)
    k = len(sizes)
    names = [f"cluster-{j}" for j in range(k)]
    panels = 2 if counts is not None and domains else 1
    fig, axes = plt.subplots(1, panels, figsize=(3.5 + (0.7 * len(domains) + 2) * (panels - 1), 3.2),
                             squeeze=False)
    ax = axes[0, 0]
    ax.bar(names, sizes, color="tab:blue")
    for j, v in enumerate(sizes):
        ax.text(j, v, str(v), ha="center", va="bottom", fontsize=7)
    ax.set_ylabel("training documents")
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    ax.set_title("cluster sizes", fontsize=9)
    if panels == 2:
        image = _heatmap(axes[0, 1], counts, names, domains, fmt="{:.0f}")
        axes[0, 1].set_title(f"documents per cluster and domain ({split})", fontsize=9)
        fig.colorbar(image, ax=axes[0, 1], label="documents")
    fig.suptitle(f"C-BTM clusters (k={k})" + (": " + ", ".join(scores) if scores else ""), fontsize=10)
    fig.tight_layout()
    target = os.path.join(out, "clusters.png")
    fig.savefig(target, dpi=100)
    plt.close(fig)
    return f"wrote {target} ({k} clusters" + (f", {len(domains)} domains)" if panels == 2 else ")")


def routing(run, out, plt):
    path = os.path.join(run, "eval.h5")
    if not os.path.exists(path):
        return ["skipped routing-*.png: no eval.h5"]
    with _open(path) as h5:
        methods = list(h5["routing"].keys()) if "routing" in h5 else []
        moe = [m for m in methods if "experts" in h5["routing"][m]]
    if not moe:
        return ["skipped routing-*.png: eval.h5 has no MoE routing (/routing/<method>/experts)"]
    lines = []
    for m in moe:
        method, experts, shares, _ = routing_heatmap.read_routing(path, m)
        target = os.path.join(out, f"routing-{m}.png")
        routing_heatmap.plot(method, experts, shares, target)
        lines.append(f"wrote {target} ({len(shares)} domains, {len(experts)} experts)")
    return lines


PLOTS = (perplexity, curves, priors, clusters, routing)
ERRORS = (ReportError, OSError, KeyError, perplexity_table.TableError, loss_curves.CurveError,
          routing_heatmap.RoutingError)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="run folder (run.dir of the deck)")
    ap.add_argument("--out", help="folder for the PNGs (default: RUN/report)")
    args = ap.parse_args(argv)
    if not os.path.isdir(args.run):
        print(f"report: error: {args.run}: no such run folder", file=sys.stderr)
        return 2
    if not os.access(args.run, os.R_OK | os.X_OK):
        print(f"report: error: {args.run}: run folder not readable", file=sys.stderr)
        return 2
    out = args.out or os.path.join(args.run, "report")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        print(f"report: error: {out}: cannot create the output folder: {e}", file=sys.stderr)
        return 2
    plt = _pyplot()
    status, written = 0, 0
    for plot in PLOTS:
        try:
            lines = plot(args.run, out, plt)
        except ERRORS as e:
            plt.close("all")
            print(f"report: error: {plot.__name__}: {e}", file=sys.stderr)
            status = 2
            continue
        for line in [lines] if isinstance(lines, str) else lines:
            print(line)
            written += line.startswith("wrote ")
    print(f"report: {written} PNG(s) in {out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
