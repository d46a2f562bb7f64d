"""Run a sweep on this machine: at most K processes of its program at once.

With CUDA, slot i uses visible GPU i mod G (CUDA_VISIBLE_DEVICES per run; by default
one slot per GPU); on CPU, K processes share the cores (OMP_NUM_THREADS = cores / K
unless it is set). Each run's output goes to its folder's log (train.log, continual.log).
Ctrl-C (or SIGTERM) is forwarded to the running processes, which stop at their next
step keeping every finished epoch (train.py) or task / stream checkpoint (continual.py);
no new run starts, and rerunning the same command resumes them. Children run in their
own sessions, so a Ctrl-C in the terminal reaches them once, through this process.
"""
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import deque

from utils.sweep.state import STOP_CODES, clear_exit, record_exit

POLL_S = 0.2


def visible_gpus():
    """GPU ids for CUDA_VISIBLE_DEVICES: the ones already visible, else nvidia-smi's."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        ids = [g.strip() for g in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
        return [] if ids and ids[0].startswith("-") else ids
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip().isdigit()]


class LocalExecutor:
    """``run(runs)`` starts ``sweep.command(run)`` for each run, ``slots`` at a time."""

    def __init__(self, sweep, slots=None, gpus=None, out=sys.stdout, rerun=None):
        """``rerun``: the command line that continues the sweep, shown after a stop."""
        self.sweep, self.rerun = sweep, rerun
        self.gpus = visible_gpus() if gpus is None else list(gpus)
        self.slots = slots or max(1, len(self.gpus))
        self.out = out
        self.signum = None

    def describe(self):
        where = (f"GPUs {','.join(self.gpus)}" if self.gpus else
                 f"CPU ({os.cpu_count()} cores)")
        return f"{self.slots} slot{'s' * (self.slots > 1)} on {where}"

    def _env(self, slot):
        env = dict(os.environ)
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = self.gpus[slot % len(self.gpus)]
        elif self.slots > 1 and "OMP_NUM_THREADS" not in env:
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.slots))
        return env

    def _say(self, text):
        print(text, file=self.out, flush=True)

    def _start(self, run, slot):
        command = self.sweep.command(run)
        os.makedirs(run.dir, exist_ok=True)
        clear_exit(run.dir)
        log_file = os.path.join(run.dir, self.sweep.program.log)
        log = open(log_file, "ab")
        log.write(f"=== sweep: {time.strftime('%Y-%m-%d %H:%M:%S')} slot {slot}: "
                  f"{self.sweep.quoted(command)}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(command, cwd=self.sweep.repo, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=self._env(slot), start_new_session=True)
        finally:
            log.close()
        resumed = "--resume" in command[2:3]
        self._say(f"[start] {run.label} ({'resumed, ' if resumed else ''}slot {slot}); "
                  f"log: {log_file}")
        return proc

    def _on_signal(self, signum, _frame):
        """Forward each signal once to every running run (a second one stops them at once)."""
        self.signum, self.forwarded = signum, set()
        self._forward()

    def _forward(self):
        for _run, proc, _t0 in list(self.running.values()):
            if proc.pid not in self.forwarded and proc.poll() is None:
                proc.send_signal(self.signum)
                self.forwarded.add(proc.pid)

    def run(self, runs):
        """Exit status: 0 all finished, 1 some failed, 130/143 stopped by SIGINT/SIGTERM."""
        pending, self.running, self.forwarded = deque(runs), {}, set()
        finished = failed = 0
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while self.running or (pending and self.signum is None):
                free = [s for s in range(self.slots) if s not in self.running]
                while free and pending and self.signum is None:
                    slot, run = free.pop(0), pending.popleft()
                    self.running[slot] = (run, self._start(run, slot), time.time())
                if self.signum is not None:     # also reaches a run started just before it
                    self._forward()
                for slot, (run, proc, t0) in list(self.running.items()):
                    code = proc.poll()
                    if code is None:
                        continue
                    del self.running[slot]
                    record_exit(run.dir, code, "local")
                    if code == 0:
                        finished += 1
                        self._say(f"[done] {run.label} in {time.time() - t0:.1f} s")
                    elif self.signum is not None and code in STOP_CODES:
                        self._say(f"[stopped] {run.label}: kept its last checkpoint")
                    else:
                        failed += 1
                        self._say(f"[failed] {run.label}: exit status {code}; see "
                                  f"{os.path.join(run.dir, self.sweep.program.log)}")
                time.sleep(POLL_S)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        if self.signum is not None:
            self._say(f"Stopped by {signal.Signals(self.signum).name}: {finished} run(s) "
                      f"finished, {len(runs) - finished - failed - len(pending)} stopped "
                      f"(checkpointed), {len(pending)} not started. Rerun the same command "
                      "to continue: finished runs are skipped, stopped ones resume"
                      + (f":\n    {self.rerun}" if self.rerun else "."))
            return 128 + self.signum
        return 1 if failed else 0
