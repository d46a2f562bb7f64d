"""The CUDA-graph inner loop's static buffers, checked on CPU in "emulate" mode.

Capture itself needs a GPU; what can go wrong on any device is the buffer logic (copy
theta_0, masks and data in, reset the running sums, replay, copy out, reuse buffers
across tasks and shapes). Emulated replay must give the plain fast engine's gradients.
"""
import pytest
import torch

import train
from maml.fast import FastEngine

pytestmark = pytest.mark.usefixtures("one_thread")


def batch(tasks, shots, seed):
    g = torch.Generator().manual_seed(seed)
    def split(k):
        return (torch.randn(tasks, 5 * k, 1, 28, 28, generator=g),
                torch.arange(5).repeat_interleave(k).repeat(tasks, 1))
    return {"train": split(shots), "test": split(3)}


def grads(learner):
    params = list(learner.model.parameters()) + list(learner.mask.parameters())
    return [p.grad.clone() for p in params]


def run_both(learners, b):
    """Gradients and evaluation accuracies of each learner on batch ``b``, from one seed
    (PLUS draws its mask noise from the global generator)."""
    results = []
    for learner in learners:
        torch.manual_seed(7)
        learner.zero_grad()
        learner.engine.train_tasks(learner.tasks(b), [3] * len(b["train"][0]))
        results.append(grads(learner) + [torch.tensor(learner.evaluate(b)["accuracies"])])
    return results


@pytest.mark.parametrize("task_streams, static_steps", [(1, 4), (2, 6), (3, 6)])
@pytest.mark.parametrize("flags", [["--method", "sparse-maml"], ["--weight_mask"],
                                   ["--method", "sparse-relu-maml"],
                                   ["--gradient_mask", "--gradient_mask_plus"]])
def test_emulated_graph_replay_matches_eager_fast_engine(flags, task_streams, static_steps):
    argv = ["--dataset", "Strokes", "--hidden_size", "8", "--gradient_steps", "3",
            "--dont_use_cuda", "--seed", "0"] + flags
    torch.manual_seed(0)
    eager = train.build(train.parse_args(argv))
    torch.manual_seed(0)
    replayed = train.build(train.parse_args(argv))
    replayed.engine = FastEngine(replayed.model, replayed.mask, replayed.rule,
                                 cuda_graphs="emulate", task_streams=task_streams)
    # Batches of one shape (buffers reused across tasks; 3 tasks split into groups of
    # task_streams), then another shape.
    for b in (batch(2, 1, 0), batch(2, 1, 1), batch(3, 1, 3), batch(1, 2, 2)):
        expected, got = run_both([eager, replayed], b)
        for a, c in zip(expected, got):
            torch.testing.assert_close(a, c, rtol=1e-6, atol=1e-7)
    # one static group per (support shape, tasks in flight, training or evaluation)
    assert len(replayed.engine.graphs.steps) == static_steps


def test_channels_last_trains_and_evaluates():
    argv = ["--dataset", "Strokes", "--hidden_size", "8", "--gradient_steps", "2",
            "--dont_use_cuda", "--method", "sparse-maml", "--channels_last"]
    learner = train.build(train.parse_args(argv))
    b = batch(2, 1, 0)
    assert learner.tasks(b)[0][0].is_contiguous(memory_format=torch.channels_last)
    out = learner.step(b)
    assert out["loss"] == out["loss"]           # finite, no layout error
    assert len(learner.evaluate(b)["accuracies"]) == 2
