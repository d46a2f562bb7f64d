"""In-memory cache of transformed images for deterministic transforms (``--cache_images``).

torchmeta decodes and resizes every image of every task again (Omniglot: an HDF5 read,
a PIL resize and a tensor conversion per image, ~1-2 ms). With a deterministic
transform the result never changes, so we keep each transformed image the first time
it is drawn, keyed by (class index incl. class augmentation, example index). Targets
are never cached: torchmeta appends each task's label map (Categorical) to the
per-class target transform, so we apply target transforms on every access.

The cache lives in the process that loads data: use it with ``--num_workers 0`` (or
persistent workers); it must not be used with random training augmentation.
"""
from utils.data.torchmeta_compat import ClassDataset, CombinationMetaDataset, Dataset


class CachedDataset(Dataset):
    """One class's examples with transformed images memoised in a shared dict."""

    def __init__(self, inner, cache, class_index):
        super().__init__(inner.index, transform=None, target_transform=inner.target_transform)
        inner.target_transform = None      # raw target from inner; ours applied below
        self.inner, self.cache, self.class_index = inner, cache, class_index

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        key = (self.class_index, i)
        item = self.cache.get(key)
        if item is None:
            item = self.cache[key] = self.inner[i]
        image, target = item
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target


class CachedClassDataset(ClassDataset):
    """Wraps a torchmeta ClassDataset (augmentations included) with an image cache."""

    def __init__(self, inner):
        super().__init__(meta_split=inner.meta_split)
        self.inner = inner
        self.cache = {}

    @property
    def num_classes(self):
        return len(self.inner)          # augmented classes count as classes

    def __getitem__(self, index):
        return CachedDataset(self.inner[index], self.cache, index)

    def close(self):
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()


def with_image_cache(meta_dataset):
    """The same tasks as ``meta_dataset`` (a CombinationMetaDataset), images cached."""
    return CombinationMetaDataset(CachedClassDataset(meta_dataset.dataset),
                                  meta_dataset.num_classes_per_task,
                                  target_transform=meta_dataset.target_transform,
                                  dataset_transform=meta_dataset.dataset_transform)
