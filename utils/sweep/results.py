"""Collect a sweep: the status table, ROOT/results.csv and the per-point summary.

results.csv has one row per run: point id, every flag that varies, seed, status, the
program's results.json values (programs.py: for train.py test accuracy and its 95% CI
over test tasks, mean mask sparsity, wall-clock, best epoch; for continual.py retained
accuracy, BWT, learning accuracy, online accuracy overall and per mode, boundary
precision / recall, sparsity of the rates, wall-clock; accuracies and sparsities as
fractions, as in results.json), and the run folder. The summary (ROOT/summary.csv,
ROOT/summary.md, also printed) gives per point the mean of each value over its finished
seeds, +- the 95% CI over seeds, t(0.975, n - 1) * std(ddof=1) / sqrt(n), as
``utils.report``; a point with one finished seed shows that run's own CI where it has
one (train.py's CI over test tasks). summary.md leaves out the columns no point has a
value for (a sweep of task sequences has no online accuracy).
"""
import csv
import io
import json
import os
import statistics
from dataclasses import dataclass

from utils.run.atomic_io import atomic_write
from utils.run.metrics import seeds_mean_ci95
from utils.sweep.grid import format_value
from utils.sweep.state import DONE, FAILED, PENDING, QUEUED, RUNNING, STOPPED


@dataclass(frozen=True)
class Column:
    """One results.csv column of a metric (programs.Metric): ``key`` names the entry of
    an expanded dict (a mode), None for a single value."""
    metric: object
    key: str = None

    @property
    def name(self):
        return self.metric.name if self.key is None else f"{self.metric.name}_{self.key}"

    @property
    def ci_name(self):
        """The summary's CI column: the metric's own CI column name where it has one."""
        own = self.metric.own_ci if self.key is None else None
        return own or f"{self.name}_ci95"

    @property
    def label(self):
        return self.metric.label + ("" if self.key is None else f" ({self.key})")


def read_results(folder, name):
    try:
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            results = json.load(f)
    except (OSError, ValueError):
        return {}
    return results if isinstance(results, dict) else {}


def _flag_value(point, key):
    if key in point.labels:
        return point.labels[key]
    return format_value(point.flags[key]) if key in point.flags else ""


class Collection:
    """A sweep's results: ``rows`` (results.csv), ``summaries`` (one per point) and the
    metric ``columns`` they hold, read from the run folders in ``states``
    ({run folder: status}) with the sweep program's metrics."""

    def __init__(self, sweep, states):
        self.sweep, program = sweep, sweep.program
        found = [self._values(run.dir) if states[run.dir] == DONE else {} for run in sweep.runs]
        self.columns = []
        for metric in program.metrics:       # the program's order; a mode when some run has it
            keys = [None] if metric.path[-1] != "*" else sorted(
                {key for values in found for m, key in values if m is metric})
            self.columns += [c for c in (Column(metric, k) for k in keys)
                             if c.name not in {d.name for d in self.columns}]
        self.rows = []
        for run, values in zip(sweep.runs, found, strict=True):
            row = {"point": run.point.id}
            row.update({k: _flag_value(run.point, k) for k in sweep.varying_keys})
            row.update(seed=run.seed, status=states[run.dir])
            row.update({c.name: values.get((c.metric, c.key)) for c in self.columns})
            row["run_dir"] = run.dir
            self.rows.append(row)
        self.summaries = [self._summary(p) for p in sweep.points]

    def _values(self, folder):
        """{(metric, key): value} of a finished run's results.json."""
        results = read_results(folder, self.sweep.program.results)
        return {(m, k): v for m in self.sweep.program.metrics for k, v in m.values(results).items()}

    @property
    def summarised(self):
        return [c for c in self.columns if c.metric.summary]

    def _summary(self, point):
        """Runs done of all, and each summarised value's mean (+- CI) over them."""
        mine = [r for r in self.rows if r["point"] == point.id]
        done = [r for r in mine if r["status"] == DONE and any(
            r[c.name] is not None for c in self.summarised if c.metric.summary == "ci")]
        summary = {"point": point.id}
        summary.update({k: _flag_value(point, k) for k in self.sweep.varying_keys})
        summary.update(seeds_done=len(done), seeds=len(mine))
        for c in self.summarised:
            have = [r for r in done if r[c.name] is not None]
            values = [r[c.name] for r in have]
            if c.metric.summary == "mean":
                summary[c.name] = statistics.fmean(values) if values else None
                continue
            own = have[0].get(c.metric.own_ci) if len(have) == 1 and c.metric.own_ci else None
            mean, ci = seeds_mean_ci95(values, own) if values else (None, None)
            summary.update({c.name: mean, c.ci_name: ci})
        return summary

    def markdown(self):
        """The summary as a table: a column per summarised value that some point has."""
        columns = [c for c in self.summarised
                   if any(s[c.name] is not None for s in self.summaries)]
        heads = [c.label + (" (95% CI)" if c.metric.summary == "ci" else "") for c in columns]
        lines = ["| " + " | ".join(["point", "seeds done", *heads]) + " |",
                 "|" + "---|" * (2 + len(columns))]
        for s in self.summaries:
            cells = [s["point"], f"{s['seeds_done']}/{s['seeds']}"]
            for c in columns:
                text = _shown(c.metric.kind, s[c.name])
                if text and c.metric.summary == "ci" and s[c.ci_name] is not None:
                    text += f" +- {_shown(c.metric.kind, s[c.ci_name])}"
                cells.append(text)
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def write(self):
        """ROOT/results.csv, ROOT/summary.csv and ROOT/summary.md; returns the markdown."""
        markdown, root = self.markdown(), self.sweep.root
        _write(os.path.join(root, "results.csv"), _csv(self.rows))
        _write(os.path.join(root, "summary.csv"), _csv(self.summaries))
        _write(os.path.join(root, "summary.md"), markdown)
        return markdown


def _csv(rows):
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
    return buffer.getvalue()


def _duration(seconds):
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _shown(kind, value):
    if value is None:
        return ""
    if kind == "fraction":
        return f"{100 * value:.2f}"
    return _duration(value) if kind == "seconds" else format_value(value)


def _write(path, text):
    atomic_write(path, lambda f: f.write(text), mode="w")


def status_table(sweep, states):
    """Points x seeds of run states, then the count of each state."""
    header = ["point"] + [f"seed{s}" for s in sweep.seeds]
    table = [header] + [[p.id] + [states[os.path.join(sweep.root, p.id, f"seed{s}")]
                                  for s in sweep.seeds] for p in sweep.points]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in table]
    counts = [(s, sum(v == s for v in states.values()))
              for s in (DONE, RUNNING, QUEUED, STOPPED, FAILED, PENDING)]
    lines.append(f"{len(states)} runs: " + ", ".join(f"{n} {s}" for s, n in counts if n))
    return "\n".join(lines)
