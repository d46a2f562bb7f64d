"""results.csv, the per-point summary (mean +- 95% CI over seeds) and the status table."""
import csv
import json
import math
import os

from utils.sweep.grid import expand
from utils.sweep.layout import Sweep
from utils.sweep.results import point_summaries, run_rows, status_table, write_collection
from utils.sweep.state import run_state

GRID = {"grid": {"config": ["configs/a.json"], "lr": [0.1, 0.2]}}


def finished(folder, accuracy, ci, sparsity=0.5, wall=60.0):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump({"test_accuracy": accuracy, "test_ci95": ci, "mean_sparsity": sparsity,
                   "wall_clock_s": wall, "best_epoch": 3}, f)


def make(tmp_path):
    sweep = Sweep(tmp_path, expand(GRID), range(3), tmp_path, "py")
    accs = [0.5, 0.6, 0.8]
    for seed, acc in enumerate(accs):
        finished(os.path.join(tmp_path, "a_lr=0.1", f"seed{seed}"), acc, 0.01 * (seed + 1))
    finished(os.path.join(tmp_path, "a_lr=0.2", "seed1"), 0.7, 0.03, sparsity=None)
    os.makedirs(os.path.join(tmp_path, "a_lr=0.2", "seed2"))
    open(os.path.join(tmp_path, "a_lr=0.2", "seed2", "checkpoint.pt"), "wb").close()
    states = {r.dir: run_state(r.dir) for r in sweep.runs}
    return sweep, states, accs


def test_results_csv_has_one_row_per_run_with_flags_and_status(tmp_path):
    sweep, states, accs = make(tmp_path)
    rows = run_rows(sweep, states)
    write_collection(sweep, rows, point_summaries(sweep, rows))
    with open(tmp_path / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["point", "config", "lr", "seed", "status", "test_accuracy",
                              "test_ci95", "mean_sparsity", "wall_clock_s", "best_epoch",
                              "run_dir"]
    assert [(r["point"], r["seed"], r["status"]) for r in table] == [
        ("a_lr=0.1", "0", "done"), ("a_lr=0.1", "1", "done"), ("a_lr=0.1", "2", "done"),
        ("a_lr=0.2", "0", "pending"), ("a_lr=0.2", "1", "done"), ("a_lr=0.2", "2", "stopped")]
    assert [float(r["test_accuracy"]) for r in table[:3]] == accs
    assert table[0]["config"] == "configs/a.json" and table[0]["lr"] == "0.1"
    assert table[3]["test_accuracy"] == "" and table[4]["mean_sparsity"] == ""


def test_summary_ci_over_seeds_and_single_seed_keeps_its_own(tmp_path):
    sweep, states, accs = make(tmp_path)
    rows = run_rows(sweep, states)
    several, single = point_summaries(sweep, rows)
    mean = sum(accs) / 3
    std = math.sqrt(sum((a - mean) ** 2 for a in accs) / 2)
    assert several["seeds_done"] == 3 and math.isclose(several["test_accuracy"], mean)
    assert math.isclose(several["test_ci95"], 1.96 * std / math.sqrt(3))
    assert single["seeds_done"] == 1 and single["seeds"] == 3
    assert single["test_accuracy"] == 0.7 and single["test_ci95"] == 0.03
    assert single["mean_sparsity"] is None
    markdown = write_collection(sweep, rows, [several, single])
    assert f"| a_lr=0.1 | 3/3 | {100 * mean:.2f} +- {196 * std / math.sqrt(3):.2f} |" \
        in markdown
    assert (tmp_path / "summary.md").read_text() == markdown
    with open(tmp_path / "summary.csv") as f:
        assert [r["point"] for r in csv.DictReader(f)] == ["a_lr=0.1", "a_lr=0.2"]


def test_status_table_points_by_seeds(tmp_path):
    sweep, states, _ = make(tmp_path)
    lines = status_table(sweep, states).splitlines()
    assert lines[0].split() == ["point", "seed0", "seed1", "seed2"]
    assert lines[1].split() == ["a_lr=0.1", "done", "done", "done"]
    assert lines[2].split() == ["a_lr=0.2", "pending", "done", "stopped"]
    assert lines[3] == "6 runs: 4 done, 1 stopped, 1 pending"
