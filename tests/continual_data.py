"""Fabricated data in the real on-disk formats of the continual benchmarks: MNIST /
FashionMNIST idx files (torchvision's ``<root>/<Name>/raw``) and torchmeta's processed
Omniglot (``data.hdf5`` + Vinyals label files). Each class has its own pattern, so a
learner can beat chance."""
import gzip
import json
from pathlib import Path

import numpy as np

IDX = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
       "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def idx_bytes(array):
    """The idx format: 0, 0, type (0x08 = uint8), ndim, big-endian int32 dims, data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">i4").tobytes()
    return header + array.tobytes()


def class_images(rng, num_classes, per_class, side):
    """uint8 [num_classes * per_class, side, side] and labels: a fixed random pattern per
    class plus noise."""
    patterns = rng.random((num_classes, side, side)) > 0.7
    images, labels = [], []
    for c in range(num_classes):
        noise = rng.random((per_class, side, side)) < 0.05
        images.append(((patterns[c] ^ noise) * 255).astype(np.uint8))
        labels += [c] * per_class
    return np.concatenate(images), np.array(labels, dtype=np.uint8)


def write_fake_mnist(root, name="MNIST", per_class=(20, 10), seed=0, gz=False):
    """Write <root>/<name>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]; return
    {"train": (images, labels), "test": ...}."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / name / "raw"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, n in zip(("train", "test"), per_class, strict=True):
        images, labels = class_images(rng, 10, n, 28)
        for fname, array in zip(IDX[split], (images, labels), strict=True):
            data = idx_bytes(array)
            if gz:
                (folder / (fname + ".gz")).write_bytes(gzip.compress(data))
            else:
                (folder / fname).write_bytes(data)
        written[split] = (images, labels)
    return written


def write_fake_omniglot(root, classes=(30, 6, 6), seed=0):
    """Write <root>/omniglot/data.hdf5 and vinyals_{train,val,test}_labels.json with
    ``classes`` characters per split, 20 images of 105x105 each; returns the root."""
    import h5py

    rng = np.random.default_rng(seed)
    folder = Path(root) / "omniglot"
    folder.mkdir(parents=True, exist_ok=True)
    with h5py.File(folder / "data.hdf5", "w") as f:
        for split, count in zip(("train", "val", "test"), classes, strict=True):
            group = "images_background" if split != "test" else "images_evaluation"
            alphabet = f"Alphabet_{split}"
            images, _ = class_images(rng, count, 20, 105)
            labels = []
            for c in range(count):
                name = f"character{c + 1:02d}"
                f.create_dataset(f"{group}/{alphabet}/{name}", data=images[20 * c:20 * (c + 1)])
                labels.append([group, alphabet, name])
            (folder / f"vinyals_{split}_labels.json").write_text(json.dumps(labels))
    return Path(root)
