"""results.csv, the per-point summary (mean +- 95% CI over seeds) and the status table,
for train.py's results and for continual.py's (task sequences and streams)."""
import csv
import json
import math
import os

from utils.sweep.grid import expand
from utils.sweep.layout import Sweep
from utils.sweep.programs import CONTINUAL, TRAIN
from utils.sweep.results import Collection, status_table
from utils.sweep.state import run_state

GRID = {"grid": {"config": ["configs/a.json"], "lr": [0.1, 0.2]}}


def finished(folder, accuracy, ci, sparsity=0.5, wall=60.0):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump({"test_accuracy": accuracy, "test_ci95": ci, "mean_sparsity": sparsity,
                   "wall_clock_s": wall, "best_epoch": 3}, f)


def make(tmp_path):
    sweep = Sweep(tmp_path, expand(GRID), range(3), tmp_path, "py", TRAIN)
    accs = [0.5, 0.6, 0.8]
    for seed, acc in enumerate(accs):
        finished(os.path.join(tmp_path, "a_lr=0.1", f"seed{seed}"), acc, 0.01 * (seed + 1))
    finished(os.path.join(tmp_path, "a_lr=0.2", "seed1"), 0.7, 0.03, sparsity=None)
    os.makedirs(os.path.join(tmp_path, "a_lr=0.2", "seed2"))
    open(os.path.join(tmp_path, "a_lr=0.2", "seed2", "checkpoint.pt"), "wb").close()
    states = {r.dir: run_state(r.dir, TRAIN) for r in sweep.runs}
    return sweep, states, accs


def test_results_csv_has_one_row_per_run_with_flags_and_status(tmp_path):
    sweep, states, accs = make(tmp_path)
    Collection(sweep, states).write()
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
    collection = Collection(sweep, states)
    several, single = collection.summaries
    mean = sum(accs) / 3
    std = math.sqrt(sum((a - mean) ** 2 for a in accs) / 2)
    assert several["seeds_done"] == 3 and math.isclose(several["test_accuracy"], mean)
    assert math.isclose(several["test_ci95"], 4.302652729911275 * std / math.sqrt(3))  # t(.975, 2)
    assert single["seeds_done"] == 1 and single["seeds"] == 3
    assert single["test_accuracy"] == 0.7 and single["test_ci95"] == 0.03
    assert single["mean_sparsity"] is None
    markdown = collection.write()
    assert markdown.splitlines()[0] == ("| point | seeds done | test accuracy % (95% CI) | "
                                        "mean sparsity % | wall-clock per run |")
    ci = 430.2652729911275 * std / math.sqrt(3)            # 100 * t(0.975, 2) * std / sqrt(3)
    assert f"| a_lr=0.1 | 3/3 | {100 * mean:.2f} +- {ci:.2f} |" in markdown
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


# --- continual.py ----------------------------------------------------------------------

CONTINUAL_GRID = {"program": "continual",
                  "grid": {"config": ["configs/continual/digits-rotations_la-maml.json",
                                      "configs/continual/osaka-omniglot_continual-maml.json"]}}


def sequence_results(folder, retained, bwt, sparsity=None):
    """results.json as continual.py writes it for a task sequence (NaN where undefined)."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump({"retained_accuracy": retained, "learning_accuracy": retained - bwt,
                   "bwt": bwt, "fwt": float("nan"), "R": [[retained]], "sparsity": sparsity,
                   "wall_clock_s": 30.0, "method": "la-maml"}, f)


def stream_results(folder, online, per_mode, precision):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump({"online_accuracy": online, "online_accuracy_per_mode": per_mode,
                   "boundaries": {"precision": precision, "recall": 0.5, "f1": 0.4},
                   "wall_clock_s": 90.0, "method": "continual-maml"}, f)


def continual_sweep(tmp_path):
    sweep = Sweep(tmp_path, expand(CONTINUAL_GRID), range(2), tmp_path, "py", CONTINUAL)
    seq, stream = (os.path.join(tmp_path, p.id) for p in sweep.points)
    sequence_results(os.path.join(seq, "seed0"), 0.5, -0.1, sparsity=0.2)
    sequence_results(os.path.join(seq, "seed1"), 0.7, float("nan"), sparsity=0.4)
    stream_results(os.path.join(stream, "seed0"), 0.6, {"omniglot": 0.8, "rotated": 0.4},
                   float("nan"))
    return sweep, {r.dir: run_state(r.dir, CONTINUAL) for r in sweep.runs}


def test_continual_rows_hold_each_benchmark_kinds_metrics(tmp_path):
    sweep, states = continual_sweep(tmp_path)
    collection = Collection(sweep, states)
    collection.write()
    with open(tmp_path / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == [
        "point", "config", "seed", "status", "retained_accuracy", "bwt", "learning_accuracy",
        "online_accuracy", "online_accuracy_omniglot", "online_accuracy_rotated",
        "boundary_precision", "boundary_recall", "sparsity", "wall_clock_s", "run_dir"]
    seq0, seq1, stream0, stream1 = table
    assert (seq0["point"], seq0["status"]) == ("digits-rotations_la-maml", "done")
    assert float(seq0["retained_accuracy"]) == 0.5 and float(seq0["bwt"]) == -0.1
    assert seq1["bwt"] == "" and seq0["online_accuracy"] == ""      # NaN and absent: empty
    assert float(stream0["online_accuracy_rotated"]) == 0.4
    assert stream0["boundary_precision"] == "" and float(stream0["boundary_recall"]) == 0.5
    assert stream0["retained_accuracy"] == "" and stream1["status"] == "pending"


def test_continual_summary_averages_seeds_and_shows_only_present_columns(tmp_path):
    sweep, states = continual_sweep(tmp_path)
    collection = Collection(sweep, states)
    seq, stream = collection.summaries
    assert seq["seeds_done"] == 2 and stream["seeds_done"] == 1
    assert math.isclose(seq["retained_accuracy"], 0.6)
    # t(0.975, 1) * std(ddof=1) / sqrt(2) of (0.5, 0.7): std = 0.1 * sqrt(2)
    assert math.isclose(seq["retained_accuracy_ci95"], 12.706204736174698 * 0.1)
    assert seq["bwt"] == -0.1 and seq["bwt_ci95"] is None       # one finite value, no own CI
    assert math.isclose(seq["sparsity"], 0.3) and "sparsity_ci95" not in seq
    assert stream["online_accuracy_omniglot"] == 0.8 and stream["online_accuracy_ci95"] is None
    assert seq["online_accuracy"] is None and stream["retained_accuracy"] is None
    heads = [h.strip() for h in collection.markdown().splitlines()[0].strip("|").split("|")]
    assert heads == ["point", "seeds done", "retained acc. % (95% CI)", "BWT % (95% CI)",
                     "learning acc. % (95% CI)", "online acc. % (95% CI)",
                     "online acc. % (omniglot) (95% CI)", "online acc. % (rotated) (95% CI)",
                     "boundary recall % (95% CI)", "rates = 0 %", "wall-clock per run"]
    ci = 1270.6204736174698 * 0.1                          # 100 * t(0.975, 1) * std / sqrt(2)
    assert f"| digits-rotations_la-maml | 2/2 | 60.00 +- {ci:.2f} | -10.00 |" \
        in collection.markdown()
