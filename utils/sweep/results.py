"""Collect a sweep: the status table, ROOT/results.csv and the per-point summary.

results.csv has one row per run (point id, every flag that varies, seed, status, test
accuracy and its 95% CI over test tasks, mean mask sparsity, wall-clock, best epoch,
run folder; accuracies and sparsities as fractions, as in results.json). The summary
(ROOT/summary.csv, ROOT/summary.md, also printed) gives per point the mean test accuracy
over its finished seeds +- the 95% CI over seeds, 1.96 * std(ddof=1) / sqrt(n), as
``utils.report``; a point with one finished seed shows that run's CI over test tasks.
"""
import csv
import io
import json
import math
import os
import statistics

from utils.run.atomic_io import atomic_write
from utils.sweep.grid import format_value
from utils.sweep.state import DONE, FAILED, PENDING, QUEUED, RESULTS, RUNNING, STOPPED

METRICS = ("test_accuracy", "test_ci95", "mean_sparsity", "wall_clock_s", "best_epoch")


def read_results(folder):
    try:
        with open(os.path.join(folder, RESULTS), encoding="utf-8") as f:
            results = json.load(f)
    except (OSError, ValueError):
        return {}
    return results if isinstance(results, dict) else {}


def _flag_value(point, key):
    if key in point.labels:
        return point.labels[key]
    return format_value(point.flags[key]) if key in point.flags else ""


def run_rows(sweep, states):
    """One dict per run (see the module docstring); ``states``: {run folder: status}."""
    rows = []
    for run in sweep.runs:
        status = states[run.dir]
        results = read_results(run.dir) if status == DONE else {}
        row = {"point": run.point.id}
        row.update({k: _flag_value(run.point, k) for k in sweep.varying_keys})
        row.update(seed=run.seed, status=status)
        row.update({m: results.get(m) for m in METRICS})
        row["run_dir"] = run.dir
        rows.append(row)
    return rows


def mean_ci(values, single_ci):
    """(mean, 95% CI half-width) over seeds; one value keeps its own CI."""
    if len(values) == 1:
        return values[0], single_ci
    return statistics.fmean(values), 1.96 * statistics.stdev(values) / math.sqrt(len(values))


def _mean(values):
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def point_summaries(sweep, rows):
    """Per point: runs done of all, test accuracy mean +- CI, mean sparsity, wall-clock."""
    out = []
    for point in sweep.points:
        mine = [r for r in rows if r["point"] == point.id]
        done = [r for r in mine if r["status"] == DONE and r["test_accuracy"] is not None]
        acc = ci = None
        if done:
            acc, ci = mean_ci([r["test_accuracy"] for r in done], done[0]["test_ci95"])
        summary = {"point": point.id}
        summary.update({k: _flag_value(point, k) for k in sweep.varying_keys})
        summary.update(seeds_done=len(done), seeds=len(mine), test_accuracy=acc,
                       test_ci95=ci, mean_sparsity=_mean(r["mean_sparsity"] for r in done),
                       wall_clock_s=_mean(r["wall_clock_s"] for r in done))
        out.append(summary)
    return out


def _csv(rows):
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
    return buffer.getvalue()


def _duration(seconds):
    if seconds is None:
        return ""
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def summary_markdown(summaries):
    pct = lambda x: "" if x is None else f"{100 * x:.2f}"  # noqa: E731
    lines = ["| point | seeds done | test accuracy % (95% CI) | mean sparsity % | "
             "wall-clock per run |", "|---|---|---|---|---|"]
    for s in summaries:
        acc = "" if s["test_accuracy"] is None else f"{pct(s['test_accuracy'])} +- " \
              f"{pct(s['test_ci95'])}"
        lines.append(f"| {s['point']} | {s['seeds_done']}/{s['seeds']} | {acc} | "
                     f"{pct(s['mean_sparsity'])} | {_duration(s['wall_clock_s'])} |")
    return "\n".join(lines) + "\n"


def _write(path, text):
    atomic_write(path, lambda f: f.write(text), mode="w")


def write_collection(sweep, rows, summaries):
    """ROOT/results.csv, ROOT/summary.csv and ROOT/summary.md; returns the markdown."""
    markdown = summary_markdown(summaries)
    _write(os.path.join(sweep.root, "results.csv"), _csv(rows))
    _write(os.path.join(sweep.root, "summary.csv"), _csv(summaries))
    _write(os.path.join(sweep.root, "summary.md"), markdown)
    return markdown


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
