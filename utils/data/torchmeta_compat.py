"""The one place that imports torchmeta, made to work on torch >= 2 / torchvision >= 0.17.1.

torchmeta 1.8.0 (its last release, pinned to torch < 1.10) still works on current
torch once three things are dealt with:

1. ``torchmeta.datasets.utils`` imports ``_get_confirm_token`` and
   ``_save_response_content`` from ``torchvision.datasets.utils`` for its own Google
   Drive downloader; torchvision removed both. That downloader no longer works anyway
   (Drive now answers large files with a confirmation page), so it is replaced (3.),
   and the two names exist only while torchmeta is imported: as ``None`` placeholders
   that are taken away again, so nothing can call them.
2. torch's DataLoader fetcher calls ``dataset.__getitems__`` when the attribute exists.
   ``SubsetTask`` inherits ``Subset.__getitems__``, which bypasses torchmeta's own
   ``__getitem__`` (and hence its target transforms); give it one that goes through
   ``__getitem__``.
3. Every torchmeta dataset module that downloads from Google Drive (MiniImagenet,
   TieredImagenet, CUB, ...) gets ``utils.data.drive.download_from_drive``: torchvision's
   gdown-based download, an md5 check, and a clear message when Drive refuses.

Every other module takes torchmeta's names from here (``from utils.data.torchmeta_compat
import BatchMetaDataLoader``), never from torchmeta itself (a test checks), so these
fixes are always in place first.
"""
import sys

import torchvision.datasets.utils as _tv_utils

from utils.data.drive import download_from_drive

_REMOVED_FROM_TORCHVISION = ("_get_confirm_token", "_save_response_content")
_placeholders = [n for n in _REMOVED_FROM_TORCHVISION if not hasattr(_tv_utils, n)]
for _name in _placeholders:
    setattr(_tv_utils, _name, None)
try:
    import torchmeta  # noqa: E402  (needs the placeholders above)
    from torchmeta.datasets import CUB, MiniImagenet, Omniglot, TieredImagenet  # noqa: E402
    from torchmeta.datasets.cub import CUBDataset  # noqa: E402
    from torchmeta.datasets.omniglot import OmniglotClassDataset  # noqa: E402
    from torchmeta.modules import (MetaBatchNorm2d, MetaConv2d, MetaLinear,  # noqa: E402
                                   MetaModule, MetaSequential)
    from torchmeta.transforms import Categorical, ClassSplitter, Rotation  # noqa: E402
    from torchmeta.transforms.splitters import ClassSplitter_  # noqa: E402
    from torchmeta.utils.data import (BatchMetaDataLoader, ClassDataset,  # noqa: E402
                                      CombinationMetaDataset, Dataset)
    from torchmeta.utils.data.task import SubsetTask as _SubsetTask  # noqa: E402
finally:
    for _name in _placeholders:
        delattr(_tv_utils, _name)


def _subset_task_getitems(self, indices):
    return [self[i] for i in indices]


_SubsetTask.__getitems__ = _subset_task_getitems

# Each dataset module bound torchmeta's downloader by name at import: rebind them all.
for _module_name, _module in list(sys.modules.items()):
    if (_module_name.startswith("torchmeta.datasets")
            and hasattr(_module, "download_file_from_google_drive")):
        _module.download_file_from_google_drive = download_from_drive

__all__ = ["torchmeta", "CUB", "MiniImagenet", "Omniglot", "OmniglotClassDataset",
           "TieredImagenet", "CUBDataset", "MetaBatchNorm2d", "MetaConv2d", "MetaLinear",
           "MetaModule", "MetaSequential", "Categorical", "ClassSplitter", "ClassSplitter_",
           "Rotation", "BatchMetaDataLoader", "ClassDataset", "CombinationMetaDataset",
           "Dataset"]
