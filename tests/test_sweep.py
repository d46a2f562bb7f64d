"""sweep.py end to end, run as a program (forked from the tests' zygote, tests/scripts.py;
with a Slurm environment as a subprocess): refused grids, dry runs (train.py's and
continual.py's), --status, a changed grid; the local executor with 2 slots on tiny
Strokes runs, Ctrl-C and reruns; a job array on a private Slurm cluster with one task
requeued mid-run (tests/slurm_cluster.py).
"""
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.scripts import Result
from tests.slurm_cluster import slurm_cluster  # noqa: F401  (fixture)
from utils import cli
from utils.sweep.grid import expand, point_args
from utils.sweep.validate import negatable_flags

REPO = Path(__file__).resolve().parents[1]
# The run both end-to-end sweeps interrupt and compare with an uninterrupted one: epoch
# 0 of 6 is done within seconds, the rest takes several more.
TARGET = {"batches_train": 4, "epochs": 6, "mask_lr": 0.001, "step_size": 0.1}


def sweep(zygote, *args):
    """``python sweep.py ARGS``: Result(code, stdout, stderr)."""
    return zygote.run("sweep.py", [str(a) for a in args])


def sweep_in(env, *args):
    """``python sweep.py ARGS`` in the environment ``env`` (e.g. SLURM_CONF set)."""
    done = subprocess.run([sys.executable, "sweep.py", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=300)
    return Result(done.returncode, done.stdout, done.stderr)


def tiny_flags(quick_args, **overrides):
    """tests/conftest.py's tiny-run flags as grid "flags" (without --seed/--out_dir)."""
    words, flags = quick_args("unused"), {}
    while words:
        key, words = words[0][2:], words[1:]
        if words and not words[0].startswith("--"):
            flags[key], words = words[0], words[1:]
        else:
            flags[key] = True
    del flags["seed"], flags["out_dir"]
    flags.update(method="sparse-maml", tensorboard=False, **overrides)
    return flags


def write_grid(tmp_path, grid, name="grid.json"):
    path = tmp_path / name
    path.write_text(json.dumps(grid))
    return path


def train_rows(run):
    path = Path(run) / "metrics.jsonl"
    if not path.is_file():
        return 0
    return sum(json.loads(line)["phase"] == "train" for line in path.read_text().splitlines()
               if line.strip())


def wait_for(what, check, timeout, poll=0.3):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def weights(run):
    state = torch.load(Path(run) / "checkpoint.pt", weights_only=True)
    return {f"{part}.{k}": v for part in ("model", "mask") for k, v in (state[part] or {}).items()}


def assert_same_run(run, reference):
    ours, ref = (json.loads((Path(r) / "results.json").read_text()) for r in (run, reference))
    assert ours["test_accuracy"] == ref["test_accuracy"]
    assert ours["mean_sparsity"] == ref["mean_sparsity"]
    a, b = weights(run), weights(reference)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class Reference:
    """The sweeps' interrupted target run (TARGET flags, seed 0) trained uninterrupted by
    train.py itself, started in the background at first use."""

    def __init__(self, folder, flags):
        self.folder = folder
        (point,) = expand({"flags": flags})
        args = point_args(point, negatable_flags(cli.get_parser()))
        self.proc = subprocess.Popen(
            [sys.executable, "train.py", *args, "--seed", "0", "--out_dir", str(folder)],
            cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def result(self):
        assert self.proc.wait(timeout=300) == 0
        return self.folder


@pytest.fixture(scope="module")
def reference(tmp_path_factory, quick_args):
    ref = Reference(tmp_path_factory.mktemp("reference") / "run", tiny_flags(quick_args, **TARGET))
    yield ref
    if ref.proc.poll() is None:
        ref.proc.kill()


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


# --- validation, dry runs, status: no training --------------------------------------

def test_refused_points_exit_2_naming_point_and_flag(tmp_path, zygote):
    grid = write_grid(tmp_path, {"flags": {"dataset": "Strokes"},
                                 "grid": {"anil": [True, False], "boil": [True],
                                          "mask_lr": [0.01]}})
    result = sweep(zygote, grid, "--out", tmp_path / "root")
    assert result.code == 2
    assert result.stderr.strip() == ("sweep.py: point anil=true_boil=true_mask_lr=0.01: "
                                     "--anil and --boil exclude each other")
    unknown = sweep(zygote, write_grid(tmp_path, {"grid": {"mask_learning_rate": [1]}}, "u.json"),
                    "--out", tmp_path / "root")
    assert unknown.code == 2
    assert "point mask_learning_rate=1: unknown flag 'mask_learning_rate'" in unknown.stderr
    assert not (tmp_path / "root").exists()


def test_help_gives_every_default(zygote):
    result = sweep(zygote, "--help")
    assert result.code == 0
    options = re.findall(r"^  (--\w[\w-]*)", result.stdout, flags=re.M)
    assert {"--seeds", "--executor", "--slots", "--dry-run", "--status", "--partition",
            "--requeue", "--sbatch_extra"} <= set(options)
    helps = re.split(r"\n  (?=--)", result.stdout.split("sweep:", 1)[1])
    assert all("(default:" in h for h in helps if h.startswith("--")), helps


def test_dry_run_prints_the_commands_and_writes_nothing(tmp_path, zygote):
    grid = write_grid(tmp_path, {"config": "configs/quick/sparse-maml.json",
                                 "grid": {"mask_lr": [0.001, 0.01]}})
    result = sweep(zygote, grid, "--out", tmp_path / "root", "--seeds", "2", "--dry-run",
                   "--python", "py", "--", "--dont_use_cuda")
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    assert lines[3] == ("py train.py --config configs/quick/sparse-maml.json --mask_lr 0.01 "
                        f"--seed 1 --out_dir {tmp_path}/root/mask_lr=0.01/seed1 --dont_use_cuda")
    assert not (tmp_path / "root").exists()


def test_continual_grid_runs_continual_py_and_is_checked_by_its_parser(tmp_path, zygote):
    grid = REPO / "sweeps" / "continual_sparse-la-maml.json"
    result = sweep(zygote, grid, "--out", tmp_path / "root", "--dry-run", "--python", "py")
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and all(line.startswith("py continual.py --config configs/"
                                                   "continual/digits-permutations_sparse-"
                                                   "la-maml.json ") for line in lines)
    assert lines[0].endswith(" --rate_init_shift -0.14 --opt_lr 0.1 --seed 0 --out_dir "
                             f"{tmp_path}/root/rate_init_shift=-0.14_opt_lr=0.1/seed0")
    refused = sweep(zygote, write_grid(tmp_path, {"program": "continual",
                                                  "flags": {"method": "la-maml"},
                                                  "grid": {"benchmark": ["osaka-omniglot"]}}),
                    "--out", tmp_path / "root")
    assert refused.code == 2
    assert refused.stderr.strip() == ("sweep.py: point benchmark=osaka-omniglot: --method "
                                      "la-maml runs on tasks, not on the stream benchmark "
                                      "osaka-omniglot")
    assert not (tmp_path / "root").exists()


def test_status_of_a_new_sweep(tmp_path, zygote):
    grid = write_grid(tmp_path, {"grid": {"lr": [0.1, 0.2]}})
    result = sweep(zygote, grid, "--out", tmp_path / "root", "--seeds", "3", "--status")
    assert result.code == 0
    assert result.stdout.splitlines()[:3] == [
        "point   seed0    seed1    seed2", "lr=0.1  pending  pending  pending",
        "lr=0.2  pending  pending  pending"]
    assert "6 runs: 6 pending" in result.stdout
    assert not (tmp_path / "root").exists()


def test_slurm_dry_run_writes_the_script_and_a_changed_grid_is_refused(tmp_path, zygote):
    grid = {"flags": {"dataset": "Strokes"}, "grid": {"lr": [0.1, 0.2]}}
    root = tmp_path / "root"
    result = sweep(zygote, write_grid(tmp_path, grid), "--out", root, "--executor", "slurm",
                   "--dry-run", "--partition", "gpu", "--gres", "gpu:1", "--time", "4:00:00",
                   "--sbatch_extra=--constraint=a100", "--slots", "2")
    assert result.code == 0, result.stderr
    assert result.stdout.startswith("#!/bin/bash\n")
    for line in ("#SBATCH --array=0-1%2", "#SBATCH --partition=gpu", "#SBATCH --gres=gpu:1",
                 "#SBATCH --time=4:00:00", "#SBATCH --constraint=a100"):
        assert line + "\n" in result.stdout
    (manifest,) = (root / "slurm").glob("*.runs")
    assert [line.split("\t")[0] for line in manifest.read_text().splitlines()] == [
        str(root / "lr=0.1" / "seed0"), str(root / "lr=0.2" / "seed0")]
    assert not (root / "slurm" / "jobs.jsonl").exists()       # nothing submitted
    grid["flags"]["dataset"] = "Omniglot"
    changed = sweep(zygote, write_grid(tmp_path, grid), "--out", root, "--dry-run")
    assert changed.code == 2
    assert changed.stderr.startswith("sweep.py: point lr=0.1: ") and "dataset" in changed.stderr


# --- the local executor ---------------------------------------------------------------

@pytest.mark.slow
def test_local_two_slots_ctrl_c_then_rerun_resumes_and_skips(tmp_path, zygote, quick_args,
                                                             reference):
    fixed = {k: v for k, v in TARGET.items() if k != "epochs"}
    grid = write_grid(tmp_path, {"flags": tiny_flags(quick_args, **fixed),
                                 "grid": {"epochs": [1, TARGET["epochs"]]}})
    root = tmp_path / "root"
    args = [grid, "--out", root, "--slots", "2"]
    short, long = root / "epochs=1" / "seed0", root / f"epochs={TARGET['epochs']}" / "seed0"
    first = zygote.start("sweep.py", args)      # the zygote runs it with OMP_NUM_THREADS=1
    try:    # both slots busy at once: the short run finishes while the long one trains
        wait_for("the short run to finish and the long one to finish an epoch",
                 lambda: (short / "results.json").is_file() and train_rows(long) >= 1, 180)
    finally:
        os.kill(first.pid, signal.SIGINT)
    assert first.wait(120) == 130, first.output()
    out = first.stdout()
    assert "Rerun the same command to continue" in out and "[stopped]" in out
    assert (long / "checkpoint.pt").is_file() and not (long / "results.json").exists()
    status = sweep(zygote, grid, "--out", root, "--status")
    assert status.code == 0
    assert status.stdout.splitlines()[:3] == ["point     seed0", "epochs=1  done",
                                              "epochs=6  stopped"]
    finished = (short / "results.json").read_bytes()

    second = sweep(zygote, *args)
    assert second.code == 0, second.stdout + second.stderr
    assert "1 finished or running elsewhere, 1 to run" in second.stdout
    log = (long / "train.log").read_text()
    assert log.count("=== sweep:") == 2 and "Resuming" in log
    assert (short / "results.json").read_bytes() == finished      # skipped, untouched
    assert (short / "train.log").read_text().count("=== sweep:") == 1
    assert_same_run(long, reference.result())
    rows = read_csv(root / "results.csv")
    assert [(r["point"], r["epochs"], r["status"]) for r in rows] == [
        ("epochs=1", "1", "done"), ("epochs=6", "6", "done")]

    third = sweep(zygote, *args)
    assert third.code == 0 and "2 finished or running elsewhere, 0 to run" in third.stdout
    assert (long / "train.log").read_text().count("=== sweep:") == 2


# --- Slurm ------------------------------------------------------------------------------

@pytest.mark.slow
def test_slurm_job_array_finishes_and_a_requeued_task_resumes(
        slurm_cluster, tmp_path, quick_args, reference):  # noqa: F811
    cluster = slurm_cluster
    fixed = {k: v for k, v in TARGET.items() if k not in ("mask_lr", "step_size")}
    grid = write_grid(tmp_path, {"flags": tiny_flags(quick_args, **fixed),
                                 "grid": {"mask_lr": [0.001, 0.01], "step_size": [0.1, 0.4]}})
    root = tmp_path / "root"
    args = [grid, "--out", root, "--seeds", "2", "--executor", "slurm"]
    submitted = sweep_in(cluster.env, *args, "--requeue", "--cpus", "1", "--setup",
                         "export OMP_NUM_THREADS=1")
    assert submitted.code == 0, submitted.stderr
    job = re.search(r"submitted job array (\d+)", submitted.stdout).group(1)
    runs = [root / p / f"seed{s}" for p in ("mask_lr=0.001_step_size=0.1",
                                             "mask_lr=0.001_step_size=0.4",
                                             "mask_lr=0.01_step_size=0.1",
                                             "mask_lr=0.01_step_size=0.4") for s in (0, 1)]
    target = runs[0]            # array task 0: the TARGET flags, seed 0

    wait_for("task 0 to finish its first epoch", lambda: train_rows(target) >= 1, 180)
    assert not (target / "results.json").exists(), "task 0 finished before the requeue"
    cluster.run("scontrol", "requeue", f"{job}_0")

    def restarted():
        # a requeued job waits ~2 min before it is eligible again: release it now
        state = cluster.run("squeue", "-h", "-j", f"{job}_0", "-o", "%t %r", check=False)
        if "BeginTime" in state.stdout:
            cluster.run("scontrol", "update", f"jobid={job}_0", "StartTime=now", check=False)
        return (target / "train.log").read_text().count("=== sweep:") >= 2

    # while tasks wait in the queue (task 0 again among them): squeue knows every task
    watched = sweep_in(cluster.env, *args, "--status")
    assert watched.code == 0 and "pending" not in watched.stdout, watched.stdout
    assert re.search(r"8 runs: .*\bqueued\b", watched.stdout), watched.stdout
    resubmitted = sweep_in(cluster.env, *args)
    assert resubmitted.code == 0 and "nothing to submit" in resubmitted.stdout
    wait_for("task 0 to restart", restarted, 120, poll=0.5)
    wait_for("every run to finish", lambda: all((r / "results.json").is_file() for r in runs),
             300, poll=1)
    wait_for("the array to leave the queue",
             lambda: not cluster.run("squeue", "-h", "-j", job, check=False).stdout.strip(), 60)

    log = (target / "train.log").read_text()
    assert "(restart 1)" in log and "Resuming" in log
    assert_same_run(target, reference.result())
    status = sweep_in(cluster.env, *args, "--status")
    assert status.code == 0 and "8 runs: 8 done" in status.stdout, status.stdout
    rows = read_csv(root / "results.csv")
    assert len(rows) == 8 and {r["status"] for r in rows} == {"done"}
    for row in rows:
        results = json.loads((Path(row["run_dir"]) / "results.json").read_text())
        assert float(row["test_accuracy"]) == results["test_accuracy"]
        assert row["mask_lr"] in ("0.001", "0.01") and row["step_size"] in ("0.1", "0.4")
    assert all(json.loads((r / "sweep_exit.json").read_text())["returncode"] == 0 for r in runs)
    again = sweep_in(cluster.env, *args)
    assert again.code == 0 and "nothing to submit" in again.stdout
