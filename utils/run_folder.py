"""The run folder's life cycle: create or reopen it safely, record metadata, and turn
SIGINT/SIGTERM into a clean stop at the next meta-step (see README, "Failure and
recovery")."""
import datetime
import os
import signal
import subprocess
import sys

import torch

from utils.checkpoint import CHECKPOINT, CheckpointError
from utils.io import WriteError


class StopRequest:
    """SIGINT/SIGTERM set a flag; the loop stops at the next step and exits cleanly.

    A second signal stops at once. ``received`` keeps the last signal for main(), which
    exits with 128 + its number (130 for SIGINT, 143 for SIGTERM), as a shell would.
    """
    received = None

    def __init__(self):
        self.signum = None
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.handle)

    def handle(self, signum, _frame):
        self.signum = StopRequest.received = signum
        signal.signal(signum, StopRequest.stop_now)

    @staticmethod
    def stop_now(signum, _frame):
        """Handler outside the step loop: raise KeyboardInterrupt wherever we are."""
        StopRequest.received = signum
        raise KeyboardInterrupt(signum)


def prepare_out_dir(args):
    """Create or reopen the run folder: refuse to mix runs, lock it, clear dead temp files."""
    from utils.checkpoint import CONFIG, lock_run_folder, recorded_args
    from utils.io import remove_temp_files
    if args.out_dir is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        args.out_dir = os.path.join("runs", f"{stamp}_{args.method}")
    if os.path.exists(args.out_dir) and not os.path.isdir(args.out_dir):
        raise CheckpointError(f"--out_dir {args.out_dir} is a file, not a folder")
    has = lambda f: os.path.exists(os.path.join(args.out_dir, f))  # noqa: E731
    # A lone config.json is a run that stopped before training (bad data, killed early):
    # nothing to lose, so it may start over with or without --resume.
    trained = any(has(f) for f in (CHECKPOINT, "metrics.jsonl", "results.json", "best.pt"))
    if trained and not args.resume:
        raise CheckpointError(f"{args.out_dir} already holds a run; pass --resume to continue "
                              "it, or choose another --out_dir")
    if args.resume and not has(CHECKPOINT):
        if trained or not has(CONFIG):
            raise CheckpointError(f"--resume: no checkpoint in {args.out_dir} "
                                  f"(expected {os.path.join(args.out_dir, CHECKPOINT)})")
        print(f"{args.out_dir} has no checkpoint yet (the run stopped before training); "
              "starting it from the beginning", file=sys.stderr)
        args.resume = False
    try:
        os.makedirs(args.out_dir, exist_ok=True)
    except OSError as err:
        raise WriteError(f"could not create the run folder {args.out_dir}: "
                         f"{err.strerror or err}") from err
    lock_run_folder(args.out_dir)
    remove_temp_files(args.out_dir)      # left by a run killed while writing
    if args.resume and args.seed < 0:    # a drawn seed is recorded; reuse it to resume exactly
        recorded = recorded_args(args.out_dir) or {}
        if isinstance(recorded.get("seed"), int) and recorded["seed"] >= 0:
            args.seed = recorded["seed"]


def run_metadata():
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=os.path.dirname(os.path.abspath(__file__)),
                                timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    import torchmeta
    import torchvision
    return {"git_commit": commit, "torch": torch.__version__,
            "torchvision": torchvision.__version__, "torchmeta": torchmeta.__version__,
            "python": sys.version.split()[0], "command": sys.argv,
            "created": datetime.datetime.now().isoformat(timespec="seconds")}
