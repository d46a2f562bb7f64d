"""Stanford Cars (CARS-196) as a torchmeta few-shot dataset, laid out like torchmeta's CUB.

Data: Krause et al. (2013), 196 car classes, 16,185 images: 8,144 in ``cars_train.tgz``
(labelled, with bounding boxes, by ``devkit/cars_train_annos.mat`` of ``car_devkit.tgz``) and
8,041 in ``cars_test.tgz`` (labelled by ``cars_test_annos_withlabels.mat``).

Split: as in the original sparse-MAML code (Johswald/learning_where_to_learn), the 196
classes are split 98/49/49 by class name (``utils/data/assets/cars/{train,val,test}.json``), and
only the 8,144 ``cars_train`` images are used, each cropped to its bounding box (they then
resized the crop to 84x84: do that in ``transform``, e.g. ``Resize((84, 84))``).
``process_cars(..., use_test_images=True)`` adds the ``cars_test`` images as well.

Processed layout (what ``Cars`` reads), as torchmeta's CUB::

    <root>/cars/{train,val,test}_data.hdf5    group "datasets", one vlen-uint8 dataset per
                                              class name holding encoded JPEG bytes
    <root>/cars/{train,val,test}_labels.json  the split's class names (list of str)

("Ram C/V Cargo Van Minivan 2012" becomes a sub-group path in hdf5; ``group[name]`` works.)

Offline: the original Stanford URLs (``ARCHIVES``) are no longer served. Place
``car_devkit.tgz`` and ``cars_train.tgz`` (or their extracted folders ``devkit/`` and
``cars_train/``, e.g. from a mirror) in ``<root>/cars/`` and build the processed files with
``Cars(root, ..., download=True)`` (or ``download_cars`` + ``process_cars``): archives
already present are used as they are, nothing is fetched. Reading ``.mat`` files needs scipy.
"""
import io
import json
import os
import tarfile

import h5py
import numpy as np
from PIL import Image

from utils.data.torchmeta_compat import ClassDataset, CombinationMetaDataset
# One class of images: items are (PIL RGB image, class name), decoded from the stored JPEG bytes.
from utils.data.torchmeta_compat import CUBDataset as CarsDataset

FOLDER = "cars"
SPLITS = ("train", "val", "test")
DATA_FILE, LABELS_FILE = "{0}_data.hdf5", "{0}_labels.json"
ASSET_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", FOLDER)
_URL = "https://ai.stanford.edu/~jkrause/"
# key: (file name, url, md5, folder the archive extracts to or None)
ARCHIVES = {
    "devkit": ("car_devkit.tgz", _URL + "cars/car_devkit.tgz",
               "c3b158d763b6e2245038c8ad08e45376", "devkit"),
    "train": ("cars_train.tgz", _URL + "car196/cars_train.tgz",
              "065e5b463ae28d29e77c1b4b166cfe61", "cars_train"),
    "test": ("cars_test.tgz", _URL + "car196/cars_test.tgz",
             "4ce7ebf6a94d07f1952d94dd34c4d501", "cars_test"),
    "test_annos": ("cars_test_annos_withlabels.mat",
                   _URL + "car196/cars_test_annos_withlabels.mat",
                   "b0a2b23655a3edd16d84508592a98d10", None),
}


def cars_split_classes(split):
    """The class names of meta-split ``split`` ('train': 98, 'val': 49, 'test': 49)."""
    with open(os.path.join(ASSET_DIR, "{0}.json".format(split))) as f:
        return json.load(f)


def cars_processed_files(root):
    """Paths of the six processed files ``Cars`` reads under ``<root>/cars``."""
    folder = os.path.join(os.path.expanduser(root), FOLDER)
    return [os.path.join(folder, name.format(split))
            for split in SPLITS for name in (DATA_FILE, LABELS_FILE)]


def _needed(use_test_images):
    return ["devkit", "train"] + (["test", "test_annos"] if use_test_images else [])


def _missing_message(folder):
    names = ", ".join(os.path.basename(p) for p in cars_processed_files(os.path.dirname(folder)))
    archives = " and ".join(ARCHIVES[k][0] for k in _needed(False))
    return ("Stanford Cars not found in {0}: expected the processed files {1} there. Build "
            "them with Cars(..., download=True), which uses {2} (or the extracted folders "
            "devkit/ and cars_train/) when placed in {0}, else tries to download them."
            .format(folder, names, archives))


def download_cars(folder, use_test_images=False):
    """Fetch (with an md5 check) the archives that are not already in ``folder``."""
    from torchvision.datasets.utils import download_url
    for key in _needed(use_test_images):
        name, url, md5, extracted = ARCHIVES[key]
        if os.path.isfile(os.path.join(folder, name)) or (
                extracted and os.path.isdir(os.path.join(folder, extracted))):
            continue  # already placed here (archive or extracted folder): used as it is
        try:
            download_url(url, folder, filename=name, md5=md5)
        except Exception as error:  # dead host, corrupt file, no network
            raise RuntimeError("Downloading {0} failed ({1}). {2}".format(
                url, error, _missing_message(folder))) from error


def _open_mat(folder, name):
    """The .mat file ``name``: anywhere under ``folder``, else inside ``car_devkit.tgz``."""
    for directory, _, files in os.walk(folder):
        if name in files:
            return os.path.join(directory, name)
    tgz = os.path.join(folder, ARCHIVES["devkit"][0])
    if os.path.isfile(tgz):
        with tarfile.open(tgz) as tar:
            member = next((m for m in tar if os.path.basename(m.name) == name), None)
            if member is not None:
                return io.BytesIO(tar.extractfile(member).read())
    raise RuntimeError("{0} not found. {1}".format(name, _missing_message(folder)))


def read_cars_annotations(folder, use_test_images=False):
    """[(image folder, file name, class name, (x1, y1, x2, y2))] from the devkit .mat files."""
    try:
        from scipy.io import loadmat
    except ImportError as error:
        raise RuntimeError("Reading the Stanford Cars .mat files needs scipy") from error
    names = [str(n) for n in loadmat(_open_mat(folder, "cars_meta.mat"),
                                     squeeze_me=True)["class_names"]]
    sources = [("cars_train", "cars_train_annos.mat")]
    if use_test_images:
        sources.append(("cars_test", ARCHIVES["test_annos"][0]))
    annotations = []
    for image_dir, mat in sources:
        for a in np.atleast_1d(loadmat(_open_mat(folder, mat), squeeze_me=True)["annotations"]):
            box = tuple(int(a[k]) for k in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"))
            annotations.append((image_dir, str(a["fname"]), names[int(a["class"]) - 1], box))
    return annotations


def _iter_images(folder, image_dir):
    """(file name, bytes) of every JPEG under ``folder/image_dir/`` or in ``image_dir.tgz``."""
    directory = os.path.join(folder, image_dir)
    if os.path.isdir(directory):  # extracted (mirrors may nest it: cars_train/cars_train/)
        for path, _, files in os.walk(directory):
            for name in sorted(f for f in files if f.lower().endswith(".jpg")):
                with open(os.path.join(path, name), "rb") as f:
                    yield name, f.read()
    elif os.path.isfile(directory + ".tgz"):
        with tarfile.open(directory + ".tgz", "r|*") as tar:  # one pass, nothing extracted
            for member in tar:
                if member.isfile() and member.name.lower().endswith(".jpg"):
                    yield os.path.basename(member.name), tar.extractfile(member).read()
    else:
        raise RuntimeError("{0}(.tgz) not found. {1}".format(directory, _missing_message(folder)))


def _crop_jpeg(data, box, quality=95):
    image = Image.open(io.BytesIO(data)).convert("RGB")
    x1, y1, x2, y2 = box  # 1-based, inclusive (MATLAB)
    image = image.crop((max(x1 - 1, 0), max(y1 - 1, 0),
                        min(x2, image.width), min(y2, image.height)))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def process_cars(folder, use_test_images=False, crop=True, split_classes=None):
    """Build ``{split}_data.hdf5`` / ``{split}_labels.json`` in ``folder`` from the raw files.

    ``crop`` crops each image to its bounding box (re-encoded as JPEG, quality 95); without it
    the original JPEG bytes are stored. ``split_classes`` ({split: [class names]}) overrides the
    98/49/49 split of ``utils/data/assets/cars``.
    """
    splits = split_classes or {split: cars_split_classes(split) for split in SPLITS}
    per_class = {}
    for image_dir, fname, name, box in read_cars_annotations(folder, use_test_images):
        per_class.setdefault(name, []).append((image_dir, fname, box))
    where = {}  # (image dir, file name) -> (split, class name, index, box)
    for split, names in splits.items():
        for name in names:
            if name not in per_class:
                raise RuntimeError("No annotated image of class {0!r} ({1})".format(name, split))
            for i, (image_dir, fname, box) in enumerate(sorted(per_class[name])):
                where[image_dir, fname] = (split, name, i, box)
    vlen = h5py.special_dtype(vlen=np.uint8)
    files = {split: h5py.File(os.path.join(folder, DATA_FILE.format(split) + ".part"), "w")
             for split in splits}
    try:
        groups = {split: f.create_group("datasets") for split, f in files.items()}
        for split, names in splits.items():
            for name in names:
                groups[split].create_dataset(name, (len(per_class[name]),), dtype=vlen)
        todo = set(where)
        for image_dir in sorted({key[0] for key in where}):
            for fname, data in _iter_images(folder, image_dir):
                if (image_dir, fname) not in todo:
                    continue
                split, name, i, box = where[image_dir, fname]
                data = _crop_jpeg(data, box) if crop else data
                groups[split][name][i] = np.frombuffer(data, dtype=np.uint8)
                todo.discard((image_dir, fname))
        if todo:
            raise RuntimeError("{0} annotated images are missing from the archives, e.g. {1}"
                               .format(len(todo), "/".join(sorted(todo)[0])))
    finally:
        for f in files.values():
            f.close()
    for split, names in splits.items():
        path = os.path.join(folder, DATA_FILE.format(split))
        os.replace(path + ".part", path)
        with open(os.path.join(folder, LABELS_FILE.format(split)), "w") as f:
            json.dump(names, f)


class Cars(CombinationMetaDataset):
    """Stanford Cars few-shot dataset (98/49/49 classes); same arguments as torchmeta's CUB."""

    def __init__(self, root, num_classes_per_task=None, meta_train=False, meta_val=False,
                 meta_test=False, meta_split=None, transform=None, target_transform=None,
                 dataset_transform=None, class_augmentations=None, download=False):
        dataset = CarsClassDataset(root, meta_train=meta_train, meta_val=meta_val,
                                   meta_test=meta_test, meta_split=meta_split,
                                   transform=transform, class_augmentations=class_augmentations,
                                   download=download)
        super().__init__(dataset, num_classes_per_task, target_transform=target_transform,
                         dataset_transform=dataset_transform)


class CarsClassDataset(ClassDataset):
    folder = FOLDER

    def __init__(self, root, meta_train=False, meta_val=False, meta_test=False,
                 meta_split=None, transform=None, class_augmentations=None, download=False):
        super().__init__(meta_train=meta_train, meta_val=meta_val, meta_test=meta_test,
                         meta_split=meta_split, class_augmentations=class_augmentations)
        self.root = os.path.join(os.path.expanduser(root), self.folder)
        self.transform = transform
        self.split_filename = os.path.join(self.root, DATA_FILE.format(self.meta_split))
        self.split_filename_labels = os.path.join(self.root, LABELS_FILE.format(self.meta_split))
        self._data_file = self._data = self._labels = None
        if download:
            self.download()
        if not self._check_integrity():
            raise RuntimeError(_missing_message(self.root))
        self._num_classes = len(self.labels)

    def __getitem__(self, index):
        label = self.labels[index % self.num_classes]
        return CarsDataset(index, self.data[label], label,
                           transform=self.get_transform(index, self.transform),
                           target_transform=self.get_target_transform(index))

    @property
    def num_classes(self):
        return self._num_classes

    @property
    def data(self):
        if self._data is None:
            self._data_file = h5py.File(self.split_filename, "r")
            self._data = self._data_file["datasets"]
        return self._data

    @property
    def labels(self):
        if self._labels is None:
            with open(self.split_filename_labels) as f:
                self._labels = json.load(f)
        return self._labels

    def _check_integrity(self):
        return os.path.isfile(self.split_filename) and os.path.isfile(self.split_filename_labels)

    def close(self):
        if self._data_file is not None:
            self._data_file.close()
        self._data_file = self._data = None

    def __getstate__(self):  # h5py handles do not pickle (DataLoader workers): reopen lazily
        state = self.__dict__.copy()
        state["_data_file"] = state["_data"] = None
        return state

    def download(self):
        if all(os.path.isfile(p) for p in cars_processed_files(os.path.dirname(self.root))):
            return
        os.makedirs(self.root, exist_ok=True)
        download_cars(self.root)
        process_cars(self.root)
