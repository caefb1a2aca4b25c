#!/usr/bin/env python3
"""PyTorch side of bench/train_cpu.sh: train btm's Llama-style model on CPU, time it.

    [mpirun -np P] python3 bench/train_torch.py [--data data.h5 | --synthetic] [flags]

Precision: fp32, or --precision bf16: the forward pass and loss under
torch.autocast("cpu", dtype=torch.bfloat16) (PyTorch's own mixed precision: bf16 GEMMs,
fp32 parameters, optimizer and reductions). --compile: torch.compile the model (PyTorch 2.x;
inductor's C++ kernels). Public API only; PyTorch 2.x or Debian's 1.13 (eager, fp32 or
autocast; attention through the manual path there, as 1.13 has no public
F.scaled_dot_product_attention).

Data: --synthetic uniform random tokens, or --data data.h5: blocks of context+1 tokens from
the training domains' /domains/<domain>/train/tokens, cut as btm cuts them (block i starts at
token i*context, so no target is in two blocks), shuffled per epoch without repeats across
ranks, taken from the domains in turn (balanced).

Same model and training step as btm (ARCHITECTURE.md "Model"): token embedding, per layer RMSNorm,
attention with HF rotate_half RoPE and optional grouped KV heads, SwiGLU MLP, final RMSNorm,
LM head (optionally tied), no biases; AdamW (decoupled weight decay on 2-D matrices only),
linear warmup + cosine schedule, global-norm gradient clipping, gradient accumulation.
q/k/v and gate/up are stored as one concatenated matrix each (one GEMM instead of three or
two): the same function and the same parameters, only laid out for speed.

Multi-rank: under mpirun the rank and size come from OMPI_COMM_WORLD_RANK/SIZE; gloo
process group (env:// when MASTER_ADDR and MASTER_PORT are set, else a file:// rendezvous in
Open MPI's per-job session directory), DistributedDataParallel with the gradient allreduce
overlapped with backward. Each rank uses --threads intra-op threads (default 1, like btm's one
BLAS thread per rank).

After --warmup-steps untimed steps, --steps steps are timed; rank 0 prints one line:
    impl=pytorch ranks=P step_time_s=... tok/s=... loss=...
tok/s counts every rank's tokens; loss is the last timed step's loss averaged over ranks.
With --log-every K, every K-th timed step also prints
    step=S loss=... lr=... grad_norm=... step_time_s=... tok/s=...
with rank 0's time for that step alone (as btm's per-step tok/s), for medians.
"""
import argparse
import math
import os
import sys
import time
import zlib


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="btm data.h5: blocks from /domains/<domain>/train/tokens")
    src.add_argument("--synthetic", action="store_true", help="uniform random tokens")
    ap.add_argument("--domains", help="comma-separated training domains of --data "
                    "(default: the file's /domains attribute 'train')")
    m = ap.add_argument_group("model")
    m.add_argument("--hidden", type=int, default=256)
    m.add_argument("--layers", type=int, default=4)
    m.add_argument("--heads", type=int, default=4)
    m.add_argument("--kv-heads", type=int, default=0, help="0: same as --heads")
    m.add_argument("--intermediate", type=int, default=0,
                   help="SwiGLU width; 0: 8/3 * hidden rounded up to a multiple of 64 (btm's rule)")
    m.add_argument("--context", type=int, default=256)
    m.add_argument("--vocab", type=int, default=None,
                   help="vocabulary size (default: the tokenizer's in --data, else 8192)")
    m.add_argument("--rope-theta", type=float, default=10000.0)
    m.add_argument("--rms-norm-eps", type=float, default=1e-5)
    m.add_argument("--tie", action="store_true", help="tie the LM head to the embedding")
    m.add_argument("--init-std", type=float, default=0.02)
    t = ap.add_argument_group("training")
    t.add_argument("--micro-batch", type=int, default=4, help="sequences per rank per micro-step")
    t.add_argument("--grad-accum", type=int, default=1, help="micro-steps per optimizer step")
    t.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    t.add_argument("--min-lr-ratio", type=float, default=0.1, help="final lr / peak lr")
    t.add_argument("--lr-warmup", type=int, default=10, help="linear warmup steps of the schedule")
    t.add_argument("--total-steps", type=int, default=0,
                   help="length of the cosine schedule; 0: --warmup-steps + --steps")
    t.add_argument("--weight-decay", type=float, default=0.1)
    t.add_argument("--beta1", type=float, default=0.9)
    t.add_argument("--beta2", type=float, default=0.95)
    t.add_argument("--adam-eps", type=float, default=1e-8)
    t.add_argument("--clip", type=float, default=1.0, help="global gradient norm; 0: off")
    t.add_argument("--seed", type=int, default=1234)
    b = ap.add_argument_group("benchmark")
    b.add_argument("--warmup-steps", type=int, default=2, help="untimed steps first")
    b.add_argument("--steps", type=int, default=10, help="timed optimizer steps")
    b.add_argument("--threads", type=int, default=1, help="torch intra-op threads per rank")
    b.add_argument("--jit", choices=("off", "script"), default="off",
                   help="script: TorchScript the elementwise blocks (RMSNorm, RoPE, SwiGLU); "
                        "without LLVM in this torch build nothing is fused")
    b.add_argument("--attention", choices=("sdpa", "manual"), default="sdpa",
                   help="sdpa: F.scaled_dot_product_attention(is_causal=True) (PyTorch >= 2.0; "
                        "manual on older ones); manual: baddbmm + masked softmax")
    b.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: forward and loss under torch.autocast('cpu', dtype=torch.bfloat16)")
    b.add_argument("--compile", action="store_true",
                   help="torch.compile the model (PyTorch >= 2.0); its compilation happens in "
                        "the warm-up steps")
    b.add_argument("--log-every", type=int, default=0,
                   help="rank 0 prints step=... lines of the timed steps, with each step's "
                        "time and tok/s")
    args = ap.parse_args(argv)
    for name in ("hidden", "layers", "heads", "context", "micro_batch", "grad_accum", "steps",
                 "threads"):
        if getattr(args, name) <= 0:
            ap.error(f"--{name.replace('_', '-')} must be positive")
    if args.warmup_steps < 0 or args.kv_heads < 0 or args.intermediate < 0:
        ap.error("--warmup-steps, --kv-heads and --intermediate must not be negative")
    if args.hidden % args.heads or (args.hidden // args.heads) % 2:
        ap.error("--hidden must be divisible by --heads with an even head dimension")
    if args.heads % (args.kv_heads or args.heads):
        ap.error("--kv-heads must divide --heads")
    return args


# Thread counts must be fixed before torch (and OpenBLAS) start their pools.
ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402


def fail(msg):
    print(f"train_torch: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(2)


# ----------------------------------------------------------------------------- model


def rms_norm(x, w, eps: float):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, cos, sin):
    """x [B, T, heads, hd]; cos, sin [T, 1, hd]. HF: x*cos + rotate_half(x)*sin."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def swiglu(gate_up):
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


class Block(nn.Module):
    def __init__(self, cfg, kernels):
        super().__init__()
        d, h, kv, f = cfg["hidden"], cfg["heads"], cfg["kv_heads"], cfg["intermediate"]
        self.h, self.kv, self.hd, self.eps = h, kv, d // h, cfg["eps"]
        self.attention = cfg["attention"]
        if self.attention == "sdpa" and not hasattr(F, "scaled_dot_product_attention"):
            self.attention = "manual"  # PyTorch < 2.0: no public fused attention
        self.k = kernels
        self.input_norm = nn.Parameter(torch.ones(d))
        self.qkv = nn.Parameter(torch.empty((h + 2 * kv) * self.hd, d))  # [q; k; v] rows
        self.o = nn.Parameter(torch.empty(d, d))
        self.post_norm = nn.Parameter(torch.ones(d))
        self.gate_up = nn.Parameter(torch.empty(2 * f, d))  # [gate; up] rows
        self.down = nn.Parameter(torch.empty(d, f))

    def forward(self, x, cos, sin, mask):
        b, t, d = x.shape
        h, kv, hd = self.h, self.kv, self.hd
        qkv = F.linear(self.k["rms_norm"](x, self.input_norm, self.eps), self.qkv)
        qk = self.k["rope"](qkv[..., :(h + kv) * hd].view(b, t, h + kv, hd), cos, sin)
        q = qk[:, :, :h].transpose(1, 2)  # [B, h, T, hd]
        k = qk[:, :, h:].transpose(1, 2)  # [B, kv, T, hd]
        v = qkv[..., (h + kv) * hd:].view(b, t, kv, hd).transpose(1, 2)
        if kv != h:
            k = k.repeat_interleave(h // kv, dim=1)
            v = v.repeat_interleave(h // kv, dim=1)
        if self.attention == "sdpa":
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            qf, kf = q.reshape(b * h, t, hd), k.reshape(b * h, t, hd)
            s = torch.baddbmm(mask, qf, kf.transpose(1, 2), alpha=1.0 / math.sqrt(hd))
            a = torch.bmm(torch.softmax(s, dim=-1), v.reshape(b * h, t, hd)).view(b, h, t, hd)
        x = x + F.linear(a.transpose(1, 2).reshape(b, t, d), self.o)
        y = self.k["rms_norm"](x, self.post_norm, self.eps)
        return x + F.linear(self.k["swiglu"](F.linear(y, self.gate_up)), self.down)


class Llama(nn.Module):
    def __init__(self, cfg, kernels):
        super().__init__()
        d, v = cfg["hidden"], cfg["vocab"]
        self.cfg, self.k = cfg, kernels
        self.embed = nn.Parameter(torch.empty(v, d))
        self.blocks = nn.ModuleList(Block(cfg, kernels) for _ in range(cfg["layers"]))
        self.norm = nn.Parameter(torch.ones(d))
        self.lm_head = None if cfg["tie"] else nn.Parameter(torch.empty(v, d))
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=cfg["init_std"])
        hd, t = d // cfg["heads"], cfg["context"]
        inv_freq = 1.0 / cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        emb = torch.outer(torch.arange(t, dtype=torch.float64), inv_freq).repeat(1, 2)
        self.register_buffer("cos", emb.cos().float().view(t, 1, hd), persistent=False)
        self.register_buffer("sin", emb.sin().float().view(t, 1, hd), persistent=False)
        self.register_buffer("mask", torch.full((t, t), float("-inf")).triu(1), persistent=False)

    def forward(self, inputs, targets):
        """inputs, targets int64 [B, T] -> mean cross-entropy."""
        t = inputs.shape[1]
        x = F.embedding(inputs, self.embed)
        cos, sin, mask = self.cos[:t], self.sin[:t], self.mask[:t, :t]
        for block in self.blocks:
            x = block(x, cos, sin, mask)
        x = self.k["rms_norm"](x, self.norm, self.cfg["eps"])
        logits = F.linear(x, self.embed if self.lm_head is None else self.lm_head)
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))


def hf_params(model, grads=False):
    """{HF name: tensor} in [out, in] layout: the parameters, or with grads=True their
    gradients (views into the concatenated matrices; for checking against the reference)."""
    def get(p):
        return p.grad if grads else p.detach()
    cfg = model.cfg
    hd = cfg["hidden"] // cfg["heads"]
    qd, kvd, f = cfg["heads"] * hd, cfg["kv_heads"] * hd, cfg["intermediate"]
    out = {"model.embed_tokens.weight": get(model.embed)}
    for i, blk in enumerate(model.blocks):
        p = f"model.layers.{i}."
        out[p + "input_layernorm.weight"] = get(blk.input_norm)
        out[p + "self_attn.q_proj.weight"] = get(blk.qkv)[:qd]
        out[p + "self_attn.k_proj.weight"] = get(blk.qkv)[qd:qd + kvd]
        out[p + "self_attn.v_proj.weight"] = get(blk.qkv)[qd + kvd:]
        out[p + "self_attn.o_proj.weight"] = get(blk.o)
        out[p + "post_attention_layernorm.weight"] = get(blk.post_norm)
        out[p + "mlp.gate_proj.weight"] = get(blk.gate_up)[:f]
        out[p + "mlp.up_proj.weight"] = get(blk.gate_up)[f:]
        out[p + "mlp.down_proj.weight"] = get(blk.down)
    out["model.norm.weight"] = get(model.norm)
    if model.lm_head is not None:
        out["lm_head.weight"] = get(model.lm_head)
    return out


def make_kernels(jit):
    if jit == "off":
        return {"rms_norm": rms_norm, "rope": rope, "swiglu": swiglu}
    # Debian's torch 1.13 has no LLVM, so the CPU tensor-expression fuser cannot run:
    # this is TorchScript's interpreter with its graph optimisations only.
    return {"rms_norm": torch.jit.script(rms_norm), "rope": torch.jit.script(rope),
            "swiglu": torch.jit.script(swiglu)}


# ----------------------------------------------------------------------------- data


class SyntheticBlocks:
    def __init__(self, vocab, context, rank, seed):
        self.vocab, self.context = vocab, context
        self.gen = torch.Generator().manual_seed(seed * 1000003 + rank)

    def next(self, n):
        return torch.randint(0, self.vocab, (n, self.context + 1), generator=self.gen)


class DomainBlocks:
    """Random blocks of the training domains' train splits, as btm's loader cuts them.

    Block i of a domain is tokens [i*C, i*C + C + 1) (btm's Dataset: inputs its first C
    tokens, targets its last C, so no target is in two blocks); a stream of n tokens has
    (n - 1) // C blocks. Each domain's blocks are shuffled once per epoch with a seed shared
    by all ranks and dealt round-robin to the ranks, so no block is seen twice per epoch.
    Sequences cycle through the domains in turn (balanced, whatever their sizes). Domains:
    --domains, else the /domains attribute `train` (held-out domains excluded), else every
    domain with a train split.
    """

    def __init__(self, path, context, rank, size, seed, vocab, domains=None):
        import h5py
        try:
            self.h5 = h5py.File(path, "r")
        except OSError as e:
            fail(f"{path}: cannot open as HDF5 data file: {e}")
        self.path, self.context, self.rank, self.size = path, context, rank, size
        self.seed, self.vocab = seed, vocab
        if "domains" not in self.h5 or not isinstance(self.h5["domains"], h5py.Group):
            fail(f"{path}:/domains: group missing (not a btm data.h5?)")
        group = self.h5["domains"]
        if domains is None and "train" in group.attrs:
            listed = group.attrs["train"]
            listed = listed.decode() if isinstance(listed, bytes) else str(listed)
            domains = [d.strip() for d in listed.split(",") if d.strip()]
        explicit = domains is not None
        self.domains = []
        for name in (domains if explicit else sorted(group)):
            where = f"/domains/{name}/train/tokens"
            if where not in self.h5:
                if explicit:
                    fail(f"{path}:{where}: dataset missing (domain '{name}' has no train split)")
                continue
            ds = self.h5[where]
            if ds.ndim != 1 or ds.dtype not in (np.uint16, np.uint32):
                fail(f"{path}:{where}: expected a 1-D uint16/uint32 token stream, "
                     f"found {ds.dtype} {list(ds.shape)}")
            n_blocks = max(0, ds.shape[0] - 1) // context
            if n_blocks < size:
                fail(f"{path}:{where}: {ds.shape[0]} tokens make {n_blocks} blocks of "
                     f"{context}+1, fewer than the {size} ranks")
            self.domains.append({"name": name, "ds": ds, "blocks": n_blocks, "epoch": -1,
                                 "order": None, "pos": 0,
                                 "key": zlib.crc32(name.encode())})
        if not self.domains:
            fail(f"{path}: no /domains/<domain>/train/tokens dataset")
        self.turn = rank  # ranks start on different domains so each step mixes them

    def _deal(self, dom):
        dom["epoch"] += 1
        g = np.random.default_rng([self.seed, dom["epoch"], dom["key"]])
        dom["order"] = g.permutation(dom["blocks"])[self.rank::self.size]
        dom["pos"] = 0

    def next(self, n):
        out = np.empty((n, self.context + 1), dtype=np.int64)
        for i in range(n):
            dom = self.domains[self.turn % len(self.domains)]
            self.turn += 1
            if dom["order"] is None or dom["pos"] >= len(dom["order"]):
                self._deal(dom)
            start = int(dom["order"][dom["pos"]]) * self.context
            dom["pos"] += 1
            out[i] = dom["ds"][start:start + self.context + 1]
            if out[i].max() >= self.vocab:
                fail(f"{self.path}:/domains/{dom['name']}/train/tokens[{start}:"
                     f"{start + self.context + 1}]: token {out[i].max()} >= vocabulary "
                     f"{self.vocab}")
        return torch.from_numpy(out)


def tokenizer_vocab(path):
    import h5py
    try:
        with h5py.File(path, "r") as h5:
            if "tokenizer/model" in h5 and "vocab_size" in h5["tokenizer/model"].attrs:
                return int(np.asarray(h5["tokenizer/model"].attrs["vocab_size"]).reshape(()))
    except OSError as e:
        fail(f"{path}: cannot open as HDF5 data file: {e}")
    return None


# ----------------------------------------------------------------------------- training


def lr_at(step, args, total):
    """Linear warmup to --lr over --lr-warmup steps, then cosine to --lr * --min-lr-ratio."""
    if step < args.lr_warmup:
        return args.lr * (step + 1) / args.lr_warmup
    progress = min(1.0, (step - args.lr_warmup) / max(1, total - args.lr_warmup))
    low = args.lr * args.min_lr_ratio
    return low + 0.5 * (args.lr - low) * (1.0 + math.cos(math.pi * progress))


def init_distributed():
    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("RANK", 0)))
    size = int(os.environ.get("OMPI_COMM_WORLD_SIZE", os.environ.get("WORLD_SIZE", 1)))
    if size == 1:
        return rank, size
    if "MASTER_ADDR" in os.environ and "MASTER_PORT" in os.environ:
        init = "env://"
    else:
        session = os.environ.get("OMPI_MCA_orte_jobfam_session_dir")
        jobid = os.environ.get("OMPI_MCA_ess_base_jobid")
        nodes = int(os.environ.get("OMPI_MCA_orte_num_nodes", "1"))
        if not session or not jobid or nodes != 1:
            fail("multi-rank run without MASTER_ADDR/MASTER_PORT: set both (e.g. "
                 "MASTER_ADDR=127.0.0.1 MASTER_PORT=29500), or launch on one node with Open MPI's "
                 "mpirun, whose per-job session directory holds the rendezvous file")
        init = f"file://{session}/torch_gloo_{jobid}"
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=size)
    return rank, size


def main():
    args = ARGS
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    rank, size = init_distributed()
    torch.manual_seed(args.seed)  # same initial parameters on every rank

    vocab = args.vocab or (args.data and tokenizer_vocab(args.data)) or 8192
    kv = args.kv_heads or args.heads
    inter = args.intermediate or ((8 * args.hidden + 2) // 3 + 63) // 64 * 64
    cfg = {"hidden": args.hidden, "layers": args.layers, "heads": args.heads, "kv_heads": kv,
           "intermediate": inter, "vocab": vocab, "context": args.context, "tie": args.tie,
           "eps": args.rms_norm_eps, "rope_theta": args.rope_theta, "init_std": args.init_std,
           "attention": args.attention}
    if args.attention == "sdpa" and not hasattr(F, "scaled_dot_product_attention"):
        cfg["attention"] = "manual"  # PyTorch < 2.0 (Block falls back the same way)
    if args.compile and not hasattr(torch, "compile"):
        fail(f"--compile needs PyTorch >= 2.0; this is {torch.__version__}")
    model = Llama(cfg, make_kernels(args.jit))
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(args.beta1, args.beta2), eps=args.adam_eps,
                            foreach=True)
    run = torch.compile(model) if args.compile else model
    ddp = (run if size == 1 else
           nn.parallel.DistributedDataParallel(run, gradient_as_bucket_view=True))
    autocast = ((lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if args.precision == "bf16"
                else _nullcontext)
    if args.data:
        names = [d.strip() for d in args.domains.split(",") if d.strip()] if args.domains else None
        data = DomainBlocks(args.data, args.context, rank, size, args.seed, vocab, names)
    else:
        data = SyntheticBlocks(vocab, args.context, rank, args.seed)

    total = args.total_steps or (args.warmup_steps + args.steps)
    if rank == 0:
        print(f"# pytorch {torch.__version__} ranks={size} threads/rank={args.threads} "
              f"params={n_params} d={args.hidden} L={args.layers} H={args.heads} KV={kv} "
              f"F={inter} V={vocab} T={args.context} micro_batch={args.micro_batch} "
              f"grad_accum={args.grad_accum} jit={args.jit} attention={cfg['attention']} "
              f"precision={args.precision} compile={'on' if args.compile else 'off'} "
              f"data={args.data or 'synthetic'}"
              + (f" domains={','.join(d['name'] for d in data.domains)}" if args.data else ""),
              flush=True)

    def train_step(step):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args, total)
        loss_sum = 0.0
        for micro in range(args.grad_accum):
            batch = data.next(args.micro_batch)
            sync = micro == args.grad_accum - 1 or size == 1
            ctx = ddp.no_sync() if not sync else _nullcontext()
            with ctx:
                with autocast():
                    loss = ddp(batch[:, :-1], batch[:, 1:])
                (loss / args.grad_accum).backward()
            loss_sum += loss.item()
        norm = (nn.utils.clip_grad_norm_(model.parameters(), args.clip) if args.clip > 0
                else torch.tensor(0.0))
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss_sum / args.grad_accum, float(norm)

    for step in range(args.warmup_steps):
        loss, norm = train_step(step)
        if not math.isfinite(loss):
            fail(f"loss is {loss} at step {step}")
    if size > 1:
        dist.barrier()
    t0, c0 = time.perf_counter(), time.process_time()
    step_tokens = size * args.micro_batch * args.grad_accum * args.context
    for i in range(args.steps):
        step = args.warmup_steps + i
        ts = time.perf_counter()
        loss, norm = train_step(step)
        dt = time.perf_counter() - ts  # rank 0's step, as btm times its steps
        if args.log_every and rank == 0 and (i + 1) % args.log_every == 0:
            print(f"step={step + 1} loss={loss:.4f} lr={lr_at(step, args, total):.3e} "
                  f"grad_norm={norm:.3f} step_time_s={dt:.4f} tok/s={step_tokens / dt:.1f}",
                  flush=True)
    if size > 1:
        dist.barrier()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    if not math.isfinite(loss):
        fail(f"loss is {loss} at step {args.warmup_steps + args.steps}")
    last = torch.tensor([loss], dtype=torch.float64)
    if size > 1:
        dist.all_reduce(last)
        last /= size
    tokens = size * args.micro_batch * args.grad_accum * args.context * args.steps
    if rank == 0:
        # CPU seconds next to wall seconds: on a shared machine wall time includes waiting.
        print(f"# rank0 cpu_time_per_step_s={cpu / args.steps:.4f} "
              f"wall_per_step_s={elapsed / args.steps:.4f}", flush=True)
        print(f"impl=pytorch ranks={size} step_time_s={elapsed / args.steps:.4f} "
              f"tok/s={tokens / elapsed:.1f} loss={float(last):.4f}", flush=True)
    if size > 1:
        # Tear down in order: DDP's reducer holds the process group, and a gloo group
        # destroyed from a destructor at interpreter exit can wait forever for its peer.
        del ddp
        dist.barrier()
        dist.destroy_process_group()


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":
    main()
