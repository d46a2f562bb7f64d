"""prepare_data.py: MiniImageNet / tieredImageNet built from a fabricated ILSVRC-2012
training folder (tests/fake_imagenet.py) with reduced split files, then read by
torchmeta and trained on by train.py; tar input, refusals, and a build killed mid-write
and resumed, compared with an uninterrupted one.
"""
import io
import json
import os

import h5py
import numpy as np
import pytest
from PIL import Image

from tests.conftest import tiny_run_flags
from tests.fake_imagenet import (
    MINI_NUMBERS,
    shipped_synsets,
    sorted_files,
    write_imagenet,
    write_split_files,
)
from utils.data.imagenet_source import PrepareError, convert
from utils.data.imagenet_splits import SPLITS
from utils.data.loaders import meta_dataset
from utils.data.prepare import WORK, build

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    """{name: path}: ImageNet folders (mini, mini as .tar files, tiered) and split files."""
    root = tmp_path_factory.mktemp("imagenet")
    mini, tiered = shipped_synsets("miniimagenet"), shipped_synsets("tieredimagenet")
    return {"mini": write_imagenet(root / "folders", mini),
            "mini_tar": write_imagenet(root / "tars", mini, as_tar=True),
            "tiered": write_imagenet(root / "tiered", tiered, seed=1),
            "mini_splits": write_split_files(root / "mini_splits", "miniimagenet", mini),
            "tiered_splits": write_split_files(root / "tiered_splits", "tieredimagenet", tiered),
            "synsets": {"mini": mini, "tiered": tiered}}


def prepare_argv(dataset, imagenet, data, splits, workers=0):
    return [dataset, "--imagenet", imagenet, "--data_folder", data, "--split_files", splits,
            "--workers", str(workers)]


def read(folder):
    """{split: (labels, {class: array or [png bytes]}, {class: attrs})} of a built folder."""
    out = {}
    for split in SPLITS:
        labels = json.loads((folder / f"{split}_labels.json").read_text())
        with h5py.File(folder / f"{split}_data.hdf5", "r") as f:
            group = f["datasets"]
            data = {k: (group[k][()] if group[k].dtype == np.uint8
                        else [bytes(x) for x in group[k][()]]) for k in group}
            attrs = {k: dict(group[k].attrs) for k in group}
        out[split] = (labels, data, attrs)
    return out


def test_miniimagenet_is_built_and_trains(fake, tmp_path, zygote):
    data = tmp_path / "data"
    result = zygote.run("prepare_data.py", prepare_argv("miniimagenet", fake["mini"], data,
                                                        fake["mini_splits"], workers=2))
    assert result.code == 0, result.stderr
    for split in SPLITS:
        assert f"  {split}: 5 classes, {5 * len(MINI_NUMBERS)} images" in result.stdout
    assert "Counts match the split" in result.stdout
    built = read(data / "miniimagenet")
    for split, rows in fake["synsets"]["mini"].items():
        labels, arrays, attrs = built[split]
        assert labels == sorted(s for s, _ in rows)            # torchmeta's sorted labels
        for synset, _ in rows:       # the numbered images, in numeric id order, 84x84 RGB
            files = [sorted_files(synset)[n - 1] for n in MINI_NUMBERS]
            with_bytes = [(f, (fake["mini"] / synset / f).read_bytes()) for f in files]
            expected = np.stack([convert(item) for item in with_bytes])
            assert arrays[synset].shape == (len(MINI_NUMBERS), 84, 84, 3)
            assert np.array_equal(arrays[synset], expected)
            assert attrs[synset] == {}
    assert not (data / "miniimagenet" / WORK).exists()

    run = zygote.run("train.py", tiny_run_flags(tmp_path / "run", "MiniImagenet", data)
                     + ["--epochs", "1"])
    assert run.code == 0, run.stderr
    assert json.loads((tmp_path / "run" / "results.json").read_text())["best_epoch"] == 0


def test_per_class_tar_files_give_the_same_dataset(fake, tmp_path):
    build("miniimagenet", str(fake["mini"]), str(tmp_path / "a"), 0, str(fake["mini_splits"]),
          progress=False)
    report = build("miniimagenet", str(fake["mini_tar"]), str(tmp_path / "b"), 0,
                   str(fake["mini_splits"]), progress=False)
    assert report["problems"] == []
    a, b = read(tmp_path / "a" / "miniimagenet"), read(tmp_path / "b" / "miniimagenet")
    for split in SPLITS:
        assert a[split][0] == b[split][0]
        assert all(np.array_equal(a[split][1][k], b[split][1][k]) for k in a[split][1])


def test_tieredimagenet_is_built_as_torchmeta_reads_it(fake, tmp_path):
    report = build("tieredimagenet", str(fake["tiered"]), str(tmp_path), 2,
                   str(fake["tiered_splits"]), progress=False)
    assert report["problems"] == [] and report["converted"] == 3 * 5 * 7
    built = read(tmp_path / "tieredimagenet")
    for split, rows in fake["synsets"]["tiered"].items():
        labels, pngs, attrs = built[split]
        assert labels == [s for s, _ in rows]                    # the split file's order
        for synset, category in rows:
            assert attrs[synset] == {"label_general": category, "label_specific": synset}
            files = sorted_files(synset)
            assert len(pngs[synset]) == len(files)               # every image of the class
            decoded = np.asarray(Image.open(io.BytesIO(pngs[synset][2])))
            source = (fake["tiered"] / synset / files[2]).read_bytes()
            assert np.array_equal(decoded, convert((files[2], source)))
    task = meta_dataset("TieredImagenet", "train", str(tmp_path), 5, 1, 2)[tuple(range(5))]
    assert task["train"][0][0].shape == (3, 84, 84)

    for total, ok in ((3 * 5 * 7, True), (999, False)):      # checked against counts.json
        splits = write_split_files(tmp_path / f"splits{total}", "tieredimagenet",
                                   fake["synsets"]["tiered"], total_images=total)
        report = build("tieredimagenet", str(fake["tiered"]), str(tmp_path), 0, str(splits),
                       progress=False)
        assert (report["problems"] == []) == ok, report["problems"]
    strict = tmp_path / "strict"            # a class smaller than the split's minimum
    write_split_files(strict, "tieredimagenet", fake["synsets"]["tiered"])
    (strict / "counts.json").write_text(json.dumps({"min_images_per_class": 8}))
    with pytest.raises(PrepareError, match=r"15 classes have too few images.* has 7 images, "
                                           r"needs 8"):
        build("tieredimagenet", str(fake["tiered"]), str(tmp_path / "other"), 0, str(strict),
              progress=False)


def test_missing_and_short_classes_are_refused_before_any_work(fake, tmp_path, zygote):
    broken = write_imagenet(tmp_path / "imagenet", fake["synsets"]["mini"])
    gone, short = fake["synsets"]["mini"]["val"][1][0], fake["synsets"]["mini"]["test"][3][0]
    for name in os.listdir(broken / gone):
        os.remove(broken / gone / name)
    os.rmdir(broken / gone)
    os.remove(broken / short / sorted_files(short)[-1])     # image number 7 is needed
    result = zygote.run("prepare_data.py", prepare_argv("miniimagenet", broken,
                                                        tmp_path / "data", fake["mini_splits"]))
    assert result.code == 2
    missing = f"1 class folders (or .tar files) are missing: {broken / gone}.tar (val)"
    assert missing in result.stderr
    assert f"{broken / short} has 6 images, needs 7" in result.stderr
    assert "Traceback" not in result.stderr
    out = tmp_path / "data" / "miniimagenet"
    assert not out.exists() or not [n for n in os.listdir(out) if n.endswith((".hdf5", ".json"))]


KILLER = """import os, runpy, signal, sys
sys.path.insert(0, {repo!r})
real, calls = os.replace, [0]
def replace(src, dst):      # SIGKILL once the third class file is written, before its rename
    if dst.endswith(".h5"):
        calls[0] += 1
        if calls[0] == 3:
            os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst)
os.replace = replace
sys.argv[0] = "prepare_data.py"
runpy.run_path({script!r}, run_name="__main__")
"""


def test_killed_build_resumes_to_the_same_files(fake, tmp_path, zygote):
    killer = tmp_path / "killer.py"
    killer.write_text(KILLER.format(repo=REPO, script=os.path.join(REPO, "prepare_data.py")))
    data = tmp_path / "data"
    argv = prepare_argv("miniimagenet", fake["mini"], data, fake["mini_splits"])
    assert zygote.run(str(killer), argv).code == -9
    folder = data / "miniimagenet"
    assert not [n for n in os.listdir(folder) if n.endswith((".hdf5", ".json"))]
    work = os.listdir(folder / WORK / "train")
    assert len([n for n in work if n.endswith(".h5")]) == 2
    assert len([n for n in work if n.startswith(".tmp-")]) == 1     # the killed write

    resumed = zygote.run("prepare_data.py", argv)
    assert resumed.code == 0, resumed.stderr
    assert f"Converted {(15 - 2) * len(MINI_NUMBERS)} images" in resumed.stdout
    assert not (folder / WORK).exists() and not [n for n in os.listdir(folder)
                                                 if n.startswith(".tmp-")]
    build("miniimagenet", str(fake["mini"]), str(tmp_path / "whole"), 0,
          str(fake["mini_splits"]), progress=False)
    once, twice = read(tmp_path / "whole" / "miniimagenet"), read(folder)
    for split in SPLITS:
        assert once[split][0] == twice[split][0]
        assert all(np.array_equal(once[split][1][k], twice[split][1][k]) for k in once[split][1])

    again = zygote.run("prepare_data.py", argv)         # a finished build is left alone
    assert again.code == 0 and "Converted" not in again.stdout
