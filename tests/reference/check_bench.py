#!/usr/bin/python3
"""Checks for bench/train_torch.py. Run: /usr/bin/python3 tests/reference/check_bench.py

- the benchmark's model (concatenated qkv and gate/up, every attention/TorchScript option) is
  the same function as llama_reference.py: loss and every gradient, in float64;
- its data.h5 sampler deals non-overlapping blocks, none twice per epoch across ranks, balanced
  across domains, and rejects bad files with a clear message;
- the learning-rate schedule is warmup then cosine to the floor;
- it trains end to end on 1 rank and under mpirun on 2 ranks (DDP), and the printed line parses.
"""
import os
import re
import shutil
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

SCRIPT = os.path.normpath(os.path.join(HERE, "..", "..", "bench", "train_torch.py"))
LINE = re.compile(r"^impl=pytorch ranks=(\d+) step_time_s=([0-9.]+) tok/s=([0-9.]+) "
                  r"loss=([0-9.]+)$", re.M)


def load_bench_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("train_torch", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class BenchModel(unittest.TestCase):
    """bench/train_torch.py must time the same function btm computes."""

    def check(self, jit, attention, kv_heads, tie):
        bench = load_bench_module()
        torch.manual_seed(0)
        cfg = {"hidden": 16, "layers": 2, "heads": 4, "kv_heads": kv_heads, "intermediate": 24,
               "vocab": 37, "context": 8, "tie": tie, "eps": 1e-5, "rope_theta": 10000.0,
               "init_std": 0.3, "attention": attention}
        model = bench.Llama(cfg, bench.make_kernels(jit)).double()
        cos, sin = ref.rotary_cos_sin(8, 4, 10000.0, torch.float64)  # fp32 tables lose 1e-9
        model.cos, model.sin = cos.view(8, 1, 4), sin.view(8, 1, 4)
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() == 1:
                    p.add_(0.2 * torch.randn_like(p))
        tokens = torch.randint(0, 37, (3, 9), generator=torch.Generator().manual_seed(1))
        loss = model(tokens[:, :-1], tokens[:, 1:])
        loss.backward()
        ref_cfg = ref.validate_config({
            "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": kv_heads, "vocab_size": 37,
            "max_position_embeddings": 8, "tie_word_embeddings": tie})
        params = {n: t.numpy().copy() for n, t in bench.hf_params(model).items()}
        self.assertEqual(sorted(params), sorted(ref.param_shapes(ref_cfg)))
        want_loss, _, want_grads = ref.reference(ref_cfg, params, tokens.numpy())
        self.assertAlmostEqual(float(loss), want_loss, places=12)
        for name, g in bench.hf_params(model, grads=True).items():
            np.testing.assert_allclose(g.numpy(), want_grads[name], rtol=1e-9, atol=1e-12,
                                       err_msg=name)

    def test_bench_model_equals_reference_sdpa_mha_untied(self):
        self.check("off", "sdpa", 4, False)

    def test_bench_model_equals_reference_manual_gqa_tied(self):
        self.check("off", "manual", 2, True)

    def test_bench_model_equals_reference_torchscript_gqa(self):
        self.check("script", "sdpa", 1, False)


def write_data(path, lengths, dtype=np.uint16, vocab=300, seed=0):
    """A btm-style data.h5: /tokenizer/model attrs and /domains/<d>/{train,valid}/tokens.
    Each train stream is 0, 1, 2, ...: a block identifies itself by its first token."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as h5:
        tok = h5.create_dataset("tokenizer/model", data=np.frombuffer(b"spm", np.uint8))
        tok.attrs["vocab_size"] = np.int32(vocab)
        for name, n in lengths.items():
            h5.create_dataset(f"domains/{name}/train/tokens", data=np.arange(n, dtype=dtype))
            h5.create_dataset(f"domains/{name}/valid/tokens",
                              data=rng.integers(0, vocab, 50).astype(dtype))


class BenchData(unittest.TestCase):
    def setUp(self):
        self.bench = load_bench_module()
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.path = os.path.join(self.tmp.name, "data.h5")

    def sampler(self, rank, size, vocab=10 ** 6, context=9, seed=3, domains=None):
        return self.bench.DomainBlocks(self.path, context, rank, size, seed, vocab, domains)

    def test_blocks_are_aligned_and_none_repeats_within_an_epoch_across_ranks(self):
        # Blocks start every 9 tokens and hold 10 (btm's layout: targets never repeat).
        # Domain a: (305-1)//9 = 33 blocks, b: (109-1)//9 = 12 blocks, uint32.
        write_data(self.path, {"a": 305, "b": 109}, dtype=np.uint32)
        size = 3
        seen = {"a": [], "b": []}
        for rank in range(size):
            s = self.sampler(rank, size)
            # 8 sequences per rank: 4 from each domain (b has 12 blocks = 4 per rank).
            out = s.next(8).numpy()
            for row in out:
                self.assertTrue(np.array_equal(row, np.arange(row[0], row[0] + 10)))
                self.assertEqual(row[0] % 9, 0)  # aligned: targets of two blocks never overlap
            dom_of_first = [s.domains[(rank + i) % 2]["name"] for i in range(8)]
            for name, row in zip(dom_of_first, out):
                seen[name].append(int(row[0]) // 9)
        self.assertEqual(len(seen["a"]), 12)
        self.assertEqual(len(seen["b"]), 12)
        self.assertEqual(len(set(seen["a"])), 12)  # no block twice across ranks
        self.assertEqual(sorted(seen["b"]), list(range(12)))  # b's epoch covered exactly

    def test_domains_are_balanced(self):
        write_data(self.path, {"big": 5000, "small": 200, "mid": 1000})
        s = self.sampler(0, 1)
        starts = s.next(30).numpy()[:, 0]
        # Round-robin in sorted order: big, mid, small, big, ... (each 10 times).
        names = [s.domains[i % 3]["name"] for i in range(30)]
        self.assertEqual(names[:3], ["big", "mid", "small"])
        for name in ("big", "mid", "small"):
            self.assertEqual(names.count(name), 10)
        small = [int(x) for x, n in zip(starts, names) if n == "small"]
        self.assertTrue(all(x < 200 for x in small))
        # small has (200-1)//9 = 22 blocks: its 10 draws are distinct.
        self.assertEqual(len(set(small)), 10)

    def test_only_training_domains_are_drawn(self):
        write_data(self.path, {"a": 1000, "b": 1000, "held": 1000})
        with h5py.File(self.path, "a") as h5:
            h5["domains"].attrs["train"] = "b,a"
            h5["domains"].attrs["heldout"] = "held"
        self.assertEqual([d["name"] for d in self.sampler(0, 1).domains], ["b", "a"])
        self.assertEqual([d["name"] for d in self.sampler(0, 1, domains=["held"]).domains],
                         ["held"])
        with h5py.File(self.path, "a") as h5:
            del h5["domains"].attrs["train"]
        self.assertEqual([d["name"] for d in self.sampler(0, 1).domains], ["a", "b", "held"])

    def test_epochs_reshuffle_and_cover_every_block(self):
        write_data(self.path, {"a": 60})  # (60-1)//9 = 6 blocks
        s = self.sampler(0, 1)
        e1 = s.next(6).numpy()[:, 0] // 9
        e2 = s.next(6).numpy()[:, 0] // 9
        self.assertEqual(sorted(e1), list(range(6)))
        self.assertEqual(sorted(e2), list(range(6)))
        self.assertFalse(np.array_equal(e1, e2))

    def expect_exit(self, fn, *needles):
        import contextlib
        import io
        err = io.StringIO()
        with contextlib.redirect_stderr(err), self.assertRaises(SystemExit) as cm:
            fn()
        self.assertEqual(cm.exception.code, 2)
        for needle in needles:
            self.assertIn(needle, err.getvalue())

    def test_bad_data_files_are_named(self):
        write_data(self.path, {"a": 100})
        self.expect_exit(lambda: self.sampler(0, 1, vocab=50).next(3), self.path,
                         "/domains/a/train/tokens[", ">= vocabulary 50")
        self.expect_exit(lambda: self.sampler(0, 12), "/domains/a/train/tokens", "11 blocks",
                         "12 ranks")
        self.expect_exit(lambda: self.sampler(0, 1, domains=["a", "zz"]),
                         "/domains/zz/train/tokens: dataset missing")
        with h5py.File(self.path, "w") as h5:
            h5["domains/a/train/tokens"] = np.arange(100, dtype=np.int64)
        self.expect_exit(lambda: self.sampler(0, 1), "expected a 1-D uint16/uint32")
        with h5py.File(self.path, "w") as h5:
            h5["domains/a/valid/tokens"] = np.arange(100, dtype=np.uint16)
        self.expect_exit(lambda: self.sampler(0, 1), "no /domains/<domain>/train/tokens")
        with h5py.File(self.path, "w") as h5:
            h5["x"] = 1
        self.expect_exit(lambda: self.sampler(0, 1), "/domains: group missing")
        with open(self.path, "w") as f:
            f.write("not hdf5")
        self.expect_exit(lambda: self.sampler(0, 1), "cannot open")

    def test_schedule_warms_up_then_decays_to_the_floor(self):
        class A:
            lr, lr_warmup, min_lr_ratio = 1.0, 4, 0.1
        lr = [self.bench.lr_at(s, A, 14) for s in range(20)]
        self.assertEqual(lr[:4], [0.25, 0.5, 0.75, 1.0])
        self.assertAlmostEqual(lr[4], 1.0)
        self.assertAlmostEqual(lr[9], 0.55)  # half way down the cosine
        self.assertAlmostEqual(lr[14], 0.1)
        self.assertAlmostEqual(lr[19], 0.1)
        self.assertTrue(all(a >= b for a, b in zip(lr[4:], lr[5:])))


class BenchRuns(unittest.TestCase):
    TINY = ["--hidden", "32", "--layers", "2", "--heads", "4", "--kv-heads", "2", "--context",
            "16", "--micro-batch", "2", "--warmup-steps", "1", "--steps", "3"]

    def run_bench(self, args, ranks=1):
        env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                   OMPI_MCA_rmaps_base_oversubscribe="1")
        cmd = [sys.executable, SCRIPT] + args
        if ranks > 1:
            cmd = [shutil.which("mpirun") or "mpirun", "-np", str(ranks), "--oversubscribe"] + cmd
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        m = LINE.findall(r.stdout)
        self.assertEqual(len(m), 1, r.stdout)  # rank 0 only
        return r.stdout, m[0]

    def test_synthetic_tokens_train_on_one_rank_at_chance_loss(self):
        _, (ranks, step, tps, loss) = self.run_bench(["--synthetic", "--vocab", "64"] + self.TINY)
        self.assertEqual(ranks, "1")
        self.assertGreater(float(tps), 0)
        self.assertAlmostEqual(float(loss), np.log(64), delta=0.5)  # random tokens

    def test_data_file_two_ranks_with_accumulation_lowers_the_loss(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "data.h5")
            # Counting sequences mod 50: trivially learnable, so the loss must fall.
            with h5py.File(path, "w") as h5:
                h5.create_dataset("tokenizer/model", data=np.zeros(3, np.uint8)).attrs[
                    "vocab_size"] = 50
                for i, name in enumerate(("x", "y")):
                    h5[f"domains/{name}/train/tokens"] = (
                        (np.arange(4000) * (i + 1)) % 50).astype(np.uint16)
            out, (ranks, _, _, loss) = self.run_bench(
                ["--data", path, "--grad-accum", "2", "--lr", "3e-3", "--lr-warmup", "2",
                 "--log-every", "1"] + self.TINY[:-2] + ["--steps", "25"], ranks=2)
        self.assertEqual(ranks, "2")
        self.assertIn("V=50", out)
        first = float(re.search(r"^step=2 loss=([0-9.]+)", out, re.M).group(1))
        self.assertLess(float(loss), first - 1.0, out)


if __name__ == "__main__":
    torch.set_num_threads(1)
    unittest.main(verbosity=2)
