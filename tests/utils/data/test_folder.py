"""Your own image folders as a meta-dataset (``--dataset folder``, utils/data/folder.py).

A fabricated DIR/{train,val,test}/<class>/<images> of PNG/JPEG files of different sizes
goes through the real torchmeta task loaders, the device sampler, the image cache, and
train.py end to end; the error rules name the folder to fix.
"""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import learner_from_flags, tiny_run_flags
from utils import cli, evaluation
from utils.data.loaders import (IMAGENET_MEAN, IMAGENET_STD, DataConfig, DataUnavailable,
                                build_loaders, meta_dataset)

CLASSES = {"train": 6, "val": 5, "test": 5}
IMAGES = 4


def write_folder_dataset(root, classes=CLASSES, images=IMAGES, seed=0):
    """root/{split}/class<c>/img<i>.(png|jpg): per-class colour plus noise, odd sizes,
    and a non-image file that must be ignored. Returns {split: {class: [arrays]}}."""
    rng = np.random.default_rng(seed)
    written = {}
    for split, n in classes.items():
        written[split] = {}
        for c in range(n):
            folder = os.path.join(root, split, f"class{c}")
            os.makedirs(folder, exist_ok=True)
            colour = rng.integers(30, 226, size=3)
            arrays = []
            for i in range(images):
                array = np.clip(colour + rng.normal(0, 20, (30 + c, 40 + i, 3)), 0, 255)
                arrays.append(array.astype(np.uint8))
                ext = "png" if i % 2 == 0 else "jpg"
                Image.fromarray(arrays[-1]).save(os.path.join(folder, f"img{i}.{ext}"))
            with open(os.path.join(folder, "notes.txt"), "w") as f:
                f.write("not an image")
            written[split][f"class{c}"] = arrays
    return written


@pytest.fixture(scope="module")
def folder_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder_data")
    write_folder_dataset(root)
    return root


def config(root, **kw):
    return DataConfig(**{**dict(dataset="folder", data_folder=str(root), num_ways=5,
                                num_shots=1, num_queries=2, batch_size=2, num_workers=0,
                                image_size=32), **kw})


@pytest.mark.parametrize("grayscale", [False, True])
def test_tasks_have_the_configured_shape_and_conversion(folder_root, grayscale):
    ds = meta_dataset("folder", "train", str(folder_root), 5, 1, 2, image_size=32,
                      grayscale=grayscale)
    assert len(ds.dataset) == CLASSES["train"]
    assert [len(ds.dataset[c]) for c in range(len(ds.dataset))] == [IMAGES] * 6  # no .txt
    image, target = ds.dataset[2][0]
    assert image.shape == (1 if grayscale else 3, 32, 32)
    assert target[0] == "class2"
    raw = Image.open(folder_root / "train" / "class2" / "img0.png")
    raw = raw.convert("L" if grayscale else "RGB").resize((32, 32), Image.BILINEAR)
    expected = torch.from_numpy(np.asarray(raw, dtype=np.float32) / 255.0)
    expected = expected[None] if grayscale else expected.permute(2, 0, 1)
    if not grayscale:       # RGB folders are normalised like every RGB dataset
        mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)
        expected = (expected - mean) / std[:, None, None]
    assert torch.allclose(image, expected, atol=1e-5)


@pytest.mark.parametrize("sampler, cache", [("torchmeta", False), ("torchmeta", True),
                                            ("device", False)])
def test_every_loader_draws_tasks(folder_root, sampler, cache):
    loaders = build_loaders(config(folder_root, sampler=sampler, cache_images=cache),
                            splits=("train", "test"))
    batch = next(iter(loaders["train"]))
    (xs, ys), (xq, yq) = batch["train"], batch["test"]
    assert xs.shape == (2, 5, 3, 32, 32) and xq.shape == (2, 10, 3, 32, 32)
    assert sorted(ys[0].tolist()) == list(range(5)) and sorted(set(yq[0].tolist())) == [0, 1,
                                                                                          2, 3, 4]


def test_errors_name_the_folder(folder_root, tmp_path):
    with pytest.raises(DataUnavailable, match=r"exceeds the 5 classes .*val"):
        meta_dataset("folder", "val", str(folder_root), 6, 1, 2)
    with pytest.raises(DataUnavailable, match=r"only 4 images.* = 5: .*train/class0"):
        meta_dataset("folder", "train", str(folder_root), 5, 2, 3)
    with pytest.raises(DataUnavailable, match=r"train is not a folder.*<class>/<images>"):
        meta_dataset("folder", "train", str(tmp_path), 5, 1, 2)


def test_flags_set_the_backbone_input(folder_root):
    gray = learner_from_flags(["--dataset", "folder", "--image_size", "40", "--grayscale",
                               "--hidden_size", "8", "--dont_use_cuda"])
    first = next(gray.model.parameters())
    assert first.shape[1] == 1 and gray.config.backbone.image_size == 40
    for bad in (["--image_size", "40"], ["--grayscale"]):       # not for fixed shapes
        with pytest.raises(SystemExit) as exit_info:
            cli.parse_args(["--dataset", "Omniglot", *bad])
        assert exit_info.value.code == 2


def test_cross_domain_compares_resolved_shapes(folder_root):
    flags = ["--dataset", "folder", "--data_folder", str(folder_root), "--image_size", "32",
             "--hidden_size", "8", "--num_shots_train", "1", "--num_shots_test", "2",
             "--gradient_steps_test", "1", "--num_workers", "0", "--dont_use_cuda"]
    run = cli.resolve(cli.parse_args(flags))
    learner = learner_from_flags(flags)
    with pytest.raises(evaluation.EvaluationError,
                       match=r"CUB images are 3x84x84, but the model takes 3x32x32"):
        evaluation.test_accuracy(learner, run.data, "CUB", 5)
    result = evaluation.test_accuracy(learner, run.data, "folder", 1)     # its own test split
    assert result["num_tasks"] == 1 and 0 <= result["accuracy"] <= 1


def test_train_runs_end_to_end_and_refuses_too_few_classes(folder_root, tmp_path, zygote):
    flags = tiny_run_flags(tmp_path / "run", "folder", folder_root) + ["--image_size", "32",
                                                                       "--epochs", "1"]
    result = zygote.run("train.py", flags)
    assert result.code == 0, result.stderr
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["best_epoch"] == 0 and 0 <= results["test_accuracy"] <= 1
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["args"]
    assert recorded["dataset"] == "folder" and recorded["image_size"] == 32

    refused = zygote.run("train.py", tiny_run_flags(tmp_path / "run6", "folder", folder_root)
                         + ["--num_ways", "6"])
    assert refused.code == 2
    assert "--num_ways 6 exceeds the 5 classes of folder's val split" in refused.stderr
    assert str(folder_root / "val") in refused.stderr and "Traceback" not in refused.stderr
