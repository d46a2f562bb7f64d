"""Tests for utils/data/strokes.py: the procedural Strokes few-shot dataset."""
import time

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import ToTensor

from utils.data.torchmeta_compat import (BatchMetaDataLoader, Categorical, ClassSplitter,
                                         Rotation)

from utils.data.strokes import Strokes, StrokesClassDataset, glyph_strokes, render_example

SPLIT_SIZES = {"train": 1028, "val": 172, "test": 423}


def _pixels(dataset, class_index, example_index):
    image, _ = dataset[class_index][example_index]
    return np.asarray(image)


def _task_dataset(meta_split="test", seed=0, **kwargs):
    return Strokes("/nonexistent", num_classes_per_task=5, meta_split=meta_split,
                   seed=seed, transform=ToTensor(), target_transform=Categorical(5),
                   dataset_transform=ClassSplitter(shuffle=True, num_train_per_class=1,
                                                   num_test_per_class=5), **kwargs)


def test_same_seed_identical_pixels_different_seed_differs():
    a = StrokesClassDataset(meta_train=True, seed=3)
    b = StrokesClassDataset(meta_train=True, seed=3)
    c = StrokesClassDataset(meta_train=True, seed=4)
    for class_index, example_index in [(0, 0), (17, 5), (1027, 19)]:
        np.testing.assert_array_equal(_pixels(a, class_index, example_index),
                                      _pixels(b, class_index, example_index))
        assert not np.array_equal(_pixels(a, class_index, example_index),
                                  _pixels(c, class_index, example_index))


def test_example_depends_only_on_seed_class_and_index():
    first = render_example(0, 42, 7)
    np.random.seed(123)                 # global RNG state must not matter
    for _ in range(3):
        render_example(0, 42, 3)        # nor what was rendered before
    glyph_strokes.cache_clear()         # nor the glyph cache
    np.testing.assert_array_equal(render_example(0, 42, 7), first)
    # Example count does not change which pixels example j has.
    few = StrokesClassDataset(meta_split="val", num_examples_per_class=8)
    many = StrokesClassDataset(meta_split="val", num_examples_per_class=30)
    np.testing.assert_array_equal(_pixels(few, 2, 7), _pixels(many, 2, 7))
    # Val class 2 is global class 1028 + 2.
    np.testing.assert_array_equal(_pixels(few, 2, 7), render_example(0, 1030, 7))


def test_glyph_definition_is_read_only_and_cached():
    control = glyph_strokes(0, 5)
    assert control.ndim == 3 and control.shape[1:] == (4, 2)
    assert 2 <= control.shape[0] <= 4
    assert glyph_strokes(0, 5) is control
    with pytest.raises(ValueError):
        control[0, 0, 0] = 1.0


def test_split_sizes_and_disjoint_classes():
    names = {}
    for split, size in SPLIT_SIZES.items():
        dataset = StrokesClassDataset(meta_split=split)
        assert len(dataset) == dataset.num_classes == size
        names[split] = {dataset[i].class_name for i in range(len(dataset))}
        assert len(names[split]) == size
    assert not names["train"] & names["val"]
    assert not names["train"] & names["test"]
    assert not names["val"] & names["test"]
    flags = StrokesClassDataset(meta_val=True)
    assert flags.meta_split == "val" and flags[0].class_name == "glyph1028"
    assert len(Strokes(None, 5, meta_test=True).dataset) == 423
    with pytest.raises(ValueError):
        StrokesClassDataset()
    with pytest.raises(ValueError):
        StrokesClassDataset(meta_train=True, meta_test=True)


def test_item_format_like_omniglot():
    dataset = StrokesClassDataset(root="/nonexistent", meta_train=True, download=True)
    class_dataset = dataset[10]
    assert len(class_dataset) == 20
    image, target = class_dataset[0]
    assert isinstance(image, Image.Image) and image.mode == "L"
    assert image.size == (28, 28)
    assert target == ("glyph0010", None)   # FixedCategory(None), as torchmeta's Omniglot
    pixels = np.asarray(image)
    assert pixels.max() >= 200                     # ink is bright
    assert np.median(pixels) == 0                  # background is black
    assert 0.03 < (pixels > 127).mean() < 0.4      # strokes, not blobs or nothing
    tensor = ToTensor()(image)
    assert tensor.shape == (1, 28, 28)
    assert 0.0 <= tensor.min() and tensor.max() <= 1.0
    with pytest.raises(IndexError):
        class_dataset[20]
    big = StrokesClassDataset(meta_train=True, image_size=32)[0][0][0]
    assert big.size == (32, 32)


def test_classes_differ_and_examples_vary():
    dataset = StrokesClassDataset(meta_train=True)
    same = [_pixels(dataset, 0, j) for j in range(3)]
    assert not np.array_equal(same[0], same[1])
    assert not np.array_equal(_pixels(dataset, 0, 0), _pixels(dataset, 1, 0))


def test_torchmeta_pipeline_batches():
    dataset = _task_dataset(meta_split="train")
    task = dataset.sample_task()
    assert len(task["train"]) == 5 and len(task["test"]) == 25
    loader = BatchMetaDataLoader(dataset, batch_size=2, shuffle=True, num_workers=0)
    batch = next(iter(loader))
    train_inputs, train_targets = batch["train"]
    test_inputs, test_targets = batch["test"]
    assert train_inputs.shape == (2, 5, 1, 28, 28)
    assert train_targets.shape == (2, 5)
    assert test_inputs.shape == (2, 25, 1, 28, 28)
    assert test_targets.shape == (2, 25)
    assert train_inputs.dtype == torch.float32
    for targets in (train_targets, test_targets):
        assert set(targets.flatten().tolist()) == set(range(5))


def test_class_augmentations():
    plain = Strokes(None, 5, meta_split="val")
    augmented = Strokes(None, 5, meta_split="val", class_augmentations=[Rotation([90])])
    assert len(augmented.dataset) == 2 * len(plain.dataset)
    original, _ = augmented.dataset[0][0]
    rotated, target = augmented.dataset[172][0]
    np.testing.assert_array_equal(np.asarray(rotated),
                                  np.asarray(original.rotate(90)))
    assert target[0] == "glyph1028"


def test_raw_pixel_nearest_neighbour_is_above_chance_but_imperfect():
    """5-way 1-shot, 5 queries per class, over 100 tasks (measured: about 0.75)."""
    dataset = _task_dataset(meta_split="test")
    dataset.seed(0)
    correct = total = 0
    for _ in range(100):
        task = dataset.sample_task()
        support = torch.stack([x for x, _ in task["train"]]).flatten(1)
        support_labels = torch.tensor([y for _, y in task["train"]])
        query = torch.stack([x for x, _ in task["test"]]).flatten(1)
        query_labels = torch.tensor([y for _, y in task["test"]])
        predicted = support_labels[torch.cdist(query, support).argmin(dim=1)]
        correct += (predicted == query_labels).sum().item()
        total += len(query_labels)
    accuracy = correct / total
    assert 0.3 < accuracy < 0.95, accuracy


def test_generation_is_fast():
    start = time.perf_counter()
    for j in range(200):
        render_example(1, 900 + j % 10, j)
    per_image = (time.perf_counter() - start) / 200
    assert per_image < 5e-3, per_image     # ~0.2 ms measured; loose for shared CPUs
