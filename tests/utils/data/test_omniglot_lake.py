"""Omniglot on Lake et al.'s split (``--omniglot_split lake``, utils/data/omniglot_lake.py).

Counts come from the real Omniglot (../shared/data; skipped when absent): its
background / evaluation label files define the expected numbers independently of the
split code.
"""
import json
from pathlib import Path

import pytest

from utils import cli
from utils.data.loaders import DataUnavailable, meta_dataset
from utils.data.omniglot_lake import VALIDATION_ALPHABETS, lake_split

REPO = Path(__file__).resolve().parents[3]
LAKE_CONFIGS = sorted((REPO / "configs" / "omniglot").glob("omniglot_lake_*.json"))


def characters(root, split):
    ds = meta_dataset("Omniglot", split, str(root), 20, 1, 15, omniglot_split="lake")
    return ds.dataset, {tuple(label) for label in ds.dataset.labels}


def test_lake_split_holds_out_whole_alphabets(omniglot_root):
    files = omniglot_root / "omniglot"
    background = {tuple(x) for x in json.loads((files / "train_labels.json").read_text())}
    evaluation = {tuple(x) for x in json.loads((files / "test_labels.json").read_text())}
    assert len({a for _, a, _ in background}) == 30 and len({a for _, a, _ in evaluation}) == 20
    (train_ds, train), (val_ds, val), (test_ds, test) = (
        characters(omniglot_root, s) for s in ("train", "val", "test"))
    assert train | val == background and not train & val
    assert test == evaluation
    assert {a for _, a, _ in val} == set(VALIDATION_ALPHABETS)
    assert sorted({a for _, a, _ in background})[5::6] == list(VALIDATION_ALPHABETS)
    assert len({a for _, a, _ in train}) == 25 and not {a for _, a, _ in train} & {
        a for _, a, _ in val}
    assert (len(train), len(val), len(test)) == (806, 158, 659)
    # rotated copies (90/180/270) are extra classes in meta-train and meta-val only
    assert (len(train_ds), len(val_ds), len(test_ds)) == (4 * 806, 4 * 158, 659)
    image, _ = test_ds[0][0]
    assert image.shape == (1, 28, 28)


def test_lake_split_of_labels():
    alphabets = ["Aaa", *VALIDATION_ALPHABETS, "Zzz"]
    labels = [("images_background", a, f"character{c:02d}") for a in alphabets for c in (1, 2)]
    val, train = lake_split(labels, "val"), lake_split(labels, "train")
    assert {a for _, a, _ in val} == set(VALIDATION_ALPHABETS) and len(val) == 10
    assert {a for _, a, _ in train} == {"Aaa", "Zzz"} and len(train) == 4
    assert lake_split(labels, "test") == labels


def test_missing_lake_files_are_named(tmp_path):
    (tmp_path / "omniglot").mkdir()
    with pytest.raises(DataUnavailable, match=r"train_labels\.json"):
        meta_dataset("Omniglot", "val", str(tmp_path), 5, 1, 1, omniglot_split="lake")


@pytest.mark.parametrize("path", LAKE_CONFIGS, ids=lambda p: p.stem)
def test_lake_configs(path):
    doc = json.loads(path.read_text())
    assert doc["_source"] and doc["_notes"]
    args = cli.parse_args(["--config", str(path), "--dont_use_cuda"])
    assert (args.dataset, args.omniglot_split, args.num_ways, args.num_shots_train) == (
        "Omniglot", "lake", 20, 1)
    assert cli.resolve(args).data.omniglot_split == "lake"


def test_lake_configs_cover_maml_and_sparse_maml():
    assert {json.loads(p.read_text())["method"] for p in LAKE_CONFIGS} >= {"maml", "sparse-maml"}


def test_lake_needs_omniglot():
    with pytest.raises(SystemExit) as info:
        cli.parse_args(["--dataset", "Strokes", "--omniglot_split", "lake"])
    assert info.value.code == 2
