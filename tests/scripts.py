"""Run the entry scripts (train.py, evaluate.py) as programs, as a user does.

Each run is a real process executing the script as ``__main__`` (``runpy.run_path``,
the same as ``python train.py ARGS``), forked from a "zygote" that imported torch,
torchmeta and the library once: an import costs seconds on a busy CI machine, a fork
milliseconds. Children run one thread (tiny runs, often several at once); the hook
``threads:N`` gives a long one more. A hook can pause a child at a chosen point (before
a meta-step, after a metrics row, before a checkpoint rename) so that a kill lands there
deterministically, or make chosen meta-steps non-finite, or fail a chosen write with ENOSPC.

    with Zygote(tmp) as zygote:
        result = zygote.run("train.py", flags)            # Result(code, stdout, stderr)
        child = zygote.start("train.py", flags, pause="step:2")
        child.wait_paused(); os.kill(child.pid, signal.SIGKILL); child.wait()
"""
import json
import os
import subprocess
import sys
import time
from typing import NamedTuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, OMP_NUM_THREADS="1")     # 2 shared cores: threads only contend

ZYGOTE = r'''
import errno, json, os, runpy, signal, sys, time
import torch
torch.set_num_threads(1)
import tensorboard, torchvision  # noqa: F401  (preloaded for the children)
import maml.factory, utils.cli, utils.evaluation  # noqa: F401
from utils.data import loaders  # noqa: F401
from maml.engine import Engine
from maml.meta_learner import MetaLearner
from utils.run.metrics import RunLogger


def hold(marker):
    # Announce the pause, then wait: SIGKILL ends the process here; SIGINT/SIGTERM reach
    # the run's StopSignals, whose handler is a bound method: wait until it saw one.
    open(marker, "w").close()
    stop = getattr(signal.getsignal(signal.SIGINT), "__self__", None)
    while stop is None or stop.received is None:
        time.sleep(0.02)


def install(hook, marker):
    kind, *rest = hook.split(":")
    if kind == "step":          # pause before the n-th meta-step of this process
        calls, step = [0], MetaLearner.step
        def patched(self, batch):
            calls[0] += 1
            if calls[0] == int(rest[0]):
                hold(marker)
            return step(self, batch)
        MetaLearner.step = patched
    elif kind == "log":         # pause after the metrics row (epoch, phase), TensorBoard flushed
        log = RunLogger.log
        def patched(self, epoch, phase, *a, **k):
            log(self, epoch, phase, *a, **k)
            if (epoch, phase) == (int(rest[0]), rest[1]):
                self.flush()
                hold(marker)
        RunLogger.log = patched
    elif kind == "replace":     # pause before the n-th rename onto a file name
        calls, replace = [0], os.replace
        def patched(src, dst, *a, **k):
            if os.path.basename(dst) == rest[0]:
                calls[0] += 1
                if calls[0] == int(rest[1]):
                    hold(marker)
            return replace(src, dst, *a, **k)
        os.replace = patched
    elif kind == "threads":     # threads:N -> a long run that has the machine to itself
        torch.set_num_threads(int(rest[0]))
    elif kind == "nonfinite":   # nonfinite:loss|grad:1,4 -> those meta-steps (1-based) go bad
        what, bad = rest[0], {int(n) for n in rest[1].split(",")}
        for cls in Engine.__subclasses__():
            def patched(self, tasks, steps, real=cls.train_tasks, calls=[0]):
                loss, accuracies = real(self, tasks, steps)
                calls[0] += 1
                if calls[0] in bad:
                    if what == "loss":
                        loss = loss * float("nan")
                    else:
                        next(self.model.parameters()).grad.fill_(float("inf"))
                return loss, accuracies
            cls.train_tasks = patched
    elif kind == "workers_gone":   # workers_gone:sigterm|none -> the first step fails as
        step = MetaLearner.step      # a loader whose workers a SIGTERM ended (or a real bug)
        def patched(self, batch):
            if rest[0] == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)
            raise RuntimeError("DataLoader worker (pid(s) 1) exited unexpectedly")
        MetaLearner.step = patched
    elif kind == "enospc":      # enospc:NAME:N -> the n-th fsync of NAME's temp file fails
        calls, fsync = [0], os.fsync
        def patched(fd):
            if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(f".tmp-{rest[0]}-"):
                calls[0] += 1
                if calls[0] == int(rest[1]):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return fsync(fd)
        os.fsync = patched


def child(cmd):
    code = 1
    try:
        os.setpgid(0, 0)
        os.chdir(cmd["cwd"])
        for stream, path in ((1, cmd["stdout"]), (2, cmd["stderr"])):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, stream)
        sys.stdout = os.fdopen(1, "w", buffering=1)
        sys.stderr = os.fdopen(2, "w", buffering=1)
        for hook in cmd["hooks"]:
            install(hook, cmd["marker"])
        sys.argv = [cmd["script"]] + cmd["argv"]
        sys.path[0] = os.path.dirname(os.path.abspath(cmd["script"]))
        runpy.run_path(cmd["script"], run_name="__main__")
        code = 0
    except SystemExit as err:
        code = err.code if isinstance(err.code, int) else (0 if err.code is None else 1)
    except BaseException:
        import traceback
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


for line in sys.stdin:
    cmd = json.loads(line)
    if "wait" in cmd:
        deadline = time.time() + cmd["timeout"]
        while True:
            pid, status = os.waitpid(cmd["wait"], os.WNOHANG)
            if pid or time.time() > deadline:
                break
            time.sleep(0.02)
        if not pid:
            os.killpg(cmd["wait"], 9)
            os.waitpid(cmd["wait"], 0)
        print(json.dumps({"code": os.waitstatus_to_exitcode(status) if pid else "timeout"}),
              flush=True)
        continue
    pid = os.fork()
    if pid == 0:
        child(cmd)
    print(json.dumps({"pid": pid}), flush=True)
'''


class Result(NamedTuple):
    code: int
    stdout: str
    stderr: str


class Zygote:
    """Forks script runs from one process that imported the library once."""

    def __init__(self, tmp):
        self.tmp, self.count = tmp, 0
        self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE], cwd=REPO, env=ENV,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def start(self, script, argv, hooks=(), pause=None, cwd=REPO):
        """Start ``script`` (a path relative to the repository) with ``argv``; ``pause`` is
        one hook that holds the child (see ``Child.wait_paused``), ``hooks`` others."""
        self.count += 1
        base = self.tmp / f"run{self.count}"
        hooks = list(hooks) + ([pause] if pause else [])
        pid = self.ask(script=os.path.join(REPO, script), argv=[str(a) for a in argv],
                       cwd=str(cwd), hooks=hooks, marker=f"{base}.paused",
                       stdout=f"{base}.out", stderr=f"{base}.err")["pid"]
        return Child(self, pid, base)

    def run(self, script, argv, hooks=(), cwd=REPO, timeout=300):
        """Run ``script`` to its end: Result(exit code, stdout, stderr)."""
        child = self.start(script, argv, hooks, cwd=cwd)
        code = child.wait(timeout)
        return Result(code, child.stdout(), child.stderr())

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Child:
    def __init__(self, zygote, pid, base):
        self.zygote, self.pid, self.base = zygote, pid, base
        self.marker = base.with_name(base.name + ".paused")

    def wait_paused(self, timeout=120):
        deadline = time.time() + timeout
        while not self.marker.exists():
            assert time.time() < deadline, "child never paused:\n" + self.output()
            time.sleep(0.02)

    def wait(self, timeout=240):
        code = self.zygote.ask(wait=self.pid, timeout=timeout)["code"]
        assert code != "timeout", "child hung:\n" + self.output()
        return code

    def _read(self, suffix):
        path = self.base.with_name(self.base.name + suffix)
        return path.read_text(errors="replace") if path.exists() else ""

    def stdout(self):
        return self._read(".out")

    def stderr(self):
        return self._read(".err")

    def output(self):
        return self.stdout() + self.stderr()
