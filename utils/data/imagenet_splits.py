"""The ImageNet few-shot splits that ``prepare_data.py`` builds: which ILSVRC-2012
training images make up MiniImageNet (Ravi & Larochelle) and tieredImageNet (Ren et al.).

The lists ship in ``utils/data/assets/splits/`` (origin and licence in its README):

- MiniImageNet: ``miniimagenet_ravi/{split}.json``, {synset: [image numbers]}, where
  number i (1-based) is the i-th training image of the synset, its files
  ``<synset>_<id>.JPEG`` sorted by the number ``<id>``. 64 / 16 / 20 classes x 600.
- tieredImageNet: ``tieredimagenet_ren/{split}.csv``, rows ``<synset>,<category synset>``;
  every training image of a class belongs to it. 351 / 97 / 160 classes. The optional
  ``counts.json`` holds the published total of images and the smallest class size, which
  a build is checked against.

Another folder in the same format can stand in for the shipped one (``--split_files``).
"""
import csv
import json
import os
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

SPLITS = ("train", "val", "test")
ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "splits")
FOLDERS = {"miniimagenet": "miniimagenet_ravi", "tieredimagenet": "tieredimagenet_ren"}


class SplitFileError(ValueError):
    """A split file is missing or not in the expected format."""


@dataclass(frozen=True)
class ClassPlan:
    """One class to build: its synset, the image numbers it takes (1-based, in order;
    None: every image) and its high-level category (tieredImageNet, else None)."""

    synset: str
    numbers: Optional[Tuple[int, ...]] = None
    category: Optional[str] = None

    def min_images(self, floor=1):
        """The fewest training images the synset must have for this class."""
        return max(self.numbers) if self.numbers else floor


@dataclass(frozen=True)
class SplitPlan:
    """Every class of a dataset, per meta-split, and what a finished build must hold."""

    dataset: str                            # "miniimagenet" or "tieredimagenet"
    classes: Dict[str, Tuple[ClassPlan, ...]]
    total_images: Optional[int] = None      # all splits together (tieredImageNet)
    min_images_per_class: int = 1           # every image of a class (tieredImageNet)

    def expected_images(self, split):
        """Images of ``split`` when each class lists its numbers, else None."""
        plans = self.classes[split]
        if any(p.numbers is None for p in plans):
            return None
        return sum(len(p.numbers) for p in plans)


def _read(path):
    if not os.path.isfile(path):
        raise SplitFileError(f"split file {path} not found")
    with open(path, newline="") as f:
        return json.load(f) if path.endswith(".json") else list(csv.reader(f))


def _mini_split(path):
    table = _read(path)
    if not isinstance(table, dict) or not all(
            isinstance(v, list) and v and all(isinstance(i, int) and i >= 1 for i in v)
            for v in table.values()):
        raise SplitFileError(f"{path}: expected {{synset: [image numbers >= 1]}}")
    return tuple(ClassPlan(synset, tuple(numbers)) for synset, numbers in table.items())


def _tiered_split(path):
    rows = [r for r in _read(path) if r]
    if not rows or any(len(r) != 2 for r in rows):
        raise SplitFileError(f"{path}: expected rows '<synset>,<category synset>'")
    return tuple(ClassPlan(synset, None, category) for synset, category in rows)


def load_split_plan(dataset, folder=None):
    """The ``SplitPlan`` of ``dataset`` from ``folder`` (default: the shipped lists)."""
    folder = folder or os.path.join(ASSETS, FOLDERS[dataset])
    if dataset == "miniimagenet":
        classes = {s: _mini_split(os.path.join(folder, f"{s}.json")) for s in SPLITS}
        return SplitPlan(dataset, classes)
    classes = {s: _tiered_split(os.path.join(folder, f"{s}.csv")) for s in SPLITS}
    counts = os.path.join(folder, "counts.json")
    counts = _read(counts) if os.path.isfile(counts) else {}
    return SplitPlan(dataset, classes, counts.get("total_images"),
                     counts.get("min_images_per_class", 1))
