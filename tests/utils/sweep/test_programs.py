"""The program descriptors: their file names are the ones the run-folder library writes,
their parsers are the scripts' own, their metrics read results.json as the scripts
write it (nested values, per-mode dicts, NaN)."""
import pytest

from utils.run.checkpoint import CHECKPOINT
from utils.run.run_folder import LOCK, RUN_FILES
from utils.sweep.programs import CONTINUAL, PROGRAMS, TRAIN, Metric


@pytest.mark.parametrize("program", PROGRAMS.values(), ids=list(PROGRAMS))
def test_run_folder_files_and_parser_are_the_scripts(program):
    # train.py and continual.py both keep their runs in a utils.run.run_folder.RunFolder
    assert (program.lock, program.checkpoint) == (LOCK, CHECKPOINT)
    assert program.results in RUN_FILES
    parser = program.parser()
    assert parser.prog == program.script
    assert program.parse_args(["--seed", "3"]).seed == 3
    assert program.log == program.script.replace(".py", ".log")


def test_programs_are_selected_by_name():
    assert PROGRAMS == {"train": TRAIN, "continual": CONTINUAL}
    assert {TRAIN.report, CONTINUAL.report} == {"utils.report", "utils.report_continual"}


def test_metric_values_nested_expanded_and_non_finite():
    nested = Metric("boundary_recall", ("boundaries", "recall"), "recall")
    assert nested.values({"boundaries": {"recall": 0.25}}) == {None: 0.25}
    assert nested.values({"boundaries": None}) == {None: None}
    assert nested.values({}) == {None: None}
    modes = Metric("online_accuracy", ("online_accuracy_per_mode", "*"), "online")
    assert modes.values({"online_accuracy_per_mode": {"b": 0.5, "a": float("nan")}}) == {
        "b": 0.5, "a": None}
    assert modes.values({}) == {}
    plain = Metric("bwt", ("bwt",), "BWT")
    assert plain.values({"bwt": float("-inf")}) == {None: None}
    assert plain.values({"bwt": True}) == {None: None}        # not a number
    assert plain.values({"bwt": -1}) == {None: -1}
