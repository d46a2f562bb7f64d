"""A local copy of the ILSVRC-2012 training set, as ``prepare_data.py`` reads it.

Each class is either a folder ``DIR/<synset>/`` of ``<synset>_<id>.JPEG`` files or the
per-class archive ``DIR/<synset>.tar`` (as ``ILSVRC2012_img_train.tar`` holds them);
a class's images are ordered by the number ``<id>``, the order in which the split lists
number them. ``convert`` turns one encoded image into the stored 84x84 RGB form; it is
what the worker processes run, so this module imports no torch.
"""
import io
import os
import re
import tarfile

import numpy as np
from PIL import Image

from utils.data.errors import DataUnavailable

SIZE = 84
RESAMPLE = Image.Resampling.LANCZOS


class PrepareError(DataUnavailable):
    """The dataset cannot be built from this ImageNet copy; the message says why."""


def _number(synset, name):
    """The id of ``<synset>_<id>.JPEG`` (any case of the extension), else None."""
    match = re.fullmatch(re.escape(synset) + r"_(\d+)\.jpe?g", os.path.basename(name),
                         re.IGNORECASE)
    return int(match.group(1)) if match else None


class ImageNetSource:
    """The class folders / per-class tar files under ``root``."""

    def __init__(self, root):
        if not os.path.isdir(root):
            raise PrepareError(f"--imagenet {root} is not a folder: give the ILSVRC-2012 "
                               "training set, DIR/<synset>/<synset>_<id>.JPEG or DIR/<synset>.tar")
        self.root = root
        self._tar_members = {}

    def where(self, synset):
        """Where the class lives: its folder, else its tar file (whether or not present)."""
        folder = os.path.join(self.root, synset)
        return folder if os.path.isdir(folder) else folder + ".tar"

    def has(self, synset):
        return os.path.exists(self.where(synset))

    def image_names(self, synset):
        """The class's image names ``<synset>_<id>.JPEG``, sorted by id."""
        path = self.where(synset)
        if os.path.isdir(path):
            names = os.listdir(path)
        else:
            try:
                with tarfile.open(path) as tar:
                    members = {m.name: m for m in tar.getmembers() if m.isfile()}
            except (OSError, tarfile.TarError) as err:
                raise PrepareError(f"cannot read {path}: {err}") from err
            self._tar_members[synset] = members
            names = list(members)
        numbered = [(n, name) for name in names if (n := _number(synset, name)) is not None]
        return [name for _, name in sorted(numbered)]

    def read(self, synset, names):
        """Yield the encoded bytes of each of ``names`` (from ``image_names``), in order."""
        path = self.where(synset)
        if os.path.isdir(path):
            for name in names:
                with open(os.path.join(path, name), "rb") as f:
                    yield name, f.read()
            return
        members = self._tar_members.get(synset)
        if members is None:
            self.image_names(synset)
            members = self._tar_members[synset]
        with tarfile.open(path) as tar:
            for name in names:
                yield name, tar.extractfile(members[name]).read()


def convert(item, encode_png=False):
    """(name, encoded image) -> the image squashed to 84x84 RGB (aspect ratio not kept,
    no crop; PIL's Lanczos filter): uint8 [84, 84, 3], or with ``encode_png`` its PNG
    file as uint8 [bytes] (tieredImageNet's stored form)."""
    name, data = item
    try:
        with Image.open(io.BytesIO(data)) as image:
            image = image.convert("RGB").resize((SIZE, SIZE), RESAMPLE)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise PrepareError(f"cannot decode {name}: {err}") from err
    if not encode_png:
        return np.asarray(image, dtype=np.uint8)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return np.frombuffer(out.getvalue(), dtype=np.uint8)
