"""``--amp auto`` on the command line: resolved once in ``utils.cli.resolution``, recorded in
the run's config.json (the choice as plain flags, the request and its reason as "_"
notes), printed in train.py's start line, and kept by a resume."""
import json

import pytest
import torch

from maml.precision import describe, resolve_precision
from utils import cli

TINY = ["--dataset", "Strokes", "--dont_use_cuda", "--method", "sparse-maml"]


@pytest.mark.parametrize("native", [True, False])
def test_auto_resolves_to_the_probed_precision_and_records_it(monkeypatch, native):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    args = cli.parse_args(TINY + ["--amp", "auto"])
    config = cli.resolve(args)
    engine = config.learner.engine
    assert (engine.amp, engine.channels_last) == ("bf16" if native else None, True)
    assert config.flags["amp"] == ("bf16" if native else "none")
    assert config.flags["channels_last"] is True
    assert config.flags["_amp_requested"] == "auto"
    assert config.flags["_amp_reason"].startswith("CPU")
    assert args.amp == "auto"                    # the parsed flags are not mutated
    assert cli.learner_config(args).engine == engine     # one decision, wherever asked


@pytest.mark.parametrize("flags", [["--engine", "reference"],
                                   ["--method", "anil", "--second_order"],
                                   ["--second_order", "--engine", "reference"]])
def test_auto_gives_fp32_where_only_fp32_runs(flags):
    args = cli.parse_args(["--dataset", "Strokes", "--dont_use_cuda", "--amp", "auto"] + flags)
    config = cli.resolve(args)
    assert config.learner.engine.name == "reference"
    assert config.learner.engine.amp is None and config.flags["amp"] == "none"


@pytest.mark.parametrize("flags", [["--engine", "reference"],
                                   ["--method", "boil", "--second_order"]])
def test_explicit_bf16_still_needs_the_fast_engine(flags, capsys):
    with pytest.raises(SystemExit) as info:
        cli.parse_args(["--dataset", "Strokes", "--amp", "bf16"] + flags)
    assert info.value.code == 2 and "--amp bf16" in capsys.readouterr().err


def test_without_auto_nothing_is_noted():
    config = cli.resolve(cli.parse_args(TINY))
    assert config.flags["amp"] == "none" and config.flags["channels_last"] is False
    assert "_amp_requested" not in config.flags and config.learner.engine.amp is None


def test_train_py_records_and_prints_the_choice_and_a_resume_keeps_it(quick_args, tmp_path,
                                                                       zygote):
    out_dir = tmp_path / "run"
    result = zygote.run("train.py", quick_args(out_dir) + ["--amp", "auto"])
    assert result.code == 0, result.stderr
    # the zygote's children run this machine's CPU: the same probes as this process
    expected = resolve_precision("auto", False, "cpu")
    recorded = json.loads((out_dir / "config.json").read_text())["args"]
    assert recorded["amp"] == (expected.amp or "none")
    assert recorded["channels_last"] is expected.channels_last
    assert (recorded["_amp_requested"], recorded["_amp_reason"]) == ("auto", expected.reason)
    start = next(line for line in result.stdout.splitlines() if "engine on cpu" in line)
    assert f"{describe(expected.amp, expected.channels_last)} (--amp auto: {expected.reason})" \
        in start
    resumed = zygote.run("train.py", ["--resume", "--out_dir", str(out_dir), "--epochs", "3"])
    assert resumed.code == 0, resumed.stderr
    again = json.loads((out_dir / "config.json").read_text())["args"]
    assert (again["amp"], again["channels_last"]) == (recorded["amp"], True)
    assert "_amp_requested" not in again        # resumed with the recorded choice itself
