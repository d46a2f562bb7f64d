"""Crash-safe text writes for the sweep's own files (sweep.json, manifests, results).

The same temporary-file-then-rename scheme as ``utils.io.atomic_write``, without its
module's torch import: importing torch costs seconds, and sweep.py imports none, so
``--status``, ``--dry-run`` and a Slurm submission answer at once.
"""
import json
import os
import tempfile


def write_text(path, text):
    """Write ``text`` to a temporary file beside ``path``, fsync, then rename it over."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path) + "-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)      # mkstemp creates 0600; give the file open()'s mode
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(path, value):
    write_text(path, json.dumps(value, indent=2) + "\n")
