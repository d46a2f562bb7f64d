"""Failure and recovery of train.py, part 1: exact resume after SIGKILL/SIGINT/SIGTERM
(part 2, tests/test_failures.py: crash-safe writes, non-finite steps, bad input).

Killed runs are real processes forked from a "zygote" that imported train.py once (an
import costs seconds on a busy CI machine); a hook pauses a child at a chosen point
(before a step, after a metrics row, before a checkpoint rename) so the kill lands there
deterministically. The final resume of the SIGKILL chain is a plain ``python train.py``.
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--dataset", "Strokes", "--method", "sparse-maml", "--seed", "3", "--hidden_size", "8",
        "--gradient_steps", "1", "--gradient_steps_test", "1", "--num_shots_test", "2",
        "--epochs", "3", "--batches_train", "3", "--batches_val", "2", "--batches_test", "2",
        "--val_after", "1", "--dont_use_cuda"]
ENV = dict(os.environ, OMP_NUM_THREADS="1")     # 2 shared cores: threads only contend

ZYGOTE = r'''
import json, os, sys, time
import torch
torch.set_num_threads(1)
import train
from maml.meta_learner import MetaLearner
from utils.run.metrics import RunLogger

def hold(marker):
    # announce the pause, then wait: SIGKILL ends the process here, SIGINT/SIGTERM set the flag
    open(marker, "w").close()
    while train.StopRequest.received is None:
        time.sleep(0.02)

def install(pause, marker):
    kind, *rest = pause.split(":")
    if kind == "step":          # before the n-th meta-step of this process
        calls, step = [0], MetaLearner.step
        def patched(self, batch):
            calls[0] += 1
            if calls[0] == int(rest[0]):
                hold(marker)
            return step(self, batch)
        MetaLearner.step = patched
    elif kind == "log":         # after the metrics row (epoch, phase), TensorBoard flushed
        log = RunLogger.log
        def patched(self, epoch, phase, *a, **k):
            log(self, epoch, phase, *a, **k)
            if (epoch, phase) == (int(rest[0]), rest[1]):
                self.flush()
                hold(marker)
        RunLogger.log = patched
    elif kind == "replace":     # before the n-th rename onto a file name (temp file complete)
        calls, replace = [0], os.replace
        def patched(src, dst, *a, **k):
            if os.path.basename(dst) == rest[0]:
                calls[0] += 1
                if calls[0] == int(rest[1]):
                    hold(marker)
            return replace(src, dst, *a, **k)
        os.replace = patched

for line in sys.stdin:
    cmd = json.loads(line)
    if "wait" in cmd:
        deadline = time.time() + cmd["timeout"]
        while True:
            pid, status = os.waitpid(cmd["wait"], os.WNOHANG)
            if pid or time.time() > deadline:
                break
            time.sleep(0.05)
        if not pid:
            os.killpg(cmd["wait"], 9)
            os.waitpid(cmd["wait"], 0)
        print(json.dumps({"code": os.waitstatus_to_exitcode(status) if pid else "timeout"}),
              flush=True)
        continue
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setpgid(0, 0)
            fd = os.open(cmd["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            if cmd.get("pause"):
                install(cmd["pause"], cmd["marker"])
            code = train.main(cmd["argv"])
        except SystemExit as err:
            code = err.code if isinstance(err.code, int) else 2
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    print(json.dumps({"pid": pid}), flush=True)
'''


class Zygote:
    """Forks train.main(argv) children from one process that imported train.py."""

    def __init__(self, tmp):
        self.tmp, self.count = tmp, 0
        self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE], cwd=REPO, env=ENV,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def start(self, argv, pause=None):
        self.count += 1
        log, marker = self.tmp / f"log{self.count}", self.tmp / f"paused{self.count}"
        pid = self.ask(argv=[str(a) for a in argv], log=str(log), pause=pause,
                       marker=str(marker))["pid"]
        return Child(self, pid, log, marker)

    def run(self, argv):
        return self.start(argv).wait()

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


class Child:
    def __init__(self, zygote, pid, log, marker):
        self.zygote, self.pid, self.log, self.marker = zygote, pid, log, marker

    def wait_paused(self, timeout=120):
        deadline = time.time() + timeout
        while not self.marker.exists():
            assert time.time() < deadline, "child never paused:\n" + self.output()
            time.sleep(0.02)

    def wait(self, timeout=240):
        code = self.zygote.ask(wait=self.pid, timeout=timeout)["code"]
        assert code != "timeout", "child hung:\n" + self.output()
        return code

    def output(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture(scope="module")
def zygote(tmp_path_factory):
    z = Zygote(tmp_path_factory.mktemp("zygote"))
    yield z
    z.close()


def uninterrupted(zygote, tmp_path_factory, cache, workers):
    """The reference run (computed once per worker count)."""
    if workers not in cache:
        out = tmp_path_factory.mktemp(f"reference{workers}") / "run"
        assert zygote.run(TINY + ["--num_workers", workers, "--out_dir", out]) == 0
        cache[workers] = out
    return cache[workers]


@pytest.fixture(scope="module")
def reference(zygote, tmp_path_factory):
    cache = {}
    return lambda workers: uninterrupted(zygote, tmp_path_factory, cache, workers)


def main(argv):
    """train.main in this process (flags may be paths)."""
    return train.main([str(a) for a in argv])


def metrics_rows(out_dir):
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


def tensors_equal(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(tensors_equal(x, y) for x, y in zip(a, b))
    return a == b


def scalars(out_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(out_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"]}


def assert_same_run(expected, got):
    """Bitwise-equal weights and optimizer states, identical metrics rows and results."""
    assert metrics_rows(got) == metrics_rows(expected)
    results = [json.loads((d / "results.json").read_text()) for d in (expected, got)]
    for r in results:
        r.pop("wall_clock_s")
    assert results[1] == results[0]
    for name in ("best.pt", "checkpoint.pt"):
        a, b = (torch.load(d / name, weights_only=True) for d in (expected, got))
        for key in ("model", "mask") + (("optimizer_theta", "optimizer_mask", "epoch")
                                        if name == "checkpoint.pt" else ()):
            assert tensors_equal(a[key], b[key]), f"{name}: {key} differs"
    assert not [f for f in os.listdir(got) if f.startswith(".tmp-")]


@pytest.fixture(scope="module")
def killed_chain(zygote, tmp_path_factory):
    """A run SIGKILLed at four points (resumed after each), then finished by the CLI."""
    out = tmp_path_factory.mktemp("killed") / "run"
    argv = TINY + ["--num_workers", "0", "--out_dir", out]
    resume = argv + ["--resume"]
    for args, pause in [
            (argv, "log:0:val"),                # first epoch, TensorBoard events on disk
            (resume, "step:2"),                 # mid-epoch 0 of a resumed run
            (resume, "log:1:train"),            # metrics row written, checkpoint not yet
            (resume, "replace:checkpoint.pt:2")]:   # last checkpoint's temp file written
        child = zygote.start(args, pause)
        child.wait_paused()
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait() == -signal.SIGKILL
    leftovers = [f for f in os.listdir(out) if f.startswith(".tmp-checkpoint.pt")]
    done = subprocess.run([sys.executable, "train.py"] + [str(a) for a in resume], cwd=REPO,
                          env=ENV, capture_output=True, text=True, timeout=300)
    return out, leftovers, done


def test_sigkill_anywhere_then_resume_matches_uninterrupted_run(killed_chain, reference):
    out, leftovers, done = killed_chain
    assert leftovers        # the kill inside a checkpoint write left its temp file ...
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert_same_run(reference("0"), out)        # ... which the resume removed


def test_cli_killed_after_an_epoch_with_a_loader_worker_resumes_exactly(zygote, reference,
                                                                         tmp_path):
    """Plain ``python train.py``, SIGKILLed (main process only, as the OOM killer would)
    once metrics.jsonl shows epoch 1; its orphaned loader worker exits by itself."""
    out = tmp_path / "run"
    argv = TINY + ["--num_workers", "1", "--out_dir", out]
    proc = subprocess.Popen([sys.executable, "train.py"] + [str(a) for a in argv], cwd=REPO,
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    metrics, deadline = out / "metrics.jsonl", time.time() + 240
    while not (metrics.exists() and '"epoch": 1' in metrics.read_text()):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline
        time.sleep(0.02)
    proc.kill()
    assert proc.wait() == -signal.SIGKILL
    proc.stderr.close()
    assert zygote.run(["--resume", "--out_dir", out]) == 0
    assert_same_run(reference("1"), out)


def test_sigkill_then_resume_leaves_one_tensorboard_value_per_epoch(killed_chain, reference):
    out, _, done = killed_chain
    assert done.returncode == 0, done.stderr
    assert scalars(out) == scalars(reference("0"))


@pytest.mark.parametrize("sig, workers, pause, code", [
    (signal.SIGINT, "1", "step:5", 130),        # Ctrl-C reaches the loader worker too
    (signal.SIGTERM, "1", "log:1:train", 143)])  # before validation, train worker alive
def test_signal_stops_cleanly_and_resume_matches(zygote, reference, tmp_path, sig, workers,
                                                 pause, code):
    out = tmp_path / "run"
    argv = TINY + ["--num_workers", workers, "--out_dir", out]
    child = zygote.start(argv, pause)
    child.wait_paused()
    os.killpg(child.pid, sig)       # the whole process group, as a terminal or scheduler
    assert child.wait() == code
    log = child.output()
    assert "Traceback" not in log
    assert f"Stopped by {signal.Signals(sig).name}" in log
    assert f"python train.py --resume --out_dir {out}" in log
    assert zygote.run(["--resume", "--out_dir", out]) == 0     # flags from config.json
    assert_same_run(reference(workers), out)
    assert scalars(out) == scalars(reference(workers))   # resumed after epoch 0: purged


@pytest.mark.parametrize("signalled", [True, False])
def test_runtime_error_is_a_clean_stop_only_after_a_signal(monkeypatch, tmp_path, capsys,
                                                           signalled):
    def workers_gone(args):     # what a SIGTERM to the process group does to the loader
        if signalled:
            train.StopRequest.received = signal.SIGTERM
        raise RuntimeError("DataLoader worker (pid(s) 1) exited unexpectedly")
    monkeypatch.setattr(train, "train", workers_gone)
    if not signalled:           # a real bug keeps its traceback
        with pytest.raises(RuntimeError):
            main(TINY + ["--out_dir", tmp_path / "run"])
        return
    assert main(TINY + ["--out_dir", tmp_path / "run"]) == 143
    assert "Stopped by SIGTERM" in capsys.readouterr().err
