"""Crash-safe file writes: write to a temporary file in the same folder, fsync, rename.

A crash or a full disk in the middle of a write leaves the previous file intact;
``os.replace`` is atomic on POSIX and Windows when source and target share a folder.
A process killed mid-write (SIGKILL, power loss) can leave a ``.tmp-<name>-*`` file
behind; ``remove_temp_files`` clears them when the run folder is reused.
"""
import json
import os
import tempfile

TEMP_PREFIX = ".tmp-"


class WriteError(RuntimeError):
    """A file could not be written; the previous version (if any) is untouched."""


def _file_mode(path):
    """Keep an existing file's permissions; new files get 0o666 minus the umask, as open()."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        return 0o666 & ~_umask()


def _umask():
    try:      # Linux: read it without changing it (os.umask is process-wide, not thread-safe)
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _sync_folder(folder):
    """Make the rename itself durable (POSIX); best effort elsewhere."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, write_fn, mode="wb"):
    """Call ``write_fn(file)`` on a temporary file, then atomically rename it to ``path``.

    Any failure (including KeyboardInterrupt) removes the temporary file; an OSError
    (disk full, no permission, missing folder) becomes a ``WriteError`` naming ``path``.
    """
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX + os.path.basename(path) + "-",
                                   dir=folder)
        with os.fdopen(fd, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode(path))      # mkstemp creates 0o600 files
        os.replace(tmp, path)
        tmp = None
        _sync_folder(folder)
    except BaseException as err:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(err, OSError):
            raise WriteError(f"could not write {path}: {err.strerror or err}; "
                             "the previous version is unchanged") from err
        raise


def remove_temp_files(folder):
    """Delete leftovers of interrupted ``atomic_write`` calls in ``folder``; returns names."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if name.startswith(TEMP_PREFIX):
            try:
                os.unlink(os.path.join(folder, name))
                removed.append(name)
            except OSError:
                pass
    return removed


def save_json(path, obj):
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, sort_keys=True) + "\n"),
                 mode="w")


def save_torch(path, obj):
    import torch  # here, so JSON-only users (sweep.py) need no torch
    atomic_write(path, lambda f: torch.save(obj, f))
