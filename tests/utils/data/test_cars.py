"""Stanford Cars dataset (utils/data/cars.py) on fabricated data: nothing is downloaded."""
import io
import json
import os
import tarfile

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import Compose, Resize, ToTensor

from utils.data import cars
from utils.data.torchmeta_compat import BatchMetaDataLoader, Categorical, ClassSplitter

SLASH_CLASS = "Ram C/V Cargo Van Minivan 2012"  # a "/" in an hdf5 name makes a sub-group


def _jpeg(size=(12, 10), seed=0):
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="JPEG")
    return out.getvalue()


def _small_splits(n=6):
    splits = {split: cars.cars_split_classes(split)[:n] for split in cars.SPLITS}
    splits["val"][-1] = SLASH_CLASS
    return splits


def _write_processed(root, splits, images_per_class=8):
    folder = os.path.join(root, "cars")
    os.makedirs(folder, exist_ok=True)
    for split, names in splits.items():
        with h5py.File(os.path.join(folder, f"{split}_data.hdf5"), "w") as f:
            group = f.create_group("datasets")
            for c, name in enumerate(names):
                data = group.create_dataset(name, (images_per_class,),
                                            dtype=h5py.special_dtype(vlen=np.uint8))
                for i in range(images_per_class):
                    data[i] = np.frombuffer(_jpeg(seed=100 * c + i), dtype=np.uint8)
        with open(os.path.join(folder, f"{split}_labels.json"), "w") as f:
            json.dump(names, f)


def test_split_assets_are_98_49_49_disjoint_classes():
    splits = {split: cars.cars_split_classes(split) for split in cars.SPLITS}
    assert [len(splits[s]) for s in cars.SPLITS] == [98, 49, 49]
    union = set().union(*splits.values())
    assert len(union) == 196  # no duplicates, no overlap between splits
    assert SLASH_CLASS in splits["val"] and "AM General Hummer SUV 2000" in splits["train"]


def test_cars_few_shot_batches(tmp_path):
    splits = _small_splits()
    _write_processed(str(tmp_path), splits)
    dataset = cars.Cars(str(tmp_path), num_classes_per_task=5, meta_train=True,
                        transform=Compose([Resize((84, 84)), ToTensor()]),
                        target_transform=Categorical(5),
                        dataset_transform=ClassSplitter(shuffle=True, num_train_per_class=1,
                                                        num_test_per_class=2))
    loader = BatchMetaDataLoader(dataset, batch_size=2, shuffle=True, num_workers=0)
    batch = next(iter(loader))
    train_x, train_y = batch["train"]
    test_x, test_y = batch["test"]
    assert train_x.shape == (2, 5, 3, 84, 84) and test_x.shape == (2, 10, 3, 84, 84)
    assert train_x.dtype == torch.float32 and 0.0 <= train_x.min() <= train_x.max() <= 1.0
    for targets in (train_y, test_y):
        assert sorted(targets[0].unique().tolist()) == [0, 1, 2, 3, 4]
    dataset.dataset.close()


def test_items_are_rgb_images_with_class_names(tmp_path):
    splits = _small_splits()
    _write_processed(str(tmp_path), splits)
    val = cars.Cars(str(tmp_path), num_classes_per_task=5, meta_split="val")
    assert len(val.dataset) == 6 and val.dataset.labels == splits["val"]
    cls = val.dataset[5]  # the class whose name holds a "/"
    image, target = cls[7]
    assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (12, 10)
    assert len(cls) == 8 and cls.label == SLASH_CLASS
    assert target == (SLASH_CLASS, None)  # torchmeta's FixedCategory: (name, augmentation)
    task = val[(1, 2, 3, 4, 5)]
    assert len(task) == 5 * 8 and task[len(task) - 1][1][0] == SLASH_CLASS
    val.dataset.close()


def test_missing_data_error_names_folder_and_files(tmp_path):
    with pytest.raises(RuntimeError) as info:
        cars.Cars(str(tmp_path), num_classes_per_task=5, meta_test=True)
    message = str(info.value)
    assert os.path.join(str(tmp_path), "cars") in message
    for name in ("train_data.hdf5", "train_labels.json", "test_data.hdf5", "cars_train.tgz",
                 "car_devkit.tgz"):
        assert name in message
    paths = cars.cars_processed_files(str(tmp_path))
    assert len(paths) == 6 and paths[0] == os.path.join(str(tmp_path), "cars", "train_data.hdf5")


def _fabricate_raw(folder, classes, per_class=3):
    """cars_train.tgz holding tiny JPEGs + the matching annotations (fname, class, bbox)."""
    os.makedirs(folder, exist_ok=True)
    annotations, n = [], 0
    with tarfile.open(os.path.join(folder, "cars_train.tgz"), "w:gz") as tar:
        for c, name in enumerate(classes):
            for _ in range(per_class):
                n += 1
                fname, data = f"{n:05d}.jpg", _jpeg(size=(16 + n % 5, 12), seed=n)
                info = tarfile.TarInfo(f"cars_train/{fname}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                annotations.append(("cars_train", fname, name, (2, 3, 11, 9)))  # 10x7 crop
    return annotations


def test_process_from_local_archive(tmp_path, monkeypatch):
    folder = str(tmp_path / "cars")
    splits = _small_splits(4)
    annotations = _fabricate_raw(folder, [c for names in splits.values() for c in names])
    monkeypatch.setattr(cars, "read_cars_annotations", lambda folder, use_test_images: annotations)
    cars.process_cars(folder, split_classes=splits)
    with open(os.path.join(folder, "val_labels.json")) as f:
        assert json.load(f) == splits["val"]
    dataset = cars.Cars(str(tmp_path), num_classes_per_task=2, meta_split="val")
    image, target = dataset.dataset[3][2]
    assert image.size == (10, 7) and target == (SLASH_CLASS, None)
    assert not any(name.endswith(".part") for name in os.listdir(folder))
    dataset.dataset.close()


def test_download_builds_from_placed_archives_without_network(tmp_path, monkeypatch):
    scipy_io = pytest.importorskip("scipy.io")
    import torchvision.datasets.utils as tv_utils

    def no_network(*args, **kwargs):
        raise AssertionError("download attempted although the archives are present")

    monkeypatch.setattr(tv_utils, "download_url", no_network)
    folder = str(tmp_path / "cars")
    class_names = [c for s in cars.SPLITS for c in cars.cars_split_classes(s)][::-1]
    annotations = _fabricate_raw(folder, class_names, per_class=1)
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
    records = np.empty((1, len(annotations)), dtype=[(f, "O") for f in fields])
    for i, (_, fname, name, box) in enumerate(annotations):
        records[0, i] = (*box, class_names.index(name) + 1, fname)
    meta = np.empty((1, len(class_names)), dtype=object)
    meta[0, :] = class_names
    with tarfile.open(os.path.join(folder, "car_devkit.tgz"), "w:gz") as tar:
        for name, content in (("cars_meta.mat", {"class_names": meta}),
                              ("cars_train_annos.mat", {"annotations": records})):
            buffer = io.BytesIO()
            scipy_io.savemat(buffer, content)
            info = tarfile.TarInfo(f"devkit/{name}")
            info.size = buffer.tell()
            buffer.seek(0)
            tar.addfile(info, buffer)
    dataset = cars.Cars(str(tmp_path), num_classes_per_task=5, meta_test=True, download=True)
    assert dataset.dataset.labels == cars.cars_split_classes("test")
    image, target = dataset.dataset[0][0]
    assert image.size == (10, 7) and target[0] == cars.cars_split_classes("test")[0]
    dataset.dataset.close()
