"""The run folder's life cycle: create or reopen it safely, hold its lock while the run
uses it, and record where the run came from (see README, "Failure and recovery").

    with RunFolder(out_dir, resume) as folder:     # checks, creates, locks
        ... folder.resume ...                      # False when there is nothing to resume
    # the lock is released here, also after an exception
"""
import datetime
import json
import os
import subprocess
import sys

from utils.run.atomic_io import WriteError, remove_temp_files
from utils.run.checkpoint import CHECKPOINT, CheckpointError

CONFIG = "config.json"
LOCK = ".lock"
RUN_FILES = (CHECKPOINT, "metrics.jsonl", "results.json", "best.pt")


def default_out_dir(method):
    """runs/<date-time>_<method>, relative to the working folder."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.join("runs", f"{stamp}_{method}")


def recorded_flags(out_dir):
    """The flags recorded in out_dir/config.json ({dest: value}), or None if unreadable.

    Parsed as JSON only (never executed or unpickled), so a run folder can be untrusted.
    """
    try:
        with open(os.path.join(out_dir, CONFIG), encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None
    flags = config.get("args") if isinstance(config, dict) else None
    return flags if isinstance(flags, dict) else None


class RunFolder:
    """One run folder, used by one process at a time.

    Entering checks that ``path`` may be used (a folder holding a run needs ``resume``;
    ``resume`` needs a checkpoint, except after a run that stopped before training, which
    then starts over: ``self.resume`` says which), creates it, takes its lock and deletes
    temporary files left by a killed write. Leaving releases the lock.
    """

    def __init__(self, path, resume=False):
        self.path = path
        self.resume = resume
        self._lock_file = None

    def file(self, name):
        return os.path.join(self.path, name)

    def has(self, name):
        return os.path.exists(self.file(name))

    def __enter__(self):
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise CheckpointError(f"--out_dir {self.path} is a file, not a folder")
        # A lone config.json is a run that stopped before training (bad data, killed
        # early): nothing to lose, so it may start over with or without --resume.
        trained = any(self.has(f) for f in RUN_FILES)
        if trained and not self.resume:
            raise CheckpointError(f"{self.path} already holds a run; pass --resume to "
                                  "continue it, or choose another --out_dir")
        if self.resume and not self.has(CHECKPOINT):
            if trained or not self.has(CONFIG):
                raise CheckpointError(f"--resume: no checkpoint in {self.path} "
                                      f"(expected {self.file(CHECKPOINT)})")
            print(f"{self.path} has no checkpoint yet (the run stopped before training); "
                  "starting it from the beginning", file=sys.stderr)
            self.resume = False
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as err:
            raise WriteError(f"could not create the run folder {self.path}: "
                             f"{err.strerror or err}") from err
        self._lock()
        remove_temp_files(self.path)      # left by a run killed while writing
        return self

    def __exit__(self, *exc):
        if self._lock_file is not None:
            self._lock_file.close()       # closing the file releases the lock
            self._lock_file = None
        return False

    def _lock(self):
        """An exclusive lock on the folder for this process.

        Two processes writing one run folder would interleave epochs and clobber each
        other's checkpoints. The OS drops the lock when the process dies, even by
        SIGKILL, so a killed run never blocks its own ``--resume``. No-op without fcntl.
        """
        try:
            import fcntl
        except ImportError:      # Windows
            return
        f = open(self.file(LOCK), "a")
        try:
            # A POSIX record lock, not flock: it is not inherited by forked DataLoader
            # workers, so an orphaned worker of a killed run cannot block its --resume.
            fcntl.lockf(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            f.close()
            raise CheckpointError(f"{self.path} is in use by another training process; wait "
                                  "for it to finish or stop it, or choose another --out_dir"
                                  ) from err
        self._lock_file = f


def run_metadata():
    """Where the run came from: git commit, library versions, command line, time."""
    import torch
    import torchvision

    from utils.data.torchmeta_compat import torchmeta
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=os.path.dirname(os.path.abspath(__file__)),
                                timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"git_commit": commit, "torch": torch.__version__,
            "torchvision": torchvision.__version__, "torchmeta": torchmeta.__version__,
            "python": sys.version.split()[0], "command": sys.argv,
            "created": datetime.datetime.now().isoformat(timespec="seconds")}
