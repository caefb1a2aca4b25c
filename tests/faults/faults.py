"""Fault injection: btm killed, stopped, out of disk and on a read-only folder at random
moments of every phase, and then the same command run again. It must finish, never train a
finished model again, and end with outputs equal, dataset by dataset and bit for bit, to an
uninterrupted run at the same rank count (tests/faults/outputs.py says what is compared).

Parts (--parts, default all):
  kill      SIGKILL of one rank at a random moment of prepare, seed, experts, baseline,
            average or eval, or in the middle of a file write at a random byte
            (BTM_FAULT_WRITE_KILL_AT_BYTE, include/btm/fault_hook.hpp). Faults come in chains
            of 4-8 on one run folder, in phase order (each rerun is itself the next victim);
            a clean rerun ends each chain and is compared with the reference.
  signals   SIGUSR1 to mpirun and SIGTERM to every rank, once in each phase: exit status 75
            (0 when the signal came after the last safe point of eval), then a rerun.
  disk      a full disk (a small tmpfs) and a file-size limit (ulimit -f, SIGXFSZ ignored)
            during a checkpoint: a clear error, no hang, earlier outputs intact; a rerun with
            room finishes.
  readonly  a read-only output folder (read-only bind mount): a clear error, no file touched;
            a rerun on the writable folder finishes.
After every run: every file at its final name reads in full, every finished one equals the
reference, and the log shows that no finished model was trained again and every
interrupted one resumed from the step its checkpoint holds.

  faults.py BTM SOURCE_DIR [--ranks P] [--faults N] [--seed S] [--parts kill,signals,...]
Environment: BTM_FAULTS=N (injected SIGKILLs, default 30; e.g. 300 for a long run),
BTM_FAULT_SEED=S (replays the plan of a printed seed), BTM_FAULTS_KEEP=1 (keeps the folder).
"""
import argparse
import hashlib
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import h5py

import outputs
from btm_run import Hang, Run, rank_wrapper

PHASES = ["prepare", "seed", "experts", "baseline", "average", "eval"]
# inputs/tiny.toml made smaller still: 16 seed steps, 8 per expert, 24 baseline steps, a
# checkpoint every 3 (the last interval of each model is a partial one).
CHECKPOINT_EVERY = 3
DECK_SETTINGS = ["seed.tokens=2048", "experts.tokens=1024", "eval.max_tokens_per_domain=512",
                 "eval.prior_sequences=2", "average.posterior_sequences=2",
                 f"train.checkpoint_every={CHECKPOINT_EVERY}"]
RUN_LIMIT_S = 180.0


class Failure(Exception):
    pass


def say(line):
    print(line, flush=True)


def dataset_bytes(path):
    """{dataset path: bytes btm hands to HDF5 when it writes it} of one file."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                if obj.dtype.kind == "O" or h5py.check_string_dtype(obj.dtype):
                    out[name] = sum(len(v if isinstance(v, bytes) else str(v).encode()) + 1 for v in obj[()].reshape(-1))
                else:
                    out[name] = obj.size * obj.dtype.itemsize
        f.visititems(visit)
    return out


class Suite:
    def __init__(self, btm, src, ranks, work, seed):
        self.btm, self.src, self.ranks, self.work, self.seed = btm, src, ranks, work, seed
        self.ref = os.path.join(work, "reference")
        self.counts = {"injected": 0, "survived": 0, "not_triggered": 0, "runs": 0}
        self.by_phase = {p: 0 for p in PHASES}  # where the faults landed
        self.last_run = None
        self.by_kind = {"kill": 0, "write": 0}
        self.notes = []

    # ---- runs ---------------------------------------------------------------------------
    def args(self, out, extra=()):
        return [os.path.join(self.src, "inputs/tiny.toml"),
                "--set", f'run.out_dir="{out}"',
                "--set", f'data.corpus="{os.path.join(self.src, "tests/data/fixtures/split_jsonl")}"',
                *[a for kv in DECK_SETTINGS for a in ("--set", kv)], *extra]

    def start(self, out, wrapper=(), extra=()):
        self.counts["runs"] += 1
        self.last_run = Run(self.btm, self.ranks, self.args(out, extra), os.path.join(self.work, "log"), wrapper,
                            RUN_LIMIT_S)
        return self.last_run

    def no_leftover_processes(self, out):
        for _ in range(50):
            left = [p for p in os.listdir("/proc") if p.isdigit() and _cmdline_has(p, out)]
            if not left:
                return
            time.sleep(0.1)
        raise Failure(f"processes of a finished job are still alive: {left}")

    # ---- the reference ------------------------------------------------------------------
    def build_reference(self):
        t0 = time.monotonic()
        run = self.start(self.ref)
        rc = run.wait()
        if rc != 0:
            raise Failure(f"the reference run failed (status {rc}):\n{run.text()[-3000:]}")
        stamps = [(t, line[len("# phase "):]) for t, line in run.lines if line.startswith("# phase ")]
        end = run.lines[-1][0]
        self.duration = {}
        for i, (t, phase) in enumerate(stamps):
            self.duration[phase] = (stamps[i + 1][0] if i + 1 < len(stamps) else end) - t
        text = run.text()
        self.experts, self.root_of = [], {}
        for m in re.finditer(r"phase=experts group=\d+ ranks=(\d+)-\d+ experts=(\S+)", text):
            for e in m.group(2).split(","):
                self.experts.append(e)
                self.root_of[e] = int(m.group(1))
        self.posterior_rank = {}
        for i, m in enumerate(re.finditer(r"phase=average model=(posterior-\S+) ", text)):
            self.posterior_rank[m.group(1)] = i % self.ranks
        self.total_steps = {m.group(1): int(m.group(2))
                            for m in re.finditer(r"model=(\S+) status=start steps=(\d+)", text)}
        self.write_bytes = {rel: dataset_bytes(os.path.join(self.ref, rel)) for rel in outputs.output_files(self.ref)}
        files, datasets = outputs.summary(self.ref)
        say(f"reference: {self.ranks} rank(s), {time.monotonic() - t0:.1f} s, {files} files, {datasets} datasets; "
            "phase seconds: " + " ".join(f"{p}={self.duration.get(p, 0):.2f}" for p in PHASES))

    # ---- the state of a run folder ------------------------------------------------------
    def models(self):
        return {"seed": "seed.h5", "baseline": "baseline.h5", **{e: f"experts/{e}.h5" for e in self.experts}}

    def state(self, out):
        st = {"data": os.path.exists(os.path.join(out, "data.h5")), "models": {},
              "records": set(), "forest": os.path.exists(os.path.join(out, "forest.h5"))}
        for name, rel in self.models().items():
            path = os.path.join(out, rel)
            if os.path.exists(path):
                st["models"][name] = outputs.model_state(path)
        for e in self.experts:
            if os.path.exists(os.path.join(out, "forest.h5.d", e + ".h5")):
                st["records"].add(e)
        return st

    def finished(self, phase, st):
        done = lambda m: st["models"].get(m, (False, 0))[0]
        if phase == "prepare":
            return st["data"]
        if phase in ("seed", "baseline"):
            return done(phase)
        if phase == "experts":
            return all(done(e) for e in self.experts) and st["records"] == set(self.experts) and st["forest"]
        return False  # average and eval are recomputed by every run

    def step_of(self, name, st):
        complete, step = st["models"].get(name, (False, 0))
        return self.total_steps[name] if complete else step

    def remaining_fraction(self, phase, st):
        if phase in ("seed", "baseline"):
            return 1 - self.step_of(phase, st) / self.total_steps[phase]
        if phase == "experts":
            total = sum(self.total_steps[e] for e in self.experts)
            return 1 - sum(self.step_of(e, st) for e in self.experts) / total
        return 1.0

    # ---- checks after every run ---------------------------------------------------------
    def check_folder(self, out):
        """Every file at its final name reads; every finished one equals the reference."""
        problems = outputs.check_integrity(out)
        finished = []
        for rel in outputs.output_files(out):
            path = os.path.join(out, rel)
            if rel.startswith("forest.h5.d/failed/"):
                # The record of an expert whose training failed: kept until a rerun finishes it.
                if os.path.basename(rel)[:-len(".h5")] not in self.experts:
                    problems.append(f"{rel}: a failure record for no expert of the run")
                continue
            if rel in ("seed.h5", "baseline.h5") or rel.startswith("experts/"):
                complete, step = outputs.model_state(path)
                if not complete:
                    with h5py.File(path, "r") as f:
                        logged = len(f["metrics/step"])
                    if logged != step:
                        problems.append(f"{rel}: checkpoint at step {step} holds {logged} metric rows")
                    continue
            finished.append(rel)
        unknown = [rel for rel in finished if rel not in self.write_bytes]
        problems += [f"{rel}: not an output of the reference run" for rel in unknown]
        # forest.h5 of an interrupted experts phase lists the experts finished so far.
        if "forest.h5" in finished and not problems:
            ref_rows, rows = outputs.forest_rows(self.ref), outputs.forest_rows(out)
            if [r for r in ref_rows if r in rows] != rows:
                problems.append(f"forest.h5: rows {rows} are not rows of the reference's {ref_rows}, in its order")
            if len(rows) < len(ref_rows):
                finished.remove("forest.h5")
        problems += outputs.compare_runs(self.ref, out, [f for f in finished if f not in unknown])
        return problems

    def check_log(self, before, text):
        """No finished model trained again; interrupted ones resume at their checkpoint."""
        problems = []
        if before["data"] and "prepare: wrote" in text:
            problems.append("prepare wrote data.h5 again although it was there")
        for name in self.models():
            first = re.search(rf"model={re.escape(name)} status=(\w+)( step=(\d+))?", text)
            if not first:
                continue
            complete, step = before["models"].get(name, (False, None))
            status = first.group(1)
            if complete and status != "skipped":
                problems.append(f"{name} was finished, but the rerun logged status={status} (trained again)")
            elif not complete and step is not None and (status != "resumed" or int(first.group(3)) != step):
                problems.append(f"{name} had a checkpoint at step {step}, but the rerun logged {first.group(0)}")
            elif not complete and step is None and status != "start":
                problems.append(f"{name} had no file, but the rerun logged {first.group(0)}")
        return problems

    def after_run(self, out, before, run, what):
        self.no_leftover_processes(out)
        problems = self.check_folder(out) + self.check_log(before, run.text())
        if problems:
            raise Failure(f"{what}:\n  " + "\n  ".join(problems[:20]) + "\n--- log tail:\n" + run.text()[-2500:])

    def finish(self, out, what):
        """A clean rerun of the same command: it must finish and equal the reference."""
        before = self.state(out)
        run = self.start(out)
        rc = run.wait()
        if rc != 0 or "phase=eval status=done" not in run.text():
            raise Failure(f"{what}: the clean rerun failed (status {rc}):\n{run.text()[-3000:]}")
        self.after_run(out, before, run, what + ": clean rerun")
        problems = outputs.compare_runs(self.ref, out)
        if problems:
            raise Failure(f"{what}: the outputs differ from the reference:\n  " + "\n  ".join(problems[:20]))
        left = outputs.temporary_files(out)
        return len(left)

    # ---- part 1: SIGKILL ----------------------------------------------------------------
    def write_targets(self, phase, st):
        """(file part, rank, bytes it will write to it in this run) for a write kill in `phase`."""
        per_write = lambda rel: sum(self.write_bytes[rel].values())
        writes = lambda name: math.ceil((self.total_steps[name] - self.step_of(name, st)) / CHECKPOINT_EVERY)
        if phase == "prepare":
            tokens = sum(b for k, b in self.write_bytes["data.h5"].items() if k.endswith("/tokens"))
            rest = per_write("data.h5") - tokens
            return [("data.h5", r, tokens // self.ranks + (rest if r == 0 else 0)) for r in range(self.ranks)]
        if phase in ("seed", "baseline"):
            return [(f"{phase}.h5", 0, per_write(f"{phase}.h5") * writes(phase))]
        if phase == "experts":
            out = [(f"experts/{e}.h5", self.root_of[e], per_write(f"experts/{e}.h5") * writes(e))
                   for e in self.experts if writes(e) > 0]
            out += [(f"forest.h5.d/{e}.h5", self.root_of[e], per_write(f"forest.h5.d/{e}.h5"))
                    for e in self.experts if e not in st["records"]]
            return out
        if phase == "average":
            out = [("averages/uniform.h5", 0, per_write("averages/uniform.h5")),
                   ("forest.h5.tmp", 0, per_write("forest.h5"))]
            out += [(f"averages/{m}.h5", r, per_write(f"averages/{m}.h5")) for m, r in self.posterior_rank.items()]
            return out
        return [("eval.h5", 0, per_write("eval.h5"))]

    def inject(self, out, wanted, kind, frng, label):
        """One SIGKILL in the first unfinished phase at or after `wanted`. Returns whether
        the run was killed (False: it finished first, the chain is complete)."""
        before = self.state(out)
        phase = next((p for p in PHASES[PHASES.index(wanted):] if not self.finished(p, before)), None)
        if phase is None:
            return False
        wrapper, detail = (), ""
        targets = self.write_targets(phase, before) if kind == "write" else []
        targets = [t for t in targets if t[2] > 1]
        if kind == "write" and not targets:
            kind = "kill"
        if kind == "write":
            part, rank, total = frng.choice(targets)
            byte = frng.randint(1, max(1, int(total * 0.95)))
            wrapper = rank_wrapper({"BTM_FAULT_WRITE_KILL_AT_BYTE": byte, "BTM_FAULT_WRITE_KILL_FILE": part},
                                   only_rank=rank)
            detail = f"rank={rank} file={part} byte={byte}/{total}"
        else:
            rank = frng.randrange(self.ranks)
            delay = frng.uniform(0, max(0.05, self.duration.get(phase, 0.5) * self.remaining_fraction(phase, before)))
            detail = f"rank={rank} delay={delay:.3f}s"
        run = self.start(out, wrapper)
        hit = None
        if kind == "kill":
            if run.wait_for(rf"^# phase {phase}$", RUN_LIMIT_S):
                time.sleep(delay)
                hit = run.current_phase()
                if not run.signal_rank(rank, signal.SIGKILL):
                    hit = None
        rc = run.wait()
        text = run.text()
        if kind == "write":
            m = re.search(r"fault=write_kill byte=\d+ written=(\d+) file=(\S+)", text)
            hit = run.current_phase() if m else None
            if m:
                detail += f" (died before the dataset at byte {m.group(1)} of {os.path.basename(m.group(2))})"
        if hit is None:
            if rc != 0:
                raise Failure(f"{label}: the run failed without an injected fault (status {rc}):\n{text[-3000:]}")
            self.counts["not_triggered"] += 1
            say(f"{label}: {kind} {detail} in {phase}: not injected, the run finished first")
            self.after_run(out, before, run, label)
            return False
        if rc == 0:
            raise Failure(f"{label}: the run exited 0 although rank {rank} was killed")
        self.counts["injected"] += 1
        self.by_phase[hit] = self.by_phase.get(hit, 0) + 1
        self.by_kind[kind] += 1
        say(f"{label}: {kind} {detail} wanted={wanted} hit={hit} status={rc}")
        self.after_run(out, before, run, label)
        return True

    def part_kill(self, faults):
        # The phases aimed at: each as often as the others, in a random order.
        pool = PHASES * math.ceil(faults / len(PHASES))
        random.Random(f"{self.seed}:phases").shuffle(pool)
        n_chain = 0
        while self.counts["injected"] < faults:
            n_chain += 1
            if n_chain > 3 * faults:
                raise Failure("too many chains without an injected fault")
            crng = random.Random(f"{self.seed}:chain:{n_chain}")
            length = min(crng.randint(4, 8), faults - self.counts["injected"])
            wanted = sorted((pool.pop() if pool else crng.choice(PHASES)) for _ in range(length))
            wanted.sort(key=PHASES.index)
            out = os.path.join(self.work, f"chain{n_chain}")
            injected = []
            for i, phase in enumerate(wanted):
                frng = random.Random(f"{self.seed}:chain:{n_chain}:fault:{i}")
                kind = frng.choice(["kill", "write"])
                if not self.inject(out, phase, kind, frng, f"fault {self.counts['injected'] + 1}/{faults} chain={n_chain}"):
                    break
                injected.append(phase)
            temporaries = self.finish(out, f"chain {n_chain}")
            self.counts["survived"] += len(injected)
            say(f"chain {n_chain}: {len(injected)} fault(s) survived, outputs equal to the reference "
                f"({temporaries} temporary file(s) of killed writers left)")
            shutil.rmtree(out, ignore_errors=True)

    # ---- part 2: stop signals -----------------------------------------------------------
    def part_signals(self):
        for sig_name in ("USR1", "TERM"):
            out = os.path.join(self.work, f"signal-{sig_name}")
            rng = random.Random(f"{self.seed}:signal:{sig_name}")
            for phase in PHASES:
                before = self.state(out)
                if self.finished(phase, before):
                    say(f"SIG{sig_name} in {phase}: the phase is already finished (an earlier stop came after it)")
                    continue
                delay = rng.uniform(0, max(0.05, 0.6 * self.duration.get(phase, 0.5) * self.remaining_fraction(phase, before)))
                run = self.start(out)
                sent, hit = False, None
                if run.wait_for(rf"^# phase {phase}$", RUN_LIMIT_S):
                    time.sleep(delay)
                    hit = run.current_phase()
                    sent = self.send_stop_signal(run, sig_name)
                rc = run.wait()
                text = run.text()
                label = f"SIG{sig_name} in {phase} after {delay:.3f}s (hit={hit})"
                stop = re.search(r"# stopped (before|after)[^;]*|status=interrupted[^(]*", text)
                if rc == 75 and stop:
                    say(f"{label}: status 75, {stop.group(0).strip()}")
                elif rc == 0 and "phase=eval status=done" in text:
                    say(f"{label}: status 0, the signal came after the last safe point and the run finished")
                else:
                    raise Failure(f"{label}: status {rc} (expected 75, or 0 with every phase done):\n{text[-3000:]}")
                if sent:
                    self.counts.setdefault("signals", 0)
                    self.counts["signals"] += 1
                self.after_run(out, before, run, label)
            self.finish(out, f"SIG{sig_name} series")
            say(f"SIG{sig_name} series: the rerun finished, outputs equal to the reference")
            self.signal_after_last_safe_point(out, sig_name)
            shutil.rmtree(out, ignore_errors=True)

    def send_stop_signal(self, run, sig_name):
        """As Slurm does: SIGUSR1 to mpirun (--signal), SIGTERM to every rank (scancel, time
        limit). Returns whether a process got it."""
        if sig_name == "USR1":
            return run.signal_mpirun(signal.SIGUSR1)
        return any([run.signal_rank(r, signal.SIGTERM) for r in range(self.ranks)])

    def signal_after_last_safe_point(self, out, sig_name):
        """A signal while MPI and HDF5 shut down, the work done: the run still ends with 0."""
        run = self.start(out)
        if not run.wait_for(r"^phase=eval status=done", RUN_LIMIT_S):
            raise Failure(f"SIG{sig_name} after eval: the run did not finish eval:\n{run.text()[-3000:]}")
        self.send_stop_signal(run, sig_name)
        rc = run.wait()
        if rc != 0:
            raise Failure(f"SIG{sig_name} after eval: status {rc}, expected 0:\n{run.text()[-3000:]}")
        say(f"SIG{sig_name} after the last safe point: status 0")

    # ---- part 3: full disk, file-size limit ---------------------------------------------
    def expect_error(self, out, before, run, label, fragment):
        rc = run.wait()
        text = run.text()
        if rc == 0 or "btm: error" not in text:
            raise Failure(f"{label}: status {rc}, expected an error:\n{text[-3000:]}")
        # An error that says what happened and to which file or folder of the run: one line,
        # or the summary of failed experts with one indented reason line each.
        errors = [e for e in re.findall(r"btm: error.*(?:\n  .*)*", text) if re.search(fragment, e) and out in e]
        if not errors:
            raise Failure(f"{label}: the error does not say {fragment!r} about a file of {out}:\n{text[-3000:]}")
        say(f"{label}: status {rc}: {' / '.join(errors[0].splitlines())[:400]}")
        self.after_run(out, before, run, label)

    def part_disk(self):
        rng = random.Random(f"{self.seed}:disk")
        mnt = os.path.join(self.work, "tmpfs")
        os.makedirs(mnt)
        # Room for data.h5 and a seed checkpoint or two, never for the whole run.
        total_kb = sum(os.path.getsize(os.path.join(self.ref, f)) for f in outputs.output_files(self.ref)) // 1024
        size_kb = rng.randint(1000, int(total_kb * 0.8))
        if _mount(["-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", mnt]):
            try:
                out = os.path.join(mnt, "run")
                before = self.state(out)
                run = self.start(out)
                self.expect_error(out, before, run, f"full disk (tmpfs of {size_kb} KiB)", "No space left on device")
                if not _mount(["-o", "remount,size=64m", mnt]):
                    raise Failure("cannot remount the tmpfs larger")
                self.finish(out, "full disk")
                say("full disk: the rerun with room finished, outputs equal to the reference")
            finally:
                _umount(mnt)
        else:
            self.notes.append("full disk on a tmpfs: skipped, mount -t tmpfs is not permitted here")
            say(self.notes[-1])
        limit_kb = rng.randint(200, 800)
        out = os.path.join(self.work, "fsize")
        before = self.state(out)
        run = self.start(out, rank_wrapper(ulimit_kb=limit_kb, ignore_xfsz=True))
        self.expect_error(out, before, run, f"file-size limit (ulimit -f {limit_kb})", "File too large")
        self.finish(out, "file-size limit")
        say("file-size limit: the rerun without the limit finished, outputs equal to the reference")

    # ---- part 4: read-only output folder ------------------------------------------------
    def part_readonly(self):
        out = os.path.join(self.work, "readonly")
        run = self.start(out, extra=["--phases", "prepare,seed"])
        if run.wait() != 0:
            raise Failure(f"read-only setup (prepare, seed) failed:\n{run.text()[-3000:]}")
        files = _digests(out)
        if _mount(["--bind", out, out]) and _mount(["-o", "remount,bind,ro", out]):
            how = "read-only bind mount"
        else:
            _umount(out)
            if os.geteuid() == 0:
                self.notes.append("read-only folder: skipped, root ignores permissions and bind mounts are not permitted here")
                say(self.notes[-1])
                return
            how = "folder without write permission"
            _chmod_tree(out, writable=False)
        try:
            before = self.state(out)
            run = self.start(out)
            self.expect_error(out, before, run, f"read-only output folder ({how})", "Read-only file system|Permission denied")
            if _digests(out) != files:
                raise Failure("read-only output folder: files changed")
        finally:
            if how.startswith("read-only"):
                _umount(out)
            else:
                _chmod_tree(out, writable=True)
        say("read-only output folder: every file byte-identical afterwards")
        self.finish(out, "read-only output folder")
        say("read-only output folder: the rerun on the writable folder finished, outputs equal to the reference")


def _cmdline_has(pid, text):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return text.encode() in f.read()
    except OSError:
        return False


def _mount(args):
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


def _umount(path):
    subprocess.run(["umount", path], capture_output=True)


def _chmod_tree(root, writable):
    for d, _, _ in os.walk(root):
        os.chmod(d, 0o755 if writable else 0o555)


def _digests(root):
    out = {}
    for d, _, files in os.walk(root):
        for n in files:
            p = os.path.join(d, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("btm")
    ap.add_argument("source_dir")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--faults", type=int, help="SIGKILLs to inject (default: BTM_FAULTS, else --faults-default)")
    ap.add_argument("--faults-default", type=int, default=30)
    ap.add_argument("--seed", type=int, default=int(os.environ.get("BTM_FAULT_SEED") or random.SystemRandom().randrange(1 << 31)))
    ap.add_argument("--parts", default="kill,signals,disk,readonly")
    a = ap.parse_args()
    parts = a.parts.split(",")
    if a.faults is None:
        a.faults = int(os.environ.get("BTM_FAULTS") or a.faults_default)
    t0 = time.monotonic()
    say(f"fault seed: {a.seed} (replay: BTM_FAULT_SEED={a.seed} BTM_FAULTS={a.faults} "
        f"{sys.argv[0]} ... --ranks {a.ranks} --parts {a.parts})")
    work = tempfile.mkdtemp(prefix="btm_faults.")
    suite = Suite(os.path.abspath(a.btm), os.path.abspath(a.source_dir), a.ranks, work, a.seed)
    ok = False
    try:
        suite.build_reference()
        if "kill" in parts:
            suite.part_kill(a.faults)
        if "signals" in parts:
            suite.part_signals()
        if "disk" in parts:
            suite.part_disk()
        if "readonly" in parts:
            suite.part_readonly()
        ok = True
    except (Failure, Hang) as e:
        say(f"FAIL: {e}")
        say(f"replay: BTM_FAULT_SEED={a.seed} BTM_FAULTS={a.faults}; logs of every run: {work}/log")
    finally:
        if suite.last_run is not None and suite.last_run.running():
            suite.last_run.kill_all()
        c = suite.counts
        say(f"faults_injected={c['injected']} faults_survived={c['survived']} not_triggered={c['not_triggered']} "
            + " ".join(f"hit/{p}={n}" for p, n in suite.by_phase.items())
            + f" kill={suite.by_kind['kill']} write={suite.by_kind['write']} stop_signals={c.get('signals', 0)} "
            f"runs={c['runs']} ranks={a.ranks} seconds={time.monotonic() - t0:.0f}")
        for n in suite.notes:
            say("note: " + n)
        if ok and not os.environ.get("BTM_FAULTS_KEEP"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"kept {work}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
