"""A fabricated ILSVRC-2012 training folder and reduced split files, for prepare_data.py.

Real synsets from the shipped split lists, a few tiny JPEGs each, with ids that sort
differently as numbers and as strings (so the numeric order the split lists use is
tested). Each class has its own mean colour, so a model trained on the built dataset
can beat chance.
"""
import csv
import io
import json
import os
import tarfile

import numpy as np
from PIL import Image

from utils.data.imagenet_splits import ASSETS, SPLITS

CLASSES_PER_SPLIT = 5
IMAGES_PER_CLASS = 7
IDS = (3, 21, 100, 250, 1001, 7, 40)      # file ids; numeric order differs from string order
MINI_NUMBERS = (1, 2, 4, 5, 6, 7)         # 6 of the 7 images, 1-based in id order


def _jpeg(colour, rng, size):
    noise = rng.normal(0, 20, size=(size[1], size[0], 3))
    out = io.BytesIO()
    Image.fromarray(np.clip(colour + noise, 0, 255).astype(np.uint8)).save(out, "JPEG")
    return out.getvalue()


def shipped_synsets(dataset):
    """{split: [(synset, category or None)]}: the first classes of each shipped split."""
    chosen = {}
    for split in SPLITS:
        if dataset == "miniimagenet":
            with open(os.path.join(ASSETS, "miniimagenet_ravi", f"{split}.json")) as f:
                rows = [(s, None) for s in json.load(f)]
        else:
            with open(os.path.join(ASSETS, "tieredimagenet_ren", f"{split}.csv")) as f:
                rows = [tuple(r) for r in csv.reader(f) if r]
        chosen[split] = rows[:CLASSES_PER_SPLIT]
    return chosen


def write_imagenet(root, synsets, as_tar=False, seed=0):
    """Write root/<synset>/<synset>_<id>.JPEG (or root/<synset>.tar) for every synset of
    ``synsets`` ({split: [(synset, category)]}); returns root."""
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    for rows in synsets.values():
        for synset, _ in rows:
            colour = rng.integers(30, 226, size=3)
            files = {f"{synset}_{i}.JPEG": _jpeg(colour, rng, (24 + i % 17, 20 + i % 11))
                     for i in IDS}
            if as_tar:
                with tarfile.open(os.path.join(root, f"{synset}.tar"), "w") as tar:
                    for name, data in files.items():
                        info = tarfile.TarInfo(name)
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))
                continue
            os.makedirs(os.path.join(root, synset), exist_ok=True)
            for name, data in files.items():
                with open(os.path.join(root, synset, name), "wb") as f:
                    f.write(data)
    return root


def write_split_files(folder, dataset, synsets, total_images=None):
    """Split files for ``synsets`` in the shipped format (``--split_files folder``)."""
    os.makedirs(folder, exist_ok=True)
    for split, rows in synsets.items():
        if dataset == "miniimagenet":
            with open(os.path.join(folder, f"{split}.json"), "w") as f:
                json.dump({s: list(MINI_NUMBERS) for s, _ in rows}, f)
        else:
            with open(os.path.join(folder, f"{split}.csv"), "w") as f:
                f.writelines(f"{s},{c}\n" for s, c in rows)
    if total_images is not None:
        with open(os.path.join(folder, "counts.json"), "w") as f:
            json.dump({"total_images": total_images}, f)
    return folder


def sorted_files(synset):
    """The fabricated file names of a synset in numeric id order."""
    return [f"{synset}_{i}.JPEG" for i in sorted(IDS)]
