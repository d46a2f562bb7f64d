"""Crash-safe file writes: write to a temporary file in the same folder, fsync, rename.

A crash or a full disk in the middle of a write leaves the previous file intact;
``os.replace`` is atomic on POSIX and Windows when source and target share a folder.
"""
import json
import os
import tempfile

import torch


class WriteError(RuntimeError):
    """A file could not be written; the previous version (if any) is untouched."""


def atomic_write(path, write_fn, mode="wb"):
    """Call ``write_fn(file)`` on a temporary file, then atomically rename it to ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path) + "-", dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(err, OSError):
            raise WriteError(f"could not write {path}: {err.strerror or err}; "
                             "the previous version is unchanged") from err
        raise


def save_json(path, obj):
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, sort_keys=True) + "\n"),
                 mode="w")


def save_torch(path, obj):
    atomic_write(path, lambda f: torch.save(obj, f))
