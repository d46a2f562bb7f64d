"""Where a sweep's runs live and how each is started: ROOT/<point>/seed<i>, ROOT/sweep.json.

ROOT/sweep.json records the program (train or continual, programs.py) and point id ->
full flags (and the grid file of the last call). A rerun may add points and seeds; a
grid that gives a recorded point id different flags, or the sweep another program, is
refused, so a run folder never mixes two settings. Commands start the program's script
in the repository folder (configs and data paths of a grid are relative to it); run
folders inside the repository are written relative to it, others absolute.
"""
import datetime
import json
import os
import shlex
from dataclasses import dataclass

from utils.run.atomic_io import save_json
from utils.sweep.grid import (
    GridError,
    Point,
    canonical,
    expand,
    grid_program,
    load_grid,
    point_args,
)
from utils.sweep.programs import DEFAULT
from utils.sweep.validate import check_points, negatable_flags

SWEEP_FILE = "sweep.json"
MAX_ERRORS = 20


@dataclass(frozen=True)
class Run:
    point: Point
    seed: int
    dir: str       # absolute

    @property
    def label(self):
        return f"{self.point.id}/seed{self.seed}"


class Sweep:
    """Points x seeds under ``root``; ``python`` runs ``program``'s script from ``repo``."""

    def __init__(self, root, points, seeds, repo, python, program, negatable=(),
                 extra_args=(), grid_file=None, grid=None):
        self.root, self.points, self.seeds = os.path.abspath(root), list(points), list(seeds)
        self.repo, self.python, self.program = os.path.abspath(repo), python, program
        self.negatable, self.extra_args = set(negatable), list(extra_args)
        self.grid_file, self.grid = grid_file, grid
        self.runs = [Run(p, s, os.path.join(self.root, p.id, f"seed{s}"))
                     for p in self.points for s in self.seeds]

    @property
    def varying_keys(self):
        """The flags of the ids, then any other flag whose value differs between points
        (set by a condition), in order: the flag columns of results.csv."""
        keys = []
        for p in self.points:
            keys += [k for k in p.keys if k not in keys]
        for p in self.points:
            keys += [k for k in p.flags if k not in keys and len(
                {canonical(q.flags.get(k)) for q in self.points}) > 1]
        return keys

    def shown_dir(self, run):
        """The run folder as commands give it: relative to the repository if inside it."""
        rel = os.path.relpath(run.dir, self.repo)
        return run.dir if rel == os.pardir or rel.startswith(os.pardir + os.sep) else rel

    def fresh_command(self, run):
        return [self.python, self.program.script, *point_args(run.point, self.negatable),
                "--seed", str(run.seed), "--out_dir", self.shown_dir(run), *self.extra_args]

    def resume_command(self, run):
        """The script takes every other flag from the run's config.json."""
        return [self.python, self.program.script, "--resume", "--out_dir",
                self.shown_dir(run), *self.extra_args]

    def command(self, run):
        """Resume when the run has a checkpoint, else start it."""
        if os.path.isfile(os.path.join(run.dir, self.program.checkpoint)):
            return self.resume_command(run)
        return self.fresh_command(run)

    def record_path(self):
        return os.path.join(self.root, SWEEP_FILE)

    def read_record(self):
        try:
            with open(self.record_path(), encoding="utf-8") as f:
                record = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            raise GridError(f"cannot read {self.record_path()}: {err}") from None
        return record if isinstance(record, dict) else {}

    def check_record(self):
        """Refuse points whose id ROOT/sweep.json already maps to other flags, and a
        program other than the recorded one (a record without one is train.py's)."""
        record = self.read_record()
        if record and record.get("program", DEFAULT) != self.program.name:
            raise GridError(f"{self.record_path()} records a sweep of program "
                            f"{json.dumps(record.get('program', DEFAULT))}, this grid runs "
                            f"{json.dumps(self.program.name)}; use another --out")
        recorded = record.get("points", {})
        errors = []
        for p in self.points:
            old = recorded.get(p.id, {}).get("flags")
            if old is None or canonical(old) == canonical(p.flags):
                continue
            diff = sorted(k for k in set(old) | set(p.flags)
                          if canonical(old.get(k)) != canonical(p.flags.get(k)))
            shown = "; ".join(f"{k}: {json.dumps(old.get(k))} recorded, "
                              f"{json.dumps(p.flags.get(k))} now" for k in diff[:4])
            errors.append(f"point {p.id}: {self.record_path()} records other flags for "
                          f"it ({shown}); its runs would mix two settings. Keep the grid "
                          "as it was, or use another --out")
        if errors:
            raise GridError("\n".join(errors))

    def write_record(self):
        """Add this call's points to ROOT/sweep.json (recorded points are kept)."""
        record = self.read_record()
        points = dict(record.get("points", {}))
        for p in self.points:
            points[p.id] = {"flags": p.flags, "id_flags": list(p.keys),
                            "args": point_args(p, self.negatable)}
        seeds = sorted(set(record.get("seeds", [])) | set(self.seeds))
        record.update(program=self.program.name, script=self.program.script, points=points,
                      seeds=seeds, grid_file=self.grid_file, grid=self.grid,
                      extra_args=self.extra_args, repository=self.repo,
                      updated=datetime.datetime.now().isoformat(timespec="seconds"))
        os.makedirs(self.root, exist_ok=True)
        save_json(self.record_path(), record)

    def quoted(self, command):
        return " ".join(shlex.quote(w) for w in command)


def open_sweep(grid_path, root, seeds, repo, python, extra_args=()):
    """Load, expand and validate a grid; GridError (all messages) if any point is refused.

    Run from the repository folder: config paths in the grid are relative to it.
    """
    grid = load_grid(grid_path)
    program, points = grid_program(grid), expand(grid)
    errors = check_points(points, program, extra_args)
    if errors:
        more = len(errors) - MAX_ERRORS
        raise GridError("\n".join(errors[:MAX_ERRORS]
                                  + ([f"... and {more} more"] if more > 0 else [])))
    sweep = Sweep(root, points, range(seeds), repo, python, program,
                  negatable_flags(program.parser()), extra_args,
                  grid_file=None if grid_path == "-" else os.path.abspath(grid_path), grid=grid)
    sweep.check_record()
    return sweep
