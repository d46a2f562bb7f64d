"""Build MiniImageNet / tieredImageNet from a local ILSVRC-2012 training set, in exactly
the processed layout torchmeta reads (``prepare_data.py`` is the command line).

Output, in ``<data_folder>/miniimagenet`` or ``<data_folder>/tieredimagenet``:

- MiniImageNet (torchmeta's ``MiniImagenetClassDataset``): ``{split}_data.hdf5`` with one
  uint8 dataset [600, 84, 84, 3] per synset in the group ``datasets``;
  ``{split}_labels.json`` lists the synsets, sorted.
- tieredImageNet (``TieredImagenetClassDataset``): ``{split}_data.hdf5`` with one
  variable-length uint8 dataset per synset in ``datasets``, each element a PNG file of
  an 84x84 image, and attributes ``label_general`` (the category synset) and
  ``label_specific``; ``{split}_labels.json`` lists the synsets in the split file's order.

Resumable: each class is converted into its own file in ``<output>/.prepare/<split>/``
(temporary name, fsync, rename: a file there is complete), and a split's two files are
assembled from those once all its classes are done, then the work folder is removed. A
killed build continues where it stopped; no output file is ever half written under its
final name. Everything is checked before the first image is converted: a missing class,
or one with too few images, stops the build with a message naming it.
"""
import json
import os
import shutil
import time
from multiprocessing import Pool

import h5py
import numpy as np
from tqdm import tqdm

from utils.data.imagenet_source import ImageNetSource, PrepareError, convert
from utils.data.imagenet_splits import SPLITS, load_split_plan
from utils.run.atomic_io import atomic_write, remove_temp_files, save_json

NAMES = {"miniimagenet": "MiniImagenet", "tieredimagenet": "TieredImagenet"}
WORK = ".prepare"
FILES_ATTR = "source_files"     # the ImageNet files a class file was made from


def output_files(folder, split):
    return (os.path.join(folder, f"{split}_data.hdf5"),
            os.path.join(folder, f"{split}_labels.json"))


def is_built(folder, split):
    return all(os.path.isfile(p) for p in output_files(folder, split))


def select_images(plan, source, splits=SPLITS):
    """{split: [(ClassPlan, [file names])]} for ``splits`` of ``plan``; raises
    PrepareError listing every missing class and every class with too few images."""
    selected, missing, short = {}, [], []
    for split in splits:
        selected[split] = []
        for cls in plan.classes[split]:
            if not source.has(cls.synset):
                missing.append(f"{source.where(cls.synset)} ({split})")
                continue
            names = source.image_names(cls.synset)
            need = cls.min_images(plan.min_images_per_class)
            if len(names) < need:
                short.append(f"{source.where(cls.synset)} has {len(names)} images, needs "
                             f"{need}")
                continue
            chosen = [names[i - 1] for i in cls.numbers] if cls.numbers else names
            selected[split].append((cls, chosen))
    problems = []
    if missing:
        problems.append(f"{len(missing)} class folders (or .tar files) are missing: "
                        + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
    if short:
        problems.append(f"{len(short)} classes have too few images (an incomplete copy, or "
                        "not the ILSVRC-2012 training set?): " + "; ".join(short[:5])
                        + (" ..." if len(short) > 5 else ""))
    if problems:
        raise PrepareError(f"cannot build {NAMES[plan.dataset]} from {source.root}: "
                           + ". ".join(problems) + ". --imagenet must hold the training "
                           "images as DIR/<synset>/<synset>_<id>.JPEG or DIR/<synset>.tar.")
    return selected


def _class_file_done(path, names):
    try:
        with h5py.File(path, "r") as f:
            return f["images"].attrs[FILES_ATTR] == json.dumps(names)
    except (OSError, KeyError):
        return False


def _write_class(path, images, names, encoded):
    def write(f):
        with h5py.File(f, "w") as h5:
            if encoded:
                data = h5.create_dataset("images", (len(images),),
                                         dtype=h5py.vlen_dtype(np.uint8))
                for i, png in enumerate(images):
                    data[i] = png
            else:
                data = h5.create_dataset("images", data=np.stack(images))
            data.attrs[FILES_ATTR] = json.dumps(names)
    atomic_write(path, write, mode="w+b")


def _assemble(plan, split, work, folder):
    """The split's hdf5 and labels files from its finished class files."""
    classes = plan.classes[split]
    data_path, labels_path = output_files(folder, split)

    def write(f):
        with h5py.File(f, "w") as h5:
            group = h5.create_group("datasets")
            for cls in classes:
                with h5py.File(os.path.join(work, split, f"{cls.synset}.h5"), "r") as src:
                    src.copy(src["images"], group, name=cls.synset)
                data = group[cls.synset]
                del data.attrs[FILES_ATTR]
                if cls.category is not None:
                    data.attrs["label_general"] = cls.category
                    data.attrs["label_specific"] = cls.synset
    atomic_write(data_path, write, mode="w+b")
    labels = [c.synset for c in classes]
    save_json(labels_path, sorted(labels) if plan.dataset == "miniimagenet" else labels)


def _ignore_sigint():
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the main process handles Ctrl-C


def build(dataset, imagenet, data_folder, workers=0, split_files=None, progress=True):
    """Build ``dataset`` ("miniimagenet" / "tieredimagenet") from ``imagenet`` into
    ``data_folder``; returns {"folder", "converted", "seconds", "counts", "problems"}
    (see ``count_images`` / ``check_counts``). Splits already built are kept."""
    plan = load_split_plan(dataset, split_files)
    folder = os.path.join(data_folder, dataset)
    work = os.path.join(folder, WORK)
    pending = [s for s in SPLITS if not is_built(folder, s)]
    converted, start = 0, time.time()
    if pending:
        source = ImageNetSource(imagenet)
        selected = select_images(plan, source, pending)
        for split in pending:
            os.makedirs(os.path.join(work, split), exist_ok=True)
            remove_temp_files(os.path.join(work, split))
        remove_temp_files(folder)
        jobs = [(split, cls, names) for split in pending for cls, names in selected[split]]
        todo = [(split, cls, names) for split, cls, names in jobs if not _class_file_done(
            os.path.join(work, split, f"{cls.synset}.h5"), names)]
        total = sum(len(names) for _, _, names in jobs)
        encoded = dataset == "tieredimagenet"
        pool = Pool(workers, initializer=_ignore_sigint) if workers > 0 else None
        try:
            with tqdm(total=total, initial=total - sum(len(n) for _, _, n in todo),
                      unit="img", desc=f"{dataset} ({', '.join(pending)})",
                      disable=not progress) as bar:
                for split, cls, names in todo:
                    items = source.read(cls.synset, names)
                    images = []
                    for image in (pool.imap(_convert_png if encoded else convert, items, 8)
                                  if pool else map(_convert_png if encoded else convert, items)):
                        images.append(image)
                        bar.update()
                    _write_class(os.path.join(work, split, f"{cls.synset}.h5"), images, names,
                                 encoded)
                    converted += len(names)
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
        for split in pending:
            _assemble(plan, split, work, folder)
        shutil.rmtree(work, ignore_errors=True)
    counts = count_images(folder)
    return {"folder": folder, "converted": converted, "seconds": time.time() - start,
            "counts": counts, "problems": check_counts(plan, counts)}


def _convert_png(item):
    return convert(item, encode_png=True)


def count_images(folder):
    """{split: (classes, images)} of the built files in ``folder``, read back."""
    counts = {}
    for split in SPLITS:
        data_path, labels_path = output_files(folder, split)
        with open(labels_path) as f:
            labels = json.load(f)
        with h5py.File(data_path, "r") as h5:
            counts[split] = (len(labels), sum(h5["datasets"][name].shape[0] for name in labels))
    return counts


def check_counts(plan, counts):
    """[problem] where the built counts differ from what the split defines."""
    problems = []
    for split in SPLITS:
        classes, images = counts[split]
        want_classes, want_images = len(plan.classes[split]), plan.expected_images(split)
        if classes != want_classes:
            problems.append(f"{split}: {classes} classes, the split has {want_classes}")
        if want_images is not None and images != want_images:
            problems.append(f"{split}: {images:,} images, the split has {want_images:,}")
    total = sum(images for _, images in counts.values())
    if plan.total_images is not None and total != plan.total_images:
        problems.append(f"{total:,} images in all, the published dataset has "
                        f"{plan.total_images:,} (is the ImageNet copy complete?)")
    return problems
