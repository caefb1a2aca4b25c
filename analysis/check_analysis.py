#!/usr/bin/python3
"""Checks for the analysis scripts on files written here in btm's formats.

    /usr/bin/python3 analysis/check_analysis.py [--keep DIR]   (--keep: leave the files there)
"""
import contextlib
import io
import math
import os
import sys
import tempfile
import unittest

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import loss_curves  # noqa: E402
import perplexity_table  # noqa: E402
import replication_report  # noqa: E402
import report  # noqa: E402
import routing_heatmap  # noqa: E402

KEEP = None


def write_model(path, n=200, valid_every=None, phase="expert", domain="python", lr=True,
                valid_domains=("python", "debian"), tokens_per_step=None):
    rng = np.random.default_rng(len(path))
    step = np.arange(1, n + 1, dtype=np.int64)
    with h5py.File(path, "w") as h5:
        m = h5.create_group("metrics")
        m["step"] = step
        m["loss"] = (6.0 * np.exp(-step / 60.0) + 2.0 + 0.1 * rng.standard_normal(n)).astype(
            np.float32)
        if lr:
            m["lr"] = np.where(step < 20, step / 20, 0.5 * (1 + np.cos(np.pi * step / n))) * 1e-3
        m["grad_norm"] = np.ones(n, np.float32)
        if valid_every is not None:
            vstep = step[valid_every - 1::valid_every] if valid_every > 1 else step
            if valid_every > 1:
                m["valid_step"] = vstep
            for i, d in enumerate(valid_domains):
                m[f"valid/{d}"] = 2.5 + 0.4 * i + 4 * np.exp(-vstep / 70.0)
        if tokens_per_step is not None:
            h5.create_group("train").attrs.update({"step": str(n), "tokens": str(n * tokens_per_step)})
        meta = h5.create_group("meta")
        if phase:
            meta.attrs["phase"] = phase
        if domain:
            meta.attrs["domain"] = domain


def write_eval(path, rows, heldout=None, strings="vlen", **settings):
    with h5py.File(path, "w") as h5:
        g = h5.create_group("results")
        for key in ("method", "domain", "split"):
            vals = [r[key] for r in rows]
            if strings == "vlen":
                g.create_dataset(key, data=vals, dtype=h5py.string_dtype())
            else:
                g.create_dataset(key, data=np.array(vals, dtype="S"))
        g["tokens"] = np.array([r["tokens"] for r in rows], dtype=np.uint64)
        g["nll"] = np.array([r["nll"] for r in rows], dtype=np.float64)
        g["perplexity"] = np.exp(g["nll"][()])
        if heldout is not None:
            g.attrs["heldout_domains"] = heldout
        for k, v in settings.items():
            g.attrs[k] = v


def rows_for(methods, domains, splits=("test",), base=None):
    out = []
    for s in splits:
        for m_i, m in enumerate(methods):
            for d_i, d in enumerate(domains):
                nll = base(m, d, s) if base else 2.0 + 0.1 * m_i + 0.3 * d_i
                out.append({"method": m, "domain": d, "split": s, "tokens": 1000 * (d_i + 1),
                            "nll": nll})
    return out


def run(fn, argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = fn(argv)
    return rc, out.getvalue(), err.getvalue()


class Base(unittest.TestCase):
    def setUp(self):
        if KEEP:
            os.makedirs(KEEP, exist_ok=True)
            self.dir = KEEP
        else:
            tmp = tempfile.TemporaryDirectory()
            self.addCleanup(tmp.cleanup)
            self.dir = tmp.name

    def path(self, name):
        return os.path.join(self.dir, f"{self.id().split('.')[-1]}_{name}")


class LossCurves(Base):
    def test_plots_several_files_with_and_without_valid_step(self):
        a, b, c = self.path("seed.h5"), self.path("expert.h5"), self.path("plain.h5")
        write_model(a, valid_every=25, phase="seed", domain="")
        write_model(b, n=120, valid_every=1)  # valid as long as step: no valid_step needed
        write_model(c, n=80, phase="", domain="", lr=False)
        png = self.path("curves.png")
        rc, out, err = run(loss_curves.main, [a, b, c, "--out", png, "--smooth", "10"])
        self.assertEqual(rc, 0, err)
        self.assertIn("3 file(s), 4 validation series", out)
        with open(png, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        self.assertGreater(os.path.getsize(png), 20000)
        runs = [loss_curves.read_metrics(p) for p in (a, b, c)]
        self.assertEqual([r["label"] for r in runs],
                         ["seed", "expert:python", os.path.basename(c)[:-3]])
        steps, vals = runs[0]["valid"]["debian"]
        self.assertEqual(list(steps[:2]), [25, 50])
        self.assertEqual(len(vals), 8)
        self.assertIsNone(runs[2]["lr"])

    def test_labels_option_and_count(self):
        a = self.path("m.h5")
        write_model(a)
        png = self.path("c.png")
        rc, _, _ = run(loss_curves.main, [a, "--out", png, "--labels", "mine", "--log-y"])
        self.assertEqual(rc, 0)
        with self.assertRaises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
            loss_curves.main([a, "--out", png, "--labels", "x,y"])

    def test_smoothing_is_a_trailing_mean(self):
        y = np.array([1.0, 3.0, 5.0, 7.0])
        np.testing.assert_allclose(loss_curves.smooth(y, 2), [1.0, 2.0, 4.0, 6.0])
        np.testing.assert_allclose(loss_curves.smooth(y, 1), y)

    def expect_error(self, path, *needles):
        rc, _, err = run(loss_curves.main, [path, "--out", self.path("x.png")])
        self.assertEqual(rc, 2)
        for n in needles:
            self.assertIn(n, err)
        self.assertFalse(os.path.exists(self.path("x.png")))

    def test_valid_without_valid_step_is_named(self):
        p = self.path("m.h5")
        write_model(p, valid_every=10)
        with h5py.File(p, "a") as h5:
            del h5["metrics/valid_step"]
        self.expect_error(p, "/metrics/valid/", "20 values", "/metrics/step has 200",
                          "/metrics/valid_step", "missing")

    def test_valid_step_of_wrong_length_is_named(self):
        p = self.path("m.h5")
        write_model(p, valid_every=10)
        with h5py.File(p, "a") as h5:
            del h5["metrics/valid_step"]
            h5["metrics/valid_step"] = np.arange(7)
        self.expect_error(p, "20 values but /metrics/valid_step has 7")

    def test_missing_and_mismatched_metrics_are_named(self):
        p = self.path("m.h5")
        write_model(p)
        with h5py.File(p, "a") as h5:
            del h5["metrics/loss"]
        self.expect_error(p, p + ":/metrics/loss", "missing")
        write_model(p)
        with h5py.File(p, "a") as h5:
            del h5["metrics/lr"]
            h5["metrics/lr"] = np.zeros(3)
        self.expect_error(p, "/metrics/lr: 3 values, expected 200")
        with h5py.File(p, "w") as h5:
            h5["params/x"] = np.zeros(2)
        self.expect_error(p, "/metrics: group missing")
        with open(p, "w") as f:
            f.write("text")
        self.expect_error(p, "cannot open")


class PerplexityTable(Base):
    def test_rows_columns_and_means(self):
        p = self.path("eval.h5")
        nll = {("seed", "a"): 3.0, ("seed", "b"): 3.2, ("seed", "c"): 4.0,
               ("expert", "a"): 2.5, ("expert", "b"): 2.9, ("expert", "c"): 4.2}
        write_eval(p, rows_for(["seed", "expert"], ["a", "c", "b"],
                               base=lambda m, d, s: nll[(m, d)]),
                   heldout="c", context=np.int32(256))
        rows, heldout, settings = perplexity_table.read_results(p)
        self.assertEqual(heldout, {"c"})
        labels, methods, cells = perplexity_table.build_table(rows, "test", heldout)
        self.assertEqual(methods, ["seed", "expert"])
        self.assertEqual(labels, ["a", "b", "c (held out)", "in-domain mean", "held-out mean"])
        self.assertAlmostEqual(cells[0][1], math.exp(2.5))
        self.assertAlmostEqual(cells[3][0], (math.exp(3.0) + math.exp(3.2)) / 2)
        self.assertAlmostEqual(cells[4][1], math.exp(4.2))
        # token-weighted: a has 1000 tokens, b 3000 (third listed domain).
        _, _, tok = perplexity_table.build_table(rows, "test", heldout, mean="token")
        self.assertAlmostEqual(tok[3][0], math.exp((3.0 * 1000 + 3.2 * 3000) / 4000))
        _, _, nl = perplexity_table.build_table(rows, "test", heldout, metric="nll")
        self.assertAlmostEqual(nl[3][1], (2.5 + 2.9) / 2)
        rc, out, err = run(perplexity_table.main, [p])
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        self.assertTrue(lines[0].startswith("# perplexity, split 'test'"))
        self.assertEqual(lines[1].split(), ["domain", "seed", "expert"])
        self.assertEqual(lines[3].split(), ["a", f"{math.exp(3.0):.2f}", f"{math.exp(2.5):.2f}*"])
        self.assertIn("c (held out)", out)
        self.assertIn("settings: context=256", out)
        rc, md, _ = run(perplexity_table.main, [p, "--markdown"])
        self.assertIn("| domain | seed | expert |", md)
        self.assertIn(f"| a | {math.exp(3.0):.2f} | **{math.exp(2.5):.2f}** |", md)
        self.assertIn("|---|---:|---:|", md)

    def test_no_heldout_attribute_makes_every_domain_in_domain(self):
        p = self.path("eval.h5")
        write_eval(p, rows_for(["m"], ["x", "y"]), strings="fixed")
        rc, out, _ = run(perplexity_table.main, [p])
        self.assertEqual(rc, 0)
        self.assertIn("in-domain mean", out)
        held = [ln for ln in out.splitlines() if ln.startswith("held-out mean")][0]
        self.assertEqual(held.split()[-1], "-")
        rc, out, _ = run(perplexity_table.main, [p, "--heldout", "y"])
        self.assertIn("y (held out)", out)

    def test_missing_cell_and_incomplete_mean_show_a_dash(self):
        p = self.path("eval.h5")
        rows = rows_for(["seed", "btm"], ["a", "b"])
        rows = [r for r in rows if not (r["method"] == "btm" and r["domain"] == "b")]
        write_eval(p, rows)
        rows, held, _ = perplexity_table.read_results(p)
        labels, methods, cells = perplexity_table.build_table(rows, "test", held)
        self.assertIsNone(cells[1][1])
        self.assertIsNone(cells[2][1])
        self.assertIsNotNone(cells[2][0])

    def test_splits_are_separate_tables_test_first(self):
        p = self.path("eval.h5")
        write_eval(p, rows_for(["m"], ["a"], splits=("valid", "test")))
        rc, out, _ = run(perplexity_table.main, [p])
        titles = [ln for ln in out.splitlines() if ln.startswith("# perplexity")]
        self.assertEqual(len(titles), 2)
        self.assertIn("'test'", titles[0])
        rc, out, _ = run(perplexity_table.main, [p, "--split", "valid"])
        self.assertNotIn("'test'", out)
        rc, _, err = run(perplexity_table.main, [p, "--split", "train"])
        self.assertEqual(rc, 2)
        self.assertIn("no rows with split 'train' (splits: valid, test)", err)

    def expect_error(self, path, *needles):
        rc, _, err = run(perplexity_table.main, [path])
        self.assertEqual(rc, 2, err)
        for n in needles:
            self.assertIn(n, err)

    def test_bad_files_are_named(self):
        p = self.path("eval.h5")
        write_eval(p, rows_for(["m"], ["a", "b"]))
        with h5py.File(p, "a") as h5:
            del h5["results/tokens"]
            h5["results/tokens"] = np.zeros(5, np.uint64)
        self.expect_error(p, "/results/tokens: 5 rows, but /results/method has 2")
        write_eval(p, rows_for(["m"], ["a"]))
        with h5py.File(p, "a") as h5:
            del h5["results/split"]
        self.expect_error(p, p + ":/results/split: dataset missing")
        write_eval(p, rows_for(["m"], ["a"]) * 2)
        self.expect_error(p, "rows 0 and 1 are both method=m domain=a split=test")
        write_eval(p, rows_for(["m"], ["a"]))
        with h5py.File(p, "a") as h5:
            del h5["results/domain"]
            h5["results/domain"] = np.zeros(1)
        self.expect_error(p, "/results/domain: expected strings")
        with h5py.File(p, "w") as h5:
            h5["x"] = 1
        self.expect_error(p, "/results: group missing")
        write_eval(p, [])
        self.expect_error(p, "no rows")

    def test_unknown_heldout_domain_warns(self):
        p = self.path("eval.h5")
        write_eval(p, rows_for(["m"], ["a"]), heldout="a, zz")
        rc, out, err = run(perplexity_table.main, [p])
        self.assertEqual(rc, 0)
        self.assertIn("warning: held-out domains not in the results: zz", err)
        self.assertIn("a (held out)", out)


def write_routing(path, methods=("btx",), experts=("a", "b", "c"), domains=("a", "b"), layers=3):
    """eval.h5 with /routing as btm's eval writes it (top-2 of 45 tokens): expert d takes
    most of domain d."""
    with h5py.File(path, "a") as h5:
        for m in methods:
            g = h5.create_group(f"routing/{m}")
            g.create_dataset("experts", data=list(experts), dtype=h5py.string_dtype())
            for d in domains:
                tok = np.full((layers, len(experts)), 25.0)
                if d in experts:
                    tok[:, experts.index(d)] = 40.0
                g[f"{d}/tokens"] = tok
                g[f"{d}/gate_sum"] = tok / 2
                g[f"{d}/dropped"] = np.zeros(layers, np.uint64)
                g[d].attrs["routed_tokens"] = np.uint64(45)


class RoutingHeatmap(Base):
    def test_plots_one_panel_per_domain_with_token_fractions(self):
        p = self.path("eval.h5")
        write_eval(p, rows_for(["btx"], ["a", "b"]))
        write_routing(p, methods=("btx", "upcycle"))
        png = self.path("routing.png")
        rc, out, err = run(routing_heatmap.main, [p, "--out", png])
        self.assertEqual(rc, 0, err)
        self.assertIn("btx: 2 domain(s), 3 experts", out)
        self.assertIn("also has upcycle", err)
        with open(png, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        method, experts, shares, _ = routing_heatmap.read_routing(p, "upcycle", ["b"])
        self.assertEqual((method, experts, list(shares)), ("upcycle", ["a", "b", "c"], ["b"]))
        np.testing.assert_allclose(shares["b"][0], [25 / 45, 40 / 45, 25 / 45])
        np.testing.assert_allclose(shares["b"].sum(axis=1), 2.0)  # top-2
        with h5py.File(p, "a") as h5:  # without routed_tokens: rows normalised to 1
            del h5["routing/upcycle/b"].attrs["routed_tokens"]
        _, _, shares, _ = routing_heatmap.read_routing(p, "upcycle", ["b"])
        np.testing.assert_allclose(shares["b"][0], [25 / 90, 40 / 90, 25 / 90])

    def test_bad_files_are_named(self):
        p = self.path("eval.h5")
        write_eval(p, rows_for(["m"], ["a"]))
        png = self.path("r.png")

        def error(*args):
            rc, _, err = run(routing_heatmap.main, [p, "--out", png, *args])
            self.assertEqual(rc, 2, err)
            return err
        self.assertIn(":/routing: group missing", error())
        write_routing(p)
        self.assertIn("/routing/nope: no such method (methods: btx)", error("--method", "nope"))
        self.assertIn("/routing/btx/zz: no such domain (domains: a, b)", error("--domains", "a,zz"))
        with h5py.File(p, "a") as h5:
            del h5["routing/btx/a/tokens"]
            h5["routing/btx/a/tokens"] = np.zeros((3, 2))
        self.assertIn("/routing/btx/a/tokens: expected a numeric [layers, 3] dataset, found shape (3, 2)",
                      error())


PNG = b"\x89PNG\r\n\x1a\n"


class Report(Base):
    def run_dir(self):
        """A run folder with every kind of output: BTM models, C-BTM clusters, BTX routing."""
        d = self.path("run")
        os.makedirs(os.path.join(d, "experts"))
        write_model(os.path.join(d, "seed.h5"), n=40, phase="seed", domain="", tokens_per_step=512)
        write_model(os.path.join(d, "baseline.h5"), n=60, phase="baseline", domain="",
                    tokens_per_step=512)
        for e in ("a", "b"):
            write_model(os.path.join(d, "experts", f"{e}.h5"), n=30, domain=e, tokens_per_step=256)
        write_model(os.path.join(d, "btx.h5"), n=20, phase="finetune", domain="", tokens_per_step=512)
        write_model(os.path.join(d, "averaged.h5"), n=5, phase="average", tokens_per_step=1)
        ev = os.path.join(d, "eval.h5")
        write_eval(ev, rows_for(["seed", "btm", "btx"], ["a", "b", "c"]), heldout="c")
        write_routing(ev)
        with h5py.File(ev, "a") as h5:
            h5.create_dataset("priors/experts", data=["a", "b"], dtype=h5py.string_dtype())
            for dom, w in (("a", [0.9, 0.1]), ("b", [0.2, 0.8]), ("c", [0.5, 0.5])):
                h5[f"priors/btm/{dom}"] = np.array(w)
            h5["routing/cbtm-top1/blocks"] = np.zeros(3)  # a C-BTM ensemble: not an MoE
        with h5py.File(os.path.join(d, "clusters.h5"), "w") as h5:
            h5["sizes"] = np.array([3, 2], np.uint64)
            h5.attrs["purity"], h5.attrs["nmi"] = 0.8, 0.5
            h5["assignments/a/train"] = np.array([0, 0, 1], np.int32)
            h5["assignments/b/train"] = np.array([0, 1], np.int32)
            h5["assignments/a/test"] = np.array([1], np.int32)
            h5["assignments/c/test"] = np.array([1, 1], np.int32)  # held out: no train split
        return d

    def pngs(self, out):
        names = sorted(os.listdir(out))
        for n in names:
            with open(os.path.join(out, n), "rb") as f:
                self.assertEqual(f.read(8), PNG, n)
        return names

    def test_full_run_writes_every_plot_into_run_report(self):
        d = self.run_dir()
        rc, out, err = run(report.main, [d])
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.pngs(os.path.join(d, "report")),
                         ["clusters.png", "loss_curves.png", "perplexity.png", "priors.png",
                          "routing-btx.png"])
        self.assertIn("loss_curves.png (5 model files)", out)  # not averaged.h5 (phase average)
        self.assertIn("perplexity.png (3 domains x 3 methods)", out)
        self.assertIn("priors.png (1 ensemble(s), 2 experts)", out)
        self.assertIn("clusters.png (2 clusters, 2 domains)", out)
        self.assertIn("report: 5 PNG(s)", out)
        self.assertNotIn("skipped", out)

    def test_model_files_in_training_order_with_finetuned_moe(self):
        d = self.run_dir()
        self.assertEqual([os.path.relpath(f, d) for f in report.model_files(d)],
                         ["seed.h5", "baseline.h5", "experts/a.h5", "experts/b.h5", "btx.h5"])

    def test_cluster_composition_counts_training_documents(self):
        d = self.run_dir()
        sizes, scores, domains, counts, split = report.read_clusters(os.path.join(d, "clusters.h5"))
        self.assertEqual((list(sizes), scores, domains, split),
                         ([3, 2], ["purity=0.800", "nmi=0.500"], ["a", "b"], "train"))
        np.testing.assert_array_equal(counts, [[2, 1], [1, 1]])
        with h5py.File(os.path.join(d, "clusters.h5"), "a") as h5:
            for dom in ("a", "b"):
                del h5[f"assignments/{dom}/train"]
            h5["assignments/b/valid"] = np.array([0], np.int32)
        _, _, domains, counts, split = report.read_clusters(os.path.join(d, "clusters.h5"))
        self.assertEqual((domains, split), (["a", "b", "c"], "all splits"))
        np.testing.assert_array_equal(counts, [[0, 1, 0], [1, 0, 2]])
        with h5py.File(os.path.join(d, "clusters.h5"), "a") as h5:
            h5["assignments/b/valid"][0] = 5
        rc, _, err = run(report.main, [d, "--out", self.path("out")])
        self.assertEqual(rc, 2)
        self.assertIn("/assignments/b/valid: cluster ids outside 0..1", err)

    def test_empty_folder_skips_everything(self):
        d = self.path("empty")
        os.makedirs(d)
        out_dir = self.path("out")
        rc, out, err = run(report.main, [d, "--out", out_dir])
        self.assertEqual(rc, 0, err)
        self.assertEqual(os.listdir(out_dir), [])
        self.assertEqual(out.count("skipped"), 5, out)
        self.assertIn("skipped clusters.png: no clusters.h5", out)
        self.assertIn("report: 0 PNG(s)", out)

    def test_missing_folder_and_unreadable_files_are_errors(self):
        rc, _, err = run(report.main, [self.path("nowhere")])
        self.assertEqual(rc, 2)
        self.assertIn("nowhere: no such run folder", err)
        d = self.run_dir()
        with open(os.path.join(d, "eval.h5"), "w") as f:
            f.write("not hdf5")
        with h5py.File(os.path.join(d, "seed.h5"), "a") as h5:
            del h5["train"]
        out_dir = self.path("out")
        rc, out, err = run(report.main, [d, "--out", out_dir])
        self.assertEqual(rc, 2)
        self.assertIn("eval.h5: cannot open as HDF5", err)
        self.assertIn("seed.h5:/train: attributes tokens and step missing", err)
        self.assertEqual(self.pngs(out_dir), ["clusters.png"])  # the rest is still written


class ReplicationReport(Base):
    TRAIN, HELDOUT = ["a", "b"], ["c"]

    def write_folder(self, name, nll_of, wall=None):
        d = self.path(os.path.join("runs", name))
        os.makedirs(d, exist_ok=True)
        rows = [{"method": m, "domain": dom, "split": "test", "tokens": 1000, "nll": v}
                for (m, dom), v in nll_of.items()]
        write_eval(os.path.join(d, "eval.h5"), rows, heldout="c", train_domains="a,b")
        if wall:
            with open(os.path.join(d, "wall.txt"), "w") as f:
                f.write(wall + "\n")

    def cells(self, methods):
        # method -> nll on every domain: perplexity e^nll, the same on each domain
        return {(m, d): v for m, v in methods.items() for d in self.TRAIN + self.HELDOUT}

    def test_tables_findings_sweep_and_plots(self):
        self.write_folder("p", self.cells({"baseline": 2.0, "seed": 2.5, "avg-uniform": 2.2,
                                           "avg-posterior": 2.1, "ensemble": 1.9, "btx": 2.3}),
                          wall="start=2026-01-01T10:00:00Z end=2026-01-01T10:30:00Z wall_s=1800 ranks=2 phases=eval")
        self.write_folder("p-btxbase", self.cells({"seed": 2.5, "baseline": 1.95}))
        self.write_folder("p-cbtm", self.cells({"cbtm-top1": 1.8, "cbtm-top2": 1.7}))
        random = self.cells({"cbtm-top1": 1.85, "cbtm-top2": 1.6})
        self.write_folder("p-random", random)
        self.write_folder("p-seed25", self.cells({"ensemble": 2.05, "avg-uniform": 2.4}))
        out = self.path("report")
        rc, text, err = run(replication_report.main, [self.path("runs"), "--prefix", "p", "--out", out])
        self.assertEqual(rc, 0, err)
        self.assertEqual(sorted(f for f in os.listdir(out) if f.endswith(".png")),
                         ["means.png", "perplexity.png", "seed_share.png"])
        with open(os.path.join(out, "tables.md")) as f:
            md = f.read()
        e = lambda v: f"{math.exp(v):.2f}"  # noqa: E731
        # the combined table: one column per method, from its folder, in COLUMNS order
        self.assertIn("| domain | dense | seed | avg-uniform | avg-posterior | ensemble | btx | dense-btx | "
                      "cbtm-top1 | cbtm-top2 | random-top1 | random-top2 |", md)
        self.assertIn(f"| c (held out) | {e(2.0)} | {e(2.5)} | {e(2.2)} | {e(2.1)} | {e(1.9)} | {e(2.3)} | "
                      f"{e(1.95)} | {e(1.8)} | {e(1.7)} | {e(1.85)} | **{e(1.6)}** |", md)
        lines = {ln.split("|")[1].strip(): ln for ln in md.splitlines() if ln.startswith("| (")}
        self.assertIn("| ensemble-prevtok vs dense: not measured | - | - |  |", md)
        self.assertIn(f"| ensemble {e(1.9)} / {e(1.9)} vs dense {e(2.0)} / {e(2.0)} | yes | yes | "
                      "holds (some comparisons not measured) |", md)
        self.assertTrue(lines["(2) posterior-weighted averaging beats uniform averaging"].endswith("| holds |"))
        # (3): top-1 balanced wins, top-2 loses -> partly; (4): btx loses to both
        self.assertIn("| partly (see the numbers) |", lines["(3) balanced clusters beat random splits (C-BTM, same top-k)"] + md)
        self.assertIn(f"btx {e(2.3)} / {e(2.3)} vs dense-btx {e(1.95)} / {e(1.95)} | no | no |  |", md)
        self.assertIn("| btx-mixed vs dense: not measured | - | - | does not hold (some comparisons not measured) |", md)
        # the sweep: main is the 50% point, the dense model is main's at every share, 75% absent
        self.assertIn(f"| 25% | {e(2.0)} | {e(2.0)} | - | - | {e(2.05)} | {e(2.05)} | {e(2.4)} | {e(2.4)} |", md)
        self.assertIn(f"| 50% | {e(2.0)} | {e(2.0)} | - | - | {e(1.9)} | {e(1.9)} | {e(2.2)} | {e(2.2)} |", md)
        self.assertNotIn("| 75% |", md)
        self.assertIn("| p | eval | 2026-01-01T10:00:00Z | 2026-01-01T10:30:00Z | 1800 | 2 |", md)

    def test_missing_folders_are_not_measured(self):
        self.write_folder("p", self.cells({"baseline": 2.0, "ensemble": 1.9}))
        rc, _, err = run(replication_report.main, [self.path("runs"), "--prefix", "p", "--out", self.path("o")])
        self.assertEqual(rc, 0, err)
        with open(self.path(os.path.join("o", "tables.md"))) as f:
            md = f.read()
        self.assertIn("| avg-posterior vs avg-uniform: not measured | - | - | not measured |", md)
        self.assertIn("| (1) the BTM ensemble beats the compute-matched dense LM | ensemble-prevtok vs dense: "
                      "not measured | - | - |  |", md)
        self.assertNotIn("Seed share", md)  # the main folder alone is one point: no sweep plot
        self.assertFalse(os.path.exists(self.path(os.path.join("o", "seed_share.png"))))

    def test_missing_or_broken_main_eval_is_an_error(self):
        rc, _, err = run(replication_report.main, [self.path("runs"), "--prefix", "p"])
        self.assertEqual(rc, 2)
        self.assertIn("p/eval.h5: missing (the main run has not been evaluated)", err)
        os.makedirs(self.path("runs/p"))
        with open(self.path("runs/p/eval.h5"), "w") as f:
            f.write("not hdf5")
        rc, _, err = run(replication_report.main, [self.path("runs"), "--prefix", "p"])
        self.assertEqual(rc, 2)
        self.assertIn("eval.h5: cannot open as HDF5", err)


if __name__ == "__main__":
    if "--keep" in sys.argv:
        i = sys.argv.index("--keep")
        KEEP = sys.argv[i + 1]
        del sys.argv[i:i + 2]
    unittest.main(verbosity=2)
