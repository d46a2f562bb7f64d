"""Continual-learning metrics.

Task sequences (GEM, Lopez-Paz & Ranzato 2017; as La-MAML reports them): the accuracy
matrix R [T, T], R[i, j] = test accuracy on task j after training on tasks 0..i;
b [T] = accuracies of the untrained model (for forward transfer).
- retained accuracy RA = (1/T) sum_j R[T-1, j] (La-MAML's "RA", GEM's "ACC");
- learning accuracy LA = (1/T) sum_j R[j, j];
- backward transfer BWT = 1/(T-1) sum_{j<T-1} (R[T-1, j] - R[j, j]) (GEM's BWT, La-MAML's
  "BTI"); GEM's and La-MAML's code average over all T tasks, last one (0) included,
  i.e. (T-1)/T times this value;
- forward transfer FWT = 1/(T-1) sum_{j>0} (R[j-1, j] - b[j]).

Streams (OSAKA): the online accuracy (accuracy on each incoming batch before learning
from it) averaged over the stream and per mode; task-boundary detection precision =
TP / (TP + FP) and recall = TP / (TP + FN) over the steps after the first. OSAKA's code
logs as "precision" the detection rate on true switches (our recall) and as "recall"
the fraction of non-switch steps without a detection (the specificity).
"""
import math

import numpy as np


def retained_accuracy(R):
    R = np.asarray(R, dtype=np.float64)
    return float(R[-1].mean())


def learning_accuracy(R):
    R = np.asarray(R, dtype=np.float64)
    return float(np.diag(R).mean())


def backward_transfer(R):
    R = np.asarray(R, dtype=np.float64)
    T = R.shape[0]
    if T < 2:
        return float("nan")
    return float((R[-1, :-1] - np.diag(R)[:-1]).mean())


def forward_transfer(R, baseline):
    R, b = np.asarray(R, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    T = R.shape[0]
    if T < 2:
        return float("nan")
    return float(np.mean([R[j - 1, j] - b[j] for j in range(1, T)]))


def sequence_summary(R, baseline=None):
    """{"retained_accuracy", "learning_accuracy", "bwt", ("fwt")} of a full matrix R."""
    out = {"retained_accuracy": retained_accuracy(R), "learning_accuracy": learning_accuracy(R),
           "bwt": backward_transfer(R)}
    if baseline is not None:
        out["fwt"] = forward_transfer(R, baseline)
    return out


def boundary_detection(switches, detections):
    """{"precision", "recall", "f1", "true_switches", "detections"} of task-boundary
    detection; both inputs are per-step booleans (the first step is no switch)."""
    s, d = np.asarray(switches, dtype=bool), np.asarray(detections, dtype=bool)
    tp = int((s & d).sum())
    precision = tp / int(d.sum()) if d.sum() else float("nan")
    recall = tp / int(s.sum()) if s.sum() else float("nan")
    f1 = (2 * precision * recall / (precision + recall)
          if precision + recall > 0 and not math.isnan(precision + recall) else float("nan"))
    return {"precision": precision, "recall": recall, "f1": f1,
            "true_switches": int(s.sum()), "detections": int(d.sum())}


def stream_summary(accuracies, modes, switches, detections):
    """Online accuracy overall and per mode, plus boundary detection, of a stream."""
    acc, modes = np.asarray(accuracies, dtype=np.float64), np.asarray(modes)
    per_mode = {str(m): float(acc[modes == m].mean()) for m in sorted(set(modes.tolist()))}
    return {"online_accuracy": float(acc.mean()) if acc.size else float("nan"),
            "online_accuracy_per_mode": per_mode,
            "boundaries": boundary_detection(switches, detections), "steps": int(acc.size)}
