#!/usr/bin/python3
"""Routing heatmap of a mixture-of-experts model in eval.h5: the share of each layer's tokens
that each expert receives, one panel per evaluation domain (the BTX paper's plot that shows
experts specialise on their domains).

    routing_heatmap.py EVAL.h5 --out routing.png [--method NAME] [--domains a,b] [--title TEXT]

Reads `/routing/<method>/experts` (expert names, strings) and
`/routing/<method>/<domain>/tokens` (float64 [layers, experts]: tokens routed to each
expert; a token counts once per expert it is sent to, so with top-k each layer's row sums
to k x tokens) and its attribute `routed_tokens`. Each cell is the fraction of the domain's
tokens that the expert processes in that layer (with top-2 a row sums to 2); without
`routed_tokens` each row is normalised to sum to 1. `--method` picks the MoE method
(default: the only one, or the first in file order with a warning listing the others).
"""
import argparse
import os
import sys

import h5py
import numpy as np


class RoutingError(Exception):
    pass


def _names(ds, where):
    if not isinstance(ds, h5py.Dataset) or ds.ndim != 1 or ds.dtype.kind not in "SOU":
        raise RoutingError(f"{where}: expected a 1-D dataset of strings")
    return [v.decode() if isinstance(v, bytes) else str(v) for v in ds[()]]


def read_routing(path, method=None, domains=None):
    """(method, experts, {domain: shares [L, E]}, other methods) from eval.h5."""
    if not os.path.exists(path):
        raise RoutingError(f"{path}: no such file")
    with h5py.File(path, "r") as h5:
        if "routing" not in h5 or not isinstance(h5["routing"], h5py.Group):
            raise RoutingError(f"{path}:/routing: group missing (eval.h5 of a run without MoE models?)")
        methods = list(h5["routing"].keys())
        if not methods:
            raise RoutingError(f"{path}:/routing: no methods")
        if method is None:
            method = methods[0]
        elif method not in methods:
            raise RoutingError(f"{path}:/routing/{method}: no such method (methods: {', '.join(methods)})")
        g = h5["routing"][method]
        where = f"{path}:/routing/{method}"
        if "experts" not in g:
            raise RoutingError(f"{where}/experts: dataset missing")
        experts = _names(g["experts"], f"{where}/experts")
        found = [k for k in g.keys() if isinstance(g[k], h5py.Group)]
        if domains is None:
            domains = found
        shares = {}
        for d in domains:
            if d not in found:
                raise RoutingError(f"{where}/{d}: no such domain (domains: {', '.join(found)})")
            if "tokens" not in g[d]:
                raise RoutingError(f"{where}/{d}/tokens: dataset missing")
            t = g[d]["tokens"]
            if t.ndim != 2 or t.shape[1] != len(experts) or t.dtype.kind not in "iuf":
                raise RoutingError(f"{where}/{d}/tokens: expected a numeric [layers, {len(experts)}] "
                                   f"dataset, found shape {t.shape}")
            tok = t[()].astype(np.float64)
            routed = g[d].attrs.get("routed_tokens")
            total = (np.full((tok.shape[0], 1), float(routed)) if routed is not None
                     else tok.sum(axis=1, keepdims=True))
            shares[d] = np.divide(tok, total, out=np.zeros_like(tok), where=total > 0)
        if not shares:
            raise RoutingError(f"{where}: no domains")
    return method, experts, shares, [m for m in methods if m != method]


def plot(method, experts, shares, out, title=None):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(shares)
    layers = next(iter(shares.values())).shape[0]
    fig, axes = plt.subplots(1, n, figsize=(1.2 + 0.45 * len(experts) * n + 0.6 * n, 1.6 + 0.35 * layers),
                             squeeze=False, sharey=True)
    image = None
    for ax, (domain, s) in zip(axes[0], shares.items()):
        image = ax.imshow(s, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_title(domain, fontsize=9)
        ax.set_xticks(range(len(experts)))
        ax.set_xticklabels(experts, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(layers))
    axes[0, 0].set_ylabel("layer")
    fig.colorbar(image, ax=axes[0].tolist(), fraction=0.03, label="fraction of the tokens")
    fig.suptitle(title or f"routing of {method}: tokens per expert, per layer and domain", fontsize=10)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("eval", help="eval.h5 written by btm's eval phase")
    ap.add_argument("--out", required=True, help="PNG to write")
    ap.add_argument("--method", help="MoE method (default: the first in /routing)")
    ap.add_argument("--domains", help="comma-separated domains, in panel order (default: all)")
    ap.add_argument("--title")
    args = ap.parse_args(argv)
    domains = [d.strip() for d in args.domains.split(",") if d.strip()] if args.domains else None
    try:
        method, experts, shares, others = read_routing(args.eval, args.method, domains)
    except RoutingError as e:
        print(f"routing_heatmap: error: {e}", file=sys.stderr)
        return 2
    if args.method is None and others:
        print(f"routing_heatmap: warning: plotting {method}; the file also has {', '.join(others)} "
              "(--method picks one)", file=sys.stderr)
    plot(method, experts, shares, args.out, args.title)
    print(f"wrote {args.out} ({method}: {len(shares)} domain(s), {len(experts)} experts)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
