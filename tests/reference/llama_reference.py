#!/usr/bin/python3
"""Plain-PyTorch reference for btm's Llama-style decoder: loss, per-token NLL, gradients.

Follows Hugging Face ``LlamaForCausalLM`` semantics exactly (see README.md in this folder):
embedding -> N x [RMSNorm -> attention with RoPE (rotate_half) and grouped KV heads -> residual
-> RMSNorm -> SwiGLU MLP -> residual] -> RMSNorm -> lm_head (or the embedding when tied).

    llama_reference.py --model MODEL.h5 --batch BATCH.h5 --out OUT.h5 [--dtype float64|float32]

MODEL.h5: btm model file (/config attributes named as HF config.json keys, /params/<HF name>
fp32 in [out, in] layout). BATCH.h5: /tokens int32 [B, T+1]; inputs are [:, :-1], targets
[:, 1:], targets < 0 are ignored. OUT.h5: /loss float64 [1], /nll float64 [B, T] (0 where
ignored), /grads/<HF name> d loss / d param in the compute dtype, same shapes as the params.

Everything runs in float64 by default (parameters upcast), so the output is a reference and
not just another float32 implementation. The functions are importable (check_reference.py).
"""
import argparse
import math
import sys

import h5py
import numpy as np
import torch

CONFIG_KEYS_REQUIRED = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")


class ReferenceError(Exception):
    """Bad input: the message names the file, the place and what was expected."""


# ----------------------------------------------------------------------------- config


def _scalar(value):
    """An HDF5 attribute as a Python scalar (h5py gives numpy scalars or 1-element arrays)."""
    arr = np.asarray(value)
    if arr.size != 1:
        raise ValueError(f"expected a scalar, found shape {arr.shape}")
    out = arr.reshape(()).item()
    if isinstance(out, bytes):
        out = out.decode()
    return out


def resolved_intermediate_size(hidden_size):
    """btm's rule when intermediate_size is 0: 8/3 * hidden, rounded up to a multiple of 64."""
    raw = (8 * hidden_size + 2) // 3
    return (raw + 63) // 64 * 64


def read_config(h5, path):
    """The /config group of a btm model file as a dict with every field resolved and checked."""
    if "config" not in h5:
        raise ReferenceError(f"{path}:/config: group missing (not a btm model file?)")
    attrs = h5["config"].attrs

    def get(key, kind, default=None):
        if key not in attrs:
            if default is None:
                raise ReferenceError(f"{path}:/config: attribute '{key}' missing")
            return default
        try:
            raw = _scalar(attrs[key])
            if kind is bool:
                if isinstance(raw, str):
                    if raw.lower() not in ("true", "false", "1", "0"):
                        raise ValueError(f"'{raw}' is not a boolean")
                    return raw.lower() in ("true", "1")
                return bool(int(raw))
            if kind is int:
                if float(raw) != int(raw):
                    raise ValueError(f"{raw} is not an integer")
                return int(raw)
            return float(raw)
        except (ValueError, TypeError) as e:
            raise ReferenceError(f"{path}:/config: attribute '{key}': expected {kind.__name__}: {e}")

    for key in ("num_local_experts",):
        if key in attrs and get(key, int, 0) > 0:
            raise ReferenceError(f"{path}:/config: '{key}' is set: this reference covers the dense "
                                 "Llama model only, not the MoE variant")
    cfg = {
        "hidden_size": get("hidden_size", int),
        "intermediate_size": get("intermediate_size", int, 0),
        "num_hidden_layers": get("num_hidden_layers", int),
        "num_attention_heads": get("num_attention_heads", int),
        "num_key_value_heads": get("num_key_value_heads", int, 0),
        "vocab_size": get("vocab_size", int),
        "max_position_embeddings": get("max_position_embeddings", int, 0),
        "rope_theta": get("rope_theta", float, 10000.0),
        "rms_norm_eps": get("rms_norm_eps", float, 1e-5),
        "tie_word_embeddings": get("tie_word_embeddings", bool, False),
    }
    return validate_config(cfg, f"{path}:/config")


def validate_config(cfg, where="config"):
    cfg = dict(cfg)
    if cfg.get("intermediate_size", 0) == 0:
        cfg["intermediate_size"] = resolved_intermediate_size(cfg["hidden_size"])
    if cfg.get("num_key_value_heads", 0) == 0:
        cfg["num_key_value_heads"] = cfg["num_attention_heads"]
    cfg.setdefault("rope_theta", 10000.0)
    cfg.setdefault("rms_norm_eps", 1e-5)
    cfg.setdefault("tie_word_embeddings", False)
    cfg.setdefault("max_position_embeddings", 0)
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "vocab_size"):
        if cfg[key] <= 0:
            raise ReferenceError(f"{where}: '{key}' must be positive, found {cfg[key]}")
    d, h, kv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    if d % h != 0:
        raise ReferenceError(f"{where}: hidden_size {d} must be divisible by num_attention_heads {h}")
    if (d // h) % 2 != 0:
        raise ReferenceError(f"{where}: head dimension {d // h} must be even for rotary embeddings")
    if h % kv != 0:
        raise ReferenceError(f"{where}: num_key_value_heads {kv} must divide num_attention_heads {h}")
    if not cfg["rope_theta"] > 0:
        raise ReferenceError(f"{where}: rope_theta must be positive, found {cfg['rope_theta']}")
    if not cfg["rms_norm_eps"] > 0:
        raise ReferenceError(f"{where}: rms_norm_eps must be positive, found {cfg['rms_norm_eps']}")
    return cfg


def param_shapes(cfg):
    """Every parameter's HF name and [out, in] shape, in btm's order."""
    d, f, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = d // cfg["num_attention_heads"]
    kvd = cfg["num_key_value_heads"] * hd
    shapes = {"model.embed_tokens.weight": (v, d)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes[p + "input_layernorm.weight"] = (d,)
        shapes[p + "self_attn.q_proj.weight"] = (d, d)
        shapes[p + "self_attn.k_proj.weight"] = (kvd, d)
        shapes[p + "self_attn.v_proj.weight"] = (kvd, d)
        shapes[p + "self_attn.o_proj.weight"] = (d, d)
        shapes[p + "post_attention_layernorm.weight"] = (d,)
        shapes[p + "mlp.gate_proj.weight"] = (f, d)
        shapes[p + "mlp.up_proj.weight"] = (f, d)
        shapes[p + "mlp.down_proj.weight"] = (d, f)
    shapes["model.norm.weight"] = (d,)
    if not cfg["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (v, d)
    return shapes


# ----------------------------------------------------------------------------- files


def load_model(path):
    """(config, {name: float32 numpy array}) from a btm model file; every name/shape checked."""
    try:
        h5 = h5py.File(path, "r")
    except OSError as e:
        raise ReferenceError(f"{path}: cannot open as HDF5 model file: {e}")
    with h5:
        cfg = read_config(h5, path)
        if "params" not in h5:
            raise ReferenceError(f"{path}:/params: group missing (not a btm model file?)")
        group = h5["params"]
        params = {}
        for name, shape in param_shapes(cfg).items():
            where = f"{path}:/params/{name}"
            if name not in group:
                raise ReferenceError(f"{where}: parameter missing (expected shape {list(shape)} "
                                     f"for the config in {path}:/config)")
            ds = group[name]
            if not isinstance(ds, h5py.Dataset):
                raise ReferenceError(f"{where}: expected a dataset, found a group")
            if tuple(ds.shape) != shape:
                raise ReferenceError(f"{where}: expected shape {list(shape)}, found {list(ds.shape)}")
            if ds.dtype.kind != "f":
                raise ReferenceError(f"{where}: expected floating point, found {ds.dtype}")
            arr = ds[()]
            if not np.all(np.isfinite(arr)):
                raise ReferenceError(f"{where}: contains NaN or Inf")
            params[name] = arr
        if cfg["tie_word_embeddings"] and "lm_head.weight" in group:
            raise ReferenceError(f"{path}:/params/lm_head.weight: present although "
                                 "tie_word_embeddings is true")
    return cfg, params


def load_batch(path, cfg):
    """The /tokens array (int64 [B, T+1]) of a batch file, checked against the model."""
    try:
        h5 = h5py.File(path, "r")
    except OSError as e:
        raise ReferenceError(f"{path}: cannot open as HDF5 batch file: {e}")
    with h5:
        if "tokens" not in h5 or not isinstance(h5["tokens"], h5py.Dataset):
            raise ReferenceError(f"{path}:/tokens: dataset missing")
        ds = h5["tokens"]
        if ds.dtype.kind not in "iu":
            raise ReferenceError(f"{path}:/tokens: expected integer tokens (int32), found {ds.dtype}")
        if ds.ndim != 2 or ds.shape[0] < 1 or ds.shape[1] < 2:
            raise ReferenceError(f"{path}:/tokens: expected shape [B, T+1] with B >= 1 and T >= 1, "
                                 f"found {list(ds.shape)}")
        tokens = ds[()].astype(np.int64)
    check_tokens(tokens, cfg, f"{path}:/tokens")
    return tokens


def check_tokens(tokens, cfg, where="tokens"):
    v = cfg["vocab_size"]
    t = tokens.shape[1] - 1
    if cfg["max_position_embeddings"] > 0 and t > cfg["max_position_embeddings"]:
        raise ReferenceError(f"{where}: sequence length T = {t} exceeds the model's "
                             f"max_position_embeddings {cfg['max_position_embeddings']}")
    big = np.argwhere(tokens >= v)
    if big.size:
        b, i = big[0]
        raise ReferenceError(f"{where}[{b}, {i}]: token {tokens[b, i]} out of range for "
                             f"vocab_size {v}")
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    if not np.any(targets >= 0):
        raise ReferenceError(f"{where}: every target is ignored (< 0): the mean loss is undefined")
    # A negative input only affects later positions; allowed when all of them are ignored
    # (trailing padding), otherwise the result would depend on what the padding embeds as.
    for b, i in np.argwhere(inputs < 0):
        if np.any(targets[b, i:] >= 0):
            raise ReferenceError(f"{where}[{b}, {i}]: negative (ignored) token used as an input "
                                 f"before a scored target at [{b}, {i + 1 + int(np.argmax(targets[b, i:] >= 0))}]: "
                                 "only trailing padding may be negative")


def write_output(path, loss, nll, grads):
    with h5py.File(path, "w") as h5:
        h5.create_dataset("loss", data=np.array([loss], dtype=np.float64))
        h5.create_dataset("nll", data=np.asarray(nll, dtype=np.float64))
        g = h5.create_group("grads")
        for name, arr in grads.items():
            g.create_dataset(name, data=arr)


# ----------------------------------------------------------------------------- model


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotary_cos_sin(t, head_dim, theta, dtype):
    """cos, sin [T, head_dim] for positions 0..T-1 (HF: emb = cat(freqs, freqs))."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    freqs = torch.outer(torch.arange(t, dtype=torch.float64), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x, cos, sin):
    """x [B, heads, T, hd]; cos, sin [T, hd]."""
    return x * cos + rotate_half(x) * sin


def repeat_kv(x, n_rep):
    """[B, kv, T, hd] -> [B, kv * n_rep, T, hd]; head j uses KV head j // n_rep (HF repeat_kv)."""
    if n_rep == 1:
        return x
    b, kv, t, hd = x.shape
    return x[:, :, None, :, :].expand(b, kv, n_rep, t, hd).reshape(b, kv * n_rep, t, hd)


def attention(x, p, prefix, cfg, cos, sin):
    """x [B, T, d] (already normed) -> o_proj output [B, T, d]."""
    b, t, d = x.shape
    h, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = d // h
    q = (x @ p[prefix + "q_proj.weight"].T).view(b, t, h, hd).transpose(1, 2)
    k = (x @ p[prefix + "k_proj.weight"].T).view(b, t, kv, hd).transpose(1, 2)
    v = (x @ p[prefix + "v_proj.weight"].T).view(b, t, kv, hd).transpose(1, 2)
    q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
    k, v = repeat_kv(k, h // kv), repeat_kv(v, h // kv)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)  # [B, h, T, T]
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    scores = scores.masked_fill(~causal, float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v  # [B, h, T, hd]
    out = out.transpose(1, 2).reshape(b, t, d)
    return out @ p[prefix + "o_proj.weight"].T


def mlp(x, p, prefix):
    gate = x @ p[prefix + "gate_proj.weight"].T
    up = x @ p[prefix + "up_proj.weight"].T
    return (torch.nn.functional.silu(gate) * up) @ p[prefix + "down_proj.weight"].T


def logits_of(cfg, p, inputs):
    """inputs int64 [B, T] (all >= 0) -> logits [B, T, V]."""
    b, t = inputs.shape
    eps = cfg["rms_norm_eps"]
    x = p["model.embed_tokens.weight"][inputs]
    dtype = x.dtype
    cos, sin = rotary_cos_sin(t, cfg["hidden_size"] // cfg["num_attention_heads"],
                              cfg["rope_theta"], dtype)
    for i in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{i}."
        x = x + attention(rms_norm(x, p[pre + "input_layernorm.weight"], eps), p,
                          pre + "self_attn.", cfg, cos, sin)
        x = x + mlp(rms_norm(x, p[pre + "post_attention_layernorm.weight"], eps), p, pre + "mlp.")
    x = rms_norm(x, p["model.norm.weight"], eps)
    head = p["model.embed_tokens.weight" if cfg["tie_word_embeddings"] else "lm_head.weight"]
    return x @ head.T


def loss_and_nll(cfg, p, tokens):
    """tokens int64 tensor [B, T+1] -> (mean NLL over targets >= 0, per-token NLL [B, T])."""
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    logits = logits_of(cfg, p, inputs.clamp(min=0))
    logp = torch.log_softmax(logits, dim=-1)
    keep = targets >= 0
    nll = -logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    nll = torch.where(keep, nll, torch.zeros_like(nll))
    return nll.sum() / keep.sum(), nll


def reference(cfg, params, tokens, dtype=torch.float64):
    """Loss (float), per-token NLL [B, T] and gradients {name: array} for numpy inputs."""
    p = {n: torch.tensor(a, dtype=dtype, requires_grad=True) for n, a in params.items()}
    loss, nll = loss_and_nll(cfg, p, torch.as_tensor(tokens, dtype=torch.int64))
    loss.backward()
    grads = {n: t.grad.detach().numpy() for n, t in p.items()}
    return float(loss), nll.detach().to(torch.float64).numpy(), grads


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="btm model file (HDF5)")
    ap.add_argument("--batch", required=True, help="HDF5 file with /tokens int32 [B, T+1]")
    ap.add_argument("--out", required=True, help="output HDF5: /loss, /nll, /grads/<name>")
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                    help="compute precision (default float64: a true reference)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        cfg, params = load_model(args.model)
        tokens = load_batch(args.batch, cfg)
    except ReferenceError as e:
        print(f"llama_reference: error: {e}", file=sys.stderr)
        return 2
    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    loss, nll, grads = reference(cfg, params, tokens, dtype)
    if not math.isfinite(loss):
        print(f"llama_reference: error: loss is {loss}", file=sys.stderr)
        return 3
    write_output(args.out, loss, nll, grads)
    b, t1 = tokens.shape
    print(f"loss={loss:.12g} B={b} T={t1 - 1} targets={int((tokens[:, 1:] >= 0).sum())} "
          f"params={len(grads)} dtype={args.dtype}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
