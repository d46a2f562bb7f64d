"""``--cache_images`` (utils/data/image_cache.py) and ``--data_aug`` (utils/data/loaders.py):
a cached loader draws exactly the uncached tasks and transforms each image once; the
augmentation randomises MiniImagenet's training images only."""
import numpy as np
import torch
from PIL import Image
from torchvision.transforms import ToTensor

from utils.data.image_cache import with_image_cache
from utils.data.loaders import (DataConfig, _transform, build_loaders, follow_global_numpy_rng,
                                task_loader)
from utils.data.strokes import Strokes
from utils.data.torchmeta_compat import Categorical, ClassSplitter
from utils.run.rng import seed_everything


class CountingToTensor:
    """ToTensor that counts its calls (one per decoded image)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, image):
        self.calls += 1
        return ToTensor()(image)


def strokes_tasks(transform):
    dataset = Strokes(None, num_classes_per_task=3, meta_split="train", transform=transform,
                      target_transform=Categorical(3), num_examples_per_class=6,
                      dataset_transform=ClassSplitter(shuffle=True, num_train_per_class=1,
                                                      num_test_per_class=2))
    return follow_global_numpy_rng(dataset)


def draw(dataset, batches, seed):
    seed_everything(seed)       # the sampler draws classes with python's random
    loader = task_loader(dataset, batch_size=4, num_workers=0, pin_memory=False)
    out = []
    for i, batch in enumerate(loader):
        if i >= batches:
            break
        out.append([t.clone() for split in ("train", "test") for t in batch[split]])
    return out


def test_cache_images_loaders_draw_the_same_tasks_for_a_seed():
    def tasks(cache):
        config = DataConfig(dataset="Strokes", num_ways=3, num_shots=1, num_queries=2,
                            batch_size=4, num_workers=0, cache_images=cache)
        seed_everything(3)
        loader = build_loaders(config, splits=("train",))["train"]
        return [[t for split in ("train", "test") for t in batch[split]]
                for _, batch in zip(range(3), loader)]
    for a, b in zip(tasks(False), tasks(True), strict=True):
        for x, y in zip(a, b, strict=True):
            assert torch.equal(x, y)


def test_cached_loader_draws_the_same_tasks_and_transforms_each_image_once():
    plain_transform, cached_transform = CountingToTensor(), CountingToTensor()
    plain = draw(strokes_tasks(plain_transform), 3, seed=5)
    cached_dataset = follow_global_numpy_rng(with_image_cache(strokes_tasks(cached_transform)))
    first = draw(cached_dataset, 3, seed=5)
    for a, b in zip(plain, first, strict=True):
        for x, y in zip(a, b, strict=True):
            assert torch.equal(x, y)
    images_seen = cached_transform.calls
    # first pass: every distinct image decoded once (an image two tasks share, once)
    assert images_seen == len(cached_dataset.dataset.cache) <= plain_transform.calls
    again = draw(cached_dataset, 3, seed=5)         # same tasks again: all cache hits
    assert cached_transform.calls == images_seen
    for a, b in zip(first, again, strict=True):
        for x, y in zip(a, b, strict=True):
            assert torch.equal(x, y)


def image(seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (84, 84, 3), dtype=np.uint8))


def test_data_aug_randomises_miniimagenet_training_images_only():
    picture = image()
    augmented = _transform("MiniImagenet", "train", data_aug=True)
    torch.manual_seed(0)
    views = [augmented(picture) for _ in range(4)]
    assert all(v.shape == (3, 84, 84) for v in views)
    assert any(not torch.equal(views[0], v) for v in views[1:])
    for split, aug in (("val", True), ("test", True), ("train", False)):
        transform = _transform("MiniImagenet", split, data_aug=aug)
        assert torch.equal(transform(picture), transform(picture)), (split, aug)
    plain = _transform("MiniImagenet", "train", data_aug=False)(picture)
    # without augmentation: resize (a no-op at 84x84), then ImageNet normalisation
    expected = (ToTensor()(picture) - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) \
        / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    torch.testing.assert_close(plain, expected)
