"""Run outputs: metrics.jsonl rows, TensorBoard scalars, confidence intervals (over a
run's test tasks, and over the seeds of a group of runs).

metrics.jsonl has one JSON object per line: {"epoch", "phase": "train"|"val"|"test",
"accuracy" (0-1), and "loss" (train), "ci95" (val/test), "sparsity" (0-1, with masks),
"sparsity_per_param" (train, with masks)}. On resume the file is cut back to its size
at the checkpoint and TensorBoard events from later epochs are purged, so an
interrupted run leaves no duplicated or missing epochs.
"""
import json
import math
import os

import numpy as np


def mean_ci95(values):
    """(mean, 1.96 * std / sqrt(n)) of per-task accuracies, as the paper reports."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan"), float("nan")
    return float(values.mean()), float(1.96 * values.std() / math.sqrt(values.size))


def seeds_mean_ci95(values, single_ci=float("nan")):
    """(mean, 95% CI half-width) of per-seed values (None and non-finite ones left out):
    Student's t, t(0.975, n - 1) * std(ddof=1) / sqrt(n), as a handful of seeds is too
    few for the normal 1.96 (at n = 5 it would be 1.42x too narrow). One value keeps
    ``single_ci`` (e.g. its CI over test tasks); none gives (nan, nan)."""
    from scipy.stats import t  # only here: the logging above needs no scipy
    values = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not values:
        return float("nan"), float("nan")
    if len(values) == 1:
        return values[0], single_ci
    v = np.asarray(values, dtype=np.float64)
    half = t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return float(v.mean()), float(half)


class MetricsLog:
    """metrics.jsonl, one JSON row per line (each flushed to disk), and an optional
    TensorBoard writer in the run folder; shared by train.py's and continual.py's loggers.

    ``metrics_bytes`` (resume): cut the file back to its size at the checkpoint, and
    ``purge_step``: drop TensorBoard events from that step on, so an interrupted run has
    no duplicated rows. ``write`` False (the other processes of a torchrun run): nothing
    is written anywhere.
    """

    def __init__(self, out_dir, tensorboard=True, metrics_bytes=None, purge_step=None,
                 write=True):
        self.path = os.path.join(out_dir, "metrics.jsonl")
        self.write = write
        if write and metrics_bytes is not None and os.path.exists(self.path):
            with open(self.path, "r+b") as f:
                f.truncate(min(metrics_bytes, os.path.getsize(self.path)))
        self.writer = None
        if tensorboard and write:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(out_dir, purge_step=purge_step)

    def bytes_written(self):
        return os.path.getsize(self.path) if os.path.exists(self.path) else 0

    def append(self, row):
        # fsync: a checkpoint records bytes_written(), which must be on disk by then.
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def sparsity_scalars(self, step, mean, per_param):
        """The original's sparsity tags: % zeros per parameter group and their mean."""
        for name, frac in per_param.items():
            self.writer.add_scalar("zeros (%) in group " + name, 100 * frac, step)
        self.writer.add_scalar("mean zeros (%)", 100 * mean, step)

    def flush(self):
        if self.writer is not None:
            self.writer.flush()

    def close(self):
        if self.writer is not None:
            self.writer.close()


class RunLogger(MetricsLog):
    """train.py's rows, mirrored to TensorBoard with the original's tags."""

    TAGS = {"train": "Training Accuracy", "val": "Val Accuracy", "test": "Test Accuracy"}

    def __init__(self, out_dir, tensorboard=True, metrics_bytes=None, first_epoch=0,
                 write=True):
        super().__init__(out_dir, tensorboard, metrics_bytes, first_epoch, write)

    def log(self, epoch, phase, accuracy, loss=None, ci95=None, sparsity=None,
            sparsity_per_param=None):
        if not self.write:
            return
        row = {"epoch": epoch, "phase": phase, "accuracy": accuracy}
        for key, value in (("loss", loss), ("ci95", ci95), ("sparsity", sparsity),
                           ("sparsity_per_param", sparsity_per_param)):
            if value is not None:
                row[key] = value
        self.append(row)
        if self.writer is not None:
            self.writer.add_scalar(self.TAGS[phase], accuracy, epoch)
            if loss is not None and phase == "train":
                self.writer.add_scalar("Training Loss", loss, epoch)
            if sparsity_per_param:
                self.sparsity_scalars(epoch, sparsity, sparsity_per_param)

    def histograms(self, epoch, named_tensors):
        if self.writer is not None:
            for name, tensor in named_tensors.items():
                self.writer.add_histogram("mask logits/" + name, tensor.detach().cpu(), epoch)
