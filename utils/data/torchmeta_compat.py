"""The one place that imports torchmeta: two shims for torch >= 2 / torchvision >= 0.17.

torchmeta 1.8.0 (its last release, pinned to torch < 1.10) still works on current
torch once two things are patched *before* it is imported:

1. ``torchmeta.datasets.utils`` imports ``_get_confirm_token`` and
   ``_save_response_content`` from ``torchvision.datasets.utils``; torchvision removed
   both. They are only used by torchmeta's Google-Drive download, so we restore
   small equivalents (same signatures) instead of breaking every import.
2. torch's DataLoader fetcher calls ``dataset.__getitems__`` when the attribute exists.
   ``SubsetTask`` inherits ``Subset.__getitems__``, which bypasses torchmeta's own
   ``__getitem__`` (and hence its target transforms); give it one that goes through
   ``__getitem__``.

Every other module takes torchmeta's names from here (``from utils.data.torchmeta_compat
import BatchMetaDataLoader``), never from torchmeta itself (a test checks), so the shims
are always in place first.
"""
import torchvision.datasets.utils as _tv_utils

if not hasattr(_tv_utils, "_get_confirm_token"):
    def _get_confirm_token(response):
        """Google Drive's 'download anyway' token for large files (None if absent)."""
        for key, value in response.cookies.items():
            if key.startswith("download_warning"):
                return value
        return None

    _tv_utils._get_confirm_token = _get_confirm_token

if not hasattr(_tv_utils, "_save_response_content"):
    def _save_response_content(response, destination, chunk_size=32768):
        """Stream a ``requests`` response to ``destination`` (written in chunks)."""
        with open(destination, "wb") as f:
            for chunk in response.iter_content(chunk_size):
                if chunk:
                    f.write(chunk)

    _tv_utils._save_response_content = _save_response_content

import torchmeta  # noqa: E402  (must follow the shims above)
from torchmeta.datasets import CUB, MiniImagenet, Omniglot, TieredImagenet  # noqa: E402
from torchmeta.datasets.cub import CUBDataset  # noqa: E402
from torchmeta.modules import (MetaBatchNorm2d, MetaConv2d, MetaLinear,  # noqa: E402
                               MetaModule, MetaSequential)
from torchmeta.transforms import Categorical, ClassSplitter, Rotation  # noqa: E402
from torchmeta.transforms.splitters import ClassSplitter_  # noqa: E402
from torchmeta.utils.data import (BatchMetaDataLoader, ClassDataset,  # noqa: E402
                                  CombinationMetaDataset, Dataset)
from torchmeta.utils.data.task import SubsetTask as _SubsetTask  # noqa: E402


def _subset_task_getitems(self, indices):
    return [self[i] for i in indices]


_SubsetTask.__getitems__ = _subset_task_getitems

__all__ = ["torchmeta", "CUB", "MiniImagenet", "Omniglot", "TieredImagenet", "CUBDataset",
           "MetaBatchNorm2d", "MetaConv2d", "MetaLinear", "MetaModule", "MetaSequential",
           "Categorical", "ClassSplitter", "ClassSplitter_", "Rotation",
           "BatchMetaDataLoader", "ClassDataset", "CombinationMetaDataset", "Dataset"]
