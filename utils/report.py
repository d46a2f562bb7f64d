"""Collect finished training runs into the paper's results table and a sparsity figure.

Usage::

    python -m utils.report RUNS_ROOT [--out-png FILE] [--paper]

Every folder below RUNS_ROOT that contains ``results.json`` (written by train.py next to
``config.json`` and ``metrics.jsonl``) is one run.  Runs are grouped by
(dataset, ways, backbone, shots, method); seeds are averaged.  Markdown goes to stdout,
warnings about unreadable runs go to stderr, and a heatmap of mask sparsity per parameter
tensor over epochs (one panel per masked group, mean over seeds) is written to
``RUNS_ROOT/sparsity_by_layer.png`` unless ``--out-png`` says otherwise.

MiniImagenet 5-way runs are shown beside the numbers of von Oswald et al. (NeurIPS 2021,
Table 1, test accuracy %); other datasets/ways get their own tables without a paper column.
"""
import argparse
import json
import os
import sys
from collections import defaultdict

import numpy as np

from utils.run.metrics import seeds_mean_ci95
from utils.sparsity_figure import heatmaps

METHOD_NAMES = {"maml": "MAML", "anil": "ANIL", "boil": "BOIL", "sparse-maml": "sparse-MAML",
                "sparse-relu-maml": "sparse-ReLU-MAML", "meta-sgd": "Meta-SGD"}
METHOD_ORDER = ["maml", "anil", "boil", "sparse-maml", "sparse-relu-maml", "meta-sgd"]
PAPER_METHODS = METHOD_ORDER[:5]
# (backbone, shots) -> method -> MiniImageNet 5-way test accuracy in % (None: not reported).
PAPER = {
    ("ConvNet", 5): dict(zip(PAPER_METHODS, [63.15, 61.50, 66.45, 67.03, 66.80], strict=True)),
    ("ConvNet", 1): dict(zip(PAPER_METHODS, [48.07, 46.70, 49.61, 50.35, 50.15], strict=True)),
    ("ResNet-12", 5): dict(zip(PAPER_METHODS, [69.36, 70.03, 70.50, 70.02, 73.01], strict=True)),
    ("ResNet-12", 1): dict(zip(PAPER_METHODS, [53.91, 55.25, None, 55.02, 56.39], strict=True)),
}
BACKBONE_ORDER = ["ConvNet", "ResNet-12", "ResNet-12 (big)"]
CROSS_DOMAIN = ["TieredImagenet", "CUB", "CARS"]
REQUIRED_ARGS = ("dataset", "num_ways", "num_shots_train", "method", "seed")


def _warn(msg):
    print(f"[report] warning: {msg}", file=sys.stderr)


def _read_metrics(path):
    """Return the parseable rows of a metrics.jsonl file (missing file -> [])."""
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    pass
    return rows


def find_runs(root, skipped=None):
    """Find every folder below ``root`` holding results.json and load it as a run dict.

    A run dict has keys path, dataset, ways, backbone, shots, method, seed, cell, results,
    metrics.  Unreadable runs are skipped with a warning on stderr and, when ``skipped`` is a
    list, appended to it as ``(path, reason)``.
    """
    runs = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        if "results.json" not in filenames:
            continue
        try:
            with open(os.path.join(dirpath, "config.json")) as f:
                config = json.load(f)
            with open(os.path.join(dirpath, "results.json")) as f:
                results = json.load(f)
            args = config["args"]
            missing = [k for k in REQUIRED_ARGS if k not in args]
            missing += [k for k in ("test_accuracy", "test_ci95") if results.get(k) is None]
            if missing:
                raise KeyError("missing " + ", ".join(missing))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            _warn(f"skipping {dirpath} ({reason})")
            if skipped is not None:
                skipped.append((dirpath, reason))
            continue
        big = bool(args.get("big_resnet", False))
        backbone = "ResNet-12 (big)" if big else "ResNet-12" if args.get("resnet") else "ConvNet"
        runs.append(dict(path=dirpath, dataset=str(args["dataset"]), ways=int(args["num_ways"]),
                         backbone=backbone, shots=int(args["num_shots_train"]),
                         method=str(args["method"]), seed=args["seed"], cell=config.get("_cell"),
                         results=results,
                         metrics=_read_metrics(os.path.join(dirpath, "metrics.jsonl"))))
    return runs


def group_runs(runs):
    """Group runs by (dataset, ways, backbone, shots, method): {key: [runs sorted by seed]}."""
    groups = defaultdict(list)
    for run in runs:
        key = (run["dataset"], run["ways"], run["backbone"], run["shots"], run["method"])
        groups[key].append(run)
    for key, members in groups.items():
        members.sort(key=lambda r: str(r["seed"]).zfill(12))  # numeric order for int seeds
        seeds = [r["seed"] for r in members]
        if len(set(map(str, seeds))) < len(seeds):
            _warn(f"group {key} has repeated seeds {seeds}; all runs are averaged")
        cells = {r["cell"] for r in members if r["cell"]}
        if len(cells) > 1:
            _warn(f"group {key} mixes config cells {sorted(cells)}")
    return dict(groups)


def mean_ci(values, ci95_single):
    """Mean and 95% CI half-width of per-seed test accuracies: one value keeps its own CI
    ``ci95_single`` (over test tasks); several, Student's t over the seeds."""
    return seeds_mean_ci95(values, ci95_single)


def _method_key(method):
    if method in METHOD_ORDER:
        return METHOD_ORDER.index(method), ""
    return len(METHOD_ORDER), method


def _row_key(row):
    backbone, shots = row
    rank = BACKBONE_ORDER.index(backbone) if backbone in BACKBONE_ORDER else len(BACKBONE_ORDER)
    return (rank, backbone, -shots)


def _group_key(key):
    return key[:2], _row_key(key[2:4]), _method_key(key[4])


def _sorted_groups(groups):
    return sorted(groups.items(), key=lambda kv: _group_key(kv[0]))


def _paper_number(dataset, ways, backbone, shots, method):
    if dataset.lower() != "miniimagenet" or ways != 5:
        return None
    return PAPER.get((backbone.replace(" (big)", ""), shots), {}).get(method)


def _summarise(members):
    """(acc %, ci %, sparsity % or None, seeds) for one group."""
    acc, ci = mean_ci([r["results"]["test_accuracy"] for r in members],
                      members[0]["results"]["test_ci95"])
    sp = [r["results"]["mean_sparsity"] for r in members
          if r["results"].get("mean_sparsity") is not None]
    sparsity = 100 * float(np.mean(sp)) if sp else None
    return 100 * acc, 100 * ci, sparsity, [r["seed"] for r in members]


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def render_markdown(groups, paper=False):
    """Render grouped runs as markdown: one table per (dataset, ways), plus cross-domain results.

    With ``paper=True`` the MiniImageNet 5-way table lists every row/column of the paper even
    where no run exists (and is printed even when no MiniImageNet run was found).
    """
    by_table = defaultdict(dict)
    for (dataset, ways, backbone, shots, method), members in groups.items():
        by_table[(dataset, ways)][(backbone, shots, method)] = members
    if paper:
        by_table.setdefault(("MiniImagenet", 5), {})
    out, footnotes = [], []
    for dataset, ways in sorted(by_table, key=lambda t: (t[0].lower() != "miniimagenet", t)):
        cells = by_table[(dataset, ways)]
        with_paper = dataset.lower() == "miniimagenet" and ways == 5
        methods = {m for _, _, m in cells}
        rows = {(b, s) for b, s, _ in cells}
        if with_paper and paper:
            methods |= set(PAPER_METHODS)
            rows |= set(PAPER)
        elif with_paper:
            methods |= set(PAPER_METHODS) & {m for (b, s) in rows for m in PAPER.get((b, s), {})}
        methods = sorted(methods, key=_method_key)
        title = f"### {dataset} {ways}-way: test accuracy % ± 95% CI"
        out += [title + (" (paper: von Oswald et al. 2021, Table 1)" if with_paper else ""), ""]
        body = []
        for backbone, shots in sorted(rows, key=_row_key):
            line = [f"{shots}-shot {backbone}"]
            for method in methods:
                members = cells.get((backbone, shots, method))
                ref = _paper_number(dataset, ways, backbone, shots, method)
                text = "–"
                if members:
                    acc, ci, sp, seeds = _summarise(members)
                    text = f"{acc:.1f} ± {ci:.1f}"
                    cell_ids = sorted({r["cell"] for r in members if r["cell"]})
                    footnotes.append(
                        f"{dataset} {ways}-way, {shots}-shot {backbone}, "
                        f"{METHOD_NAMES.get(method, method)}: {len(seeds)} seed(s) "
                        f"{', '.join(map(str, seeds))}"
                        + (f" [{', '.join(cell_ids)}]" if cell_ids else ""))
                if with_paper and ref is not None:
                    text += f" (paper {ref:.2f})"
                if members and sp is not None:
                    text += f" [sparsity {sp:.0f}%]"
                line.append(text)
            body.append(line)
        out += _table([""] + [METHOD_NAMES.get(m, m) for m in methods], body) + [""]
    cross = []
    for (dataset, ways, backbone, shots, method), members in _sorted_groups(groups):
        domains = [r["results"].get("cross_domain") or {} for r in members]
        if dataset.lower() != "miniimagenet" or not any(domains):
            continue
        line = [f"{ways}-way {shots}-shot {backbone}", METHOD_NAMES.get(method, method)]
        for name in CROSS_DOMAIN:
            res = [d[name] for d in domains if "accuracy" in d.get(name, {})]
            if res:
                acc, ci = mean_ci([x["accuracy"] for x in res], res[0]["ci95"])
                line.append(f"{100 * acc:.1f} ± {100 * ci:.1f} (n={len(res)})")
            else:
                line.append("–")
        cross.append(line)
    if cross:
        out += ["### cross-domain (trained on MiniImageNet): test accuracy % ± 95% CI", ""]
        out += _table(["setting", "method"] + CROSS_DOMAIN, cross) + [""]
    if footnotes:
        out += ["Seeds per cell (one seed: CI over test tasks; several seeds: "
                "CI = t(0.975, n−1)·std(ddof=1)/√n over the seeds' test accuracies; "
                "sparsity = mean % of zeros in the masks at the end):", ""]
        out += [f"- {note}" for note in footnotes] + [""]
    return "\n".join(out)


def _panel_title(key, members):
    dataset, ways, backbone, shots, method = key
    seeds = [str(r["seed"]) for r in members]
    listed = f": {', '.join(seeds)}" if len(seeds) <= 6 else ""
    return (f"{METHOD_NAMES.get(method, method)}, {backbone}, {ways}-way {shots}-shot\n"
            f"{dataset}, {len(seeds)} seed(s){listed}")


def sparsity_figure(runs):
    """The sparsity heatmaps (``utils.sparsity_figure.heatmaps``) of the runs' groups, one
    panel per (dataset, ways, backbone, shots, method): ``(figure, panel_axes)`` or None."""
    return heatmaps([(_panel_title(key, members), members)
                     for key, members in _sorted_groups(group_runs(runs))])


def plot_sparsity(runs, path):
    """Write ``sparsity_figure(runs)`` to ``path`` as PNG; return True if written."""
    built = sparsity_figure(runs)
    if built is None:
        return False
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    built[0].savefig(path, dpi=120)
    return True


def main(argv=None):
    """CLI entry point: print the markdown report, write the sparsity figure; return exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs_root", help="folder searched recursively for results.json")
    parser.add_argument("--out-png", default=None,
                        help="figure path (default: RUNS_ROOT/sparsity_by_layer.png)")
    parser.add_argument("--paper", action="store_true",
                        help="show every paper row/column of the MiniImageNet table, even "
                             "without runs (default: %(default)s)")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.runs_root):
        print(f"[report] error: {args.runs_root} is not a directory", file=sys.stderr)
        return 2
    skipped = []
    runs = find_runs(args.runs_root, skipped)
    groups = group_runs(runs)
    print(render_markdown(groups, paper=args.paper))
    png = args.out_png or os.path.join(args.runs_root, "sparsity_by_layer.png")
    wrote = plot_sparsity(runs, png)
    print(f"Found {len(runs) + len(skipped)} run folder(s) under {args.runs_root}: "
          f"{len(runs)} used in {len(groups)} group(s), {len(skipped)} skipped"
          + (f"; sparsity figure: {png}" if wrote else "; no per-layer sparsity to plot"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
