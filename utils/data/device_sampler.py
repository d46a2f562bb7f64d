"""Episodic task sampler that lives on the device (``--sampler device``).

torchmeta's BatchMetaDataLoader builds every task in Python: per image an HDF5 read,
a PIL transform and a tensor copy, then a collate and a host-to-device copy. For
small images (Omniglot: 28x28) this, not the model, limits training speed.
``DeviceTaskLoader`` instead transforms every image of a split once, keeps them all in
one device tensor, and draws each meta-batch with a few vectorised random ops and one
gather per split: no worker processes, no host round trip, no sync per batch.

Tasks follow the distribution of ClassSplitter(shuffle=True) + Categorical(N) +
BatchMetaDataLoader(shuffle=True): N distinct classes drawn uniformly among all the
split's classes (class augmentations such as Omniglot's rotations included), K support
+ Q query distinct images per class drawn uniformly without replacement, and a uniform
random assignment of labels 0..N-1 to the N classes. Within a task the images are
class-major, as ClassSplitter orders them.

Memory: the whole split is stored as float32, e.g. MiniImageNet train is
38,400 x 3x84x84 x 4 bytes = 3.3 GB. The transform runs once, so random training
augmentation (``--data_aug``) would be frozen: use this sampler only with
deterministic transforms.
"""
import torch
from tqdm import tqdm

from utils.data.torchmeta_compat import ClassSplitter_


def _splits(dataset_transform):
    """[(name, size)] of the support and query splits of the dataset's ClassSplitter."""
    transforms = getattr(dataset_transform, "transforms", None) or [dataset_transform]
    splitters = [t for t in transforms if isinstance(t, ClassSplitter_)]
    if len(splitters) != 1 or len(splitters[0].splits) != 2:
        raise ValueError("DeviceTaskLoader needs a dataset_transform with one ClassSplitter "
                         f"of a support and a query split, got {dataset_transform!r}")
    return list(splitters[0].splits.items())


class DeviceTaskLoader:
    """Endless meta-batches of N-way K-shot tasks drawn on ``device``.

    Attributes:
        images:  [total_images, C, H, W] float32 on ``device``, all classes concatenated.
        offsets: [num_classes] int64, index in ``images`` of each class's first image.
        counts:  [num_classes] int64, number of images of each class (may differ: CUB).

    Each batch is, as from torchmeta's loader (names from the ClassSplitter),
    ``{"train": (x [B, N*K, C, H, W], y [B, N*K] int64),
       "test": (x [B, N*Q, C, H, W], y [B, N*Q] int64)}``, all on ``device``.
    """

    def __init__(self, meta_dataset, batch_size, device, progress=True):
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.num_ways = meta_dataset.num_classes_per_task
        (self.support_name, self.num_shots), (self.query_name, self.num_queries) = \
            _splits(meta_dataset.dataset_transform)
        classes = meta_dataset.dataset
        # Sizes first: fail before the (long) loading, and allocate the device tensor
        # once, so the split never exists twice in host memory.
        sizes = [len(classes[c]) for c in range(len(classes))]
        per_class = self.num_shots + self.num_queries
        small = [c for c, n in enumerate(sizes) if n < per_class]
        if small:
            raise ValueError(
                f"{len(small)} classes (e.g. class {small[0]} with {sizes[small[0]]} images) "
                f"have fewer images than K + Q = {self.num_shots} + {self.num_queries}")
        if self.num_ways > len(sizes):
            raise ValueError(f"{self.num_ways}-way tasks need at least {self.num_ways} "
                             f"classes, the dataset has {len(sizes)}")
        self.counts = torch.tensor(sizes, dtype=torch.int64, device=self.device)
        self.offsets = self.counts.cumsum(0) - self.counts
        self.images = None
        start = 0
        for c in tqdm(range(len(sizes)), desc=f"images to {self.device}", disable=not progress):
            class_data = classes[c]
            block = torch.stack([class_data[i][0] for i in range(sizes[c])])
            if self.images is None:
                self.images = torch.empty((sum(sizes),) + block.shape[1:], dtype=block.dtype,
                                          device=self.device)
            self.images[start:start + sizes[c]] = block.to(self.device)
            start += sizes[c]
        close = getattr(classes, "close", None)
        if close is not None:   # torchmeta reopens its HDF5 file lazily if needed again
            try:
                close()
            except Exception:   # torchmeta's close() fails when the file never opened
                pass
        self._positions = torch.arange(max(sizes), device=self.device)

    @property
    def num_classes(self):
        """Classes of the split, class augmentations (e.g. rotations) included."""
        return self.counts.numel()

    def __iter__(self):
        # The seed is drawn here, eagerly, from torch's global CPU generator, so that
        # torch.manual_seed(s) before iterating fixes the whole stream (exact resume).
        generator = torch.Generator(device=self.device)
        generator.manual_seed(int(torch.randint(2 ** 62, ())))
        return self._batches(generator)

    def _batches(self, generator):
        while True:
            yield self._batch(generator)

    def _rand(self, *shape, generator):
        # float64 keys: with float32's 2**24 values, ties among thousands of classes
        # would be common enough to bias the order slightly.
        return torch.rand(shape, generator=generator, device=self.device, dtype=torch.float64)

    def _batch(self, g):
        B, N, K, Q = self.batch_size, self.num_ways, self.num_shots, self.num_queries
        # N distinct classes per task, in random order: the N smallest of iid keys.
        classes = self._rand(B, self.num_classes, generator=g).topk(N, largest=False).indices
        # K + Q distinct images per class: the smallest keys among the class's images;
        # positions past a class's size get +inf keys and are never picked.
        keys = self._rand(B, N, self._positions.numel(), generator=g)
        keys.masked_fill_(self._positions >= self.counts[classes].unsqueeze(-1), float("inf"))
        picks = keys.topk(K + Q, largest=False).indices + self.offsets[classes].unsqueeze(-1)
        # Label of the task's j-th class: a uniform random permutation of 0..N-1.
        labels = self._rand(B, N, generator=g).argsort(dim=1)
        batch = {}
        for name, part, size in ((self.support_name, picks[..., :K], K),
                                 (self.query_name, picks[..., K:], Q)):
            x = self.images.index_select(0, part.reshape(-1))   # [B*N*size, C, H, W]
            y = labels.unsqueeze(-1).expand(B, N, size).reshape(B, N * size)
            batch[name] = (x.view(B, N * size, *self.images.shape[1:]), y)
        return batch
