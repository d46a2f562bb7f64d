"""Every point goes through train.py's own parser: what it refuses, the sweep refuses,
naming the point and the flag."""
import json

from utils import cli
from utils.sweep.grid import expand, grid_program
from utils.sweep.validate import check_points, negatable_flags


def errors_of(grid, extra=()):
    return check_points(expand(grid), grid_program(grid), extra)


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


# --- continual.py points: its own parser (utils.cli.continual) -------------------------

DIGITS = "configs/continual/digits-rotations_la-maml.json"


def continual(**grid):
    return {"program": "continual", **grid}


def test_valid_continual_points_pass_and_switch_off_with_no_flags():
    assert errors_of(continual(config=DIGITS, grid={"glances": [1, 2],
                                                    "tensorboard": [True, False]})) == []


def test_continual_points_are_checked_by_continual_py_not_train_py():
    # a train.py flag is unknown to continual.py, and the other way round
    (message,) = errors_of(continual(config=DIGITS, grid={"gradient_mask": [True]}))
    assert message == ("point gradient_mask=true: unknown flag 'gradient_mask' (not a "
                       "continual.py flag; see python continual.py --help)")
    (message,) = errors_of({"grid": {"glances": [2]}})
    assert message.startswith("point glances=2: unknown flag 'glances' (not a train.py flag")


def test_continual_bad_value_and_inconsistent_point_give_its_parser_message():
    messages = errors_of(continual(config=DIGITS, grid={"glances": [1, 0]}))
    assert messages == ["point glances=0: argument --glances: must be > 0, got 0"]
    # a task-sequence method on a stream: continual.py's own consistency check
    messages = errors_of(continual(flags={"method": "la-maml"},
                                   grid={"benchmark": ["digits-rotations", "osaka-omniglot"]}))
    assert messages == ["point benchmark=osaka-omniglot: --method la-maml runs on tasks, not "
                        "on the stream benchmark osaka-omniglot"]


def test_continual_extra_arguments_and_reserved_flags():
    (message,) = errors_of(continual(config=DIGITS), extra=["--glances", "x"])
    assert message.startswith("point default: argument --glances: ")
    (message,) = errors_of(continual(flags={"resume": True}))
    assert "'resume' is set by the sweep" in message
