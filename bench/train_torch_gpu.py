#!/usr/bin/env python3
"""PyTorch side of bench/train_gpu.sh: btm's Llama-style model trained the fast PyTorch way.

    python3 bench/train_torch_gpu.py train  [--data data.h5 | --synthetic] [model/training flags]
    python3 bench/train_torch_gpu.py peak   [--size 8192]      # bf16 GEMM rate of this GPU
    python3 bench/train_torch_gpu.py write-data OUT.h5 [--vocab 32000] [--tokens-per-domain N]
    python3 bench/train_torch_gpu.py report RESULTS.jsonl --peak-tflops X [--out table.md]

train: the same model and training step as btm (ARCHITECTURE.md "Model"): token embedding, per
layer RMSNorm, attention with Hugging Face rotate_half RoPE and optional grouped KV heads,
SwiGLU MLP, final RMSNorm, LM head (optionally tied), no biases; fp32 master weights with
bf16 autocast, torch.compile, F.scaled_dot_product_attention(is_causal=True) (flash/cuDNN
kernels), torch.optim.AdamW(fused=True) with decoupled weight decay on matrices only, btm's
warmup + cosine schedule, global-norm clipping, gradient accumulation. q/k/v and gate/up are
stored as one concatenated matrix each (one GEMM instead of three or two): the same function
and parameters, laid out for speed. After --warmup-steps untimed steps, --steps steps are
timed (CUDA synchronised); the last line is
    impl=pytorch tok/s=... step_time_s=... loss=... params=...
With --device cpu (and --no-compile) it runs anywhere, e.g. to check the script itself.

Data: --synthetic (uniform random tokens) or --data: a btm data.h5; blocks of context+1
tokens cut as btm cuts them (block i starts at token i*context), each domain's blocks shuffled
per epoch, domains taken in turn (btm's balanced mixing). The token streams are read into
memory once, so data loading costs PyTorch almost nothing.

peak: mean rate of an NxNxN bf16 torch.matmul on random data (after warm-up): the peak that
MFU is quoted against. write-data: a btm data.h5 (ARCHITECTURE "Files") of Zipf-distributed
synthetic tokens, for machines without a corpus. report: the markdown table of the benchmark.
"""
import argparse
import contextlib
import json
import math
import os
import sys
import time
import zlib

import numpy as np


def fail(msg):
    print(f"train_torch_gpu: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(2)


# ----------------------------------------------------------------------------- model sizes


def intermediate_of(hidden, intermediate=0):
    """btm's rule (ModelConfig::resolved_intermediate_size): 8/3 * hidden, up to a multiple of 64."""
    if intermediate > 0:
        return intermediate
    return ((8 * hidden + 2) // 3 + 63) // 64 * 64


def param_counts(hidden, layers, heads, kv_heads, vocab, tie, intermediate=0):
    """(total, non-embedding incl. the LM head) parameters, as btm counts them."""
    hd = hidden // heads
    kv = kv_heads or heads
    f = intermediate_of(hidden, intermediate)
    per_layer = 2 * hidden + hidden * heads * hd * 2 + 2 * hidden * kv * hd + 3 * hidden * f
    embed = vocab * hidden
    total = embed + layers * per_layer + hidden + (0 if tie else embed)
    non_embedding = total - (0 if tie else embed)  # a tied table counts once, as the LM head
    return total, non_embedding


def flops_per_token(hidden, layers, heads, kv_heads, vocab, tie, context, intermediate=0):
    """PaLM (Chowdhery et al. 2022, appendix B): 6 N + 12 L T d training FLOPs per token, N the
    non-embedding parameters including the LM head; btm's training_flops_per_token."""
    _, n = param_counts(hidden, layers, heads, kv_heads, vocab, tie, intermediate)
    return 6.0 * n + 12.0 * layers * context * hidden


# ----------------------------------------------------------------------------- arguments


def add_model_args(ap):
    m = ap.add_argument_group("model")
    m.add_argument("--hidden", type=int, default=768)
    m.add_argument("--layers", type=int, default=12)
    m.add_argument("--heads", type=int, default=12)
    m.add_argument("--kv-heads", type=int, default=0, help="0: same as --heads")
    m.add_argument("--intermediate", type=int, default=0, help="0: btm's rule (8/3 d, multiple of 64)")
    m.add_argument("--context", type=int, default=1024)
    m.add_argument("--vocab", type=int, default=None,
                   help="vocabulary (default: the tokenizer's in --data, else 32000)")
    m.add_argument("--rope-theta", type=float, default=10000.0)
    m.add_argument("--rms-norm-eps", type=float, default=1e-5)
    m.add_argument("--tie", action="store_true", help="tie the LM head to the embedding")
    m.add_argument("--init-std", type=float, default=0.02)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    tr = sub.add_parser("train", help="train and time the PyTorch model",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    src = tr.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="btm data.h5: blocks from /domains/<domain>/train/tokens")
    src.add_argument("--synthetic", action="store_true", help="uniform random tokens")
    tr.add_argument("--domains", help="comma-separated training domains of --data (default: all)")
    add_model_args(tr)
    t = tr.add_argument_group("training (btm's [train] keys)")
    t.add_argument("--micro-batch", type=int, default=16, help="sequences per forward/backward")
    t.add_argument("--global-batch", type=int, default=32, help="sequences per optimizer step")
    t.add_argument("--lr", type=float, default=6e-4, help="peak learning rate")
    t.add_argument("--min-lr-ratio", type=float, default=0.1)
    t.add_argument("--warmup-fraction", type=float, default=0.1, help="of --total-steps")
    t.add_argument("--total-steps", type=int, default=0, help="schedule length; 0: --warmup-steps + --steps")
    t.add_argument("--weight-decay", type=float, default=0.1)
    t.add_argument("--beta1", type=float, default=0.9)
    t.add_argument("--beta2", type=float, default=0.95)
    t.add_argument("--adam-eps", type=float, default=1e-8)
    t.add_argument("--clip", type=float, default=1.0, help="global gradient norm; 0: off")
    t.add_argument("--seed", type=int, default=1234)
    b = tr.add_argument_group("benchmark")
    b.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    b.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16", help="autocast compute dtype")
    b.add_argument("--compile", dest="compile", action="store_true", default=True, help="torch.compile the model")
    b.add_argument("--no-compile", dest="compile", action="store_false")
    b.add_argument("--warmup-steps", type=int, default=5, help="untimed steps first (compilation)")
    b.add_argument("--steps", type=int, default=20, help="timed optimizer steps")
    b.add_argument("--log-every", type=int, default=0, help="print step=... lines")

    pk = sub.add_parser("peak", help="bf16 GEMM rate of this GPU (the MFU peak)")
    pk.add_argument("--size", type=int, default=8192, help="N of the NxNxN product")
    pk.add_argument("--reps", type=int, default=50)
    pk.add_argument("--device", default="cuda")

    wd = sub.add_parser("write-data", help="synthetic btm data.h5 (Zipf-distributed tokens)",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    wd.add_argument("path")
    wd.add_argument("--vocab", type=int, default=32000)
    wd.add_argument("--domains", type=int, default=4)
    wd.add_argument("--tokens-per-domain", type=int, default=4_000_000, help="train split; valid/test get 5%%")
    wd.add_argument("--doc-tokens", type=int, default=2048, help="mean document length")
    wd.add_argument("--seed", type=int, default=7)

    rp = sub.add_parser("report", help="markdown table from the results of train_gpu.sh")
    rp.add_argument("results", help="JSON lines: model, impl, tok_s, hidden, layers, heads, kv_heads, "
                    "vocab, tie, context, tokens_per_step [, logged_mfu]")
    rp.add_argument("--peak-tflops", type=float, required=True)
    rp.add_argument("--gpu", default="", help="GPU name for the header")
    rp.add_argument("--out", help="also write the table here")

    args = ap.parse_args(argv)
    if args.command == "train":
        for name in ("hidden", "layers", "heads", "context", "micro_batch", "global_batch", "steps"):
            if getattr(args, name) <= 0:
                tr.error(f"--{name.replace('_', '-')} must be positive")
        if args.warmup_steps < 0 or args.kv_heads < 0 or args.intermediate < 0 or args.total_steps < 0:
            tr.error("--warmup-steps, --kv-heads, --intermediate and --total-steps must not be negative")
        if args.global_batch % args.micro_batch:
            tr.error("--global-batch must be a multiple of --micro-batch (btm's accumulation)")
        if args.hidden % args.heads or (args.hidden // args.heads) % 2:
            tr.error("--hidden must be divisible by --heads with an even head dimension")
        if args.heads % (args.kv_heads or args.heads):
            tr.error("--kv-heads must divide --heads")
        if not 0 <= args.warmup_fraction <= 1:
            tr.error("--warmup-fraction must be in [0, 1]")
    if args.command == "write-data":
        if args.vocab < 4 or args.vocab > 1 << 31 or args.domains < 1 or args.tokens_per_domain < 2 or args.doc_tokens < 1:
            wd.error("need --vocab >= 4, --domains >= 1, --tokens-per-domain >= 2, --doc-tokens >= 1")
    if args.command == "peak" and (args.size <= 0 or args.reps <= 0):
        pk.error("--size and --reps must be positive")
    return args


# ----------------------------------------------------------------------------- data.h5 writer


def write_data(args):
    """ARCHITECTURE "Files": /tokenizer/model (bytes; attrs vocab_size, bos_id, eos_id) and per domain
    and split /domains/<d>/<split>/{tokens, doc_offsets, doc_ids}, documents ending in EOS."""
    import h5py
    rng = np.random.default_rng(args.seed)
    vocab, eos = args.vocab, 2
    # Zipf-like unigram frequencies (rank r has weight 1/(r+2.7)), a different permutation of
    # the vocabulary per domain: repeated tokens as in text, which the embedding gradient sees.
    weights = 1.0 / (np.arange(3, vocab, dtype=np.float64) + 2.7)
    weights /= weights.sum()
    dtype = np.uint16 if vocab <= 1 << 16 else np.uint32
    os.makedirs(os.path.dirname(os.path.abspath(args.path)), exist_ok=True)
    tmp = args.path + ".tmp"
    with h5py.File(tmp, "w") as f:
        model = f.create_dataset("tokenizer/model", data=np.frombuffer(b"synthetic tokenizer (train_torch_gpu.py)",
                                                                       dtype=np.uint8))
        model.attrs["vocab_size"] = np.int64(vocab)
        model.attrs["bos_id"] = np.int64(1)
        model.attrs["eos_id"] = np.int64(eos)
        model.attrs["source"] = "synthetic (bench/train_torch_gpu.py write-data)"
        f.create_group("domains")
        f["domains"].attrs["train"] = ",".join(f"synthetic{d}" for d in range(args.domains))
        f["domains"].attrs["heldout"] = ""
        splits = {"train": args.tokens_per_domain, "valid": max(2, args.tokens_per_domain // 20),
                  "test": max(2, args.tokens_per_domain // 20)}
        strings = h5py.string_dtype("utf-8")
        for d in range(args.domains):
            ids = 3 + rng.permutation(vocab - 3)
            for split, n in splits.items():
                tokens = ids[rng.choice(vocab - 3, size=n, p=weights)].astype(dtype)
                # documents of geometric length, each ending in EOS
                ends = np.cumsum(rng.geometric(1.0 / args.doc_tokens, size=n // max(1, args.doc_tokens) * 2 + 2))
                ends = ends[ends < n]
                tokens[ends - 1] = eos
                tokens[-1] = eos
                offsets = np.concatenate(([0], ends, [n])).astype(np.uint64)
                g = f.create_group(f"domains/synthetic{d}/{split}")
                f[f"domains/synthetic{d}"].attrs["role"] = "train"
                g.attrs["documents"] = np.uint64(len(offsets) - 1)
                g.create_dataset("tokens", data=tokens)
                g.create_dataset("doc_offsets", data=offsets)
                g.create_dataset("doc_ids", data=[f"synthetic{d}/{split}/{i}" for i in range(len(offsets) - 1)],
                                 dtype=strings)
    os.replace(tmp, args.path)
    print(f"wrote {args.path}: {args.domains} domains x {args.tokens_per_domain} train tokens, vocab {vocab}",
          flush=True)


# ----------------------------------------------------------------------------- report


def report(args):
    rows = []
    with open(args.results) as fh:
        for i, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    fail(f"{args.results}:{i}: not JSON: {e}")
    if not rows:
        fail(f"{args.results}: no results")
    peak = args.peak_tflops * 1e12
    out = []
    out.append(f"## btm vs PyTorch, training throughput{' on ' + args.gpu if args.gpu else ''}")
    out.append("")
    out.append(f"MFU = tokens/s x FLOPs/token / peak. FLOPs/token: PaLM appendix B, 6N + 12LTd "
               f"(N = non-embedding parameters incl. the LM head, L layers, T context, d width; "
               f"backward = 2x forward, causal half not discounted). Peak = {args.peak_tflops:.0f} TFLOP/s, "
               f"the bf16 GEMM rate measured in this run (torch.matmul 8192^3, random data).")
    out.append("")
    out.append("| model | params | N (non-emb.) | tokens/step | impl | tokens/s | MFU | btm/PyTorch |")
    out.append("|---|---:|---:|---:|---|---:|---:|---:|")
    models = []
    for r in rows:
        if r["model"] not in models:
            models.append(r["model"])
    for m in models:
        mine = [r for r in rows if r["model"] == m]
        torch_rate = next((r["tok_s"] for r in mine if r["impl"] == "pytorch" and r.get("tok_s")), None)
        for r in mine:
            total, n = param_counts(r["hidden"], r["layers"], r["heads"], r["kv_heads"], r["vocab"], r["tie"])
            fpt = flops_per_token(r["hidden"], r["layers"], r["heads"], r["kv_heads"], r["vocab"], r["tie"],
                                  r["context"])
            shape = f"{m} (d={r['hidden']}, L={r['layers']}, H={r['heads']}, T={r['context']}, V={r['vocab']})"
            if not r.get("tok_s"):
                out.append(f"| {shape} | {total / 1e6:.1f}M | {n / 1e6:.1f}M | {r['tokens_per_step']} | "
                           f"{r['impl']} | failed: {r.get('error', '?')} | | |")
                continue
            mfu = r["tok_s"] * fpt / peak
            ratio = (f"{r['tok_s'] / torch_rate:.2f}" if r["impl"] == "btm" and torch_rate else "")
            out.append(f"| {shape} | {total / 1e6:.1f}M | {n / 1e6:.1f}M | {r['tokens_per_step']} | {r['impl']} | "
                       f"{r['tok_s']:,.0f} | {100 * mfu:.1f}% | {ratio} |")
    notes = [r for r in rows if r.get("note")]
    if notes:
        out.append("")
        for r in notes:
            out.append(f"- {r['model']} {r['impl']}: {r['note']}")
    text = "\n".join(out) + "\n"
    sys.stdout.write(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)


# ----------------------------------------------------------------------------- peak


def peak(args):
    import torch
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        fail("no CUDA device")
    n = args.size
    g = torch.Generator(device=dev).manual_seed(0)
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16, generator=g)
    b = torch.randn(n, n, device=dev, dtype=torch.bfloat16, generator=g)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for _ in range(3):
        c = a @ b
    sync()
    t0 = time.perf_counter()
    for _ in range(args.reps):
        c = a @ b
    sync()
    dt = (time.perf_counter() - t0) / args.reps
    del c
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"peak_bf16_tflops={2.0 * n ** 3 / dt / 1e12:.1f} n={n} reps={args.reps} device={name.replace(' ', '_')}",
          flush=True)


# ----------------------------------------------------------------------------- training


def build_model(cfg, torch):
    import torch.nn.functional as F
    from torch import nn

    have_sdpa = hasattr(F, "scaled_dot_product_attention")

    def rms_norm(x, w, eps: float):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * w.to(x.dtype)

    def rope(x, cos, sin):
        """x [B, T, heads, hd]; cos, sin [T, 1, hd]. HF: x*cos + rotate_half(x)*sin."""
        half = x.shape[-1] // 2
        return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            d, h, kv, f = cfg["hidden"], cfg["heads"], cfg["kv_heads"], cfg["intermediate"]
            self.h, self.kv, self.hd, self.eps = h, kv, d // h, cfg["eps"]
            self.input_norm = nn.Parameter(torch.ones(d))
            self.qkv = nn.Parameter(torch.empty((h + 2 * kv) * self.hd, d))  # [q; k; v] rows
            self.o = nn.Parameter(torch.empty(d, h * self.hd))
            self.post_norm = nn.Parameter(torch.ones(d))
            self.gate_up = nn.Parameter(torch.empty(2 * f, d))  # [gate; up] rows
            self.down = nn.Parameter(torch.empty(d, f))

        def forward(self, x, cos, sin):
            b, t, d = x.shape
            h, kv, hd = self.h, self.kv, self.hd
            qkv = F.linear(rms_norm(x, self.input_norm, self.eps), self.qkv)
            qk = rope(qkv[..., :(h + kv) * hd].view(b, t, h + kv, hd), cos.to(qkv.dtype), sin.to(qkv.dtype))
            q = qk[:, :, :h].transpose(1, 2)  # [B, h, T, hd]
            k = qk[:, :, h:].transpose(1, 2)  # [B, kv, T, hd]
            v = qkv[..., (h + kv) * hd:].view(b, t, kv, hd).transpose(1, 2)
            if kv != h:
                k = k.repeat_interleave(h // kv, dim=1)
                v = v.repeat_interleave(h // kv, dim=1)
            if have_sdpa:
                a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:  # torch < 2.0 (CPU checks only)
                s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
                s = s.masked_fill(torch.ones(t, t, dtype=torch.bool, device=s.device).triu(1), float("-inf"))
                a = torch.softmax(s.float(), dim=-1).to(v.dtype) @ v
            x = x + F.linear(a.transpose(1, 2).reshape(b, t, h * hd), self.o)
            gate, up = F.linear(rms_norm(x, self.post_norm, self.eps), self.gate_up).chunk(2, dim=-1)
            return x + F.linear(F.silu(gate) * up, self.down)

    class Llama(nn.Module):
        def __init__(self):
            super().__init__()
            d, v = cfg["hidden"], cfg["vocab"]
            self.embed = nn.Parameter(torch.empty(v, d))
            self.blocks = nn.ModuleList(Block() for _ in range(cfg["layers"]))
            self.norm = nn.Parameter(torch.ones(d))
            self.lm_head = None if cfg["tie"] else nn.Parameter(torch.empty(v, d))
            residual_std = cfg["init_std"] / math.sqrt(2 * cfg["layers"])  # btm's init
            for name, p in self.named_parameters():
                if p.dim() == 2:
                    nn.init.normal_(p, std=residual_std if name.endswith((".o", ".down")) else cfg["init_std"])
            hd, t = d // cfg["heads"], cfg["context"]
            inv_freq = 1.0 / cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
            emb = torch.outer(torch.arange(t, dtype=torch.float64), inv_freq).repeat(1, 2)
            self.register_buffer("cos", emb.cos().float().view(t, 1, hd), persistent=False)
            self.register_buffer("sin", emb.sin().float().view(t, 1, hd), persistent=False)

        def forward(self, inputs, targets):
            """inputs, targets int64 [B, T] -> summed cross-entropy (fp32)."""
            t = inputs.shape[1]
            # The residual stream in the compute dtype, as btm keeps it (bf16 between kernels).
            x = F.embedding(inputs, self.embed).to(cfg["compute_dtype"])
            cos, sin = self.cos[:t], self.sin[:t]
            for block in self.blocks:
                x = block(x, cos, sin)
            x = rms_norm(x, self.norm, cfg["eps"])
            logits = F.linear(x, self.embed if self.lm_head is None else self.lm_head)
            return F.cross_entropy(logits.view(-1, logits.shape[-1]).float(), targets.reshape(-1), reduction="sum")

    return Llama()


class SyntheticBlocks:
    def __init__(self, vocab, context, seed, torch):
        self.vocab, self.context, self.torch = vocab, context, torch
        self.gen = torch.Generator().manual_seed(seed)

    def next(self, n):
        return self.torch.randint(0, self.vocab, (n, self.context + 1), generator=self.gen)


class DomainBlocks:
    """Blocks of the training domains' train splits, cut and mixed as btm's loader does:
    block i of a domain is tokens [i*C, i*C + C + 1); each domain's blocks are shuffled per
    epoch; sequences take the domains in turn (balanced). Streams are held in memory."""

    def __init__(self, path, context, seed, vocab, domains, torch):
        import h5py
        self.torch, self.context, self.seed = torch, context, seed
        try:
            h5 = h5py.File(path, "r")
        except OSError as e:
            fail(f"{path}: cannot open as HDF5 data file: {e}")
        if "domains" not in h5:
            fail(f"{path}:/domains: group missing (not a btm data.h5?)")
        names = domains or sorted(h5["domains"])
        self.domains = []
        for name in names:
            where = f"/domains/{name}/train/tokens"
            if where not in h5:
                fail(f"{path}:{where}: dataset missing")
            ds = h5[where]
            if ds.ndim != 1 or ds.dtype not in (np.uint16, np.uint32):
                fail(f"{path}:{where}: expected a 1-D uint16/uint32 token stream, found {ds.dtype} {list(ds.shape)}")
            stream = ds[()].astype(np.int64)
            if stream.size and stream.max() >= vocab:
                fail(f"{path}:{where}: token {stream.max()} >= vocabulary {vocab}")
            blocks = max(0, stream.size - 1) // context
            if blocks == 0:
                fail(f"{path}:{where}: {stream.size} tokens make no block of {context}+1")
            self.domains.append({"name": name, "tokens": stream, "blocks": blocks, "epoch": -1, "order": None,
                                 "pos": 0})
        h5.close()
        self.turn = 0

    def next(self, n):
        out = np.empty((n, self.context + 1), dtype=np.int64)
        for i in range(n):
            dom = self.domains[self.turn % len(self.domains)]
            self.turn += 1
            if dom["order"] is None or dom["pos"] >= len(dom["order"]):
                dom["epoch"] += 1
                key = zlib.crc32(dom["name"].encode())
                dom["order"] = np.random.default_rng([self.seed, dom["epoch"], key]).permutation(dom["blocks"])
                dom["pos"] = 0
            start = int(dom["order"][dom["pos"]]) * self.context
            dom["pos"] += 1
            out[i] = dom["tokens"][start:start + self.context + 1]
        return self.torch.from_numpy(out)


def lr_at(step, args, total):
    """btm's LrSchedule::at for 1-based `step`: linear warmup, then cosine to lr * min_lr_ratio."""
    warm = int(math.floor(args.warmup_fraction * total + 0.5))  # std::lround
    if warm > 0 and step <= warm:
        return args.lr * step / warm
    low = args.lr * args.min_lr_ratio
    progress = min(1.0, max(0.0, (step - warm) / max(1, total - warm)))
    return low + (args.lr - low) * 0.5 * (1.0 + math.cos(math.pi * progress))


def data_vocab(path):
    import h5py
    try:
        with h5py.File(path, "r") as h5:
            if "tokenizer/model" in h5 and "vocab_size" in h5["tokenizer/model"].attrs:
                return int(np.asarray(h5["tokenizer/model"].attrs["vocab_size"]).reshape(()))
    except OSError as e:
        fail(f"{path}: cannot open as HDF5 data file: {e}")
    return None


def train(args):
    import torch
    dev = torch.device(args.device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            fail("--device cuda: no CUDA device (use --device cpu --no-compile to check the script)")
        torch.cuda.set_device(dev)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(args.seed)
    vocab = args.vocab or (args.data and data_vocab(args.data)) or 32000
    kv = args.kv_heads or args.heads
    compute = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    cfg = {"hidden": args.hidden, "layers": args.layers, "heads": args.heads, "kv_heads": kv,
           "intermediate": intermediate_of(args.hidden, args.intermediate), "vocab": vocab,
           "context": args.context, "tie": args.tie, "eps": args.rms_norm_eps, "rope_theta": args.rope_theta,
           "init_std": args.init_std, "compute_dtype": compute}
    model = build_model(cfg, torch).to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    total_btm, _ = param_counts(args.hidden, args.layers, args.heads, kv, vocab, args.tie, args.intermediate)
    if n_params != total_btm:
        fail(f"internal: PyTorch model has {n_params} parameters, btm's count is {total_btm}")
    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() != 2]
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    opt_kw = dict(lr=args.lr, betas=(args.beta1, args.beta2), eps=args.adam_eps)
    if dev.type == "cuda":
        opt = torch.optim.AdamW(groups, fused=True, **opt_kw)
    else:
        opt = torch.optim.AdamW(groups, foreach=True, **opt_kw)
    step_fn = model
    if args.compile:
        if not hasattr(torch, "compile"):
            fail(f"torch {torch.__version__} has no torch.compile; pass --no-compile")
        step_fn = torch.compile(model)
    if args.data:
        names = [d.strip() for d in args.domains.split(",") if d.strip()] if args.domains else None
        data = DomainBlocks(args.data, args.context, args.seed, vocab, names, torch)
    else:
        data = SyntheticBlocks(vocab, args.context, args.seed, torch)
    accum = args.global_batch // args.micro_batch
    total = args.total_steps or (args.warmup_steps + args.steps)
    tokens_per_step = args.global_batch * args.context
    if args.dtype == "bf16":
        autocast = lambda: torch.autocast(dev.type, dtype=compute)  # noqa: E731
    else:
        autocast = contextlib.nullcontext
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    print(f"# pytorch {torch.__version__} device={torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'cpu'} "
          f"params={n_params} d={args.hidden} L={args.layers} H={args.heads} KV={kv} F={cfg['intermediate']} "
          f"V={vocab} T={args.context} micro_batch={args.micro_batch} global_batch={args.global_batch} "
          f"accum={accum} compile={args.compile} dtype={args.dtype} "
          f"sdpa={hasattr(torch.nn.functional, 'scaled_dot_product_attention')} "
          f"data={args.data or 'synthetic'}", flush=True)

    def train_step(step):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args, total)
        loss_sum = torch.zeros((), device=dev)
        for _ in range(accum):
            batch = data.next(args.micro_batch)
            if dev.type == "cuda":
                batch = batch.pin_memory().to(dev, non_blocking=True)
            with autocast():
                loss = step_fn(batch[:, :-1], batch[:, 1:])
            (loss / tokens_per_step).backward()  # btm's grad_scale: 1 / tokens per step
            loss_sum += loss.detach()
        norm = (torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip) if args.clip > 0
                else torch.zeros((), device=dev))
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss_sum / tokens_per_step, norm

    t_compile = time.perf_counter()
    for step in range(1, args.warmup_steps + 1):
        loss, _ = train_step(step)
        if not math.isfinite(float(loss)):
            fail(f"loss is {float(loss)} at step {step}")
    sync()
    print(f"# warm-up ({args.warmup_steps} steps, compilation included): {time.perf_counter() - t_compile:.1f} s",
          flush=True)
    t0 = time.perf_counter()
    for i in range(args.steps):
        step = args.warmup_steps + i + 1
        loss, norm = train_step(step)
        if args.log_every and (i + 1) % args.log_every == 0:
            print(f"step={step} loss={float(loss):.4f} lr={lr_at(step, args, total):.3e} grad_norm={float(norm):.3f}",
                  flush=True)
    sync()
    elapsed = time.perf_counter() - t0
    loss = float(loss)
    if not math.isfinite(loss):
        fail(f"loss is {loss} at step {args.warmup_steps + args.steps}")
    mem = f" max_mem_gib={torch.cuda.max_memory_allocated(dev) / 2**30:.1f}" if dev.type == "cuda" else ""
    print(f"impl=pytorch tok/s={tokens_per_step * args.steps / elapsed:.1f} step_time_s={elapsed / args.steps:.4f} "
          f"loss={loss:.4f} params={n_params}{mem}", flush=True)


def main(argv=None):
    args = parse_args(argv)
    {"train": train, "peak": peak, "write-data": write_data, "report": report}[args.command](args)


if __name__ == "__main__":
    main()
