"""Test a trained model on the test split of any dataset (cross-domain evaluation).

    python evaluate.py --run RUN_DIR --dataset CUB [--tasks 500] [--data_folder data]
    python evaluate.py --original_dir DIR --dataset CUB -- <the original train.py flags>

``--run`` rebuilds the learner from RUN_DIR/config.json and loads its best model
(best.pt, else the original-format classifier.pth + mask.pth). ``--original_dir`` loads
classifier.pth (+ mask.pth, + mask_plus.pth) written by the authors' code, with the
backbone and mask rebuilt from the original's flags given after ``--``. The backbone
keeps the training dataset's input shape; ``--dataset`` only selects the test data.

Prints accuracy ± 95% CI over the test tasks and merges {dataset: {"accuracy", "ci95",
"num_tasks", "weights"}} into <folder>/cross_domain.json. ``train.py --cross_domain``
calls ``cross_domain(args, learner)``. Exit 2 (message, no traceback) when the folder,
its weights or the data are missing.
"""
import argparse
import json
import math
import os
import sys

import torch

import train
from utils.checkpoint import seed_everything
from utils.cli import DATASETS
from utils.data import DataUnavailable, build_loaders, dataset_shape
from utils.io import WriteError, save_json
from utils.metrics import mean_ci95

CROSS_DOMAIN = ("TieredImagenet", "CUB", "CARS")
RESULTS_FILE = "cross_domain.json"


class EvaluationError(Exception):
    """The evaluation cannot run; the message says why and what to do."""


def _load(path, device):
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # corrupt file, or not a plain tensor dict (weights_only)
        raise EvaluationError(f"cannot load {path}: {type(err).__name__}: {err}") from err


def _load_state(module, state, what, path):
    try:
        module.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        first = str(err).strip().splitlines()[0]
        raise EvaluationError(f"{path} does not fit the {what} rebuilt from the run's flags "
                              f"({first}); are the flags those of the training run?") from err


def load_original_format(learner, folder):
    """Load classifier.pth (+ mask.pth, + mask_plus.pth) as the authors' code saves them."""
    device = learner.device
    path = os.path.join(folder, "classifier.pth")
    if not os.path.isfile(path):
        raise EvaluationError(f"no best.pt or classifier.pth in {folder}: nothing to evaluate "
                              "(a run saves its model at its first test, once epoch > "
                              "--test_start)")
    _load_state(learner.model, _load(path, device), "backbone", path)
    mask_path = os.path.join(folder, "mask.pth")
    if learner.mask is None:
        return "classifier.pth"
    if not os.path.isfile(mask_path):
        raise EvaluationError(f"{folder} has no mask.pth, but the flags build a mask "
                              "(--gradient_mask/--weight_mask)")
    state = dict(_load(mask_path, device))
    plus_path = os.path.join(folder, "mask_plus.pth")
    if learner.mask.mask_plus is not None and os.path.isfile(plus_path):
        # mask.pth already holds the PLUS weights in the original; mask_plus.pth fills
        # them in when it does not.
        for key, value in _load(plus_path, device).items():
            state.setdefault("mask_plus." + key, value)
    _load_state(learner.mask, state, "mask", mask_path)
    return "classifier.pth+mask.pth"


def load_best(learner, folder):
    """Load the folder's best model into ``learner``; returns the weights' file name(s)."""
    path = os.path.join(folder, "best.pt")
    if not os.path.isfile(path):
        return load_original_format(learner, folder)
    state = _load(path, learner.device)
    if not isinstance(state, dict) or "model" not in state:
        raise EvaluationError(f"{path} is not a sparse-maml best.pt (no 'model' entry)")
    _load_state(learner.model, state["model"], "backbone", path)
    if (state.get("mask") is None) != (learner.mask is None):
        raise EvaluationError(f"{path} {'has no' if state.get('mask') is None else 'has a'} "
                              f"mask, the run's flags {'build' if learner.mask else 'build no'}"
                              " mask")
    if learner.mask is not None:
        _load_state(learner.mask, state["mask"], "mask", path)
    return "best.pt"


def test_accuracy(args, learner, dataset, num_tasks):
    """{"accuracy", "ci95", "num_tasks"} of ``learner`` on ``num_tasks`` test tasks."""
    trained_on, wanted = dataset_shape(args.dataset), dataset_shape(dataset)
    if trained_on != wanted:
        raise EvaluationError(
            f"{dataset} images are {wanted[0]}x{wanted[1]}x{wanted[1]}, but the model was "
            f"trained on {args.dataset} ({trained_on[0]}x{trained_on[1]}x{trained_on[1]}); "
            "cross-domain tests need the training input shape")
    loader = build_loaders(args, pin_memory=learner.device.type == "cuda", splits=("test",),
                           dataset=dataset, device=learner.device)["test"]
    seed_everything(max(args.seed, 0))      # the same test tasks on every call
    batches = math.ceil(num_tasks / args.test_batch_size)
    accuracies = train.evaluate(learner, loader, batches, f"test {dataset}")[:num_tasks]
    accuracy, ci95 = mean_ci95(accuracies)
    return {"accuracy": accuracy, "ci95": ci95, "num_tasks": len(accuracies)}


def merge_results(folder, results):
    """Merge {dataset: result} into folder/cross_domain.json (a corrupt file is replaced)."""
    path = os.path.join(folder, RESULTS_FILE)
    merged = {}
    if os.path.isfile(path):
        try:
            with open(path) as f:
                merged = json.load(f)
        except (OSError, ValueError):
            print(f"warning: {path} was unreadable and is rewritten", file=sys.stderr)
        if not isinstance(merged, dict):
            merged = {}
    merged.update(results)
    save_json(path, merged)
    return path


def cross_domain(args, learner, datasets=CROSS_DOMAIN):
    """Test the run's best model (args.out_dir/best.pt) on each dataset's test split.

    Returns {name: {"accuracy", "ci95", "num_tasks"}}, or {name: {"error": message}} for a
    dataset that cannot be used (missing files, other input shape); the others still run.
    Also merges the results into args.out_dir/cross_domain.json.
    """
    try:
        load_best(learner, args.out_dir)
    except EvaluationError as err:
        print(f"cross-domain tests skipped: {err}", file=sys.stderr)
        return {name: {"error": str(err)} for name in datasets}
    results = {}
    for name in datasets:
        try:
            results[name] = r = test_accuracy(args, learner, name, args.cross_domain_tasks)
            print(f"cross-domain {name}: {100 * r['accuracy']:.2f} +- {100 * r['ci95']:.2f} % "
                  f"({r['num_tasks']} tasks)")
        except (DataUnavailable, EvaluationError) as err:
            results[name] = {"error": str(err)}
            print(f"cross-domain {name} skipped: {err}", file=sys.stderr)
    try:
        merge_results(args.out_dir, results)
    except WriteError as err:      # the results still reach results.json through train.py
        print(f"warning: {err}", file=sys.stderr)
    return results


def get_parser():
    p = argparse.ArgumentParser(
        prog="evaluate.py", description=__doc__.split("\n")[0],
        epilog="Everything after -- is passed to train.py's parser (with --original_dir: "
               "the original run's flags; with --run: overrides of its config).")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="run folder of train.py (config.json, best.pt)")
    source.add_argument("--original_dir",
                        help="folder with the original code's classifier.pth (+ mask.pth)")
    lookup = {d.lower(): d for d in DATASETS}
    p.add_argument("--dataset", required=True, type=lambda s: lookup.get(s.lower(), s),
                   help=f"test data: one of {', '.join(DATASETS)}")
    p.add_argument("--tasks", type=int, default=500, help="test tasks (default: %(default)s)")
    p.add_argument("--data_folder", default=None,
                   help="dataset root (default: the run's --data_folder)")
    p.add_argument("--download", action="store_true", help="let torchmeta download the data")
    p.add_argument("--num_workers", type=int, default=None,
                   help="data loader workers (default: the run's)")
    p.add_argument("--dont_use_cuda", action="store_true", help="evaluate on the CPU")
    return p


def parse(argv):
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    own, train_flags = argv[:split], argv[split + 1:]
    opts = get_parser().parse_args(own)
    if opts.dataset not in DATASETS:
        get_parser().error(f"--dataset: unknown {opts.dataset!r}; choose from "
                           f"{', '.join(DATASETS)}")
    if opts.tasks < 1:
        get_parser().error("--tasks must be >= 1")
    return opts, train_flags


def build_learner(opts, train_flags):
    """(train args, learner, folder) for ``--run`` or ``--original_dir``."""
    folder = opts.run or opts.original_dir
    if not os.path.isdir(folder):
        raise EvaluationError(f"{folder} is not a folder")
    overrides = []
    if opts.data_folder is not None:
        overrides += ["--data_folder", opts.data_folder]
    if opts.download:
        overrides.append("--download")
    if opts.num_workers is not None:
        overrides += ["--num_workers", str(opts.num_workers)]
    if opts.dont_use_cuda:
        overrides.append("--dont_use_cuda")
    if opts.run:
        config = os.path.join(folder, "config.json")
        if not os.path.isfile(config):
            raise EvaluationError(f"{config} not found: --run needs a train.py run folder")
        args = train.parse_args(["--config", config] + train_flags + overrides)
    else:
        args = train.parse_args(train_flags + overrides)
    args.out_dir = folder
    return args, train.build(args), folder


def main(argv=None):
    opts, train_flags = parse(argv)
    try:
        args, learner, folder = build_learner(opts, train_flags)
        weights = (load_best(learner, folder) if opts.run
                   else load_original_format(learner, folder))
        result = dict(test_accuracy(args, learner, opts.dataset, opts.tasks), weights=weights)
        path = merge_results(folder, {opts.dataset: result})
    except (EvaluationError, DataUnavailable, WriteError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{opts.dataset} test accuracy of {folder} ({weights}): "
          f"{100 * result['accuracy']:.2f} +- {100 * result['ci95']:.2f} % "
          f"({result['num_tasks']} tasks, 95% CI); written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
