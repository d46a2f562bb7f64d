"""OSAKA streams (Caccia et al., NeurIPS 2020): pretraining tasks, then a non-stationary
stream of few-shot batches with task switches.

As ElementAI/osaka's ``dataloaders.py``: Omniglot classes 0..899 meta-train the learner
(10-way 5-shot tasks, 15 queries per class; supports from a class's first 10 images,
queries from the other 10, drawn with replacement), classes 900..999 are its
early-stopping classes. Each
stream step stays on the current task with probability ``prob_statio``; otherwise a
switch draws a mode (``mode_probs``) and ``num_ways`` new classes of it (a switch
counts even when the mode repeats). Each step delivers ``num_ways`` x ``num_shots``
images of the current classes (drawn with replacement), labels 0..N-1 in class order.

- ``osaka``: modes omniglot (all 1,623 classes) / mnist / fashion-mnist (their training
  sets, one class = one digit / article); MNIST and FashionMNIST from torchvision
  (``--download``), Omniglot from ``<data_folder>/omniglot`` (torchmeta's processed
  layout; ``--download`` lets torchmeta fetch and process it).
- ``osaka-omniglot`` (offline, CPU-sized): Omniglot only. Modes: omniglot (the
  pretraining and early-stopping classes, 0..999), unseen-alphabets (the Vinyals
  validation and test classes, alphabets never seen in pretraining) and rotated (those
  unseen classes rotated by 90 degrees, a stronger shift in the spirit of OSAKA's
  out-of-distribution MNIST / FashionMNIST modes; intensity inversion was tried first
  and left every method at chance with the MLP).

Omniglot classes are ordered as the Vinyals train, val, test label files list them;
images are resized to 28x28 (antialiased bilinear, within one grey level of the PIL
resize torchmeta uses) and kept as uint8. All
randomness comes from the stream's own generator, whose state ``state_dict`` keeps.
"""
import json
import os

import numpy as np
import torch

from utils.data.continual import STREAMS, torchvision_images
from utils.data.loaders import DataUnavailable

OMNIGLOT_FILES = ("data.hdf5", "vinyals_train_labels.json", "vinyals_val_labels.json",
                  "vinyals_test_labels.json")


def omniglot_classes(root, download=False):
    """(uint8 images [1623, 20, 28, 28] in Vinyals order, number of Vinyals train classes)."""
    import h5py
    import torch.nn.functional as F

    folder = os.path.join(root, "omniglot")
    paths = [os.path.join(folder, f) for f in OMNIGLOT_FILES]
    if download and not all(os.path.isfile(p) for p in paths):
        from utils.data.torchmeta_compat import Omniglot
        try:
            Omniglot(root, num_classes_per_task=1, meta_train=True, use_vinyals_split=True,
                     download=True)
        except Exception as err:
            raise DataUnavailable(f"Omniglot: torchmeta's download into {folder} failed "
                                  f"({type(err).__name__}: {err})") from err
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DataUnavailable(
            f"Omniglot data not found: expected {', '.join(missing)}. Either run with "
            "--download to let torchmeta fetch and process it, or place torchmeta's "
            f"processed Omniglot (data.hdf5 and the Vinyals label files) in {folder}.")
    labels = []
    for split in ("train", "val", "test"):
        with open(os.path.join(folder, f"vinyals_{split}_labels.json")) as f:
            labels.append(json.load(f))
    try:
        with h5py.File(paths[0], "r") as data:
            raw = np.stack([data[group][alphabet][character][()]
                            for group, alphabet, character in labels[0] + labels[1] + labels[2]])
    except (OSError, KeyError, ValueError) as err:
        raise DataUnavailable(f"Omniglot: {paths[0]} is unreadable or does not match the "
                              f"label files ({type(err).__name__}: {err})") from err
    raw = torch.from_numpy(raw)                                  # [classes, 20, 105, 105]
    images = []
    for chunk in raw.split(64):      # antialiased bilinear: PIL's resize within 1 grey level
        small = F.interpolate(chunk.reshape(-1, 1, *raw.shape[-2:]).float(), size=(28, 28),
                              mode="bilinear", antialias=True)
        images.append(small.round().clamp(0, 255).to(torch.uint8).view(len(chunk), -1, 28, 28))
    return torch.cat(images), len(labels[0])


def by_class(images, labels):
    """uint8 [classes, min count, H, W] from images [N, H, W] and labels [N] (OSAKA's
    ``order_and_split``: every class truncated to the smallest class's count)."""
    classes = [images[labels == c] for c in range(int(labels.max()) + 1)]
    count = min(len(c) for c in classes)
    return torch.stack([c[:count] for c in classes])


class FewShotTasks:
    """N-way K-shot tasks from uint8 images [classes, per_class, H, W]: supports from each
    class's first half, queries (``num_queries`` per class) from its second half."""

    def __init__(self, images, num_ways, num_shots, num_queries, generator):
        self.images, self.generator = images, generator
        self.num_ways, self.num_shots, self.num_queries = num_ways, num_shots, num_queries
        if len(images) < num_ways:
            raise DataUnavailable(f"{len(images)} classes cannot make {num_ways}-way tasks")

    def _draw(self, classes, low, high, per_class):
        idx = torch.randint(low, high, (len(classes), per_class), generator=self.generator)
        x = self.images[classes[:, None], idx]                       # [N, K, H, W]
        y = torch.arange(len(classes)).repeat_interleave(per_class)
        return x.reshape(-1, 1, *x.shape[-2:]).float() / 255, y

    def sample(self, n):
        """[(xs [N*K, 1, H, W], ys, xq [N*Q, 1, H, W], yq)] for n tasks."""
        half = self.images.shape[1] // 2
        tasks = []
        for _ in range(n):
            classes = torch.randperm(len(self.images), generator=self.generator)[:self.num_ways]
            xs, ys = self._draw(classes, 0, half, self.num_shots)
            xq, yq = self._draw(classes, half, self.images.shape[1], self.num_queries)
            tasks.append((xs, ys, xq, yq))
        return tasks


class Stream:
    """The OSAKA stream: ``next()`` -> (x [N*K, 1, 28, 28] float, y [N*K], switched, mode).

    modes: [(name, uint8 images [classes, per_class, 28, 28])]; ``pretrain`` / ``val``:
    the pretraining and early-stopping class images (``FewShotTasks`` draw from them).
    """

    kind = "stream"
    input_shape = (1, 28, 28)

    def __init__(self, modes, probs, pretrain, val, config, seed):
        self.modes = [name for name, _ in modes]
        self.images = [images for _, images in modes]
        self.probs = torch.tensor(probs, dtype=torch.float64)
        self.pretrain, self.val = pretrain, val
        self.num_ways, self.num_shots = config.num_ways, config.num_shots
        self.num_queries = config.num_queries
        self.prob_statio, self.steps = config.prob_statio, config.stream_steps
        self.num_classes = config.num_ways
        for name, images in modes:
            if len(images) < self.num_ways:
                raise DataUnavailable(f"stream mode {name} has {len(images)} classes, "
                                      f"fewer than --num_ways {self.num_ways}")
        self.generator = torch.Generator().manual_seed(int(seed) + 2)
        self.mode, self.classes, self.position = 0, None, 0

    def next(self):
        g = self.generator
        switched = self.classes is None or float(torch.rand((), generator=g)) > self.prob_statio
        if switched:
            self.mode = int(torch.multinomial(self.probs, 1, generator=g))
            n = len(self.images[self.mode])
            self.classes = torch.randperm(n, generator=g)[:self.num_ways]
        images = self.images[self.mode]
        idx = torch.randint(images.shape[1], (self.num_ways, self.num_shots), generator=g)
        x = images[self.classes[:, None], idx].float() / 255
        y = torch.arange(self.num_ways).repeat_interleave(self.num_shots)
        self.position += 1
        return x.reshape(-1, 1, *x.shape[-2:]), y, bool(switched and self.position > 1), \
            self.modes[self.mode]

    def tasks(self, split, seed):
        """Few-shot tasks of the pretraining ("train") or early-stopping ("val") classes,
        drawn with a generator seeded by ``seed`` (e.g. one per epoch, for exact resume)."""
        g = torch.Generator().manual_seed(int(seed))
        images = self.pretrain if split == "train" else self.val
        return FewShotTasks(images, self.num_ways, self.num_shots, self.num_queries, g)

    def state_dict(self):
        return {"generator": self.generator.get_state(), "mode": self.mode,
                "classes": self.classes, "position": self.position}

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"])
        self.mode, self.classes, self.position = state["mode"], state["classes"], \
            state["position"]


def osaka_stream(config, seed):
    """The ``Stream`` of ``config.benchmark`` ("osaka" or "osaka-omniglot")."""
    omniglot, n_train = omniglot_classes(config.data_folder, config.download)
    n_pre, n_val = config.pretrain_classes, config.val_classes
    if n_pre + n_val > n_train:
        raise DataUnavailable(f"--pretrain_classes + --val_classes = {n_pre + n_val} exceed "
                              f"the {n_train} Vinyals training classes of Omniglot")
    pretrain, val = omniglot[:n_pre], omniglot[n_pre:n_pre + n_val]
    names = STREAMS[config.benchmark].modes
    if len(config.mode_probs) != len(names) or abs(sum(config.mode_probs) - 1) > 1e-6:
        raise DataUnavailable(f"--mode_probs needs {len(names)} probabilities summing to 1 "
                              f"(modes {', '.join(names)}), got {config.mode_probs}")
    if config.benchmark == "osaka":
        mnist = by_class(*torchvision_images("MNIST", config.data_folder, True, config.download))
        fashion = by_class(*torchvision_images("FashionMNIST", config.data_folder, True,
                                               config.download))
        modes = [(names[0], omniglot), (names[1], mnist), (names[2], fashion)]
    else:
        unseen = omniglot[n_train:]
        modes = [(names[0], omniglot[:n_pre + n_val]), (names[1], unseen),
                 (names[2], torch.rot90(unseen, 1, dims=(-2, -1)).contiguous())]
    return Stream(modes, config.mode_probs, pretrain, val, config, seed)
