"""Your own images as a few-shot meta-dataset (``--dataset folder --data_folder DIR``).

Layout: ``DIR/{train,val,test}/<class>/<image files>``: each subfolder of a split is one
class (its name is the class name), each image file in it one example (PNG, JPEG, BMP,
GIF, TIFF or WebP; other files and hidden entries are ignored; subfolders of a class
are not searched). Classes and images are taken in sorted name order, so a folder
always gives the same class indices. Images are converted to RGB, or to one channel
with ``grayscale``, then ``transform`` applies (``utils.data.loaders``: resize to
``--image_size``, tensor, ImageNet normalisation for RGB). Tasks are drawn by torchmeta's
ClassSplitter / Categorical / BatchMetaDataLoader like every other dataset.
"""
import os

from PIL import Image

from utils.data.errors import DataUnavailable
from utils.data.torchmeta_compat import ClassDataset, CombinationMetaDataset, Dataset

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _visible(folder):
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


def image_files(folder):
    """Sorted paths of the image files directly in ``folder``."""
    return [os.path.join(folder, name) for name in _visible(folder)
            if name.lower().endswith(IMAGE_EXTENSIONS)
            and os.path.isfile(os.path.join(folder, name))]


def class_folders(folder):
    """[(class name, [image paths])] of the subfolders of ``folder``, sorted by name."""
    if not os.path.isdir(folder):
        raise DataUnavailable(f"{folder} is not a folder: --dataset folder reads "
                              "DIR/{train,val,test}/<class>/<images> (--data_folder DIR)")
    return [(name, image_files(os.path.join(folder, name))) for name in _visible(folder)
            if os.path.isdir(os.path.join(folder, name))]


def open_image(path, grayscale):
    """The image at ``path`` as a PIL image in mode "L" (grayscale) or "RGB"."""
    try:
        with Image.open(path) as image:
            return image.convert("L" if grayscale else "RGB")
    except (OSError, ValueError) as err:
        raise DataUnavailable(f"cannot read image {path}: {err}") from err


class FolderDataset(Dataset):
    """One class: items are (transformed image, class name)."""

    def __init__(self, index, files, class_name, grayscale, transform=None,
                 target_transform=None):
        super().__init__(index, transform=transform, target_transform=target_transform)
        self.files, self.class_name, self.grayscale = files, class_name, grayscale

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        image, target = open_image(self.files[index], self.grayscale), self.class_name
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target


class FolderClassDataset(ClassDataset):
    """The classes of ``root/<meta_split>``; ``class_folder(i)`` names the folder of class i."""

    def __init__(self, root, meta_split, grayscale=False, transform=None,
                 class_augmentations=None):
        super().__init__(meta_split=meta_split, class_augmentations=class_augmentations)
        self.split_folder = os.path.join(root, meta_split)
        self.classes = class_folders(self.split_folder)
        self.grayscale, self.transform = grayscale, transform

    @property
    def num_classes(self):
        return len(self.classes)

    def class_folder(self, index):
        return os.path.join(self.split_folder, self.classes[index % self.num_classes][0])

    def __getitem__(self, index):
        name, files = self.classes[index % self.num_classes]
        return FolderDataset(index, files, name, self.grayscale,
                             transform=self.get_transform(index, self.transform),
                             target_transform=self.get_target_transform(index))


class ImageFolder(CombinationMetaDataset):
    """N-way tasks over the class folders of ``root/<meta_split>`` (module docstring)."""

    def __init__(self, root, num_classes_per_task=None, meta_split="train", grayscale=False,
                 transform=None, target_transform=None, dataset_transform=None,
                 class_augmentations=None):
        dataset = FolderClassDataset(root, meta_split, grayscale, transform,
                                     class_augmentations)
        super().__init__(dataset, num_classes_per_task, target_transform=target_transform,
                         dataset_transform=dataset_transform)
