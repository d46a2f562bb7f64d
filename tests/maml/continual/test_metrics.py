"""Continual-learning metrics on a hand-made accuracy matrix and a hand-made stream."""
import math

import pytest

from maml.continual.metrics import (
    backward_transfer,
    boundary_detection,
    forward_transfer,
    learning_accuracy,
    retained_accuracy,
    sequence_summary,
    stream_summary,
)

# R[i][j]: accuracy on task j after training on tasks 0..i
R = [[0.90, 0.10, 0.20],
     [0.70, 0.80, 0.30],
     [0.60, 0.50, 0.95]]
BASELINE = [0.10, 0.10, 0.10]


def test_task_sequence_metrics():
    assert retained_accuracy(R) == pytest.approx((0.60 + 0.50 + 0.95) / 3)
    assert learning_accuracy(R) == pytest.approx((0.90 + 0.80 + 0.95) / 3)
    # forgetting of tasks 0 and 1: 0.60 - 0.90 and 0.50 - 0.80
    assert backward_transfer(R) == pytest.approx(-0.30)
    # accuracy on the next task before training on it, minus the untrained model's
    assert forward_transfer(R, BASELINE) == pytest.approx(((0.10 - 0.10) + (0.30 - 0.10)) / 2)
    summary = sequence_summary(R, BASELINE)
    assert summary["bwt"] == pytest.approx(-0.30) and "fwt" in summary


def test_a_single_task_has_no_transfer():
    assert math.isnan(backward_transfer([[0.5]]))


def test_boundary_detection_precision_and_recall():
    switches = [False, True, False, False, True, False, True]
    detections = [False, True, True, False, False, False, True]
    out = boundary_detection(switches, detections)
    assert out["precision"] == pytest.approx(2 / 3)      # 2 of 3 detections are switches
    assert out["recall"] == pytest.approx(2 / 3)         # 2 of 3 switches are detected
    assert out["f1"] == pytest.approx(2 / 3)
    assert math.isnan(boundary_detection([True], [False])["precision"])


def test_stream_online_accuracy_per_mode():
    out = stream_summary([1.0, 0.5, 0.0, 0.5], ["a", "a", "b", "b"],
                         [False, False, True, False], [False, False, True, False])
    assert out["online_accuracy"] == pytest.approx(0.5)
    assert out["online_accuracy_per_mode"] == {"a": 0.75, "b": 0.25}
    assert out["boundaries"]["precision"] == 1.0 and out["steps"] == 4
