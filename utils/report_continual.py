"""Collect finished continual.py runs into tables: methods x benchmarks, mean +- 95 % CI
over seeds.

Usage::

    python -m utils.report_continual RUNS_ROOT [--jsonl FILE]

Every folder below RUNS_ROOT with a ``results.json`` written by continual.py is one run;
runs are grouped by (benchmark, method) and their seeds averaged. The CI is
t(0.975, n - 1) * std(ddof=1) / sqrt(n) over seeds (no CI for one seed). Task sequences report
retained accuracy, backward transfer and learning accuracy; streams the online accuracy
(overall and per mode) and boundary-detection precision / recall; both the fraction of
learned rates that are exactly 0 at the end, and the wall-clock per run. Sparse variants
sit next to their dense method. Markdown goes to stdout; ``--jsonl`` also writes one line
per run and one per group.
"""
import argparse
import json
import math
import os
import sys
from collections import defaultdict

from utils.run.metrics import seeds_mean_ci95

METHOD_ORDER = ["online-sgd", "er", "c-maml", "sync-la-maml", "la-maml", "sparse-la-maml",
                "sparse-relu-la-maml", "continual-maml", "continual-maml-pa",
                "sparse-continual-maml"]


def mean_ci(values):
    """(mean, 95% CI half-width over seeds, Student's t) of the finite values; the CI is
    nan for fewer than two."""
    return seeds_mean_ci95(values)


def cell(values, scale=100.0, digits=1, signed=False):
    m, ci = mean_ci(values)
    if math.isnan(m):
        return "–"
    fmt = f"{{:{'+' if signed else ''}.{digits}f}}"
    text = fmt.format(scale * m)
    return text if math.isnan(ci) else f"{text} ± {scale * ci:.{digits}f}"


def find_runs(root):
    runs = []
    for folder, _, files in sorted(os.walk(root)):
        if "results.json" not in files:
            continue
        try:
            with open(os.path.join(folder, "results.json")) as f:
                r = json.load(f)
        except (OSError, ValueError) as err:
            print(f"[report_continual] skipped {folder}: {err}", file=sys.stderr)
            continue
        if isinstance(r, dict) and "benchmark" in r and "method" in r:
            r["folder"] = folder
            runs.append(r)
    return runs


def order(methods):
    return sorted(methods, key=lambda m: (METHOD_ORDER.index(m) if m in METHOD_ORDER
                                          else len(METHOD_ORDER), m))


def sequence_table(benchmark, groups):
    lines = [f"### {benchmark}", "",
             "| method | seeds | retained acc. % | BWT % | learning acc. % | rates = 0 % "
             "| wall-clock s / run |", "|---|---|---|---|---|---|---|"]
    for method in order(groups):
        runs = groups[method]
        lines.append(
            f"| {method} | {len(runs)} | {cell([r['retained_accuracy'] for r in runs])} | "
            f"{cell([r['bwt'] for r in runs], signed=True)} | "
            f"{cell([r['learning_accuracy'] for r in runs])} | "
            f"{cell([r.get('sparsity') for r in runs])} | "
            f"{cell([r['wall_clock_s'] for r in runs], scale=1, digits=0)} |")
    return lines


def stream_table(benchmark, groups):
    modes = sorted({m for runs in groups.values() for r in runs
                    for m in r["online_accuracy_per_mode"]})
    lines = [f"### {benchmark}", "",
             "| method | seeds | online acc. % | " + " | ".join(f"{m} %" for m in modes)
             + " | boundary precision | boundary recall | rates = 0 % | wall-clock s / run |",
             "|---|---|---|" + "---|" * len(modes) + "---|---|---|---|"]
    for method in order(groups):
        runs = groups[method]
        per_mode = [cell([r["online_accuracy_per_mode"].get(m) for r in runs]) for m in modes]
        lines.append(
            f"| {method} | {len(runs)} | {cell([r['online_accuracy'] for r in runs])} | "
            + " | ".join(per_mode) + " | "
            f"{cell([r['boundaries']['precision'] for r in runs], scale=1, digits=2)} | "
            f"{cell([r['boundaries']['recall'] for r in runs], scale=1, digits=2)} | "
            f"{cell([r.get('sparsity') for r in runs])} | "
            f"{cell([r['wall_clock_s'] for r in runs], scale=1, digits=0)} |")
    return lines


def summary_rows(runs):
    groups = defaultdict(list)
    for r in runs:
        groups[r["benchmark"], r["method"]].append(r)
    keys = ("retained_accuracy", "bwt", "learning_accuracy", "online_accuracy", "sparsity",
            "wall_clock_s", "ms_per_batch", "ms_per_step")
    rows = []
    for (benchmark, method), group in sorted(groups.items()):
        row = {"kind": "summary", "benchmark": benchmark, "method": method,
               "seeds": sorted(r["seed"] for r in group)}
        for key in keys:
            if any(key in r for r in group):
                row[key], row[key + "_ci95"] = mean_ci([r.get(key) for r in group])
        rows.append(row)
    return rows


def report(runs):
    by_benchmark = defaultdict(lambda: defaultdict(list))
    for r in runs:
        by_benchmark[r["benchmark"]][r["method"]].append(r)
    lines = []
    for benchmark in sorted(by_benchmark):
        groups = by_benchmark[benchmark]
        some = next(iter(groups.values()))[0]
        table = sequence_table if "retained_accuracy" in some else stream_table
        lines += table(benchmark, groups) + [""]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m utils.report_continual",
                                description="Tabulate continual.py runs: mean +- 95 %% CI.")
    p.add_argument("root", help="folder searched for runs (results.json)")
    p.add_argument("--jsonl", default=None,
                   help="also write one JSON line per run and per group (default: %(default)s)")
    args = p.parse_args(argv)
    runs = find_runs(args.root)
    if not runs:
        print(f"no continual.py runs (results.json) below {args.root}", file=sys.stderr)
        return 1
    print(report(runs))
    if args.jsonl:
        with open(args.jsonl, "w") as f:
            for r in runs:
                keep = {k: v for k, v in r.items() if k not in ("R", "baseline", "descriptions")}
                f.write(json.dumps({"kind": "run", **keep}) + "\n")
            for row in summary_rows(runs):
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
