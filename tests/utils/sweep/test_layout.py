"""Run folders, commands (fresh / resume), ROOT/sweep.json and the refusal of a changed grid."""
import json
import os

import pytest

from utils.sweep.grid import GridError, expand
from utils.sweep.layout import Sweep, open_sweep
from utils.sweep.programs import CONTINUAL, TRAIN

GRID = {"flags": {"dataset": "Strokes"}, "grid": {"lr": [0.1, 0.2]}}


def sweep_of(root, grid=GRID, seeds=2, repo="/repo", extra=(), program=TRAIN):
    return Sweep(root, expand(grid), range(seeds), repo, "py", program, {"tensorboard"}, extra)


def test_runs_are_points_times_seeds(tmp_path):
    sweep = sweep_of(tmp_path / "root")
    assert [r.label for r in sweep.runs] == ["lr=0.1/seed0", "lr=0.1/seed1",
                                             "lr=0.2/seed0", "lr=0.2/seed1"]
    assert sweep.runs[1].dir == str(tmp_path / "root" / "lr=0.1" / "seed1")
    assert sweep.varying_keys == ["lr"]


def test_flags_a_condition_sets_are_varying_columns(tmp_path):
    grid = {"flags": {"epochs": 2}, "grid": {"lr": [0.1, 0.2]},
            "conditions": [[{"lr": [0.2]}, {"step_size": [0.5]}]]}
    sweep = sweep_of(tmp_path, grid)
    assert [p.id for p in sweep.points] == ["lr=0.1", "lr=0.2"]
    assert sweep.varying_keys == ["lr", "step_size"]


def test_fresh_then_resume_command(tmp_path):
    sweep = sweep_of(tmp_path / "root", extra=["--data_folder", "/d"])
    run = sweep.runs[0]
    assert sweep.command(run) == ["py", "train.py", "--dataset", "Strokes", "--lr", "0.1",
                                  "--seed", "0", "--out_dir", run.dir, "--data_folder", "/d"]
    os.makedirs(run.dir)
    open(os.path.join(run.dir, "checkpoint.pt"), "wb").close()
    assert sweep.command(run) == ["py", "train.py", "--resume", "--out_dir", run.dir,
                                  "--data_folder", "/d"]


def test_folders_inside_the_repository_are_relative_to_it(tmp_path):
    sweep = sweep_of(tmp_path / "repo" / "runs" / "s", repo=tmp_path / "repo")
    assert sweep.shown_dir(sweep.runs[0]) == os.path.join("runs", "s", "lr=0.1", "seed0")
    outside = sweep_of(tmp_path / "elsewhere", repo=tmp_path / "repo")
    assert outside.shown_dir(outside.runs[0]) == outside.runs[0].dir


def test_record_keeps_points_and_refuses_changed_flags(tmp_path):
    first = sweep_of(tmp_path)
    first.check_record()
    first.write_record()
    record = json.loads((tmp_path / "sweep.json").read_text())
    assert record["points"]["lr=0.1"]["flags"] == {"dataset": "Strokes", "lr": 0.1}
    assert record["points"]["lr=0.1"]["args"] == ["--dataset", "Strokes", "--lr", "0.1"]
    assert record["seeds"] == [0, 1]
    # more values and seeds: the recorded points stay
    wider = sweep_of(tmp_path, {"flags": {"dataset": "Strokes"}, "grid": {"lr": [0.1, 0.3]}},
                     seeds=3)
    wider.check_record()
    wider.write_record()
    record = json.loads((tmp_path / "sweep.json").read_text())
    assert sorted(record["points"]) == ["lr=0.1", "lr=0.2", "lr=0.3"]
    assert record["seeds"] == [0, 1, 2]
    # same ids, other flags: refused, naming the point and the flag
    changed = sweep_of(tmp_path, {"flags": {"dataset": "Omniglot"}, "grid": {"lr": [0.1]}})
    with pytest.raises(GridError) as err:
        changed.check_record()
    assert str(err.value).startswith("point lr=0.1: ") and "dataset" in str(err.value)
    assert "\"Strokes\" recorded" in str(err.value)


def test_open_sweep_reports_every_refused_point(tmp_path):
    grid = tmp_path / "g.json"
    grid.write_text(json.dumps({"grid": {"lr": [0.1, -1.0, -2.0]}}))
    with pytest.raises(GridError) as err:
        open_sweep(str(grid), tmp_path / "root", 1, tmp_path, "py")
    lines = str(err.value).splitlines()
    assert [line.split(":")[0] for line in lines] == ["point lr=-1.0", "point lr=-2.0"]
    assert not (tmp_path / "root").exists()


def test_continual_commands_and_record(tmp_path):
    grid = {"program": "continual", "grid": {"glances": [1, 2]}}
    sweep = sweep_of(tmp_path, grid, seeds=1, program=CONTINUAL)
    run = sweep.runs[0]
    assert sweep.command(run) == ["py", "continual.py", "--glances", "1", "--seed", "0",
                                  "--out_dir", run.dir]
    os.makedirs(run.dir)
    open(os.path.join(run.dir, CONTINUAL.checkpoint), "wb").close()
    assert sweep.command(run) == ["py", "continual.py", "--resume", "--out_dir", run.dir]
    sweep.write_record()
    record = json.loads((tmp_path / "sweep.json").read_text())
    assert (record["program"], record["script"]) == ("continual", "continual.py")


def test_a_sweep_folder_keeps_its_program(tmp_path):
    sweep_of(tmp_path).write_record()                       # train.py's sweep
    other = sweep_of(tmp_path, {"program": "continual", "grid": {"lr": [0.1, 0.2]}},
                     program=CONTINUAL)
    with pytest.raises(GridError, match='records a sweep of program "train", this grid runs '
                                        '"continual"'):
        other.check_record()
    # a record written before sweeps had programs is train.py's
    record = json.loads((tmp_path / "sweep.json").read_text())
    del record["program"]
    (tmp_path / "sweep.json").write_text(json.dumps(record))
    sweep_of(tmp_path).check_record()
    with pytest.raises(GridError, match='of program "train"'):
        other.check_record()


def test_open_sweep_validates_with_the_grids_program(tmp_path):
    grid = tmp_path / "g.json"
    grid.write_text(json.dumps({"program": "continual", "grid": {"glances": [1, 0]}}))
    with pytest.raises(GridError) as err:
        open_sweep(str(grid), tmp_path / "root", 1, tmp_path, "py")
    assert str(err.value) == "point glances=0: argument --glances: must be > 0, got 0"
    grid.write_text(json.dumps({"program": "continual", "grid": {"tensorboard": [False]}}))
    sweep = open_sweep(str(grid), tmp_path / "root", 1, tmp_path, "py")
    assert sweep.program is CONTINUAL
    assert sweep.fresh_command(sweep.runs[0])[1:3] == ["continual.py", "--no-tensorboard"]
