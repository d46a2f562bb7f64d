"""train.py's command line: the original's flags and defaults, presets, checks, --config."""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from utils import cli
from utils.cli.methods import METHODS

REPO = Path(__file__).resolve().parents[1]

# Every flag of the authors' parser with its default there (out_dir: the original's
# sentinel "out_dir_default" means "make a folder", which is None here).
ORIGINAL_DEFAULTS = {
    "out_dir": None, "tensorboard": True, "val_after": 5, "test_start": -1, "val_start": -1,
    "checkpoint_models": False, "dont_use_cuda": False, "seed": -1, "batch_size": 2,
    "test_batch_size": 1, "epochs": 300, "batches_train": 100, "batches_test": 300,
    "batches_val": 300, "num_workers": 2, "optimizer_theta": "ADAM", "optimizer_mask": "ADAM",
    "lr": 0.001, "mask_lr": 0.001, "momentum": 0.9, "clamp_outer_gradients": False,
    "resnet": False, "big_resnet": False, "hidden_size": 64, "bias": False,
    "num_shots_train": 5, "num_shots_test": 15, "num_ways": 5, "dataset": "MiniImagenet",
    "data_aug": False, "step_size": 0.1, "gradient_steps": 35, "gradient_step_sampling": 0,
    "gradient_steps_test": 35, "second_order": False, "no_bn_in_inner_loop": False,
    "no_downsample_in_inner_loop": False, "gradient_mask": False, "weight_mask": False,
    "gradient_mask_plus": False, "plus_output_shift": 0.0, "init_shift": 0.0,
    "kaiming_init": False, "meta_relu": False, "meta_relu_through": False,
    "meta_sgd_linear": False, "meta_exp": False, "meta_sgd_init": False,
    "meta_constant_init": False,
}

# The eight commands of the authors' run_sparse_MAML.sh (flags only).
_CONV = ("--epochs={e} --batches_train=100 --batches_test=500 --batches_val=500 --batch_size=2 "
         " --num_shots_train=5 --gradient_mask --step_size={s} --mask_lr=0.0075 "
         "--checkpoint_models --gradient_steps=35 --val_start=100 --test_start=100 "
         "--kaiming_init --tensorboard --val_after 5")
_PLUS = " --gradient_mask_plus --optimizer_mask=SGD --optimizer_theta=SGD"
_RES = ("--epochs=40 --batches_train=1000 --batches_test=500 --batches_val=500 --batch_size=1 "
        " --num_shots_train={k} --gradient_mask --step_size={s} --mask_lr=0.01 "
        "--checkpoint_models --gradient_steps=35 --val_start=10 --test_start=10 --tensorboard "
        "--val_after 1 --resnet --no_bn_in_inner_loop")
_RELU = " --meta_relu_through --meta_constant_init --clamp_outer_gradients"
_CLAMP = " --clamp_outer_gradients"
ORIGINAL_COMMANDS = [
    _CONV.format(e=400, s=0.25),
    _CONV.format(e=600, s=0.1) + _PLUS,
    _CONV.format(e=400, s=0.1),
    _CONV.format(e=600, s=0.1) + _PLUS,
    _RES.format(k=5, s=0.05) + _RELU,
    _RES.format(k=5, s=0.05) + _CLAMP,
    _RES.format(k=1, s=0.01) + _RELU,
    _RES.format(k=1, s=0.05) + _CLAMP,
]


def exit_code(argv):
    with pytest.raises(SystemExit) as info:
        cli.parse_args(argv)
    return info.value.code


@pytest.mark.parametrize("dest,default", sorted(ORIGINAL_DEFAULTS.items()))
def test_original_flag_and_default(dest, default):
    option_strings = {s for a in cli.get_parser()._actions for s in a.option_strings}
    assert "--" + dest in option_strings
    value = getattr(cli.parse_args([]), dest)
    assert value == default and type(value) is type(default)


def test_original_out_dir_sentinel_means_default():
    assert cli.parse_args(["--out_dir", "out_dir_default"]).out_dir is None
    assert cli.parse_args(["--out_dir", "runs/x"]).out_dir == "runs/x"


@pytest.mark.parametrize("command", ORIGINAL_COMMANDS)
def test_original_commands_parse(command):
    argv = command.split()
    args = cli.parse_args(argv)
    assert args.gradient_mask and args.checkpoint_models and args.tensorboard
    for flag in argv:
        if "=" in flag:
            dest, value = flag[2:].split("=")
            assert str(getattr(args, dest)) == value, dest
    assert args.resnet == ("--resnet" in argv)
    assert args.gradient_mask_plus == ("--gradient_mask_plus" in argv)
    assert args.meta_relu_through == ("--meta_relu_through" in argv)


def test_every_help_string_shows_its_default():
    for action in cli.get_parser()._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help and "(default:" in action.help, action.dest
    assert "(default: 300)" in cli.get_parser().format_help()


def test_no_tensorboard():
    assert cli.parse_args(["--no-tensorboard"]).tensorboard is False
    assert cli.parse_args(["--tensorboard"]).tensorboard is True


PRESETS = {
    "maml": set(), "anil": {"anil"}, "boil": {"boil"},
    "meta-sgd": {"gradient_mask", "meta_sgd_linear", "meta_sgd_init"},
    "sparse-maml": {"gradient_mask"},
    "sparse-relu-maml": {"gradient_mask", "meta_relu_through", "meta_constant_init"},
}
PRESET_FLAGS = set().union(*PRESETS.values()) | {"weight_mask", "meta_relu", "meta_exp",
                                                 "gradient_mask_plus"}


def test_preset_table_covers_every_method():
    assert set(PRESETS) == set(METHODS)


@pytest.mark.parametrize("method", sorted(PRESETS))
def test_method_preset_expands_to_its_flags(method):
    args = cli.parse_args(["--method", method])
    assert args.method == method
    on = {flag for flag in PRESET_FLAGS if getattr(args, flag)}
    assert on == PRESETS[method]


@pytest.mark.parametrize("method", sorted(PRESETS))
def test_flags_without_method_are_named_like_the_preset(method):
    argv = ["--" + flag for flag in sorted(PRESETS[method])]
    assert cli.parse_args(argv).method == method


@pytest.mark.parametrize("argv", [
    ["--gradient_mask", "--weight_mask"],
    ["--gradient_mask", "--meta_relu", "--meta_exp"],
    ["--gradient_mask", "--meta_sgd_linear", "--meta_relu_through"],
    ["--meta_relu_through"],
    ["--method", "maml", "--meta_sgd_linear"],
    ["--gradient_mask", "--gradient_mask_plus", "--resnet"],
    ["--gradient_mask", "--gradient_mask_plus", "--big_resnet"],
    ["--gradient_mask_plus"],
    ["--anil", "--boil"],
    ["--second_order", "--engine", "fast"],
    ["--engine", "reference", "--compile"], ["--second_order", "--task_streams", "2"],
    ["--task_streams", "0"], ["--task_streams", "2", "--no-cuda_graphs"],
    ["--sampler", "device", "--data_aug"], ["--sampler", "device", "--cache_images"],
    ["--sampler", "gpu"],
    ["--epochs", "0"], ["--epochs", "-3"], ["--batch_size", "0"], ["--lr", "0"],
    ["--lr", "-0.1"], ["--mask_lr", "0"], ["--step_size", "0"], ["--gradient_steps", "0"],
    ["--batches_train", "0"], ["--num_ways", "0"], ["--num_workers", "-1"],
    ["--dataset", "ImageNet"], ["--optimizer_theta", "RMSPROP"],
    ["--optimizer_mask", "LBFGS"], ["--method", "reptile"], ["--epochs", "ten"],
])
def test_inconsistent_or_invalid_flags_exit_2(argv, capsys):
    assert exit_code(argv) == 2
    assert "error:" in capsys.readouterr().err


def test_case_insensitive_choices_return_canonical_names():
    args = cli.parse_args(["--dataset", "omniglot", "--optimizer_theta", "sgd"])
    assert (args.dataset, args.optimizer_theta) == ("Omniglot", "SGD")


def test_second_order_selects_the_reference_engine():
    assert cli.parse_args(["--second_order"]).engine == "reference"
    assert cli.parse_args([]).engine == "fast"


def write_json(path, values):
    path.write_text(json.dumps(values))
    return str(path)


def test_config_sets_values_and_flags_override(tmp_path):
    config = write_json(tmp_path / "c.json", {"epochs": 7, "lr": 0.01, "gradient_mask": True,
                                             "_comment": "ignored", "_why": [1, 2]})
    args = cli.parse_args(["--config", config])
    assert (args.epochs, args.lr, args.gradient_mask) == (7, 0.01, True)
    assert args.method == "sparse-maml"
    args = cli.parse_args(["--config", config, "--epochs", "9"])
    assert (args.epochs, args.lr) == (9, 0.01)
    assert not hasattr(args, "_comment")


@pytest.mark.parametrize("values", [
    {"epochz": 3},
    {"epochs": 0},
    {"lr": -1.0},
    {"gradient_mask": True, "weight_mask": True},
])
def test_bad_config_exits_2(tmp_path, values):
    assert exit_code(["--config", write_json(tmp_path / "c.json", values)]) == 2


def test_unreadable_config_exits_2(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    assert exit_code(["--config", str(tmp_path / "bad.json")]) == 2
    assert exit_code(["--config", str(tmp_path / "missing.json")]) == 2


def test_run_config_json_is_accepted_as_config(tmp_path):
    first = cli.parse_args(["--method", "sparse-relu-maml", "--step_size", "0.05",
                            "--dataset", "Strokes", "--seed", "3", "--out_dir", "runs/a"])
    saved = {"args": vars(first), "_meta": {"git_commit": None, "torch": "x"}}
    again = cli.parse_args(["--config", write_json(tmp_path / "config.json", saved)])
    assert vars(again) == {**vars(first), "config": str(tmp_path / "config.json")}


@pytest.mark.parametrize("values", [
    {"engine": "bogus"}, {"amp": "fp8"}, {"method": "reptile"}, {"gradient_mask": "false"},
])
def test_config_values_outside_choices_or_not_bool_exit_2(tmp_path, values):
    assert exit_code(["--config", write_json(tmp_path / "c.json", values)]) == 2


def test_continual_and_evaluate_boolean_flags_have_no_forms():
    from utils.cli.continual import get_parser
    actions = get_parser()._actions
    flags = [a for a in actions if a.nargs == 0 and not isinstance(a, argparse._HelpAction)]
    assert flags and all(isinstance(a, argparse.BooleanOptionalAction) for a in flags)
    help_text = subprocess.run([sys.executable, "evaluate.py", "--help"], cwd=REPO, text=True,
                               capture_output=True, check=True).stdout
    for flag in ("--no-download", "--no-dont_use_cuda", "--no-invert"):
        assert flag in help_text, help_text


def test_every_boolean_flag_has_a_no_form_that_undoes_a_config(tmp_path):
    booleans = [a for a in cli.get_parser()._actions
                if isinstance(a, argparse.BooleanOptionalAction)]
    assert {"--no-second_order", "--no-gradient_mask", "--no-tensorboard"} <= {
        s for a in booleans for s in a.option_strings}
    assert all(f"--no-{a.dest}" in a.option_strings for a in booleans)
    config = write_json(tmp_path / "c.json", {"method": "maml", "second_order": True,
                                             "checkpoint_models": True})
    args = cli.parse_args(["--config", config, "--no-second_order", "--no-checkpoint_models"])
    assert args.second_order is False and args.checkpoint_models is False
    assert args.engine == "fast"


def test_method_presets_sit_between_the_config_and_explicit_flags(tmp_path):
    config = write_json(tmp_path / "c.json", {"gradient_mask": True, "meta_relu_through": True,
                                             "meta_constant_init": True, "epochs": 3})
    args = cli.parse_args(["--config", config, "--method", "maml"])   # the preset wins ...
    assert args.method == "maml" and not args.gradient_mask and args.epochs == 3
    args = cli.parse_args(["--method", "sparse-maml", "--gradient_mask_plus"])   # ... explicit
    assert args.gradient_mask and args.gradient_mask_plus and args.method == "sparse-maml"


@pytest.mark.parametrize("argv, reason", [
    (["--method", "sparse-relu-maml", "--no-meta_constant_init"], "not --method sparse-relu"),
    (["--gradient_mask", "--kaiming_init", "--meta_constant_init"], "--kaiming_init has no"),
    (["--gradient_mask", "--kaiming_init", "--meta_sgd_init"], "--kaiming_init has no"),
    (["--gradient_mask", "--meta_constant_init", "--init_shift", "0.5"], "--init_shift shifts"),
    (["--gradient_mask", "--meta_sgd_init", "--init_shift", "0.5"], "--init_shift shifts"),
    (["--kaiming_init"], "initialises the mask logits"),
    (["--meta_constant_init"], "initialises the mask logits"),
    (["--init_shift", "0.2"], "it needs --gradient_mask"),
    (["--gradient_mask", "--plus_output_shift", "0.1"], "needs --gradient_mask_plus"),
    (["--anil", "--no_bn_in_inner_loop"], "--anil adapts the classifier only"),
    (["--dataset", "Strokes", "--data_aug"], "does nothing for Strokes"),
    (["--mask_mode", "none", "--gradient_mask"], "learns no mask"),
    (["--mask_mode", "gradient", "--weight_mask"], "selects the weight mode"),
])
def test_combinations_that_would_do_nothing_are_errors(argv, reason, capsys):
    assert exit_code(argv) == 2
    err = capsys.readouterr().err
    assert reason in err and len(err.strip().splitlines()[-1]) < 250


def test_init_shift_with_a_constant_init_is_allowed_for_plus():
    args = cli.parse_args(["--gradient_mask", "--gradient_mask_plus", "--meta_constant_init",
                           "--init_shift", "0.5"])
    assert args.method == "sparse-maml-plus"


def test_task_streams_without_cuda_is_an_error(capsys):
    args = cli.parse_args(["--task_streams", "2", "--dont_use_cuda"])
    with pytest.raises(SystemExit) as info:
        cli.resolve(args)
    assert info.value.code == 2 and "--task_streams" in capsys.readouterr().err


def test_resolve_fills_the_typed_config_once():
    args = cli.parse_args(["--method", "sparse-relu-maml", "--dataset", "Strokes",
                           "--amp", "bf16", "--compile", "--channels_last", "--dont_use_cuda",
                           "--resnet", "--gradient_steps", "7", "--step_size", "0.05"])
    config = cli.resolve(args)
    assert 0 <= config.seed < 2 ** 31 and config.flags["seed"] == config.seed
    assert config.out_dir.startswith("runs") and config.flags["out_dir"] == config.out_dir
    assert "resume" not in config.flags and args.seed == -1     # args are not mutated
    learner = config.learner
    assert (learner.mask.mode, learner.mask.kind, learner.mask.init) == (
        "learning_rate", "relu_through", "constant")
    assert (learner.engine.amp, learner.engine.compile, learner.engine.channels_last) == (
        "bf16", True, True)
    assert learner.backbone.resnet and (learner.backbone.in_channels,
                                        learner.backbone.image_size) == (1, 28)
    assert (learner.inner.steps, learner.inner.step_size, learner.device) == (7, 0.05, "cpu")
    assert config.data.dataset == "Strokes" and config.schedule.epochs == 300


def test_a_resumed_run_reuses_its_recorded_seed(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"args": {"seed": 1234}}))
    args = cli.parse_args(["--resume", "--out_dir", str(tmp_path)])
    assert cli.resolve(args).seed == 1234
