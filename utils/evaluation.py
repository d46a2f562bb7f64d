"""Test a trained learner on the test split of any dataset (cross-domain evaluation).

Used by ``evaluate.py`` and by ``train.py --cross_domain``; results are merged into
``<run folder>/cross_domain.json`` as {dataset: {"accuracy", "ci95", "num_tasks", ...}}.
"""
import json
import math
import os
import sys

from utils.data.loaders import DataUnavailable, build_loaders, dataset_shape
from utils.run.atomic_io import WriteError, save_json
from utils.run.metrics import mean_ci95
from utils.run.rng import seed_everything
from utils.run.weights import WeightsError, load_best

CROSS_DOMAIN = ("TieredImagenet", "CUB", "CARS")
RESULTS_FILE = "cross_domain.json"


class EvaluationError(Exception):
    """The evaluation cannot run; the message says why and what to do."""


def test_accuracy(learner, data, dataset, num_tasks, seed=0):
    """{"accuracy", "ci95", "num_tasks"} of ``learner`` on ``num_tasks`` test tasks of
    ``dataset``, drawn as ``data`` (a DataConfig) says; the same tasks for one ``seed``."""
    backbone = learner.config.backbone
    trained_on = (backbone.in_channels, backbone.image_size)
    wanted = dataset_shape(dataset, data.image_size, data.grayscale)
    if trained_on != wanted:
        raise EvaluationError(
            f"{dataset} images are {wanted[0]}x{wanted[1]}x{wanted[1]}, but the model takes "
            f"{trained_on[0]}x{trained_on[1]}x{trained_on[1]} inputs (those of its training "
            "data); cross-domain tests need the training input shape")
    loader = build_loaders(data, learner.device, splits=("test",), dataset=dataset)["test"]
    seed_everything(max(seed, 0))
    batches = math.ceil(num_tasks / data.test_batch_size)
    accuracies = learner.evaluate_batches(loader, batches, f"test {dataset}")[:num_tasks]
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


def cross_domain(learner, data, folder, num_tasks, seed=0, datasets=CROSS_DOMAIN, write=True):
    """Test the best model of the run in ``folder`` on each dataset's test split.

    Returns {name: {"accuracy", "ci95", "num_tasks"}}, or {name: {"error": message}} for a
    dataset that cannot be used (missing files, other input shape); the others still run.
    Also merges the results into folder/cross_domain.json (with ``write``: under torchrun
    every process evaluates, rank 0 writes).
    """
    try:
        load_best(learner, folder)
    except WeightsError as err:
        print(f"cross-domain tests skipped: {err}", file=sys.stderr)
        return {name: {"error": str(err)} for name in datasets}
    results = {}
    for name in datasets:
        try:
            results[name] = r = test_accuracy(learner, data, name, num_tasks, seed)
            print(f"cross-domain {name}: {100 * r['accuracy']:.2f} +- {100 * r['ci95']:.2f} % "
                  f"({r['num_tasks']} tasks)")
        except (DataUnavailable, EvaluationError) as err:
            results[name] = {"error": str(err)}
            print(f"cross-domain {name} skipped: {err}", file=sys.stderr)
    if not write:
        return results
    try:
        merge_results(folder, results)
    except WriteError as err:      # the results still reach results.json through train.py
        print(f"warning: {err}", file=sys.stderr)
    return results
