"""Predictions for a new task (``evaluate.py --run RUN --support DIR --query DIR``).

A sparse-MAML model trained for a few meta-steps on Strokes classifies Strokes test
glyphs (classes it never saw) saved as PNG files with dark ink on white, as a user's
scans would be: one support image per class, query images in class folders, so the
answers are known. The CSV's probabilities must equal those of the library on the
dataset's own tensors (so files are converted exactly as training images were), and
accuracy must be far above chance.
"""
import csv
import os

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import learner_from_flags
from utils.data.strokes import Strokes
from utils.predict import Episode, predict
from utils.run.weights import load_best

WAYS, QUERIES = 5, 6
TEST_CLASSES = (3, 50, 120, 200, 311)          # of Strokes' 423 meta-test classes
TRAIN = ["--dataset", "Strokes", "--method", "sparse-maml", "--num_ways", str(WAYS),
         "--num_shots_train", "1", "--num_shots_test", "5", "--hidden_size", "16",
         "--step_size", "0.4", "--gradient_steps", "3", "--gradient_steps_test", "5",
         "--batch_size", "4", "--lr", "0.003", "--mask_lr", "0.003", "--epochs", "1",
         "--batches_train", "10", "--val_after", "1", "--batches_val", "2",
         "--batches_test", "2", "--test_batch_size", "5", "--num_workers", "0",
         "--dont_use_cuda", "--no-tensorboard", "--seed", "0"]


@pytest.fixture(scope="module")
def run(tmp_path_factory, zygote):
    out = tmp_path_factory.mktemp("strokes_run") / "run"
    result = zygote.run("train.py", TRAIN + ["--out_dir", out])
    assert result.code == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def glyphs():
    """{class name: [uint8 [28, 28] images, ink 255 on 0]} of the chosen test classes."""
    classes = Strokes(None, WAYS, meta_split="test").dataset
    return {classes[c].class_name: [np.asarray(classes[c][i][0]) for i in range(1 + QUERIES)]
            for c in TEST_CLASSES}


def save(folder, name, image):
    os.makedirs(folder, exist_ok=True)
    Image.fromarray(255 - image).save(os.path.join(folder, name))   # dark ink on white


@pytest.fixture(scope="module")
def episode(tmp_path_factory, glyphs):
    root = tmp_path_factory.mktemp("episode")
    for name, images in glyphs.items():
        save(root / "support" / name, "a.png", images[0])
        for i, image in enumerate(images[1:]):
            save(root / "query" / name, f"q{i}.png", image)
            save(root / "flat", f"{name}_q{i}.png", image)
    return root


def tensor_episode(glyphs):
    """The glyphs' task as tensors, as Strokes gives them (ToTensor of ink-on-black
    images): one support image per class, then the queries class by class."""
    def stack(images):
        return torch.stack([torch.from_numpy(i.astype(np.float32) / 255)[None] for i in images])
    names = list(glyphs)
    return Episode(names, stack([glyphs[n][0] for n in names]), torch.arange(WAYS), [],
                   stack([im for n in names for im in glyphs[n][1:]]), None)


def best_learner(run):
    learner = learner_from_flags(["--config", str(run / "config.json"), "--dont_use_cuda"])
    load_best(learner, str(run))
    return learner


def evaluate(zygote, run, *argv):
    return zygote.run("evaluate.py", ["--run", run, "--dont_use_cuda", *map(str, argv)])


def test_labelled_query_gives_lines_and_accuracy(zygote, run, episode):
    result = evaluate(zygote, run, "--support", episode / "support", "--query", episode / "query")
    assert result.code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == WAYS * QUERIES + 1 and lines[-1].startswith("accuracy: ")
    rows = [line.split("\t") for line in lines[:-1]]
    correct = [f.split("/")[0] == predicted for f, predicted, _ in rows]
    assert all(0.2 <= float(p) <= 1 for _, _, p in rows)    # the most likely of 5 classes
    accuracy = float(lines[-1].split()[1])
    assert accuracy == pytest.approx(np.mean(correct), abs=1e-4)
    assert accuracy > 0.6, f"accuracy {accuracy} (chance {1 / WAYS})"


def test_csv_matches_the_library_on_the_dataset_tensors(zygote, run, episode, glyphs, tmp_path,
                                                        one_thread):
    out = tmp_path / "predictions.csv"
    result = evaluate(zygote, run, "--support", episode / "support", "--query",
                      episode / "query", "--out", out)
    assert result.code == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("accuracy: ")
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["file"] for r in rows] == [f"{n}/q{i}.png" for n in glyphs for i in range(QUERIES)]
    assert all(r["true"] == r["file"].split("/")[0] for r in rows)

    # The same task straight from Strokes' tensors (ToTensor of ink-on-black images).
    names = list(glyphs)
    task = tensor_episode(glyphs)
    probabilities = predict(best_learner(run), task, WAYS * 5)
    best, labels = probabilities.max(dim=1)
    assert [names[int(k)] for k in labels] == [r["predicted"] for r in rows]
    assert np.allclose(best.numpy(), [float(r["probability"]) for r in rows], atol=1e-4)


def test_predictions_equal_the_runs_own_test_time_evaluation(run, glyphs, one_thread):
    """On a task given as tensors, predict() adapts and classifies as the learner's
    evaluation does: the same accuracy and the same query loss."""
    task, learner = tensor_episode(glyphs), best_learner(run)
    y_query = torch.arange(WAYS).repeat_interleave(QUERIES)
    probabilities = predict(learner, task, len(task.x_query))
    batch = {"train": (task.x_support[None], task.y_support[None]),
             "test": (task.x_query[None], y_query[None])}
    evaluated = learner.evaluate(batch)
    predicted = probabilities.argmax(dim=1)
    assert (predicted == y_query).float().mean().item() == pytest.approx(evaluated["accuracy"])
    loss = -probabilities[torch.arange(len(y_query)), y_query].log().mean().item()
    assert loss == pytest.approx(evaluated["loss"], rel=1e-4)


def test_flat_query_folder(zygote, run, episode):
    result = evaluate(zygote, run, "--support", episode / "support", "--query", episode / "flat")
    assert result.code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == WAYS * QUERIES and not any(line.startswith("accuracy") for line in lines)
    assert sorted(line.split("\t")[0] for line in lines) == sorted(os.listdir(episode / "flat"))


def test_invert_flag_changes_the_input(zygote, run, episode):
    default = evaluate(zygote, run, "--support", episode / "support", "--query", episode / "query")
    no_invert = evaluate(zygote, run, "--support", episode / "support", "--query",
                         episode / "query", "--no-invert")
    assert no_invert.code == 0 and no_invert.stdout != default.stdout


@pytest.mark.parametrize("case, message", [
    ("four_classes", "has 4 class folders, but the run classifies 5 classes (num_ways 5)"),
    ("unknown_query_class", "are not support classes"),
    ("empty_class", "class folders without images"),
])
def test_bad_episodes_exit_2(zygote, run, episode, tmp_path, glyphs, case, message):
    support, query = tmp_path / "support", episode / "query"
    names = list(glyphs)
    for name in names[:4] if case == "four_classes" else names:
        if not (case == "empty_class" and name == names[0]):
            save(support / name, "a.png", glyphs[name][0])
        else:
            os.makedirs(support / name)
    if case == "unknown_query_class":
        query = tmp_path / "query"
        save(query / "someone_else", "x.png", glyphs[names[0]][1])
    result = evaluate(zygote, run, "--support", support, "--query", query)
    assert result.code == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_support_needs_query(zygote, run, episode):
    result = evaluate(zygote, run, "--support", episode / "support")
    assert result.code == 2 and "need both --support and --query" in result.stderr
