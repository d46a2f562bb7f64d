"""The CUDA path for real: captured graphs (one and several tasks in flight), the
compiled inner step and bf16 against the eager fast engine on the same GPU.

Skipped without a GPU (CI has none); ``bench/gpu_check.sh`` runs this file on one.
"""
import pytest
import torch

import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

BASE = ["--dataset", "Strokes", "--hidden_size", "16", "--gradient_steps", "4",
        "--gradient_steps_test", "4", "--num_shots_train", "1", "--num_shots_test", "3",
        "--seed", "0"]


def batch(tasks, seed):
    g = torch.Generator().manual_seed(seed)
    def split(k):
        return (torch.randn(tasks, 5 * k, 1, 28, 28, generator=g).cuda(),
                torch.arange(5).repeat_interleave(k).repeat(tasks, 1).cuda())
    return {"train": split(1), "test": split(3)}


def outcomes(extra, method_flags):
    """Gradients, summed query loss and evaluation accuracies over three batches."""
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    learner = train.build(train.parse_args(BASE + method_flags + extra))
    out = []
    for seed in range(3):
        b = batch(4, seed)
        torch.manual_seed(seed)
        learner.zero_grad()
        loss, _ = learner.engine.train_tasks(learner.tasks(b), [4] * 4)
        params = list(learner.model.parameters()) + list(learner.mask.parameters())
        out += [loss] + [p.grad.clone() for p in params]
        out.append(learner.evaluate_tensors(b)[1])
    return out, learner


@pytest.mark.parametrize("method_flags, extra", [
    (["--method", "sparse-maml"], ["--task_streams", "1"]),
    (["--method", "sparse-maml"], ["--task_streams", "3"]),
    (["--method", "sparse-maml"], ["--compile", "--task_streams", "2"]),
    (["--weight_mask"], ["--task_streams", "3"]),
])
def test_captured_graphs_match_eager(method_flags, extra):
    expected, _ = outcomes(["--no-cuda_graphs"], method_flags)
    got, learner = outcomes(extra, method_flags)
    assert not learner.engine.graphs.failed, "CUDA-graph capture fell back to eager"
    assert all(s.graph is not None for s in learner.engine.graphs.steps.values())
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)


def test_bf16_channels_last_follow_fp32():
    flags = ["--method", "sparse-maml"]
    expected, _ = outcomes(["--no-cuda_graphs"], flags)
    got, _ = outcomes(["--amp", "bf16", "--channels_last", "--compile", "--task_streams", "2"],
                      flags)
    for e, g in zip(expected, got):
        # bf16 forward/backward: a few per cent on each gradient, same direction
        cos = torch.nn.functional.cosine_similarity(e.flatten().float(), g.flatten().float(),
                                                    dim=0)
        assert cos > 0.98 or e.abs().max() < 1e-6
