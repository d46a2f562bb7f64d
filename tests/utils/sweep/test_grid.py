"""Grid expansion: product order, conditions as the authors' hp_search_grid.py, point ids,
command-line arguments, structural errors of GRID.json, the program it runs."""
import json

import pytest

from utils.sweep.grid import ID_MAX, GridError, expand, grid_program, load_grid, point_args
from utils.sweep.programs import CONTINUAL, TRAIN


def write(tmp_path, grid):
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(grid))
    return str(path)


def test_product_in_grid_order_with_fixed_flags_first():
    points = expand({"config": "configs/x.json", "flags": {"epochs": 3},
                     "grid": {"lr": [0.1, 0.2], "gradient_mask": [True, False]}})
    assert [(p.flags["lr"], p.flags["gradient_mask"]) for p in points] == [
        (0.1, True), (0.1, False), (0.2, True), (0.2, False)]
    assert all(list(p.flags)[:2] == ["config", "epochs"] for p in points)
    assert [p.id for p in points] == ["lr=0.1_gradient_mask=true", "lr=0.1_gradient_mask=false",
                                      "lr=0.2_gradient_mask=true", "lr=0.2_gradient_mask=false"]


def test_condition_replaces_values_of_matching_points_only():
    # As the authors' example: 1-shot points take another batch size and mask lr.
    points = expand({"grid": {"num_shots_train": [1, 5], "step_size": [0.1]},
                     "conditions": [[{"num_shots_train": [1]},
                                     {"batch_size": [4], "mask_lr": [0.01]}]]})
    one, five = points
    assert one.flags == {"num_shots_train": 1, "step_size": 0.1, "batch_size": 4,
                         "mask_lr": 0.01}
    assert five.flags == {"num_shots_train": 5, "step_size": 0.1}
    # Single condition values are decided by the grid keys: not part of the id.
    assert [p.id for p in points] == ["num_shots_train=1_step_size=0.1",
                                      "num_shots_train=5_step_size=0.1"]


def test_condition_with_several_values_expands_and_names_them():
    points = expand({"grid": {"step_size": [0.1, 0.4]},
                     "conditions": [[{"step_size": [0.4]}, {"batch_size": [1, 2]}]]})
    assert [p.id for p in points] == ["step_size=0.1", "step_size=0.4_batch_size=1",
                                      "step_size=0.4_batch_size=2"]


def test_condition_overriding_a_grid_key_drops_duplicates_and_sees_earlier_ones():
    points = expand({"grid": {"num_shots_train": [1, 5], "step_size": [0.1, 0.5]},
                     "conditions": [[{"num_shots_train": [1]}, {"step_size": [0.5]}],
                                    [{"step_size": [0.5]}, {"batch_size": [4]}]]})
    flags = [p.flags for p in points]
    assert flags == [{"num_shots_train": 1, "step_size": 0.5, "batch_size": 4},
                     {"num_shots_train": 5, "step_size": 0.1},
                     {"num_shots_train": 5, "step_size": 0.5, "batch_size": 4}]


def test_condition_on_a_flag_no_point_sets_is_ignored():
    points = expand({"grid": {"lr": [0.1]},
                     "conditions": [[{"second_order": [True]}, {"engine": ["reference"]}]]})
    assert [p.flags for p in points] == [{"lr": 0.1}]


def test_true_does_not_match_one():
    points = expand({"grid": {"hidden_size": [1, 2]},
                     "conditions": [[{"hidden_size": [True]}, {"lr": [9.0]}]]})
    assert all("lr" not in p.flags for p in points)


def test_ids_use_config_stems_and_argv_names_and_are_filesystem_safe():
    points = expand({"grid": {"config": ["configs/quick/maml.json", "configs/a b/x?.json"],
                              "data_folder": ["/data/set 1"]}})
    assert [p.id for p in points] == ["maml_data_folder=-data-set-1",
                                      "x-_data_folder=-data-set-1"]
    named = expand({"grid": {"argv": {"cell_a": ["--epochs=4"], "cell_b": ["--epochs=5"]}}})
    assert [p.id for p in named] == ["cell_a", "cell_b"]
    assert named[0].flags == {"argv": ["--epochs=4"]}


def test_same_flags_under_two_names_stay_two_points():
    points = expand({"grid": {"argv": {"a": ["--lr=1"], "b": ["--lr=1"]}}})
    assert [p.id for p in points] == ["a", "b"]


def test_no_grid_gives_one_default_point():
    (point,) = expand({"flags": {"lr": 0.1}})
    assert point.id == "default" and point.flags == {"lr": 0.1}


def test_long_and_colliding_ids_get_a_hash_and_stay_deterministic():
    long_value = "x" * 200
    (point,) = expand({"grid": {"data_folder": [long_value]}})
    assert len(point.id) == ID_MAX
    assert point.id.startswith("data_folder=xxx")
    assert expand({"grid": {"data_folder": [long_value]}})[0].id == point.id
    a, b = expand({"grid": {"data_folder": ["a/b", "a b"]}})    # both sanitise to a-b
    assert a.id != b.id and a.id.startswith("data_folder=a-b_") and len(a.id) == len(b.id)


def test_ids_do_not_depend_on_other_values_of_a_key():
    one = {p.id: p.flags for p in expand({"grid": {"lr": [0.1]}})}
    two = {p.id: p.flags for p in expand({"grid": {"lr": [0.1, 0.2]}})}
    assert one.items() <= two.items()


def test_point_args_switches_and_values():
    (point,) = expand({"config": "c.json",
                       "flags": {"gradient_mask": True, "anil": False, "tensorboard": False,
                                 "lr": 0.001, "mask_lr": 1e-05, "argv": ["--val_after", "2"]}})
    args = point_args(point, negatable={"tensorboard"})
    assert args == ["--config", "c.json", "--gradient_mask", "--no-tensorboard",
                    "--lr", "0.001", "--mask_lr", "1e-05", "--val_after", "2"]


@pytest.mark.parametrize("grid, words", [
    ([1, 2], "JSON object"),
    ({"grids": {}}, "unknown keys grids"),
    ({"grid": {"lr": 0.1}}, "'lr' must be a non-empty list"),
    ({"grid": {"lr": []}}, "'lr' must be a non-empty list"),
    ({"grid": {"lr": [[0.1]]}}, "not a string, number or boolean"),
    ({"flags": {"lr": None}}, "not a string, number or boolean"),
    ({"flags": {"config": "x.json"}}, "top-level 'config'"),
    ({"grid": {"argv": [["--lr=1"]]}}, "'argv' must map names"),
    ({"conditions": [[{"lr": [1]}]]}, "condition 0 must be a pair"),
    ({"conditions": [[{"lr": [1]}, {"argv": [["x"]]}]]}, "'argv' cannot be matched"),
])
def test_structural_errors_name_the_problem(tmp_path, grid, words):
    with pytest.raises(GridError, match=words):
        load_grid(write(tmp_path, grid))


def test_unreadable_grid(tmp_path):
    with pytest.raises(GridError, match="cannot read"):
        load_grid(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(GridError, match="cannot read"):
        load_grid(str(tmp_path / "bad.json"))


def test_comment_keys_are_allowed(tmp_path):
    grid = load_grid(write(tmp_path, {"_notes": "why", "grid": {"lr": [0.1]}}))
    assert [p.id for p in expand(grid)] == ["lr=0.1"]


def test_program_defaults_to_train_and_must_be_known(tmp_path):
    assert grid_program(load_grid(write(tmp_path, {"grid": {"lr": [0.1]}}))) is TRAIN
    grid = load_grid(write(tmp_path, {"program": "continual", "grid": {"glances": [1]}}))
    assert grid_program(grid) is CONTINUAL
    assert [p.flags for p in expand(grid)] == [{"glances": 1}]      # not a flag of the points
    for bad in ("evaluate", ["continual"]):
        with pytest.raises(GridError, match="'program' must be one of train, continual"):
            load_grid(write(tmp_path, {"program": bad}))
