"""Shared test fixtures: a fabricated MiniImageNet, the real Omniglot, tiny-run flags.

The fabricated MiniImageNet is written in exactly the processed layout that
torchmeta's ``MiniImagenetClassDataset`` reads (``<split>_data.hdf5`` with one uint8
[n, 84, 84, 3] dataset per class in the group ``datasets``, and ``<split>_labels.json``
listing the class names), so the real loading code runs without the real data.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from maml.factory import build_learner
from utils import cli

FAKE_CLASSES_PER_SPLIT = 6
FAKE_IMAGES_PER_CLASS = 20
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write_fake_miniimagenet(root, classes_per_split=FAKE_CLASSES_PER_SPLIT,
                            images_per_class=FAKE_IMAGES_PER_CLASS, seed=0):
    """Write <root>/miniimagenet/{split}_data.hdf5 and {split}_labels.json; return root."""
    import h5py

    rng = np.random.default_rng(seed)
    folder = Path(root) / "miniimagenet"
    folder.mkdir(parents=True, exist_ok=True)
    for s, split in enumerate(("train", "val", "test")):
        names = [f"n{s}{c:07d}" for c in range(classes_per_split)]
        with h5py.File(folder / f"{split}_data.hdf5", "w") as f:
            group = f.create_group("datasets")
            for name in names:
                # Each class has its own mean colour, so a classifier can beat chance.
                colour = rng.integers(30, 226, size=3)
                noise = rng.normal(0, 25, size=(images_per_class, 84, 84, 3))
                images = np.clip(colour + noise, 0, 255).astype(np.uint8)
                group.create_dataset(name, data=images)
        (folder / f"{split}_labels.json").write_text(json.dumps(names))
    return Path(root)


@pytest.fixture(scope="session")
def fake_miniimagenet(tmp_path_factory):
    """Root folder (--data_folder) of a fabricated 6-class-per-split MiniImageNet."""
    return write_fake_miniimagenet(tmp_path_factory.mktemp("fake_data"))


@pytest.fixture
def omniglot_root():
    """Root of the real Omniglot beside the repository (../shared/data), else skip."""
    if not (SHARED_DATA / "omniglot" / "data.hdf5").is_file():
        pytest.skip(f"real Omniglot not found at {SHARED_DATA / 'omniglot' / 'data.hdf5'}")
    return SHARED_DATA


def tiny_run_flags(out_dir, dataset="Strokes", data_folder=None):
    """Flags of a seconds-long CPU run: 2 epochs x 2 batches, 1 inner step, 8 channels,
    in the precision and layout that ``--amp auto`` picks for this CPU."""
    flags = ["--dataset", dataset, "--hidden_size", "8", "--num_shots_train", "1",
             "--num_shots_test", "2", "--gradient_steps", "1", "--gradient_steps_test", "1",
             "--epochs", "2", "--batches_train", "2", "--batches_val", "2",
             "--batches_test", "2", "--val_after", "1", "--num_workers", "0",
             "--amp", "auto", "--dont_use_cuda", "--seed", "0", "--out_dir", str(out_dir)]
    if data_folder is not None:
        flags += ["--data_folder", str(data_folder)]
    return flags


@pytest.fixture(scope="session")
def quick_args():
    """``quick_args(out_dir, dataset="Strokes", data_folder=None)`` -> tiny-run flag list."""
    return tiny_run_flags


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tiny CPU models on one thread (faster than two busy threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def float64():
    """float64 as torch's default dtype for one test (exact-equivalence checks)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def learner_for(args):
    """The MetaLearner of parsed train.py flags (``cli.parse_args``), from torch's RNG."""
    return build_learner(cli.learner_config(args))


def learner_from_flags(flags, seed=0):
    """A MetaLearner for train.py flags, its parameters drawn after ``torch.manual_seed``."""
    torch.manual_seed(seed)
    return build_learner(cli.resolve(cli.parse_args(list(flags))).learner)


@pytest.fixture(scope="session")
def zygote(tmp_path_factory):
    """Runs the entry scripts as programs (``tests/scripts.py``), one zygote per session."""
    from tests.scripts import Zygote
    with Zygote(tmp_path_factory.mktemp("zygote")) as z:
        yield z
