"""GRID.json: the product of flag values, with conditions, as points with stable ids.

The format follows the authors' ``hp_search_grid.py``::

    {"program": "train",                      optional: train (train.py) or continual
                                              (continual.py), see programs.py
     "config": "configs/....json",            optional base config of every point
     "flags": {"epochs": 400, ...},           fixed flags (scalars)
     "grid": {"mask_lr": [0.001, 0.01], ...}, the product of these value lists
     "conditions": [[{"step_size": [0.5]}, {"batch_size": [4]}], ...]}

A point that matches a condition's first dict (each of its flags has one of the listed
values) takes the second dict's values instead, one point per combination of them;
conditions apply in order, so a later one sees what an earlier one set. Duplicate
points (same flags and names) are dropped. Keys are the program's flag names (dest
names, as in config files); booleans stand for switches. Two keys are not flags:
``config`` (a config file, named in ids by its file stem) and ``argv`` (raw command-line
arguments of the program; in "grid" a dict {name: [arguments]} whose names appear in the
ids, in "flags" one list).

A point's id is made of the grid's keys (a key with a single value too, so widening a
list later keeps the existing ids) and of the keys a condition expanded to several
values: ``mask_lr=0.01_step_size=0.1``. Characters outside [A-Za-z0-9._+=-] become
"-"; an id longer than 80 characters, or equal to another point's, ends in a hash.
"""
import hashlib
import itertools
import json
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field

from utils.sweep.programs import DEFAULT, PROGRAMS

ID_MAX = 80
TOP_KEYS = ("program", "config", "flags", "grid", "conditions")
SPECIAL = ("config", "argv")
# Set per run by the sweep, so a grid must not set them.
RESERVED = {"seed": "seeds come from --seeds (runs get --seed 0..N-1)",
            "out_dir": "each run's folder is ROOT/<point>/seed<i>",
            "resume": "the sweep adds --resume to runs that have a checkpoint"}


class GridError(ValueError):
    """A grid file that cannot be expanded, or points that must not run (exit 2)."""


@dataclass(frozen=True)
class Point:
    """One flag set. ``flags``: {flag: value} in command-line order; ``keys``: the flags
    its id is made of; ``labels``: {key: name} for values named in the grid (argv)."""
    id: str
    flags: dict
    keys: tuple
    labels: dict = field(default_factory=dict)


def _scalar(value):
    return isinstance(value, (str, int, float, bool)) and value is not None


def _same(a, b):
    """Grid values compare as JSON would: true is not 1, 1 equals 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def _check_values(where, key, values, named=False):
    if key == "argv":
        if named:
            ok = isinstance(values, dict) and values and all(
                isinstance(v, list) and all(isinstance(w, str) for w in v)
                for v in values.values())
            if not ok:
                raise GridError(f"{where}: 'argv' must map names to lists of command-"
                                "line arguments, e.g. {\"run_a\": [\"--epochs=400\"]}")
            return
        if not (isinstance(values, list) and all(isinstance(w, str) for w in values)):
            raise GridError(f"{where}: 'argv' must be a list of command-line arguments")
        return
    if named:
        if not isinstance(values, list) or not values:
            raise GridError(f"{where}: '{key}' must be a non-empty list of values, got "
                            f"{json.dumps(values)}")
        bad = [v for v in values if not _scalar(v)]
    else:
        bad = [] if _scalar(values) else [values]
    if bad:
        raise GridError(f"{where}: '{key}' has a value that is not a string, number or "
                        f"boolean: {json.dumps(bad[0])}")
    if key == "config" and any(not isinstance(v, str) for v in (values if named else [values])):
        raise GridError(f"{where}: 'config' values must be file paths")


def load_grid(path):
    """Read and check the structure of GRID.json ("-": standard input)."""
    name = "GRID (stdin)" if path == "-" else path
    try:
        if path == "-":
            grid = json.load(sys.stdin)
        else:
            with open(path, encoding="utf-8") as f:
                grid = json.load(f)
    except (OSError, ValueError) as err:
        raise GridError(f"cannot read {name}: {err}") from None
    if not isinstance(grid, dict):
        raise GridError(f"{name} must hold a JSON object")
    unknown = [k for k in grid if k not in TOP_KEYS and not k.startswith("_")]
    if unknown:
        raise GridError(f"{name}: unknown keys {', '.join(unknown)} (expected "
                        f"{', '.join(TOP_KEYS)}; keys starting with '_' are comments)")
    program = grid.get("program", DEFAULT)
    if not isinstance(program, str) or program not in PROGRAMS:
        raise GridError(f"{name}: 'program' must be one of {', '.join(PROGRAMS)}, got "
                        f"{json.dumps(program)}")
    if "config" in grid:
        _check_values(name, "config", grid["config"])
    for key in ("flags", "grid"):
        if not isinstance(grid.get(key, {}), dict):
            raise GridError(f"{name}: '{key}' must be an object of flag values")
    for flag, value in grid.get("flags", {}).items():
        if flag == "config":
            raise GridError(f"{name}: put the base config in the top-level 'config' key")
        _check_values(f"{name} flags", flag, value)
    for flag, values in grid.get("grid", {}).items():
        _check_values(f"{name} grid", flag, values, named=True)
    conditions = grid.get("conditions", [])
    if not isinstance(conditions, list):
        raise GridError(f"{name}: 'conditions' must be a list of [match, values] pairs")
    for i, cond in enumerate(conditions):
        if not (isinstance(cond, list) and len(cond) == 2
                and all(isinstance(d, dict) and d for d in cond)):
            raise GridError(f"{name}: condition {i} must be a pair of non-empty objects "
                            "[{flag: [values]}, {flag: [values]}]")
        for d in cond:
            for flag, values in d.items():
                if flag == "argv":
                    raise GridError(f"{name}: condition {i}: 'argv' cannot be matched or set")
                _check_values(f"{name} condition {i}", flag, values, named=True)
    return grid


def grid_program(grid):
    """The Program a loaded grid runs (programs.py)."""
    return PROGRAMS[grid.get("program", DEFAULT)]


def _matches(flags, match):
    return all(k in flags and any(_same(flags[k], v) for v in values)
               for k, values in match.items())


def _apply_conditions(flags, conditions):
    """[(flags, keys expanded to several values)] for one point of the product."""
    current = [(flags, ())]
    for match, values in conditions:
        out = []
        for f, expanded in current:
            if not _matches(f, match):
                out.append((f, expanded))
                continue
            many = tuple(k for k, v in values.items() if len(v) > 1 and k not in expanded)
            for combo in itertools.product(*values.values()):
                g = dict(f)
                g.update(zip(values, combo, strict=True))
                out.append((g, expanded + many))
        current = out
    return current


def format_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def readable_id(flags, keys, labels):
    """``k=v`` parts of the id keys joined by "_"; config files by their stem."""
    parts = []
    for key in keys:
        if key in labels:
            parts.append(labels[key])
        elif key == "config":
            parts.append(os.path.splitext(os.path.basename(flags[key]))[0])
        else:
            parts.append(f"{key}={format_value(flags[key])}")
    text = re.sub(r"[^A-Za-z0-9._+=-]+", "-", "_".join(parts)) or "default"
    return re.sub(r"^[.-]+", "", text) or "default"


def canonical(flags):
    """The order-independent text of a flag set (its identity in sweep.json)."""
    return json.dumps(flags, sort_keys=True)


def expand(grid):
    """The grid's points, in product order (first grid key outermost)."""
    base = {"config": grid["config"]} if "config" in grid else {}
    base.update(grid.get("flags", {}))
    axes = grid.get("grid", {})
    named = {k: v for k, v in axes.items() if k == "argv"}
    choices = [list(v.items()) if k in named else [(None, x) for x in v]
               for k, v in axes.items()]
    conditions = [tuple(c) for c in grid.get("conditions", [])]
    seen, raw = set(), []
    for combo in itertools.product(*choices):
        flags, labels = dict(base), {}
        for key, (label, value) in zip(axes, combo, strict=True):
            flags[key] = value
            if label is not None:
                labels[key] = label
        for f, expanded in _apply_conditions(flags, conditions):
            text = canonical([f, labels])      # named values are distinct points
            if text not in seen:
                seen.add(text)
                raw.append((f, tuple(axes) + tuple(k for k in f if k in expanded and k not in axes),
                            labels))
    ids = [readable_id(f, keys, labels) for f, keys, labels in raw]
    counts = Counter(ids)
    points = []
    for (f, keys, labels), pid in zip(raw, ids, strict=True):
        if len(pid) > ID_MAX or counts[pid] > 1:
            digest = hashlib.sha1(canonical([f, labels]).encode()).hexdigest()[:8]
            pid = f"{pid[:ID_MAX - 9]}_{digest}"
        points.append(Point(pid, f, keys, labels))
    return points


def point_args(point, negatable=()):
    """The program's arguments of a point (without --seed/--out_dir).

    true -> ``--flag``; false -> ``--no-flag`` when the program has it (``negatable``: the
    flags that have it), else nothing (validate.py checks that the run then gets false).
    """
    args = []
    for key, value in point.flags.items():
        if key == "config":
            args += ["--config", value]
        elif key == "argv":
            args += list(value)
        elif isinstance(value, bool):
            args += [f"--{key}"] if value else [f"--no-{key}"] if key in negatable else []
        else:
            args += [f"--{key}", format_value(value)]
    return args
