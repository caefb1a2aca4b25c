#!/usr/bin/python3
"""Write a random tiny btm model file and batch file for llama_reference.py.

    make_fixture.py --model MODEL.h5 --batch BATCH.h5 [--hidden 16 --layers 2 --heads 4
                    --kv-heads 2 --intermediate 24 --vocab 37 --batch-size 2 --seq 7
                    --tie --ignore 2 --seed 0]

The model file has /config attributes (HF config.json keys, typed as btm writes them: int32,
float64, and uint8 for the boolean, which HDF5's native hbool maps to) and /params/<HF name>
fp32 in [out, in] layout. Norm weights are drawn around 1 so that a wrong norm shows up.
The batch file has /tokens int32 [B, T+1]; --ignore N sets the last N targets of row 0 to -1
(trailing padding), so the ignore path is exercised.
"""
import argparse
import sys

import h5py
import numpy as np

sys.path.insert(0, __import__("os").path.dirname(__file__))
from llama_reference import param_shapes, validate_config  # noqa: E402


def make_config(hidden=16, layers=2, heads=4, kv_heads=2, intermediate=24, vocab=37, context=16,
                rope_theta=10000.0, eps=1e-5, tie=False):
    return validate_config({
        "hidden_size": hidden, "intermediate_size": intermediate, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv_heads, "vocab_size": vocab,
        "max_position_embeddings": context, "rope_theta": rope_theta, "rms_norm_eps": eps,
        "tie_word_embeddings": tie})


def random_params(cfg, rng, std=0.3):
    """Larger than the 0.02 training init so that every block changes the logits visibly."""
    params = {}
    for name, shape in param_shapes(cfg).items():
        if len(shape) == 1:
            params[name] = (1.0 + 0.2 * rng.standard_normal(shape)).astype(np.float32)
        else:
            params[name] = (std * rng.standard_normal(shape)).astype(np.float32)
    return params


def write_model(path, cfg, params):
    with h5py.File(path, "w") as h5:
        c = h5.create_group("config")
        for key, value in cfg.items():
            if isinstance(value, bool):
                c.attrs.create(key, np.uint8(value))
            elif isinstance(value, int):
                c.attrs.create(key, np.int32(value))
            else:
                c.attrs.create(key, np.float64(value))
        p = h5.create_group("params")
        for name, arr in params.items():
            p.create_dataset(name, data=np.asarray(arr, dtype=np.float32))


def random_tokens(cfg, rng, batch, seq, ignore=0):
    tokens = rng.integers(0, cfg["vocab_size"], size=(batch, seq + 1)).astype(np.int32)
    if ignore:
        tokens[0, seq + 1 - ignore:] = -1
    return tokens


def write_batch(path, tokens):
    with h5py.File(path, "w") as h5:
        h5.create_dataset("tokens", data=np.asarray(tokens, dtype=np.int32))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", required=True)
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--intermediate", type=int, default=24, help="0: btm's 8/3 rule")
    ap.add_argument("--vocab", type=int, default=37)
    ap.add_argument("--context", type=int, default=16, help="max_position_embeddings")
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--eps", type=float, default=1e-5)
    ap.add_argument("--tie", action="store_true", help="tie_word_embeddings")
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--seq", type=int, default=7, help="T (the batch holds T+1 tokens per row)")
    ap.add_argument("--ignore", type=int, default=2, help="trailing ignored targets in row 0")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.ignore >= args.seq:
        ap.error("--ignore must be smaller than --seq")
    rng = np.random.default_rng(args.seed)
    cfg = make_config(args.hidden, args.layers, args.heads, args.kv_heads, args.intermediate,
                      args.vocab, args.context, args.rope_theta, args.eps, args.tie)
    write_model(args.model, cfg, random_params(cfg, rng))
    write_batch(args.batch, random_tokens(cfg, rng, args.batch_size, args.seq, args.ignore))
    return 0


if __name__ == "__main__":
    sys.exit(main())
