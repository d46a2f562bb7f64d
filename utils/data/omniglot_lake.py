"""Omniglot with Lake et al.'s split (``--omniglot_split lake``).

Lake, Salakhutdinov & Tenenbaum (2015) meta-train on the 30 *background* alphabets
(964 characters) and test on the 20 *evaluation* alphabets (659 characters). torchmeta
reads both sets (``use_vinyals_split=False``: ``train_labels.json``, ``test_labels.json``,
written by its Omniglot download beside ``data.hdf5``) but has no validation split for
them. Here meta-validation holds out whole background alphabets, as the test split
holds out whole alphabets: every sixth of the 30 background alphabets in alphabetical
order (``VALIDATION_ALPHABETS``, 158 characters), leaving 25 alphabets (806 characters)
for meta-training. Rotated copies are extra classes in meta-train and meta-val, as for
the Vinyals split.
"""
import json

from utils.data.torchmeta_compat import CombinationMetaDataset, OmniglotClassDataset

VALIDATION_ALPHABETS = ("Balinese", "Early_Aramaic", "Inuktitut_(Canadian_Aboriginal_Syllabics)",
                        "Mkhedruli_(Georgian)", "Tifinagh")


def lake_split(labels, split):
    """The characters of ``split`` among torchmeta's background (train/val) or evaluation
    (test) labels [(set, alphabet, character)]."""
    if split == "test":
        return list(labels)
    held_out = split == "val"
    return [label for label in labels if (label[1] in VALIDATION_ALPHABETS) == held_out]


class LakeOmniglotClassDataset(OmniglotClassDataset):
    """torchmeta's Omniglot class dataset with Lake's split; ``meta_split`` in train/val/test."""

    def __init__(self, root, meta_split, transform=None, class_augmentations=None,
                 download=False):
        self.lake_split = meta_split
        # torchmeta refuses a validation split without Vinyals': read the background set.
        super().__init__(root, meta_split="test" if meta_split == "test" else "train",
                         use_vinyals_split=False, transform=transform,
                         class_augmentations=class_augmentations, download=download)
        self._meta_split = meta_split

    @property
    def labels(self):
        if self._labels is None:
            with open(self.split_filename_labels) as f:
                self._labels = lake_split(json.load(f), self.lake_split)
        return self._labels


class LakeOmniglot(CombinationMetaDataset):
    """N-way tasks of Omniglot characters on Lake's split (see the module docstring)."""

    def __init__(self, root, num_classes_per_task=None, meta_split="train", transform=None,
                 target_transform=None, dataset_transform=None, class_augmentations=None,
                 download=False):
        dataset = LakeOmniglotClassDataset(root, meta_split, transform=transform,
                                           class_augmentations=class_augmentations,
                                           download=download)
        super().__init__(dataset, num_classes_per_task, target_transform=target_transform,
                         dataset_transform=dataset_transform)
