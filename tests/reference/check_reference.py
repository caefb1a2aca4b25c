#!/usr/bin/python3
"""Checks that llama_reference.py computes what it claims. Run: /usr/bin/python3 check_reference.py

- gradients equal finite differences (torch.autograd.gradcheck on every parameter of a tiny
  float64 model, and central differences against the gradients the command line writes);
- the forward pass equals an independent loop-by-loop numpy implementation of the Llama
  equations (catches a wrong RoPE convention, head grouping, mask or norm, which gradient
  checks cannot see);
- grouped KV heads equal plain multi-head attention with the KV heads copied per group, and
  with KV = H the grouped path is the plain one;
- RoPE properties (rotate_half convention, scores depend on relative position only), causality;
- the command line writes the documented file, and bad inputs fail with a clear message.
"""
import contextlib
import io
import math
import os
import subprocess
import sys
import tempfile
import unittest

import h5py
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import llama_reference as ref  # noqa: E402
import make_fixture as fx  # noqa: E402

SCRIPT = os.path.join(HERE, "llama_reference.py")


# ----------------------------------------------------------------------------- independent model


def naive_nll(cfg, params, tokens):
    """Per-token NLL [B, T] written from the equations with explicit loops, in float64 numpy."""
    p = {n: np.asarray(a, dtype=np.float64) for n, a in params.items()}
    d, h, kv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd, eps, theta = d // h, cfg["rms_norm_eps"], cfg["rope_theta"]
    group = h // kv
    bsz, t = tokens.shape[0], tokens.shape[1] - 1

    def norm(x, w):
        return x / math.sqrt(float(np.mean(x * x)) + eps) * w

    def rope(vec, pos):
        # HF rotate_half pairs element i with element i + hd/2, frequency theta^(-2i/hd).
        out = np.empty_like(vec)
        half = hd // 2
        for i in range(half):
            ang = pos * theta ** (-2.0 * i / hd)
            c, s = math.cos(ang), math.sin(ang)
            out[i] = vec[i] * c - vec[i + half] * s
            out[i + half] = vec[i + half] * c + vec[i] * s
        return out

    def silu(z):
        return z / (1.0 + np.exp(-z))

    nll = np.zeros((bsz, t))
    for b in range(bsz):
        inputs = [max(int(tok), 0) for tok in tokens[b, :-1]]
        xs = [p["model.embed_tokens.weight"][tok].copy() for tok in inputs]
        for layer in range(cfg["num_hidden_layers"]):
            pre = f"model.layers.{layer}."
            normed = [norm(x, p[pre + "input_layernorm.weight"]) for x in xs]
            qs = [p[pre + "self_attn.q_proj.weight"] @ x for x in normed]
            ks = [p[pre + "self_attn.k_proj.weight"] @ x for x in normed]
            vs = [p[pre + "self_attn.v_proj.weight"] @ x for x in normed]
            new = []
            for pos in range(t):
                heads_out = []
                for head in range(h):
                    g = head // group
                    q = rope(qs[pos][head * hd:(head + 1) * hd], pos)
                    scores = [float(q @ rope(ks[j][g * hd:(g + 1) * hd], j)) / math.sqrt(hd)
                              for j in range(pos + 1)]
                    m = max(scores)
                    w = [math.exp(s - m) for s in scores]
                    tot = sum(w)
                    heads_out.append(sum(w[j] / tot * vs[j][g * hd:(g + 1) * hd]
                                         for j in range(pos + 1)))
                attn = p[pre + "self_attn.o_proj.weight"] @ np.concatenate(heads_out)
                x = xs[pos] + attn
                y = norm(x, p[pre + "post_attention_layernorm.weight"])
                ff = p[pre + "mlp.down_proj.weight"] @ (silu(p[pre + "mlp.gate_proj.weight"] @ y) *
                                                        (p[pre + "mlp.up_proj.weight"] @ y))
                new.append(x + ff)
            xs = new
        head_w = p["model.embed_tokens.weight" if cfg["tie_word_embeddings"] else "lm_head.weight"]
        for pos in range(t):
            target = int(tokens[b, pos + 1])
            if target < 0:
                continue
            logits = head_w @ norm(xs[pos], p["model.norm.weight"])
            m = logits.max()
            nll[b, pos] = m + math.log(np.exp(logits - m).sum()) - logits[target]
    return nll


def fixture(seed=0, **kw):
    rng = np.random.default_rng(seed)
    batch = kw.pop("batch", 2)
    seq = kw.pop("seq", 7)
    ignore = kw.pop("ignore", 2)
    cfg = fx.make_config(**kw)
    return cfg, fx.random_params(cfg, rng), fx.random_tokens(cfg, rng, batch, seq, ignore)


def run_cli(model, batch, out, *extra):
    return subprocess.run([sys.executable, SCRIPT, "--model", model, "--batch", batch, "--out", out,
                           *extra], capture_output=True, text=True)


class Gradients(unittest.TestCase):
    def test_gradcheck_every_parameter_of_a_tiny_model(self):
        for tie in (False, True):
            cfg, params, tokens = fixture(1, hidden=8, layers=2, heads=2, kv_heads=1,
                                          intermediate=12, vocab=11, seq=5, ignore=1, tie=tie)
            names = list(params)
            tensors = [torch.tensor(params[n], dtype=torch.float64, requires_grad=True)
                       for n in names]
            tok = torch.as_tensor(tokens, dtype=torch.int64)

            def loss_fn(*ts):
                return ref.loss_and_nll(cfg, dict(zip(names, ts)), tok)[0]

            self.assertTrue(torch.autograd.gradcheck(loss_fn, tensors, eps=1e-6, atol=1e-7,
                                                     rtol=1e-5), f"tie={tie}")

    def test_written_gradients_equal_central_differences(self):
        cfg, params, tokens = fixture(2)
        with tempfile.TemporaryDirectory() as tmp:
            m, b, o = (os.path.join(tmp, f) for f in ("m.h5", "b.h5", "o.h5"))
            fx.write_model(m, cfg, params)
            fx.write_batch(b, tokens)
            r = run_cli(m, b, o)
            self.assertEqual(r.returncode, 0, r.stderr)
            with h5py.File(o, "r") as h5:
                grads = {n: h5["grads"][n][()] for n in params}
        # Central differences on the float64-upcast parameters, a sample of entries per tensor.
        cfg_p = {n: a.astype(np.float64) for n, a in params.items()}
        rng = np.random.default_rng(0)
        tok = torch.as_tensor(tokens, dtype=torch.int64)

        def loss_at(pp):
            with torch.no_grad():
                return float(ref.loss_and_nll(cfg, {n: torch.from_numpy(a) for n, a in pp.items()},
                                              tok)[0])

        h = 1e-6
        worst = 0.0
        for name, arr in cfg_p.items():
            flat_idx = rng.choice(arr.size, size=min(arr.size, 6), replace=False)
            for fi in flat_idx:
                idx = np.unravel_index(fi, arr.shape)
                plus, minus = dict(cfg_p), dict(cfg_p)
                plus[name] = arr.copy()
                plus[name][idx] += h
                minus[name] = arr.copy()
                minus[name][idx] -= h
                numeric = (loss_at(plus) - loss_at(minus)) / (2 * h)
                err = abs(numeric - grads[name][idx])
                worst = max(worst, err)
                self.assertLess(err, 1e-7 + 1e-5 * abs(numeric), f"{name}{idx}")
        self.assertLess(worst, 1e-6)


class Semantics(unittest.TestCase):
    def check_against_naive(self, **kw):
        cfg, params, tokens = fixture(3, **kw)
        loss, nll, _ = ref.reference(cfg, params, tokens)
        expected = naive_nll(cfg, params, tokens)
        np.testing.assert_allclose(nll, expected, rtol=1e-11, atol=1e-11)
        keep = tokens[:, 1:] >= 0
        self.assertAlmostEqual(loss, expected[keep].mean(), places=11)

    def test_forward_equals_loop_implementation_gqa_untied(self):
        self.check_against_naive(hidden=16, layers=2, heads=4, kv_heads=2, intermediate=24,
                                 vocab=37, seq=7, rope_theta=500.0)

    def test_forward_equals_loop_implementation_mha_tied(self):
        self.check_against_naive(hidden=12, layers=1, heads=2, kv_heads=2, intermediate=20,
                                 vocab=29, seq=6, tie=True, eps=1e-3)

    def test_forward_equals_loop_implementation_multi_query(self):
        self.check_against_naive(hidden=16, layers=2, heads=4, kv_heads=1, intermediate=16,
                                 vocab=23, seq=5, batch=3, ignore=0)

    def test_gqa_equals_mha_with_kv_heads_copied_per_group(self):
        cfg, params, tokens = fixture(4, hidden=24, layers=2, heads=6, kv_heads=2, intermediate=32,
                                      vocab=31, seq=9)
        hd, rep = 4, 3
        mha_cfg = dict(cfg, num_key_value_heads=6)
        mha = dict(params)
        for i in range(cfg["num_hidden_layers"]):
            for w in ("k_proj", "v_proj"):
                name = f"model.layers.{i}.self_attn.{w}.weight"
                blocks = params[name].reshape(2, hd, 24)
                mha[name] = np.repeat(blocks, rep, axis=0).reshape(24, 24)
        loss_g, nll_g, grads_g = ref.reference(cfg, params, tokens)
        loss_m, nll_m, grads_m = ref.reference(mha_cfg, mha, tokens)
        self.assertAlmostEqual(loss_g, loss_m, places=13)
        np.testing.assert_allclose(nll_g, nll_m, rtol=1e-12, atol=1e-13)
        for name, g in grads_g.items():
            gm = grads_m[name]
            if "k_proj" in name or "v_proj" in name:
                gm = gm.reshape(2, rep, hd, 24).sum(axis=1).reshape(8, 24)  # copies share a weight
            np.testing.assert_allclose(g, gm, rtol=1e-10, atol=1e-13, err_msg=name)

    def test_kv_equal_heads_is_plain_multi_head_attention(self):
        cfg, params, tokens = fixture(5, hidden=16, layers=1, heads=4, kv_heads=4, intermediate=24)
        x = torch.randn(2, 4, 7, 4, dtype=torch.float64)
        self.assertIs(ref.repeat_kv(x, 1), x)
        # Plain MHA written with per-head loops and no repeat_kv must agree with attention().
        p = {n: torch.tensor(a, dtype=torch.float64) for n, a in params.items()}
        xin = torch.randn(2, 7, 16, dtype=torch.float64)
        cos, sin = ref.rotary_cos_sin(7, 4, cfg["rope_theta"], torch.float64)
        got = ref.attention(xin, p, "model.layers.0.self_attn.", cfg, cos, sin)
        pre = "model.layers.0.self_attn."
        q, k, v = (xin @ p[pre + f"{w}_proj.weight"].T for w in "qkv")
        heads = []
        for hh in range(4):
            sl = slice(4 * hh, 4 * hh + 4)
            qh = ref.apply_rotary(q[..., sl], cos, sin)
            kh = ref.apply_rotary(k[..., sl], cos, sin)
            s = qh @ kh.transpose(-1, -2) / 2.0
            s = s + torch.full((7, 7), float("-inf"), dtype=torch.float64).triu(1)
            heads.append(torch.softmax(s, -1) @ v[..., sl])
        want = torch.cat(heads, -1) @ p[pre + "o_proj.weight"].T
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)

    def test_rotate_half_is_hugging_face_convention(self):
        x = torch.tensor([1.0, 2.0, 3.0, 4.0])
        self.assertEqual(ref.rotate_half(x).tolist(), [-3.0, -4.0, 1.0, 2.0])
        cos, sin = ref.rotary_cos_sin(3, 4, 10000.0, torch.float64)
        # inv_freq = [1, 1/100]; emb = cat(freqs, freqs).
        self.assertAlmostEqual(float(cos[2, 0]), math.cos(2.0), places=14)
        self.assertAlmostEqual(float(sin[2, 1]), math.sin(0.02), places=14)
        self.assertAlmostEqual(float(sin[2, 3]), math.sin(0.02), places=14)
        self.assertEqual(cos[0].tolist(), [1.0] * 4)

    def test_rotary_scores_depend_only_on_relative_position(self):
        hd = 8
        q, k = torch.randn(hd, dtype=torch.float64), torch.randn(hd, dtype=torch.float64)
        cos, sin = ref.rotary_cos_sin(20, hd, 10000.0, torch.float64)

        def score(m, n):
            return float(ref.apply_rotary(q, cos[m], sin[m]) @ ref.apply_rotary(k, cos[n], sin[n]))
        self.assertAlmostEqual(score(5, 2), score(15, 12), places=12)
        self.assertAlmostEqual(score(7, 7), float(q @ k), places=12)
        self.assertNotAlmostEqual(score(5, 2), score(5, 3), places=3)

    def test_changing_a_later_token_leaves_earlier_nll_unchanged(self):
        cfg, params, tokens = fixture(6, seq=8, ignore=0)
        _, nll_a, _ = ref.reference(cfg, params, tokens)
        changed = tokens.copy()
        changed[:, 5] = (changed[:, 5] + 1) % cfg["vocab_size"]
        _, nll_b, _ = ref.reference(cfg, params, changed)
        np.testing.assert_array_equal(nll_a[:, :4], nll_b[:, :4])  # nll[:, 4] targets token 5
        self.assertFalse(np.allclose(nll_a[:, 5:], nll_b[:, 5:]))

    def test_float32_mode_is_close_to_float64(self):
        cfg, params, tokens = fixture(7)
        l64, n64, g64 = ref.reference(cfg, params, tokens, torch.float64)
        l32, n32, g32 = ref.reference(cfg, params, tokens, torch.float32)
        self.assertAlmostEqual(l64, l32, delta=1e-5 * abs(l64))
        for name in g64:
            scale = np.abs(g64[name]).max()
            self.assertLess(np.abs(g64[name] - g32[name]).max(), 1e-4 * scale + 1e-7, name)


class CommandLine(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.model = os.path.join(self.tmp.name, "model.h5")
        self.batch = os.path.join(self.tmp.name, "batch.h5")
        self.out = os.path.join(self.tmp.name, "out.h5")
        self.assertEqual(fx.main(["--model", self.model, "--batch", self.batch,
                                  "--intermediate", "0"]), 0)

    def test_writes_loss_nll_and_every_gradient(self):
        r = run_cli(self.model, self.batch, self.out)
        self.assertEqual(r.returncode, 0, r.stderr)
        cfg, params = ref.load_model(self.model)
        self.assertEqual(cfg["intermediate_size"], 64)  # 8/3 * 16 rounded up to 64
        with h5py.File(self.batch, "r") as h5:
            tokens = h5["tokens"][()]
        with h5py.File(self.out, "r") as h5:
            self.assertEqual(h5["loss"].shape, (1,))
            self.assertEqual(h5["loss"].dtype, np.float64)
            nll = h5["nll"][()]
            self.assertEqual(nll.shape, (2, 7))
            keep = tokens[:, 1:] >= 0
            self.assertEqual(int((~keep).sum()), 2)
            self.assertTrue(np.all(nll[~keep] == 0))
            self.assertTrue(np.all(nll[keep] > 0))
            self.assertAlmostEqual(float(h5["loss"][0]), nll[keep].mean(), places=12)
            self.assertEqual(sorted(h5["grads"]), sorted(params))
            for name, arr in params.items():
                self.assertEqual(h5["grads"][name].shape, arr.shape, name)
                self.assertEqual(h5["grads"][name].dtype, np.float64, name)
                self.assertGreater(np.abs(h5["grads"][name][()]).max(), 0, name)
        r = run_cli(self.model, self.batch, self.out, "--dtype", "float32")
        self.assertEqual(r.returncode, 0, r.stderr)
        with h5py.File(self.out, "r") as h5:
            self.assertEqual(h5["grads"]["model.norm.weight"].dtype, np.float32)

    def expect_failure(self, *needles):
        # In-process (no interpreter start per case): main() must report and return 2.
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = ref.main(["--model", self.model, "--batch", self.batch, "--out", self.out])
        self.assertEqual(rc, 2, err.getvalue())
        for needle in needles:
            self.assertIn(needle, err.getvalue())
        self.assertFalse(os.path.exists(self.out))

    def test_missing_parameter_is_named(self):
        with h5py.File(self.model, "a") as h5:
            del h5["params/model.layers.1.mlp.up_proj.weight"]
        self.expect_failure(self.model, "/params/model.layers.1.mlp.up_proj.weight",
                            "missing", "[64, 16]")

    def test_wrong_shape_is_named(self):
        with h5py.File(self.model, "a") as h5:
            del h5["params/model.layers.0.self_attn.k_proj.weight"]
            h5["params"].create_dataset("model.layers.0.self_attn.k_proj.weight",
                                        data=np.zeros((16, 16), np.float32))
        self.expect_failure("model.layers.0.self_attn.k_proj.weight", "expected shape [8, 16]",
                            "found [16, 16]")

    def test_missing_config_attribute_is_named(self):
        with h5py.File(self.model, "a") as h5:
            del h5["config"].attrs["num_attention_heads"]
        self.expect_failure(":/config", "num_attention_heads")

    def test_inconsistent_config_is_rejected(self):
        with h5py.File(self.model, "a") as h5:
            h5["config"].attrs["num_key_value_heads"] = np.int32(3)
        self.expect_failure("num_key_value_heads 3 must divide num_attention_heads 4")

    def test_lm_head_with_tied_embeddings_is_rejected(self):
        with h5py.File(self.model, "a") as h5:
            h5["config"].attrs["tie_word_embeddings"] = np.uint8(1)
        self.expect_failure("lm_head.weight", "tie_word_embeddings")

    def test_token_out_of_vocabulary_is_named(self):
        with h5py.File(self.batch, "a") as h5:
            h5["tokens"][1, 3] = 37
        self.expect_failure(":/tokens[1, 3]", "token 37", "vocab_size 37")

    def test_padding_before_a_scored_target_is_rejected(self):
        with h5py.File(self.batch, "a") as h5:
            h5["tokens"][1, 2] = -1
        self.expect_failure(":/tokens[1, 2]", "trailing padding")

    def test_all_targets_ignored_is_rejected(self):
        with h5py.File(self.batch, "a") as h5:
            t = h5["tokens"][()]
            t[:, 1:] = -1
            h5["tokens"][...] = t
        self.expect_failure("every target is ignored")

    def test_sequence_longer_than_context_is_rejected(self):
        with h5py.File(self.batch, "w") as h5:
            h5["tokens"] = np.zeros((1, 18), np.int32)
        self.expect_failure("T = 17", "max_position_embeddings 16")

    def test_float_tokens_are_rejected(self):
        with h5py.File(self.batch, "w") as h5:
            h5["tokens"] = np.zeros((1, 5), np.float32)
        self.expect_failure(":/tokens", "expected integer tokens")

    def test_not_a_model_file(self):
        with open(self.model, "w") as f:
            f.write("not hdf5")
        self.expect_failure(self.model, "cannot open")


if __name__ == "__main__":
    torch.set_num_threads(1)
    unittest.main(verbosity=2)
