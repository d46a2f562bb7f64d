"""train.py under real torchrun: 2 CPU processes (gloo, loopback) against one process.

The same flags give the same run: the same metrics.jsonl rows (accuracies, CIs and
sparsities equal; losses within float32 summation order), the same results.json, and
theta and phi within 1e-4 (float32: the meta-gradients are summed in another order).
Only rank 0 writes files or prints results. A worker SIGKILLed mid-run makes torchrun
restart the group, which continues from the last checkpoint and ends with the same run.
The float64 equivalence of the summed meta-gradients (1e-9) is tested at the library
level, in tests/utils/run/test_distributed.py.
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.test_resume import metrics_rows

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, OMP_NUM_THREADS="1")     # 2 shared cores: one thread per process
# meta-batches of 3 tasks over 2 processes (1 task and 2); 3 validation batches (2 and 1)
FLAGS = ["--dataset", "Strokes", "--method", "sparse-maml", "--hidden_size", "8",
         "--num_shots_train", "1", "--num_shots_test", "2", "--gradient_steps", "1",
         "--gradient_steps_test", "1", "--batch_size", "3", "--test_batch_size", "2",
         "--epochs", "6", "--batches_train", "4", "--batches_val", "3", "--batches_test", "2",
         "--val_after", "1", "--num_workers", "0", "--dont_use_cuda", "--seed", "0"]
pytestmark = pytest.mark.slow       # each torchrun start imports torch in 3 processes


def torchrun(argv, log):
    """``torchrun --standalone --nproc_per_node 2 --max-restarts 1 train.py ARGV``."""
    with open(f"{log}.out", "w") as out, open(f"{log}.err", "w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
             "2", "--max-restarts", "1", "train.py"] + [str(a) for a in argv],
            cwd=REPO, env=ENV, stdout=out, stderr=err)


def finish(proc, log, timeout=300):
    code = proc.wait(timeout)
    return code, open(f"{log}.out").read(), open(f"{log}.err").read()


def one_process(zygote, flags, out):
    result = zygote.run("train.py", flags + ["--out_dir", out])
    assert result.code == 0, result.stderr
    return out


def weights(out, name):
    state = torch.load(out / name, weights_only=True)
    return {**state["model"], **{"mask." + k: v for k, v in state["mask"].items()}}


def assert_same_run(expected, got):
    """One-process run ``expected`` and torchrun run ``got`` are the same run."""
    rows, expected_rows = metrics_rows(got), metrics_rows(expected)
    assert [(r["epoch"], r["phase"]) for r in rows] == \
           [(r["epoch"], r["phase"]) for r in expected_rows]
    for row, want in zip(rows, expected_rows, strict=True):
        assert ("loss" in row) == ("loss" in want)
        if "loss" in want:
            assert row.pop("loss") == pytest.approx(want.pop("loss"), rel=1e-5)
        assert row == want          # accuracy, ci95, sparsity (per parameter) equal
    results = [json.loads((d / "results.json").read_text()) for d in (expected, got)]
    for r in results:
        r.pop("wall_clock_s")
    assert results[1] == results[0]
    for name in ("best.pt", "checkpoint.pt"):
        want, have = weights(expected, name), weights(got, name)
        assert want.keys() == have.keys()
        # Conv biases ahead of BatchNorm have no effect (it subtracts the batch mean):
        # their gradient is rounding noise, which Adam scales up to full steps, so any
        # other summation order (or thread count) gives other values.
        for key in [k for k in want if not k.endswith("conv.bias")]:
            scale = max(float(want[key].abs().max()), 1e-3)     # relative to the tensor
            torch.testing.assert_close(have[key], want[key], rtol=1e-4, atol=1e-4 * scale,
                                       msg=f"{name}: {key}")
    assert torch.load(got / "checkpoint.pt", weights_only=True)["epoch"] == \
           torch.load(expected / "checkpoint.pt", weights_only=True)["epoch"]


def events(out):
    return [f for f in os.listdir(out) if f.startswith("events.out.tfevents")]


def worker_pids(parent):
    """{RANK: pid} of torchrun's worker processes."""
    pids = subprocess.run(["ps", "-o", "pid=", "--ppid", str(parent)], capture_output=True,
                          text=True).stdout.split()
    ranks = {}
    for pid in pids:
        try:
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:     # ended meanwhile
            continue
        rank = [e[5:].decode() for e in env if e.startswith(b"RANK=")]
        if rank:
            ranks[int(rank[0])] = int(pid)
    return ranks


def test_two_processes_give_the_one_process_run_also_after_a_killed_process(zygote, tmp_path):
    """rank 1 is SIGKILLed mid-run; torchrun restarts both, the new group resumes."""
    expected = one_process(zygote, FLAGS, tmp_path / "one")
    got, log = tmp_path / "two", tmp_path / "torchrun"
    proc = torchrun(FLAGS + ["--out_dir", got], log)
    metrics, deadline = got / "metrics.jsonl", time.time() + 240
    while not (metrics.exists() and '"epoch": 1, "phase": "train"' in metrics.read_text()):
        assert proc.poll() is None, open(f"{log}.err").read()
        assert time.time() < deadline
        time.sleep(0.02)
    os.kill(worker_pids(proc.pid)[1], signal.SIGKILL)
    code, stdout, stderr = finish(proc, log)
    assert code == 0, stderr
    assert "Resuming" in stdout, "the kill came after the run had ended"
    assert "exitcode: -9" in stderr                        # torchrun saw the kill
    assert_same_run(expected, got)
    # only rank 0 wrote files and printed: the same files as one process, one TensorBoard
    # file per attempt, one final result
    assert sorted(set(os.listdir(got)) - set(events(got))) == \
           sorted(set(os.listdir(expected)) - set(events(expected)))
    assert len(events(got)) == 2
    assert stdout.count("Best epoch") == 1
    meta = json.loads((got / "config.json").read_text())["_meta"]
    assert meta["world_size"] == 2 and meta["torchrun_run_id"]
