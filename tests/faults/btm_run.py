"""One `mpirun -np P btm run DECK ...` under watch: its output lines as they come (with the
time they came), the pids of its ranks, signals to mpirun or to one rank, and a hard time
limit (a run past it is a hang: its process group is killed and the test fails)."""
import os
import re
import signal
import subprocess
import threading
import time


class Hang(Exception):
    pass


def rank_wrapper(env=None, ulimit_kb=None, ignore_xfsz=False, only_rank=None):
    """A bash prefix run by every rank before exec'ing btm: extra environment (for one rank
    only when `only_rank` is given), a file-size limit (ulimit -f) with SIGXFSZ ignored so
    that a write past it fails with EFBIG instead of killing the process."""
    lines = []
    if ignore_xfsz:
        lines.append("trap '' XFSZ")
    if ulimit_kb is not None:
        lines.append(f"ulimit -f {int(ulimit_kb)}")
    if env:
        exports = " ".join(f"{k}='{v}'" for k, v in env.items())
        if only_rank is None:
            lines.append(f"export {exports}")
        else:
            lines.append(f'if [ "$OMPI_COMM_WORLD_RANK" = "{only_rank}" ]; then export {exports}; fi')
    if not lines:
        return []
    return ["bash", "-c", "; ".join(lines) + '; exec "$@"', "btm-rank"]


class Run:
    def __init__(self, btm, ranks, args, log_path, wrapper=(), limit_s=180.0):
        self.cmd = ["mpirun", "-np", str(ranks), "--oversubscribe", *wrapper, btm, "run", *args]
        self.log_path = log_path
        self.limit_s = limit_s
        self.lines = []  # (seconds since start, text)
        self._cond = threading.Condition()
        self._done = False
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, errors="replace", start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        with open(self.log_path, "a") as log:
            log.write("$ " + " ".join(self.cmd) + "\n")
            for line in self.proc.stdout:
                log.write(line)
                log.flush()
                with self._cond:
                    self.lines.append((time.monotonic() - self.t0, line.rstrip("\n")))
                    self._cond.notify_all()
        with self._cond:
            self._done = True
            self._cond.notify_all()

    def text(self):
        with self._cond:
            return "\n".join(t for _, t in self.lines)

    def wait_for(self, pattern, timeout):
        """Waits for a line matching `pattern` (regex); False when the run ended first."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for _, t in self.lines[seen:]:
                    if rx.search(t):
                        return True
                seen = len(self.lines)
                if self._done:
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Hang(f"no line matching {pattern!r} after {timeout:.0f} s")
                self._cond.wait(left)

    def current_phase(self):
        with self._cond:
            phases = [t[len("# phase "):] for _, t in self.lines if t.startswith("# phase ")]
        return phases[-1] if phases else "startup"

    def running(self):
        return self.proc.poll() is None

    def rank_pids(self):
        """{rank: pid} of the btm processes that mpirun started."""
        out = {}
        for pid in _descendants(self.proc.pid):
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() != "btm":
                        continue
                with open(f"/proc/{pid}/environ", "rb") as f:
                    env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
            except OSError:
                continue
            if b"OMPI_COMM_WORLD_RANK" in env:
                out[int(env[b"OMPI_COMM_WORLD_RANK"])] = pid
        return out

    def signal_rank(self, rank, sig):
        """Sends `sig` to one rank; False when it is not (or no longer) running."""
        pid = self.rank_pids().get(rank)
        if pid is None:
            return False
        try:
            os.kill(pid, sig)
            return True
        except ProcessLookupError:
            return False

    def signal_mpirun(self, sig):
        if not self.running():
            return False
        self.proc.send_signal(sig)
        return True

    def wait(self):
        """The exit status; a run still going at its time limit is killed and raises Hang."""
        left = self.limit_s - (time.monotonic() - self.t0)
        try:
            rc = self.proc.wait(timeout=max(left, 1.0))
        except subprocess.TimeoutExpired:
            self.kill_all()
            raise Hang(f"still running after {self.limit_s:.0f} s: {' '.join(self.cmd)}")
        self._reader.join(timeout=10)
        return rc

    def kill_all(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def _descendants(pid):
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append(c)
            todo.append(c)
    return out
