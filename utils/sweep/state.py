"""A run's status, read from its folder alone, so any process (or node) can tell.

The file names are the program's (programs.py; train.py and continual.py write the same):
- done:    results.json exists (the script writes it last);
- running: a process holds the POSIX lock on .lock (the script takes it at start; the OS
           drops it when the process dies, even by SIGKILL);
- stopped: interrupted (exit 130/143 recorded by the executor, or a checkpoint without
           a recorded exit, e.g. after SIGKILL or a lost node); a rerun resumes it;
- failed:  the executor recorded another exit status (see the run's log, train.log or
           continual.log); a rerun tries it again (resuming from its checkpoint if it
           has one);
- pending: nothing trained yet.
The executors record the script's exit status in sweep_exit.json and its output in the
program's log file, both in the run folder.
"""
import datetime
import fcntl
import json
import os
import struct
import sys

from utils.run.atomic_io import save_json

DONE, RUNNING, STOPPED, FAILED, PENDING = "done", "running", "stopped", "failed", "pending"
QUEUED = "queued"       # Slurm only: waiting in a job array (see slurm.py)
TO_RUN = (PENDING, STOPPED, FAILED)
EXIT_FILE = "sweep_exit.json"
STOP_CODES = (130, 143, -2, -15)      # SIGINT/SIGTERM, as exit status or as signal

# struct flock as F_GETLK fills it in: Linux (l_type, l_whence, l_start, l_len, l_pid);
# macOS and the BSDs put the offsets first. A query for a write lock on the whole file.
if sys.platform == "darwin" or "bsd" in sys.platform:
    _FLOCK, _QUERY, _TYPE_FIELD = "qqihh", (0, 0, 0, fcntl.F_WRLCK, 0), 3
else:
    _FLOCK, _QUERY, _TYPE_FIELD = "hhqqi", (fcntl.F_WRLCK, 0, 0, 0, 0), 0


def is_locked(folder, lock):
    """Whether a process holds the run's lock on folder/``lock`` (F_GETLK tests the lock
    without taking it, so a run that starts at that moment is never blocked)."""
    try:
        fd = os.open(os.path.join(folder, lock), os.O_RDONLY)
    except OSError:
        return False
    try:
        # Padding: the C struct may be larger than its fields (alignment).
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack(_FLOCK, *_QUERY) + bytes(16))
        fields = struct.unpack(_FLOCK, answer[:struct.calcsize(_FLOCK)])
        return fields[_TYPE_FIELD] != fcntl.F_UNLCK
    finally:
        os.close(fd)


def recorded_exit(folder):
    """The exit status the executor recorded for the run's last attempt, or None."""
    try:
        with open(os.path.join(folder, EXIT_FILE), encoding="utf-8") as f:
            code = json.load(f).get("returncode")
    except (OSError, ValueError, AttributeError):
        return None
    return code if isinstance(code, int) else None


def record_exit(folder, returncode, executor):
    save_json(os.path.join(folder, EXIT_FILE),
              {"returncode": returncode, "executor": executor,
               "ended": datetime.datetime.now().isoformat(timespec="seconds")})


def clear_exit(folder):
    """Forget the last attempt's status when a new attempt starts."""
    try:
        os.remove(os.path.join(folder, EXIT_FILE))
    except FileNotFoundError:
        pass


def run_state(folder, program):
    """The state of ``program``'s run in ``folder`` (see the module docstring)."""
    if os.path.isfile(os.path.join(folder, program.results)):
        return DONE
    if is_locked(folder, program.lock):
        return RUNNING
    code = recorded_exit(folder)
    if code is not None:
        return STOPPED if code in STOP_CODES else FAILED
    return STOPPED if os.path.isfile(os.path.join(folder, program.checkpoint)) else PENDING
