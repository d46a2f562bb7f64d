"""Every point goes through train.py's own parser: what it refuses, the sweep refuses,
naming the point and the flag."""
import json

from utils import cli
from utils.sweep.grid import expand
from utils.sweep.validate import check_points, negatable_flags


def errors_of(grid, extra=()):
    return check_points(expand(grid), extra)


def test_valid_points_pass():
    assert errors_of({"flags": {"dataset": "Strokes", "method": "sparse-maml"},
                      "grid": {"mask_lr": [0.001, 0.01], "kaiming_init": [True, False]}}) == []


def test_unknown_flag_names_point_and_flag():
    (message,) = errors_of({"grid": {"mask_lr": [0.01]}, "flags": {"mask_learning_rate": 1}})
    assert message.startswith("point mask_lr=0.01: ") and "'mask_learning_rate'" in message


def test_reserved_flags_are_refused():
    messages = errors_of({"flags": {"seed": 3, "out_dir": "x"}})
    assert len(messages) == 2
    assert "'seed'" in messages[0] and "--seeds" in messages[0]
    assert "'out_dir'" in messages[1]


def test_type_of_a_switch_or_a_value():
    messages = errors_of({"grid": {"gradient_mask": [1]}, "flags": {"lr": True}})
    assert any("'gradient_mask' is a switch" in m for m in messages)
    assert any("'lr' takes a value" in m for m in messages)


def test_bad_value_gives_train_py_message_for_that_point_only():
    messages = errors_of({"grid": {"lr": [0.001, -1.0]}})
    assert messages == ["point lr=-1.0: argument --lr: must be > 0, got -1.0"]


def test_inconsistent_point_is_refused_with_the_flags():
    messages = errors_of({"grid": {"anil": [True, False], "boil": [True]}})
    assert messages == ["point anil=true_boil=true: --anil and --boil exclude each other"]


def test_false_switch_that_the_config_or_preset_sets_is_refused(tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"second_order": True, "engine": "reference"}))
    messages = errors_of({"config": str(config), "grid": {"second_order": [True, False]}})
    negatable = negatable_flags(cli.get_parser())
    if "second_order" in negatable:       # once train.py has --no-<flag>, false is expressible
        assert messages == []
    else:
        assert len(messages) == 1 and messages[0].startswith("point second_order=false: ")
        assert "'second_order'" in messages[0]
    # a preset's switch turned off: train.py refuses it (with --no-gradient_mask), or the
    # run would silently get the preset's true (without it)
    preset = errors_of({"flags": {"method": "sparse-maml"}, "grid": {"gradient_mask": [False]}})
    assert len(preset) == 1 and preset[0].startswith("point gradient_mask=false: ")
    if "gradient_mask" not in negatable:
        assert "'gradient_mask' is false" in preset[0]


def test_negatable_switch_is_passed_as_no_flag():
    # --tensorboard is a BooleanOptionalAction: false must reach the run as --no-tensorboard
    assert "tensorboard" in negatable_flags(cli.get_parser())
    assert errors_of({"grid": {"tensorboard": [False]}}) == []


def test_extra_arguments_are_checked_too():
    (message,) = errors_of({"grid": {"lr": [0.1]}}, extra=["--bogus"])
    assert message.startswith("point lr=0.1: ") and "--bogus" in message


def test_missing_config_file():
    (message,) = errors_of({"grid": {"config": ["no/such.json"]}})
    assert message.startswith("point such: ") and "no/such.json" in message
