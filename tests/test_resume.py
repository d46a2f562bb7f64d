"""Failure and recovery of train.py, part 1: exact resume after SIGKILL/SIGINT/SIGTERM
(part 2, tests/test_failures.py: crash-safe writes, non-finite steps, bad input).

Killed runs are ``python train.py`` processes forked from the zygote of tests/scripts.py
(the library imported once); a hook pauses a child at a chosen point (before a step,
after a metrics row, before a checkpoint rename) so the kill lands there
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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--dataset", "Strokes", "--method", "sparse-maml", "--seed", "3", "--hidden_size", "8",
        "--gradient_steps", "1", "--gradient_steps_test", "1", "--num_shots_test", "2",
        "--epochs", "3", "--batches_train", "3", "--batches_val", "2", "--batches_test", "2",
        "--val_after", "1", "--dont_use_cuda"]
ENV = dict(os.environ, OMP_NUM_THREADS="1")     # 2 shared cores: threads only contend


def uninterrupted(zygote, tmp_path_factory, cache, workers):
    """The reference run (computed once per worker count)."""
    if workers not in cache:
        out = tmp_path_factory.mktemp(f"reference{workers}") / "run"
        argv = TINY + ["--num_workers", workers, "--out_dir", out]
        assert zygote.run("train.py", argv).code == 0
        cache[workers] = out
    return cache[workers]


@pytest.fixture(scope="module")
def reference(zygote, tmp_path_factory):
    cache = {}
    return lambda workers: uninterrupted(zygote, tmp_path_factory, cache, workers)


def metrics_rows(out_dir):
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


def tensors_equal(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(tensors_equal(x, y) for x, y in zip(a, b, strict=True))
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
        child = zygote.start("train.py", args, pause=pause)
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
    assert zygote.run("train.py", ["--resume", "--out_dir", out]).code == 0
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
    child = zygote.start("train.py", argv, pause=pause)
    child.wait_paused()
    os.killpg(child.pid, sig)       # the whole process group, as a terminal or scheduler
    assert child.wait() == code
    log = child.output()
    assert "Traceback" not in log
    assert f"Stopped by {signal.Signals(sig).name}" in log
    assert f"python train.py --resume --out_dir {out}" in log
    # the other flags come from config.json
    assert zygote.run("train.py", ["--resume", "--out_dir", out]).code == 0
    assert_same_run(reference(workers), out)
    assert scalars(out) == scalars(reference(workers))   # resumed after epoch 0: purged


@pytest.mark.parametrize("signalled", [True, False])
def test_runtime_error_is_a_clean_stop_only_after_a_signal(zygote, tmp_path, signalled):
    """A SIGTERM to the process group also ends the loader workers, and the next fetch
    fails with a RuntimeError: that is a clean stop. Without a signal it is a real bug and
    keeps its traceback."""
    result = zygote.run("train.py", TINY + ["--out_dir", tmp_path / "run"],
                        [f"workers_gone:{'sigterm' if signalled else 'none'}"])
    if signalled:
        assert result.code == 143 and "Stopped by SIGTERM" in result.stderr
        assert "Traceback" not in result.stderr
    else:
        assert result.code == 1 and "Traceback" in result.stderr
        assert "exited unexpectedly" in result.stderr
