"""``--compile``: the torch.compile'd inner step (torch.func.grad inside one graph) must
give the eager fast engine's meta-gradients and evaluation results.

Inductor compiles C++ kernels on CPU too (~20-60 s per variant on 2 cores), so this is
the one slow engine test; it also runs the compiled step through the static buffers of
the CUDA-graph path ("emulate") with two tasks in flight.
"""
import pytest
import torch

from maml.fast import FastEngine
from tests.conftest import learner_for
from utils import cli

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("float64")]


def batch(tasks, seed):
    g = torch.Generator().manual_seed(seed)
    def split(k):
        return (torch.randn(tasks, 5 * k, 1, 28, 28, generator=g, dtype=torch.float64),
                torch.arange(5).repeat_interleave(k).repeat(tasks, 1))
    return {"train": split(1), "test": split(2)}


@pytest.mark.parametrize("flags", [["--method", "sparse-maml"], ["--weight_mask"]])
def test_compiled_inner_step_matches_eager(flags):
    argv = ["--dataset", "Strokes", "--hidden_size", "4", "--gradient_steps", "3",
            "--gradient_steps_test", "2", "--batch_size", "2", "--dont_use_cuda"] + flags
    learners = []
    for options in ({}, {"compile": True, "cuda_graphs": "emulate", "task_streams": 2}):
        torch.manual_seed(0)
        learner = learner_for(cli.parse_args(argv))
        learner.model.double()
        learner.mask.double()
        learner.engine = FastEngine(learner.model, learner.mask, learner.rule, **options)
        learners.append(learner)
    for seed in (0, 1):
        b = batch(2, seed)
        results = []
        for learner in learners:
            learner.zero_grad()
            loss, _ = learner.engine.train_tasks(learner.tasks(b), [3, 3])
            params = list(learner.model.parameters()) + list(learner.mask.parameters())
            losses, accs = learner.evaluate_tensors(b)
            results.append([loss] + [p.grad for p in params] + [losses, accs])
        for expected, got in zip(*results, strict=True):
            torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)
    # dynamo compiled whole graphs (fullgraph=True raises on a graph break instead of
    # running eagerly); later tests may reuse the first test's compiled entries
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 2
