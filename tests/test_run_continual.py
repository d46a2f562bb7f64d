"""run_continual.sh: config selection, seeds, forwarded flags, errors, the Slurm
executor (dry runs through sweep.py), and one real local sweep of two tiny digits
configs x 2 seeds on 2 slots: results.csv, then a rerun that skips the finished runs and
resumes one whose results were lost from its last checkpoint, to the same results.
"""
import csv
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from utils.sweep.programs import CONTINUAL
from utils.sweep.state import DONE, STOPPED, run_state

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "run_continual.sh"
CONFIGS = sorted(p.stem for p in (REPO / "configs" / "continual").glob("*.json"))
# Seconds per run, most of it imports: 2 tasks of 20 samples, one glance.
TINY = ["--num_tasks", "2", "--samples_per_task", "20", "--test_samples", "20", "--glances",
        "1", "--no-tensorboard", "--no-sparsity_figure"]


def run(*args, cwd=REPO, env=None, timeout=300):
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout,
                          env={**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1",
                               **(env or {})})


def commands(result):
    assert result.returncode == 0, result.stderr
    return [shlex.split(line) for line in result.stdout.splitlines() if "continual.py" in line]


def value(words, flag):
    return words[words.index(flag) + 1]


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_list_names_every_config():
    assert sorted(run("--list").stdout.split()) == CONFIGS


def test_dry_run_prints_one_command_per_config_and_seed_with_the_flags(tmp_path):
    root = tmp_path / "a b"      # --out relative to the caller's folder, not the repository
    result = run("--dry-run", "--seeds", "2", "--out", "a b", "digits-rotations_la-maml",
                 "osaka-omniglot_*", "--", "--data_folder", "/data/with space", cwd=tmp_path)
    cmds = commands(result)
    listed = run("--list").stdout.split()          # the shell's order of the files
    selected = ["digits-rotations_la-maml"] + [c for c in listed
                                               if c.startswith("osaka-omniglot_")]
    assert len(selected) == 5 and len(cmds) == 2 * len(selected)
    for i, words in enumerate(cmds):
        config, seed = selected[i // 2], i % 2
        assert words[:2] == [sys.executable, "continual.py"]
        assert value(words, "--config") == f"configs/continual/{config}.json"
        assert value(words, "--seed") == str(seed)
        assert value(words, "--out_dir") == str(root / config / f"seed{seed}")
        assert words[-2:] == ["--data_folder", "/data/with space"]
    assert not root.exists()                       # a dry run creates nothing


def test_errors_exit_2_and_run_nothing():
    for args in (["--dry-run", "no-such-config"], ["--dry-run", "--seeds", "0"],
                 ["--dry-run", "--jobs", "x"], ["--dry-run", "--bogus"],
                 ["--dry-run", "--executor", "lsf"]):
        result = run(*args)
        assert result.returncode == 2, args
        assert "continual.py" not in result.stdout and result.stderr.strip(), args
    # a flag continual.py refuses is refused by the sweep before anything runs
    bad = run("--dry-run", "digits-rotations_er", "--", "--glances", "0")
    assert bad.returncode == 2
    assert "point digits-rotations_er: argument --glances: must be > 0, got 0" in bad.stderr


def test_slurm_dry_run_writes_a_job_array_of_continual_runs(tmp_path):
    root = tmp_path / "root"
    result = run("--executor", "slurm", "--dry-run", "--seeds", "2", "--out", str(root),
                 "--partition", "gpu", "--gpus", "1", "--jobs", "3", "--requeue",
                 "osaka_continual-maml", "--", "--download")
    assert result.returncode == 0, result.stderr
    script = result.stdout[result.stdout.index("#!/bin/bash"):]
    for line in ("--array=0-1%3", "--partition=gpu", "--gpus=1", "--requeue"):
        assert f"#SBATCH {line}\n" in script
    assert '>> "$run/continual.log"' in script
    (manifest,) = (root / "slurm").glob("*.runs")
    lines = [line.split("\t") for line in manifest.read_text().splitlines()]
    assert [folder for folder, _, _ in lines] == [
        str(root / "osaka_continual-maml" / f"seed{s}") for s in (0, 1)]
    fresh, resume = shlex.split(lines[1][1]), shlex.split(lines[1][2])
    assert fresh[1:] == ["continual.py", "--config", "configs/continual/osaka_continual-maml.json",
                         "--seed", "1", "--out_dir", lines[1][0], "--download"]
    assert resume[1:] == ["continual.py", "--resume", "--out_dir", lines[1][0], "--download"]
    record = json.loads((root / "sweep.json").read_text())
    assert record["program"] == "continual"


@pytest.mark.slow      # 5 continual.py processes, each seconds of imports: 40-70 s here
def test_local_sweep_two_slots_results_csv_rerun_skips_and_resumes(tmp_path):
    configs = ["digits-rotations_online-sgd", "digits-rotations_sparse-la-maml"]
    args = ["--seeds", "2", "--jobs", "2", "--out", str(tmp_path), *configs, "--", *TINY]
    first = run(*args)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "4 to run on 2 slots" in first.stdout
    assert f"-m utils.report_continual {tmp_path}" in first.stdout
    runs = [tmp_path / c / f"seed{s}" for c in configs for s in (0, 1)]
    results = [json.loads((r / "results.json").read_text()) for r in runs]
    rows = read_csv(tmp_path / "results.csv")
    assert [(r["point"], r["seed"], r["status"]) for r in rows] == [
        (c, str(s), "done") for c in configs for s in (0, 1)]
    for row, res, folder in zip(rows, results, runs, strict=True):
        assert row["run_dir"] == str(folder) and len(res["R"]) == 2
        assert float(row["retained_accuracy"]) == res["retained_accuracy"]
        assert float(row["wall_clock_s"]) == res["wall_clock_s"]
        recorded = json.loads((folder / "config.json").read_text())["args"]
        assert recorded["seed"] == int(row["seed"]) and recorded["num_tasks"] == 2
    assert rows[0]["sparsity"] == "" and rows[2]["sparsity"] != ""     # only rates have one
    assert "| digits-rotations_sparse-la-maml | 2/2 |" in (tmp_path / "summary.md").read_text()

    # Rerun, with one run as if killed after its last checkpoint, before results.json:
    # the others are skipped, that one is stopped and resumes to the same results.
    lost = runs[3]
    (lost / "results.json").unlink()
    (lost / "sweep_exit.json").unlink()
    assert [run_state(str(r), CONTINUAL) for r in runs] == [DONE] * 3 + [STOPPED]
    again = run(*args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "3 finished or running elsewhere, 1 to run" in again.stdout
    assert all((r / "continual.log").read_text().count("=== sweep:") == 1 for r in runs[:3])
    assert [json.loads((r / "results.json").read_text()) for r in runs[:3]] == results[:3]
    log = (lost / "continual.log").read_text()
    assert log.count("=== sweep:") == 2 and "--resume" in log and "Resuming" in log
    resumed = json.loads((lost / "results.json").read_text())
    assert resumed["R"] == results[3]["R"] and resumed["sparsity"] == results[3]["sparsity"]
    assert {r["status"] for r in read_csv(tmp_path / "results.csv")} == {"done"}
