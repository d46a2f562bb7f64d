"""Continual-learning benchmarks: task sequences and OSAKA streams (``utils/data/osaka.py``).

Task sequences, as GEM/MER/La-MAML define them on MNIST (one 10-class problem per task,
one shared head; every task has its own transform of the same images):

- ``mnist-rotations``: 20 tasks; task t rotates every image by a fixed angle drawn
  uniformly in [180 t / T, 180 (t + 1) / T) degrees (GEM's ``mnist_rotations.py`` with
  MER's 0-180 range; nearest-neighbour, as PIL's ``rotate``); 1000 training samples per
  task (La-MAML's ``--samples_per_task``), the whole test set (10,000) per task;
- ``mnist-permutations``: 20 tasks, each a fixed random pixel permutation (GEM's
  ``mnist_permutations.py``, the first task permuted too); 1000 samples per task;
- ``mnist-many-permutations``: 100 permutation tasks, 200 samples each (MER).

MNIST comes from torchvision (``torchvision.datasets.MNIST(root, download=...)``, files in
``<data_folder>/MNIST/raw``). The ``digits-*`` sequences are the same constructions on
scikit-learn's bundled 8x8 digits (1,797 images, read from the installed package, no
network), sized for a 2-core CPU: 10 tasks of 80 samples (many permutations: 50 of
16); a fixed 30 % of the images (stratified) is the test set of every task, the rest
the training pool. Angles, permutations and each task's training subset are
drawn from the run's seed. Images are uint8 in memory; a task's images are transformed
when they are used, as float in [0, 1], shape [N, 1, H, W].
"""
import os
from dataclasses import dataclass
from typing import NamedTuple, Optional, Tuple

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.functional import rotate

from utils.data.loaders import DataUnavailable


class SequenceSpec(NamedTuple):
    source: str            # "mnist" or "digits"
    transform: str         # "rotation" or "permutation"
    num_tasks: int
    samples_per_task: int


class StreamSpec(NamedTuple):
    source: str            # "osaka" (Omniglot + MNIST + FashionMNIST) or "omniglot"
    modes: Tuple[str, ...]


SEQUENCES = {
    "mnist-rotations": SequenceSpec("mnist", "rotation", 20, 1000),
    "mnist-permutations": SequenceSpec("mnist", "permutation", 20, 1000),
    "mnist-many-permutations": SequenceSpec("mnist", "permutation", 100, 200),
    "digits-rotations": SequenceSpec("digits", "rotation", 10, 80),
    "digits-permutations": SequenceSpec("digits", "permutation", 10, 80),
    "digits-many-permutations": SequenceSpec("digits", "permutation", 50, 16),
}
STREAMS = {
    "osaka": StreamSpec("osaka", ("omniglot", "mnist", "fashion-mnist")),
    "osaka-omniglot": StreamSpec("omniglot", ("omniglot", "unseen-alphabets", "rotated")),
}
BENCHMARKS = tuple(SEQUENCES) + tuple(STREAMS)


@dataclass(frozen=True)
class ContinualDataConfig:
    benchmark: str = "digits-rotations"
    data_folder: str = "data"
    download: bool = False
    batch_size: int = 10               # samples per incoming batch (task sequences)
    num_tasks: Optional[int] = None    # None: the benchmark's
    samples_per_task: Optional[int] = None
    test_samples: Optional[int] = None  # test images per task; None: all
    # OSAKA streams
    num_ways: int = 10
    num_shots: int = 5
    num_queries: int = 15              # pretraining query images per class (OSAKA's 15)
    stream_steps: int = 10000
    prob_statio: float = 0.98          # probability that a step stays on the current task
    mode_probs: Tuple[float, ...] = (0.5, 0.25, 0.25)
    pretrain_classes: int = 900        # Omniglot classes 0..899 meta-train the learner
    val_classes: int = 100             # the next 100 are its early-stopping classes


def benchmark_kind(name):
    """"tasks" (a task sequence) or "stream" (OSAKA)."""
    return "tasks" if name in SEQUENCES else "stream"


# the source images
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def torchvision_images(name, root, train, download):
    """(uint8 images [N, 28, 28], labels [N]) of torchvision's MNIST or FashionMNIST."""
    import torchvision.datasets as tvd

    cls = {"MNIST": tvd.MNIST, "FashionMNIST": tvd.FashionMNIST}[name]
    folder = os.path.join(root, name, "raw")
    try:
        data = cls(root, train=train, download=download)
    except Exception as err:     # missing files: RuntimeError; no network: RuntimeError/URLError
        how = ("the download failed (no network?)" if download else
               "run with --download to let torchvision fetch it")
        raise DataUnavailable(
            f"{name} not found: expected {', '.join(MNIST_FILES)} (or their .gz archives) "
            f"in {folder}. Either {how}, or place the four files of the {name} "
            f"distribution there ({type(err).__name__}).") from err
    return data.data.clone(), data.targets.clone()


def digits_images(seed):
    """scikit-learn's 8x8 digits as uint8 (0-16) images, split 70/30 per class with the
    seed: ((x_train [N, 8, 8], y_train), (x_test, y_test))."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise DataUnavailable("the digits benchmarks need scikit-learn "
                              "(pip install scikit-learn)") from err
    digits = load_digits()
    x = torch.from_numpy(digits.images).to(torch.uint8)
    y = torch.from_numpy(digits.target).long()
    g = torch.Generator().manual_seed(int(seed))
    test = torch.zeros(len(y), dtype=torch.bool)
    for c in range(10):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        test[idx[:round(0.3 * len(idx))]] = True
    return (x[~test], y[~test]), (x[test], y[test])


class TaskSequence:
    """T tasks over one set of base images; ``train_set(t)`` / ``test_set(t)`` give task t's
    (x float [N, 1, H, W] in [0, 1], y [N]). ``descriptions[t]`` says what task t is."""

    kind = "tasks"

    def __init__(self, train, test, transform, num_tasks, samples_per_task, test_samples,
                 scale, seed):
        g = torch.Generator().manual_seed(int(seed) + 1)
        self.train_x, self.train_y = train
        self.test_x, self.test_y = test
        self.scale = float(scale)
        self.transform = transform
        side = self.train_x.shape[-1]
        self.input_shape = (1, side, side)
        self.num_classes = int(self.train_y.max()) + 1
        n_train = min(samples_per_task, len(self.train_y))
        if test_samples is not None:
            keep = torch.randperm(len(self.test_y), generator=g)[:test_samples]
            self.test_x, self.test_y = self.test_x[keep], self.test_y[keep]
        self.params, self.indices, self.descriptions = [], [], []
        for t in range(num_tasks):
            if transform == "rotation":
                low, high = 180.0 * t / num_tasks, 180.0 * (t + 1) / num_tasks
                angle = low + (high - low) * float(torch.rand((), generator=g))
                self.params.append(angle)
                self.descriptions.append(f"rotation {angle:.1f} deg")
            else:
                self.params.append(torch.randperm(side * side, generator=g))
                self.descriptions.append("pixel permutation")
            self.indices.append(torch.randperm(len(self.train_y), generator=g)[:n_train])
        self.num_tasks = num_tasks

    def _apply(self, t, x):
        x = x.unsqueeze(1)                                      # [N, 1, H, W] uint8
        if self.transform == "rotation":
            x = rotate(x, self.params[t], interpolation=InterpolationMode.NEAREST)
        else:
            x = x.flatten(1)[:, self.params[t]].view_as(x)
        return x.float() / self.scale

    def train_set(self, t):
        idx = self.indices[t]
        return self._apply(t, self.train_x[idx]), self.train_y[idx]

    def test_set(self, t):
        return self._apply(t, self.test_x), self.test_y


def task_sequence(config, seed):
    """The ``TaskSequence`` of ``config`` (a ContinualDataConfig) for run seed ``seed``."""
    spec = SEQUENCES[config.benchmark]
    if spec.source == "mnist":
        root = config.data_folder
        train = torchvision_images("MNIST", root, True, config.download)
        test = torchvision_images("MNIST", root, False, config.download)
        scale = 255
    else:
        train, test = digits_images(seed)
        scale = 16
    return TaskSequence(train, test, spec.transform, config.num_tasks or spec.num_tasks,
                        config.samples_per_task or spec.samples_per_task, config.test_samples,
                        scale, seed)


def build_benchmark(config, seed):
    """A ``TaskSequence`` or an OSAKA ``Stream`` (utils/data/osaka.py) for ``config``."""
    if config.benchmark in SEQUENCES:
        return task_sequence(config, seed)
    from utils.data.osaka import osaka_stream
    return osaka_stream(config, seed)


def batches(n, batch_size, generator):
    """Index batches covering range(n) once in a random order (one pass over a task)."""
    order = torch.randperm(n, generator=generator)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


__all__ = ["BENCHMARKS", "SEQUENCES", "STREAMS", "ContinualDataConfig", "TaskSequence",
           "batches", "benchmark_kind", "build_benchmark", "digits_images", "task_sequence",
           "torchvision_images"]
