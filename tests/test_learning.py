"""Does it learn? Real-data and built-in-data checks of the whole pipeline.

- Strokes: a model that does not adapt (the meta-learned initialisation evaluated with
  0 inner steps) stays near chance on test classes, while MAML and sparse-MAML adapt
  well above it: Strokes is a real few-shot problem, and the inner loop is what solves it.
- Omniglot (real data, ../shared/data; skipped when absent): the quick config reaches
  >= 85 % 5-way 1-shot test accuracy over >= 500 test tasks in a few CPU minutes.
"""
import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import learner_for
from utils import cli
from utils.data.loaders import build_loaders

REPO = Path(__file__).resolve().parents[1]
QUICK_OMNIGLOT = REPO / "configs" / "omniglot" / "omniglot_quick_5way_1shot_sparse-maml.json"


def meta_train(learner, loader, steps):
    for i, batch in enumerate(loader):
        if i >= steps:
            break
        learner.step(batch)


@pytest.mark.parametrize("method", ["maml", "sparse-maml"])
def test_strokes_needs_adaptation(method, tmp_path):
    args = cli.parse_args(["--config", str(REPO / "configs" / "demo_strokes.json"),
                           "--method", method, "--seed", "0", "--dont_use_cuda"])
    torch.manual_seed(0)
    learner = learner_for(args)
    loaders = build_loaders(cli.resolve(args).data, splits=("train", "test"))
    meta_train(learner, loaders["train"], 80)
    adapted = np.mean(learner.evaluate_batches(loaders["test"], 10))
    learner.config = dataclasses.replace(
        learner.config, inner=dataclasses.replace(learner.config.inner, steps_test=0))
    unadapted = np.mean(learner.evaluate_batches(loaders["test"], 10))
    chance = 1 / args.num_ways
    assert unadapted < chance + 0.1, f"without adaptation {unadapted:.3f} (chance {chance})"
    assert adapted > unadapted + 0.3, f"adapted {adapted:.3f} vs unadapted {unadapted:.3f}"


@pytest.mark.slow
def test_omniglot_quick_config_reaches_85_percent(omniglot_root, tmp_path, zygote):
    out = tmp_path / "run"
    result = zygote.run("train.py", ["--config", QUICK_OMNIGLOT, "--data_folder", omniglot_root,
                                     "--out_dir", out, "--seed", "0", "--dont_use_cuda"],
                        hooks=[f"threads:{os.cpu_count()}"],    # it runs alone
                        timeout=1800)   # ~12 min on one thread of 2 cores; CI machines vary
    assert result.code == 0, result.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["num_test_tasks"] >= 500
    assert 0 < results["test_ci95"] < 0.05
    assert results["test_accuracy"] >= 0.85, results
