"""Few-shot task loaders (torchmeta), as the original: ClassSplitter + Categorical +
BatchMetaDataLoader, with one difference: every RGB dataset gets the same ImageNet
normalisation at evaluation (the original forgot it for TieredImagenet, CUB and CARS).

Besides torchmeta's datasets: Strokes (generated), CARS (``utils/data/cars.py``), your
own image folders (``--dataset folder``, ``utils/data/folder.py``) and Omniglot on Lake's
split (``--omniglot_split lake``, ``utils/data/omniglot_lake.py``). The input shape of a
dataset (``dataset_shape``) is part of the resolved configuration: fixed for the
named datasets, ``--image_size`` / ``--grayscale`` for folders.

Missing, partial or corrupt data stops the run before training with a short
``DataUnavailable`` message naming the folder and the files expected there.
"""
import os
from dataclasses import dataclass

import numpy as np

from torchvision import transforms as T

from utils.data.errors import DataUnavailable
from utils.data.torchmeta_compat import (CUB, BatchMetaDataLoader, Categorical, ClassSplitter,
                                         MiniImagenet, Omniglot, Rotation, TieredImagenet)

__all__ = ["DataConfig", "DataUnavailable", "build_loaders", "dataset_shape", "meta_dataset"]

FOLDER = "folder"                 # --dataset folder: DIR/{train,val,test}/<class>/<images>
INK_DATASETS = ("Omniglot", "Strokes")    # 28x28 grayscale, ink bright on black


@dataclass(frozen=True)
class DataConfig:
    """Which tasks the loaders draw, and how."""

    dataset: str = "MiniImagenet"
    data_folder: str = "data"
    download: bool = False
    num_ways: int = 5
    num_shots: int = 5            # support examples per class (K)
    num_queries: int = 15         # query examples per class
    batch_size: int = 2           # tasks per meta-training batch
    test_batch_size: int = 1      # tasks per evaluation batch
    num_workers: int = 2
    data_aug: bool = False
    cache_images: bool = False
    sampler: str = "torchmeta"    # or "device"
    image_size: int = 84          # --dataset folder: images resized to S x S
    grayscale: bool = False       # --dataset folder: one channel instead of RGB
    omniglot_split: str = "vinyals"   # or "lake" (utils/data/omniglot_lake.py)

    @property
    def shape(self):
        """(input channels, image side) of the dataset's tensors."""
        return dataset_shape(self.dataset, self.image_size, self.grayscale)


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SPLITS = ("train", "val", "test")


# name: (folder, processed files per split, what torchmeta downloads / what to place there)
LAYOUT = {
    "MiniImagenet": ("miniimagenet", ("{split}_data.hdf5", "{split}_labels.json"),
                     "mini-imagenet.tar.gz"),
    "TieredImagenet": ("tieredimagenet", ("{split}_data.hdf5", "{split}_labels.json"),
                       "tiered-imagenet.tar"),
    "CUB": ("cub", ("{split}_data.hdf5", "{split}_labels.json"), "CUB_200_2011.tgz"),
    "CARS": ("cars", ("{split}_data.hdf5", "{split}_labels.json"),
             "the Stanford Cars archives (see utils/data/cars.py)"),
    "Omniglot": ("omniglot", ("data.hdf5", "vinyals_{split}_labels.json"),
                 "images_background.zip and images_evaluation.zip"),
}


def dataset_shape(name, image_size=84, grayscale=False):
    """(input channels, image side) of a dataset's tensors; ``image_size`` and
    ``grayscale`` apply to ``--dataset folder`` only."""
    if name == FOLDER:
        return (1 if grayscale else 3, image_size)
    return (1, 28) if name in INK_DATASETS else (3, 84)


def normalised(name, grayscale=False):
    """Whether the dataset's images get the ImageNet normalisation (every RGB dataset)."""
    return dataset_shape(name, grayscale=grayscale)[0] == 3


def expected_files(name, root, split, omniglot_split="vinyals"):
    folder, files, _ = LAYOUT[name]
    if name == "Omniglot" and omniglot_split == "lake":    # background / evaluation sets
        files = ("data.hdf5", "test_labels.json" if split == "test" else "train_labels.json")
    return [os.path.join(root, folder, f.format(split=split)) for f in files]


def _transform(name, split, data_aug, image_size=84, grayscale=False):
    if name == "Omniglot":
        return T.Compose([T.Resize(28), T.ToTensor()])
    if name == "Strokes":
        return T.ToTensor()
    if name == FOLDER:
        steps = [T.Resize((image_size, image_size)), T.ToTensor()]
        if not grayscale:
            steps.append(T.Normalize(IMAGENET_MEAN, IMAGENET_STD))
        return T.Compose(steps)
    resize = T.Resize(84) if name in ("MiniImagenet", "TieredImagenet") else T.Resize((84, 84))
    steps = [resize]
    if data_aug and split == "train" and name == "MiniImagenet":
        steps += [T.RandomCrop(84, padding=8), T.ColorJitter(0.4, 0.4, 0.4),
                  T.RandomHorizontalFlip()]
    return T.Compose(steps + [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def _dataset_class(name, omniglot_split="vinyals"):
    if name == "CARS":
        from utils.data.cars import Cars
        return Cars
    if name == "Strokes":
        from utils.data.strokes import Strokes
        return Strokes
    if name == FOLDER:
        from utils.data.folder import ImageFolder
        return ImageFolder
    if name == "Omniglot" and omniglot_split == "lake":
        from utils.data.omniglot_lake import LakeOmniglot
        return LakeOmniglot
    return {"MiniImagenet": MiniImagenet, "TieredImagenet": TieredImagenet, "CUB": CUB,
            "Omniglot": Omniglot}[name]


def _build_hint(name, root):
    """Where MiniImageNet / tieredImageNet can come from besides Google Drive."""
    if name not in ("MiniImagenet", "TieredImagenet"):
        return ""
    return (f" Or build it from a copy of the ILSVRC-2012 training set: python prepare_data.py "
            f"{name.lower()} --imagenet DIR --data_folder {root}.")


def _missing_message(name, root, split, download, omniglot_split="vinyals"):
    folder, _, archive = LAYOUT[name]
    missing = [p for p in expected_files(name, root, split, omniglot_split)
               if not os.path.isfile(p)]
    how = ("torchmeta's download failed (no network?)" if download else
           "run with --download to let torchmeta fetch it")
    return (f"{name} data not found: expected {', '.join(missing)} in "
            f"{os.path.join(root, folder)}. Either {how}, or place {archive} in that folder "
            "and run with --download to process it offline (see README, 'Getting the data')."
            + _build_hint(name, root))


def meta_dataset(name, split, root, num_ways, num_shots, num_queries, data_aug=False,
                 download=False, image_size=84, grayscale=False, omniglot_split="vinyals"):
    """A torchmeta CombinationMetaDataset of N-way (K support + Q query)-shot tasks.
    ``image_size`` / ``grayscale``: ``--dataset folder``; ``omniglot_split``: Omniglot."""
    kwargs = dict(num_classes_per_task=num_ways, meta_split=split,
                  transform=_transform(name, split, data_aug, image_size, grayscale),
                  target_transform=Categorical(num_ways),
                  dataset_transform=ClassSplitter(shuffle=True, num_train_per_class=num_shots,
                                                  num_test_per_class=num_queries))
    if name == "Omniglot":
        if omniglot_split == "vinyals":
            kwargs["use_vinyals_split"] = True
        if split in ("train", "val"):      # as the original: rotated copies are new classes
            kwargs["class_augmentations"] = [Rotation([90, 180, 270])]
    if name == FOLDER:
        kwargs["grayscale"] = grayscale
    needs_files = name in LAYOUT
    files = expected_files(name, root, split, omniglot_split) if needs_files else [root]
    if needs_files and not download and not all(os.path.isfile(p) for p in files):
        raise DataUnavailable(_missing_message(name, root, split, download, omniglot_split))
    try:
        dataset = _dataset_class(name, omniglot_split)(
            root, **kwargs, **({"download": download} if needs_files else {}))
    except DataUnavailable as err:    # e.g. Google Drive refused (utils/data/drive.py)
        raise DataUnavailable(f"{err}{_build_hint(name, root)}") from err
    except Exception as err:  # torchmeta raises RuntimeError/OSError/URLError variously
        if needs_files and not all(os.path.isfile(p) for p in files):
            raise DataUnavailable(_missing_message(name, root, split, download,
                                                   omniglot_split)) from err
        raise DataUnavailable(_unreadable_message(name, split, files, err)) from err
    check_task_size(dataset, name, split, num_ways, num_shots + num_queries, files)
    follow_global_numpy_rng(dataset)
    return dataset


def follow_global_numpy_rng(dataset):
    """Make a torchmeta dataset's task splits follow ``np.random.seed``.

    torchmeta seeds every MetaDataset and its ClassSplitter with ``RandomState(None)``
    (OS entropy), so which images are support or query differed between two runs with
    the same --seed, and a resumed run diverged. Their private generators become numpy's
    global one, which --seed and each epoch's reseed control (DataLoader workers seed it
    from the loader's base seed).
    """
    global_rng = np.random.mtrand._rand
    dataset.np_random = global_rng
    transform = dataset.dataset_transform
    for t in getattr(transform, "transforms", None) or [transform]:
        if hasattr(t, "np_random"):
            t.np_random = global_rng
    return dataset


def _broken_files(files):
    """The files among ``files`` that do not even open as JSON / HDF5 (the culprits)."""
    import json

    import h5py
    broken = []
    for path in files:
        try:
            if path.endswith(".json"):
                with open(path, encoding="utf-8") as f:
                    json.load(f)
            elif path.endswith((".hdf5", ".h5")):
                h5py.File(path, "r").close()
        except Exception:
            broken.append(path)
    return broken


def _unreadable_message(name, split, files, err):
    culprits = _broken_files(files) or files
    return (f"{name} ({split}) could not be read: {', '.join(culprits)} "
            f"{'is' if len(culprits) == 1 else 'are'} corrupt, truncated or not in "
            f"torchmeta's format ({type(err).__name__}: {err}). Delete and re-create "
            f"{'it' if len(culprits) == 1 else 'them'} (see README, 'Getting the data').")


def _missing_classes(class_dataset, err):
    """'classes a, b absent from the data' where the layout allows telling, else h5py's text."""
    try:
        data, labels = class_dataset.data, class_dataset.labels
        missing = [str(c) for c in labels if isinstance(c, str) and c not in data]
    except Exception:
        missing = []
    if not missing:
        return f"{err}"
    more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
    return f"{len(missing)} classes are absent from the data: {', '.join(missing[:3])}{more}"


def check_task_size(dataset, name, split, num_ways, per_class, files=()):
    """Fail early when tasks cannot be drawn: unreadable data, too few classes or images."""
    class_dataset = dataset.dataset
    try:
        num_classes = len(class_dataset)
        sizes = [len(class_dataset[i]) for i in range(class_dataset.num_classes)]
    except KeyError as err:      # h5py: a class named in the labels file is not in the data
        raise DataUnavailable(
            f"{name} ({split}): the labels file does not match the data file "
            f"({', '.join(files)}): {_missing_classes(class_dataset, err)}; re-create both "
            "files together (see README, 'Getting the data').") from err
    except Exception as err:
        raise DataUnavailable(_unreadable_message(name, split, files, err)) from err
    finally:
        try:      # reopened lazily in each loader worker
            class_dataset.close()
        except Exception:      # torchmeta's close() fails when the file never opened
            pass
    # Folder datasets name the folders to fix.
    split_folder = getattr(class_dataset, "split_folder", None)
    where = f" ({split_folder})" if split_folder else ""
    if num_ways > num_classes:
        raise DataUnavailable(f"--num_ways {num_ways} exceeds the {num_classes} classes of "
                              f"{name}'s {split} split{where}")
    if sizes and min(sizes) < per_class:
        small = [i for i, n in enumerate(sizes) if n < per_class]
        named = ""
        if split_folder:
            more = f" and {len(small) - 3} more" if len(small) > 3 else ""
            named = ": " + ", ".join(class_dataset.class_folder(i) for i in small[:3]) + more
        raise DataUnavailable(
            f"{name}'s {split} split has classes with only {min(sizes)} images, fewer than "
            f"--num_shots_train + --num_shots_test = {per_class}{named}")


def _ignore_sigint(_worker_id):
    # Ctrl-C reaches the whole process group; the main process handles it (checkpoint
    # and clean exit), so workers must not die first. SIGTERM keeps its default so that
    # multiprocessing can still terminate workers; train.main reports the stop cleanly
    # when a SIGTERM to the whole group kills them first.
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def task_loader(dataset, batch_size, num_workers, pin_memory):
    return BatchMetaDataLoader(dataset, batch_size=batch_size, shuffle=True,
                               num_workers=num_workers, pin_memory=pin_memory,
                               worker_init_fn=_ignore_sigint if num_workers else None)


def build_loaders(config, device="cpu", splits=SPLITS, dataset=None):
    """{split: task loader} for ``config`` (a DataConfig; ``dataset`` overrides its
    dataset): torchmeta's BatchMetaDataLoader (pinned memory when ``device`` is CUDA), or
    with ``sampler == "device"`` a DeviceTaskLoader on ``device``."""
    import torch

    device = torch.device(device)
    name = dataset or config.dataset
    loaders = {}
    for split in splits:
        ds = meta_dataset(name, split, config.data_folder, config.num_ways, config.num_shots,
                          config.num_queries, config.data_aug, config.download,
                          config.image_size, config.grayscale, config.omniglot_split)
        batch = config.batch_size if split == "train" else config.test_batch_size
        if config.sampler == "device":
            from utils.data.device_sampler import DeviceTaskLoader
            loaders[split] = DeviceTaskLoader(ds, batch, device)
            continue
        if config.cache_images:
            from utils.data.image_cache import with_image_cache
            # the new dataset re-seeds the splitter from OS entropy: tie it to --seed again
            ds = follow_global_numpy_rng(with_image_cache(ds))
        loaders[split] = task_loader(ds, batch, config.num_workers, device.type == "cuda")
    return loaders
