"""The CUDA-graph inner loop's static buffers, checked on CPU in "emulate" mode.

Capture itself needs a GPU; what can go wrong on any device is the buffer logic (copy
theta_0, masks and data in, reset the running sums, replay, copy out, reuse buffers
across tasks and shapes). Emulated replay must give the plain fast engine's gradients.
"""
import pytest
import torch

from maml.fast import FastEngine
from tests.conftest import learner_for
from utils import cli

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


@pytest.mark.parametrize("task_streams", [1, 2, 3])
@pytest.mark.parametrize("flags", [["--method", "sparse-maml"], ["--weight_mask"],
                                   ["--method", "sparse-relu-maml"],
                                   ["--gradient_mask", "--gradient_mask_plus"]])
def test_emulated_graph_replay_matches_eager_fast_engine(flags, task_streams):
    argv = ["--dataset", "Strokes", "--hidden_size", "8", "--gradient_steps", "3",
            "--dont_use_cuda", "--seed", "0"] + flags
    torch.manual_seed(0)
    eager = learner_for(cli.parse_args(argv))
    torch.manual_seed(0)
    replayed = learner_for(cli.parse_args(argv))
    replayed.engine = FastEngine(replayed.model, replayed.mask, replayed.rule,
                                 cuda_graphs="emulate", task_streams=task_streams)
    # Batches of one shape (buffers reused across tasks; 3 tasks split into groups of
    # task_streams), then another shape.
    for b in (batch(2, 1, 0), batch(2, 1, 1), batch(3, 1, 3), batch(1, 2, 2)):
        expected, got = run_both([eager, replayed], b)
        for a, c in zip(expected, got, strict=True):
            torch.testing.assert_close(a, c, rtol=1e-6, atol=1e-7)


def test_channels_last_gives_the_contiguous_layout_results():
    argv = ["--dataset", "Strokes", "--hidden_size", "8", "--gradient_steps", "2",
            "--dont_use_cuda", "--method", "sparse-maml", "--seed", "0"]
    b = batch(2, 1, 0)
    results = []
    for layout in ([], ["--channels_last"]):
        torch.manual_seed(0)
        learner = learner_for(cli.parse_args(argv + layout))
        fmt = torch.channels_last if layout else torch.contiguous_format
        assert learner.tasks(b)[0][0].is_contiguous(memory_format=fmt)
        learner.zero_grad()
        loss, _ = learner.engine.train_tasks(learner.tasks(b), [2, 2])
        results.append((float(loss), learner.evaluate(b)["accuracies"], grads(learner)))
    (loss, accs, g), (loss_cl, accs_cl, g_cl) = results
    assert loss_cl == pytest.approx(loss, rel=1e-5)
    assert accs_cl == accs
    scale = max(float(t.abs().max()) for t in g)    # conv biases before BatchNorm: ~0
    for a, c in zip(g, g_cl, strict=True):
        torch.testing.assert_close(c, a, rtol=1e-4, atol=1e-5 * scale)
