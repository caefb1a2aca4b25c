#!/usr/bin/python3
"""Calibration of the error bounds of test_cuda_model.cpp and test_cuda_training.cpp.

A float64 PyTorch model of btm's Llama forward/backward, run once exactly and once with a
bf16 rounding (round to nearest even) at every place the cuda backend stores a compute
tensor: each activation and each activation gradient, the attention probabilities (as cuDNN
rounds P before P V), the logits and their gradient. Weights are bf16-representable in both
runs (as in the tests), master weights and optimizer state fp32.

    /usr/bin/python3 tests/backend/gpu/bf16_emulation.py      # ~1 minute on one core

prints, per head layout and weight scale, the worst per-token NLL difference, mean-loss
difference and per-tensor gradient relative error (test_cuda_model.cpp uses scale 3), then the
relative loss difference along a 20-step training run of the trainer test's tiny deck
(test_cuda_training.cpp).
"""
import math
import random

import torch

torch.set_default_dtype(torch.float64)

class R(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x): return x.float().bfloat16().double()
    @staticmethod
    def backward(ctx, g): return g.float().bfloat16().double()

def rnd(x, on): return R.apply(x) if on else x

def rope(x, pos, theta):  # x [B,T,h,hd]
    hd = x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, hd, 2) / hd)
    ang = torch.outer(torch.arange(x.shape[1]) + pos, inv).repeat(1, 2)
    cos, sin = ang.cos()[None, :, None, :], ang.sin()[None, :, None, :]
    half = hd // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), -1) * sin

def norm(x, w, eps=1e-5): return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

def model(P, cfg, tok, bf, round_p=False):
    B, T1 = tok.shape
    T = T1 - 1
    inp, tgt = tok[:, :-1], tok[:, 1:]
    d, H, KV, L = cfg['d'], cfg['H'], cfg['KV'], cfg['L']; hd = d // H
    x = P['embed'][inp]
    for l in range(L):
        p = P['layers'][l]
        h1 = rnd(norm(x, p['n1']), bf)
        q = rnd(h1 @ p['q'].T, bf).view(B, T, H, hd); k = rnd(h1 @ p['k'].T, bf).view(B, T, KV, hd)
        v = rnd(h1 @ p['v'].T, bf).view(B, T, KV, hd)
        q = rnd(rope(q, 0, 1e4), bf); k = rnd(rope(k, 0, 1e4), bf)
        qh = q.transpose(1, 2); kh = k.transpose(1, 2).repeat_interleave(H // KV, 1); vh = v.transpose(1, 2).repeat_interleave(H // KV, 1)
        s = qh @ kh.transpose(-1, -2) / math.sqrt(hd)
        s = s.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float('-inf'))
        pr = torch.softmax(s, -1)
        if round_p: pr = rnd(pr, bf)
        o = rnd((pr @ vh).transpose(1, 2).reshape(B, T, d), bf)
        mid = rnd(x + o @ p['o'].T, bf)
        h2 = rnd(norm(mid, p['n2']), bf)
        g = rnd(h2 @ p['g'].T, bf); u = rnd(h2 @ p['u'].T, bf)
        a = rnd(torch.nn.functional.silu(g) * u, bf)
        x = rnd(mid + a @ p['dn'].T, bf)
    hf = rnd(norm(x, P['norm']), bf)
    W = P['embed'] if cfg['tied'] else P['lm']
    logits = rnd(hf @ W.T, bf)
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), reduction='none')
    return nll

def params(cfg, seed, scale):
    g = torch.Generator().manual_seed(seed)
    d, f, V, L = cfg['d'], cfg['f'], cfg['V'], cfg['L']
    H, KV = cfg['H'], cfg['KV']; hd = d // H
    def mat(o, i, s=0.02): return (torch.randn(o, i, generator=g) * s * scale).float().bfloat16().double()
    P = {'embed': mat(V, d), 'norm': torch.ones(d) + 0.1 * torch.randn(d, generator=g), 'layers': []}
    rs = 0.02 / math.sqrt(2 * L)
    for l in range(L):
        P['layers'].append({'n1': torch.ones(d) + 0.1 * torch.randn(d, generator=g), 'q': mat(H * hd, d), 'k': mat(KV * hd, d), 'v': mat(KV * hd, d),
                            'o': mat(d, H * hd, rs), 'n2': torch.ones(d) + 0.1 * torch.randn(d, generator=g), 'g': mat(f, d), 'u': mat(f, d), 'dn': mat(d, f, rs)})
    if not cfg['tied']: P['lm'] = mat(V, d)
    return P

def flat(P):
    out = {'embed': P['embed'], 'norm': P['norm']}
    for l, p in enumerate(P['layers']):
        for k, v in p.items(): out[f'{l}.{k}'] = v
    if 'lm' in P: out['lm'] = P['lm']
    return out

def run(cfg, seed, scale, B, T, round_p):
    P = params(cfg, seed, scale)
    tok = torch.randint(0, cfg['V'], (B, T + 1), generator=torch.Generator().manual_seed(seed + 1))
    res = {}
    for bf in (False, True):
        for t in flat(P).values(): t.requires_grad_(True); t.grad = None
        nll = model(P, cfg, tok, bf, round_p)
        (nll.sum() / (B * T)).backward()
        res[bf] = (nll.detach(), {k: v.grad.clone() for k, v in flat(P).items()})
    n0, n1 = res[False][0], res[True][0]
    dn = (n1 - n0).abs()
    worst = max((((res[True][1][k] - g).norm() / g.norm()).item(), k) for k, g in res[False][1].items())
    return dn.max().item(), (n1.mean() - n0.mean()).abs().item(), n0.mean().item(), n0.std().item(), worst


def model_table():
    for tied, KV in ((False, 2), (True, 4), (False, 1)):
        cfg = dict(d=64, f=192, H=4, KV=KV, L=2, V=256, tied=tied)
        for scale in (1, 3, 5):
            for rp in (False, True):
                r = [run(cfg, s, scale, 2, 128, rp) for s in range(3)]
                print(f"tied={tied} KV={KV} scale={scale} roundP={rp}: max|dnll|={max(x[0] for x in r):.4f} |dmean|={max(x[1] for x in r):.5f} "
                      f"mean={r[0][2]:.3f} std={r[0][3]:.3f} worst_grad={max(x[4] for x in r)}")

# The tiny deck of tests/train/test_trainer.cpp: intermediate_size 64, 4 micro batches of 2.
d, H, KV, L, V, T = 32, 4, 2, 2, 40, 16
f = 64
cfg = dict(d=d, f=f, H=H, KV=KV, L=L, V=V, tied=False)

def stream(dom, n, rng):
    period = 3 + dom
    return [3 + rng.randrange(V - 3) if rng.randrange(8) == 0 else 3 + (i * (dom + 1)) % period + 5 * dom for i in range(n)]

def init(seed):
    g = torch.Generator().manual_seed(seed)
    hd = d // H
    def mat(o, i, s=0.02): return torch.randn(o, i, generator=g) * s
    rs = 0.02 / math.sqrt(2 * L)
    P = {'embed': mat(V, d), 'norm': torch.ones(d), 'layers': [], 'lm': mat(V, d)}
    for l in range(L):
        P['layers'].append({'n1': torch.ones(d), 'q': mat(H * hd, d), 'k': mat(KV * hd, d), 'v': mat(KV * hd, d),
                            'o': mat(d, H * hd, rs), 'n2': torch.ones(d), 'g': mat(f, d), 'u': mat(f, d), 'dn': mat(d, f, rs)})
    return P

def train(bf, seed, lr=1e-2, steps=20):
    rng = random.Random(seed)
    streams = [stream(dm, 20000, rng) for dm in range(2)]
    P = init(seed)
    fl = flat(P)
    master = {k: v.float().double() for k, v in fl.items()}
    m = {k: torch.zeros_like(v) for k, v in fl.items()}
    vv = {k: torch.zeros_like(v) for k, v in fl.items()}
    drng = random.Random(seed + 7)
    losses = []
    warm = round(0.1 * steps)
    for step in range(1, steps + 1):
        # the compute copy: matrices rounded to bf16 (refresh_compute_params), norms fp32
        for k, t in fl.items():
            src = master[k]
            t.data.copy_(src.float().bfloat16().double() if (bf and t.dim() == 2) else src)
            t.grad = None
            t.requires_grad_(True)
        toks = []
        for b in range(8):
            s = streams[b % 2]
            st = drng.randrange(0, (len(s) - 1) // T) * T
            toks.append(s[st:st + T + 1])
        tok = torch.tensor(toks)
        loss_sum = 0
        for mb in range(4):
            nll = model(P, cfg, tok[2 * mb:2 * mb + 2], bf)
            (nll.sum() / (8 * T)).backward()
            loss_sum += nll.sum().item()
        losses.append(loss_sum / (8 * T))
        g = {k: t.grad.float().double() for k, t in fl.items()}
        gn = math.sqrt(sum((x ** 2).sum().item() for x in g.values()))
        if gn > 1.0:
            for x in g.values():
                x.mul_(1.0 / gn)
        if step <= warm:
            cur = lr * step / warm
        else:
            pr = (step - warm) / max(1, steps - warm)
            cur = lr * (0.1 + 0.45 * (1 + math.cos(math.pi * pr)))
        for k in master:
            wd = 0.1 if master[k].dim() == 2 else 0.0
            m[k] = 0.9 * m[k] + 0.1 * g[k]
            vv[k] = 0.95 * vv[k] + 0.05 * g[k] ** 2
            mh = m[k] / (1 - 0.9 ** step)
            vh = vv[k] / (1 - 0.95 ** step)
            master[k] = (master[k] - cur * (mh / (vh.sqrt() + 1e-8) + wd * master[k])).float().double()
    return losses



def train_table():
    for lr in (5e-3, 1e-2):  # test_cuda_training.cpp's lr, and the trainer test's
        worst = []
        for seed in range(10):
            exact, rounded = train(False, seed, lr=lr), train(True, seed, lr=lr)
            rel = [abs(x - y) / x for x, y in zip(exact, rounded)]
            worst.append(max(rel))
            print(f"lr={lr} seed={seed} first={exact[0]:.4f} last={exact[-1]:.4f} (bf16 {rounded[-1]:.4f}) "
                  f"last/first={exact[-1] / exact[0]:.3f} rel@1={rel[0]:.1e} max_rel={max(rel):.4f}")
        print(f"lr={lr}: worst relative loss difference over the steps and seeds {max(worst):.4f}")


if __name__ == "__main__":
    model_table()
    train_table()
