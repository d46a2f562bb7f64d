"""The entry scripts a sweep can run, one descriptor each: ``train.py`` and ``continual.py``.

A grid picks one with its ``"program"`` key (default ``"train"``); ROOT/sweep.json
records it. Everything the sweep needs to know about a program is here: its script,
the module of its parser (for validation and the ``--no-<flag>`` switches), the files
that tell a run folder's state, its log file, which results.json values go into
results.csv and the summary, and the report module that tabulates its runs. The rest
of utils/sweep only reads these fields.
"""
import importlib
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """A results.json value as a results.csv column.

    ``path``: keys into results.json; a path ending in "*" gives one column per key of
    that dict (``<name>_<key>``, keys in sorted order). ``kind``: "fraction" (shown as %),
    "seconds" or "count". ``summary``: "ci" (mean +- 95% CI over seeds), "mean", or None
    (results.csv only). ``own_ci``: the column that holds one run's own CI of this value,
    shown for a point with a single finished seed; it also names the summary's CI column
    (else ``<column>_ci95``).
    """
    name: str
    path: tuple
    label: str
    kind: str = "fraction"
    summary: str = "ci"
    own_ci: str = None

    def values(self, results):
        """{key: value} of one run's results: {None: value}, or an expanded dict's
        {key: value} ({} when it is absent); None for a missing or non-finite value."""
        value = results
        for key in self.path[:-1] if self.path[-1] == "*" else self.path:
            value = value.get(key) if isinstance(value, dict) else None
        if self.path[-1] != "*":
            return {None: _number(value)}
        return {k: _number(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _number(value):
    """A finite number, else None (results.json writes NaN for undefined metrics)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Program:
    """One entry script as the sweep runs it (``python SCRIPT FLAGS --seed i --out_dir D``,
    ``python SCRIPT --resume --out_dir D``)."""
    name: str           # the grid's "program" value
    script: str         # relative to the repository
    cli: str            # module with get_parser() and parse_args(argv) (SystemExit 2)
    report: str         # ``python -m REPORT ROOT`` tabulates the runs
    metrics: tuple
    # Run-folder files written by the script (utils/run/run_folder.py's RunFolder for
    # both): results last, the lock held while it runs, the resumable checkpoint.
    results: str = "results.json"
    lock: str = ".lock"
    checkpoint: str = "checkpoint.pt"

    @property
    def log(self):
        """The run's output, written by the executors into its folder."""
        return self.script.rsplit(".", 1)[0] + ".log"

    def parser(self):
        """The script's argparse parser (imported on first use: it may import torch)."""
        return importlib.import_module(self.cli).get_parser()

    def parse_args(self, argv):
        """The script's own parsing and consistency checks; SystemExit on an error."""
        return importlib.import_module(self.cli).parse_args(list(argv))


WALL_CLOCK = Metric("wall_clock_s", ("wall_clock_s",), "wall-clock per run", "seconds", "mean")

TRAIN = Program(
    name="train", script="train.py", cli="utils.cli", report="utils.report",
    metrics=(Metric("test_accuracy", ("test_accuracy",), "test accuracy %", own_ci="test_ci95"),
             Metric("test_ci95", ("test_ci95",), "CI over test tasks", summary=None),
             Metric("mean_sparsity", ("mean_sparsity",), "mean sparsity %", summary="mean"),
             WALL_CLOCK,
             Metric("best_epoch", ("best_epoch",), "best epoch", "count", None)))

# Task sequences fill the first three, streams the online accuracies and boundaries
# (maml/continual/metrics.py); a sweep may hold both kinds.
CONTINUAL = Program(
    name="continual", script="continual.py", cli="utils.cli.continual",
    report="utils.report_continual",
    metrics=(Metric("retained_accuracy", ("retained_accuracy",), "retained acc. %"),
             Metric("bwt", ("bwt",), "BWT %"),
             Metric("learning_accuracy", ("learning_accuracy",), "learning acc. %"),
             Metric("online_accuracy", ("online_accuracy",), "online acc. %"),
             Metric("online_accuracy", ("online_accuracy_per_mode", "*"), "online acc. %"),
             Metric("boundary_precision", ("boundaries", "precision"), "boundary precision %"),
             Metric("boundary_recall", ("boundaries", "recall"), "boundary recall %"),
             Metric("sparsity", ("sparsity",), "rates = 0 %", summary="mean"),
             WALL_CLOCK))

PROGRAMS = {p.name: p for p in (TRAIN, CONTINUAL)}
DEFAULT = TRAIN.name
