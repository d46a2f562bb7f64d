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


@pytest.mark.parametrize("flags", [["--method", "sparse-maml"], ["--weight_mask"],
                                   ["--method", "sparse-relu-maml"]])
def test_emulated_graph_replay_matches_eager_fast_engine(flags):
    argv = ["--dataset", "Strokes", "--hidden_size", "8", "--gradient_steps", "3",
            "--dont_use_cuda", "--seed", "0"] + flags
    torch.manual_seed(0)
    eager = train.build(train.parse_args(argv))
    torch.manual_seed(0)
    replayed = train.build(train.parse_args(argv))
    replayed.engine = FastEngine(replayed.model, replayed.mask, replayed.rule,
                                 cuda_graphs="emulate")
    # Two batches of one shape (buffers reused across tasks), then another shape.
    for b in (batch(2, 1, 0), batch(2, 1, 1), batch(1, 2, 2)):
        results = []
        for learner in (eager, replayed):
            learner.zero_grad()
            learner.engine.train_tasks(learner.tasks(b), [3] * len(b["train"][0]))
            results.append(grads(learner))
            accs = learner.evaluate(b)["accuracies"]
            results.append([torch.tensor(accs)])
        for a, c in zip(results[0] + results[1], results[2] + results[3]):
            torch.testing.assert_close(a, c, rtol=1e-6, atol=1e-7)
    # one static step per (support shape, with/without running sums for training/eval)
    assert len(replayed.engine.graphs.steps) == 4


def test_channels_last_trains_and_evaluates():
    argv = ["--dataset", "Strokes", "--hidden_size", "8", "--gradient_steps", "2",
            "--dont_use_cuda", "--method", "sparse-maml", "--channels_last"]
    learner = train.build(train.parse_args(argv))
    b = batch(2, 1, 0)
    assert learner.tasks(b)[0][0].is_contiguous(memory_format=torch.channels_last)
    out = learner.step(b)
    assert out["loss"] == out["loss"]           # finite, no layout error
    assert len(learner.evaluate(b)["accuracies"]) == 2
