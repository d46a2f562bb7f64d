"""The CUDA path for real: captured graphs (one and several tasks in flight), the
compiled inner step and bf16 against the eager fast engine on the same GPU.

Skipped without a GPU (CI has none); ``bench/gpu_check.sh tests`` runs this file on one.
"""
import pytest
import torch

from tests.conftest import learner_for
from utils import cli

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

BASE = ["--dataset", "Strokes", "--hidden_size", "16", "--gradient_steps", "4",
        "--gradient_steps_test", "4", "--num_shots_train", "1", "--num_shots_test", "3",
        "--seed", "0"]
QUERIES = 15


@pytest.fixture(autouse=True)
def no_tf32():
    """True fp32 convolutions and matmuls, so eager and captured runs can agree to 1e-4."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def batch(tasks, seed):
    g = torch.Generator().manual_seed(seed)
    def split(k):
        return (torch.randn(tasks, 5 * k, 1, 28, 28, generator=g).cuda(),
                torch.arange(5).repeat_interleave(k).repeat(tasks, 1).cuda())
    return {"train": split(1), "test": split(3)}


def outcomes(extra, method_flags):
    """(losses, gradients, evaluation accuracies) over three batches of four tasks."""
    torch.manual_seed(0)
    learner = learner_for(cli.parse_args(BASE + method_flags + extra))
    losses, grads, accuracies = [], [], []
    for seed in range(3):
        b = batch(4, seed)
        torch.manual_seed(seed)            # PLUS draws its mask noise per task
        learner.zero_grad()
        loss, _ = learner.engine.train_tasks(learner.tasks(b), [4] * 4)
        params = list(learner.model.parameters()) + list(learner.mask.parameters())
        losses.append(loss)
        grads += [p.grad.clone() for p in params]
        torch.manual_seed(seed)
        accuracies.append(learner.evaluate_tensors(b)[1])
    return (torch.stack(losses), grads, torch.cat(accuracies)), learner


@pytest.mark.parametrize("method_flags, extra", [
    (["--method", "sparse-maml"], ["--task_streams", "1"]),
    (["--method", "sparse-maml"], ["--task_streams", "3"]),
    (["--method", "sparse-maml"], ["--compile", "--task_streams", "2"]),
    (["--weight_mask"], ["--task_streams", "3"]),
    (["--gradient_mask", "--gradient_mask_plus"], ["--task_streams", "3"]),
])
def test_captured_graphs_match_eager(method_flags, extra):
    (loss_e, grads_e, acc_e), _ = outcomes(["--no-cuda_graphs"], method_flags)
    (loss_g, grads_g, acc_g), learner = outcomes(extra, method_flags)
    assert not learner.engine.graphs.failed, "CUDA-graph capture fell back to eager"
    assert all(s.graph is not None for s in learner.engine.graphs.steps.values())
    torch.testing.assert_close(loss_g, loss_e, rtol=1e-4, atol=1e-5)
    for e, g in zip(grads_e, grads_g, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)
    # an accuracy moves in steps of 1/15: allow one query to flip on a near-tie
    assert (acc_g - acc_e).abs().max() <= 1 / QUERIES + 1e-6


def median_cosine(expected, got):
    """Median over the non-trivial gradient tensors of cos(expected, got)."""
    cos = [torch.nn.functional.cosine_similarity(e.flatten(), g.flatten(), dim=0)
           for e, g in zip(expected, got, strict=True) if e.norm() > 1e-4]
    return torch.stack(cos).median()


def test_bf16_captured_and_compiled_is_as_close_to_fp32_as_eager_bf16():
    # bf16 meta-gradients of an untrained net on random tasks are noisy (on CPU, eager
    # and compiled alike: median cosine to fp32 ~0.87); the fast path must add no error.
    flags = ["--method", "sparse-maml"]
    (loss_e, grads_e, _), _ = outcomes(["--no-cuda_graphs"], flags)
    (loss_b, grads_b, _), _ = outcomes(["--no-cuda_graphs", "--amp", "bf16"], flags)
    (loss_f, grads_f, _), learner = outcomes(["--amp", "bf16", "--channels_last", "--compile",
                                              "--task_streams", "2"], flags)
    assert not learner.engine.graphs.failed
    torch.testing.assert_close(loss_f, loss_e, rtol=2e-2, atol=1e-2)
    assert median_cosine(grads_e, grads_f) >= median_cosine(grads_e, grads_b) - 0.05
