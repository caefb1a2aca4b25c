#!/usr/bin/python3
"""Training curves of one or more btm model files, in one PNG.

    loss_curves.py MODEL.h5 [MODEL.h5 ...] --out curves.png [--labels a,b] [--smooth 20]
                   [--log-y] [--title TEXT]

Reads `/metrics/step`, `/metrics/loss` and `/metrics/lr` (training loss and learning rate per
logged step) and every `/metrics/valid/<domain>` (validation losses). A validation series as
long as /metrics/step is plotted against it; otherwise against `/metrics/valid_step`, which
must then exist with the series' length. Panels: training loss, validation loss (when any
file has some; one colour per file, one line style per domain), learning rate. Each file's
label is --labels, else its /meta phase and domain, else its file name.
"""
import argparse
import itertools
import os
import sys

import h5py
import numpy as np


class CurveError(Exception):
    pass


def _text(value):
    if isinstance(value, bytes):
        return value.decode()
    arr = np.asarray(value)
    if arr.size == 1:
        v = arr.reshape(()).item()
        return v.decode() if isinstance(v, bytes) else str(v)
    return str(value)


def _meta(h5, key):
    """/meta field as text, stored as an attribute of /meta or a scalar dataset in it."""
    if "meta" not in h5:
        return None
    g = h5["meta"]
    if key in g.attrs:
        return _text(g.attrs[key])
    if isinstance(g, h5py.Group) and key in g and isinstance(g[key], h5py.Dataset):
        return _text(g[key][()])
    return None


def _series(h5, path, name, length=None):
    where = f"{path}:/metrics/{name}"
    if f"metrics/{name}" not in h5:
        raise CurveError(f"{where}: dataset missing")
    ds = h5[f"metrics/{name}"]
    if not isinstance(ds, h5py.Dataset) or ds.ndim != 1 or ds.dtype.kind not in "iuf":
        raise CurveError(f"{where}: expected a 1-D numeric dataset")
    if length is not None and ds.shape[0] != length:
        raise CurveError(f"{where}: {ds.shape[0]} values, expected {length} "
                         "(the length of /metrics/step)")
    return ds[()].astype(np.float64)


def _tokens_per_step(h5):
    """Training tokens per optimizer step from /train's `tokens` and `step` (fixed batch), or None."""
    a = h5["train"].attrs if "train" in h5 else {}
    try:
        tokens, step = float(_text(a["tokens"])), float(_text(a["step"]))
    except (KeyError, ValueError):
        return None
    return tokens / step if step > 0 else None


def read_metrics(path):
    """{'step', 'loss', 'lr' (or None), 'valid': {domain: (steps, losses)}, 'label', 'phase',
    'tokens_per_step' (or None)}."""
    try:
        h5 = h5py.File(path, "r")
    except OSError as e:
        raise CurveError(f"{path}: cannot open as HDF5: {e}")
    with h5:
        if "metrics" not in h5:
            raise CurveError(f"{path}:/metrics: group missing (not a btm model file?)")
        step = _series(h5, path, "step")
        out = {"step": step, "loss": _series(h5, path, "loss", len(step)), "lr": None,
               "valid": {}}
        if "metrics/lr" in h5:
            out["lr"] = _series(h5, path, "lr", len(step))
        if "metrics/valid" in h5:
            vgroup = h5["metrics/valid"]
            if not isinstance(vgroup, h5py.Group):
                raise CurveError(f"{path}:/metrics/valid: expected a group of datasets")
            vstep = None
            for domain in vgroup:
                values = _series(h5, path, f"valid/{domain}")
                if len(values) == len(step):
                    steps = step
                else:
                    if vstep is None:
                        if "metrics/valid_step" not in h5:
                            raise CurveError(
                                f"{path}:/metrics/valid/{domain}: {len(values)} values but "
                                f"/metrics/step has {len(step)}, and /metrics/valid_step "
                                "(the steps of the validation losses) is missing")
                        vstep = _series(h5, path, "valid_step")
                    if len(vstep) != len(values):
                        raise CurveError(f"{path}:/metrics/valid/{domain}: {len(values)} values "
                                         f"but /metrics/valid_step has {len(vstep)}")
                    steps = vstep
                out["valid"][domain] = (steps, values)
        phase, domain = _meta(h5, "phase"), _meta(h5, "domain")
        out["phase"] = phase
        out["tokens_per_step"] = _tokens_per_step(h5)
    stem = os.path.splitext(os.path.basename(path))[0]
    out["label"] = ":".join(x for x in (phase, domain) if x) or stem
    return out


def smooth(y, window):
    """Trailing moving average (same length; the first points average what exists)."""
    if window <= 1 or len(y) == 0:
        return y
    c = np.cumsum(np.insert(y, 0, 0.0))
    idx = np.arange(1, len(y) + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)


def plot(runs, out, title=None, window=0, log_y=False, x_tokens=False):
    """x_tokens: x axis in training tokens (needs every run's tokens_per_step), else steps."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    have_valid = any(r["valid"] for r in runs)
    have_lr = any(r["lr"] is not None for r in runs)
    panels = ["train"] + (["valid"] if have_valid else []) + (["lr"] if have_lr else [])
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 3.2 * len(panels)), sharex=True,
                             squeeze=False)
    ax = dict(zip(panels, axes[:, 0]))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, run in enumerate(runs):
        c = colors[i % len(colors)]
        if x_tokens:
            run = dict(run, step=run["step"] * run["tokens_per_step"],
                       valid={d: (s * run["tokens_per_step"], v) for d, (s, v) in run["valid"].items()})
        a = ax["train"]
        if window > 1:
            a.plot(run["step"], run["loss"], color=c, alpha=0.25, lw=0.8)
        a.plot(run["step"], smooth(run["loss"], window), color=c, lw=1.4, label=run["label"])
        if have_valid:
            styles = itertools.cycle(["-", "--", ":", "-."])
            markers = itertools.cycle(["o", "s", "^", "v", "D", "x", "+", "*"])
            for domain, (steps, values) in sorted(run["valid"].items()):
                marker = next(markers) if len(values) <= 60 else None  # dense: lines only
                ax["valid"].plot(steps, values, color=c, ls=next(styles), marker=marker,
                                 ms=3, lw=1.2, label=f"{run['label']} / {domain}")
        if have_lr and run["lr"] is not None:
            ax["lr"].plot(run["step"], run["lr"], color=c, lw=1.4, label=run["label"])
    ax["train"].set_ylabel("training loss (nats)" + (f", mean of {window}" if window > 1 else ""))
    if have_valid:
        ax["valid"].set_ylabel("validation loss (nats)")
    if have_lr:
        ax["lr"].set_ylabel("learning rate")
        ax["lr"].ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    for name, a in ax.items():
        a.grid(alpha=0.3)
        if log_y and name != "lr":
            a.set_yscale("log")
        a.legend(fontsize=7, ncol=2 if name == "valid" else 1)
    axes[-1, 0].set_xlabel("training tokens" if x_tokens else "step")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="btm model files (HDF5) with /metrics")
    ap.add_argument("--out", required=True, help="PNG to write")
    ap.add_argument("--labels", help="comma-separated legend labels, one per file")
    ap.add_argument("--smooth", type=int, default=0, help="moving-average window for the loss")
    ap.add_argument("--log-y", action="store_true", help="log scale for the losses")
    ap.add_argument("--title")
    args = ap.parse_args(argv)
    labels = args.labels.split(",") if args.labels else None
    if labels is not None and len(labels) != len(args.models):
        ap.error(f"--labels has {len(labels)} names for {len(args.models)} files")
    try:
        runs = [read_metrics(p) for p in args.models]
    except CurveError as e:
        print(f"loss_curves: error: {e}", file=sys.stderr)
        return 2
    for i, run in enumerate(runs):
        if labels:
            run["label"] = labels[i]
        if len(run["step"]) == 0:
            print(f"loss_curves: warning: {args.models[i]}: /metrics/step is empty",
                  file=sys.stderr)
    plot(runs, args.out, args.title, args.smooth, args.log_y)
    print(f"wrote {args.out} ({len(runs)} file(s), "
          f"{sum(len(r['valid']) for r in runs)} validation series)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
