"""maml/meta_learner.py: per-task inner-step sampling (``--gradient_step_sampling``) and
bf16 autocast (``--amp bf16``) on CPU, through full meta-steps of both engines."""
import numpy as np
import pytest
import torch

from tests.conftest import learner_from_flags

BASE = ["--dataset", "Strokes", "--hidden_size", "8", "--method", "sparse-maml",
        "--batch_size", "4", "--dont_use_cuda", "--seed", "0"]
pytestmark = pytest.mark.usefixtures("one_thread")


def batch(tasks=4, seed=0, dtype=None):
    g = torch.Generator().manual_seed(seed)
    dtype = dtype or torch.get_default_dtype()
    return {"train": (torch.randn(tasks, 5, 1, 28, 28, generator=g, dtype=dtype),
                      torch.arange(5).repeat(tasks, 1)),
            "test": (torch.randn(tasks, 10, 1, 28, 28, generator=g, dtype=dtype),
                     torch.arange(5).repeat_interleave(2).repeat(tasks, 1))}


def grads(learner):
    return [p.grad.detach().clone() for p in learner.model.parameters()] + \
           [p.grad.detach().clone() for p in learner.mask.parameters()]


def test_step_sampling_draws_each_task_its_own_count_in_range():
    learner = learner_from_flags(BASE + ["--gradient_steps", "5",
                                         "--gradient_step_sampling", "2"])
    np.random.seed(0)
    draws = [learner.sample_steps(4) for _ in range(200)]
    counts = np.array(draws).ravel()
    assert set(counts) == {3, 4, 5, 6, 7}           # uniform on [T - r, T + r], all reached
    assert any(len(set(d)) > 1 for d in draws)      # tasks of one batch differ
    # a chi-square bound on uniformity (4 dof; 18.5 is the 0.999 quantile)
    observed = np.bincount(counts, minlength=8)[3:]
    expected = len(counts) / 5
    assert ((observed - expected) ** 2 / expected).sum() < 18.5


def test_step_sampling_without_range_is_the_fixed_count():
    learner = learner_from_flags(BASE + ["--gradient_steps", "5"])
    assert learner.sample_steps(3) == [5, 5, 5]


def test_both_engines_agree_with_sampled_step_counts(float64):
    flags = BASE + ["--gradient_steps", "3", "--gradient_step_sampling", "2"]
    results = {}
    for engine in ("reference", "fast"):
        learner = learner_from_flags(flags + ["--engine", engine])
        learner.model.double()
        learner.mask.double()
        np.random.seed(4)                       # the same per-task step counts
        steps = learner.sample_steps(4)
        learner.zero_grad()
        learner.engine.train_tasks(learner.tasks(batch()), steps)
        results[engine] = (steps, grads(learner))
    (steps_ref, ref), (steps_fast, fast) = results["reference"], results["fast"]
    assert steps_ref == steps_fast and len(set(steps_ref)) > 1
    for a, b in zip(ref, fast, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12)


def test_different_step_counts_give_different_meta_gradients(float64):
    learner = learner_from_flags(BASE + ["--gradient_steps", "3"])
    learner.model.double()
    learner.mask.double()
    out = []
    for steps in ([1, 1, 1, 1], [1, 3, 1, 3]):
        learner.zero_grad()
        learner.engine.train_tasks(learner.tasks(batch()), steps)
        out.append(grads(learner))
    assert any(not torch.allclose(a, b) for a, b in zip(*out, strict=True))


def test_bf16_autocast_on_cpu_keeps_fp32_parameters_and_is_close_to_fp32():
    results = {}
    for amp in ("none", "bf16"):
        learner = learner_from_flags(BASE + ["--gradient_steps", "2", "--amp", amp])
        out = learner.step(batch(dtype=torch.float32))
        results[amp] = (out["loss"], grads(learner), learner)
    (loss, g32, _), (loss_bf16, g16, learner) = results["none"], results["bf16"]
    assert all(p.dtype == torch.float32 for p in learner.model.parameters())
    assert all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in g16)
    assert loss_bf16 != loss                         # autocast is really on ...
    assert loss_bf16 == pytest.approx(loss, rel=0.05)   # ... and changes little
    flat32, flat16 = torch.cat([g.ravel() for g in g32]), torch.cat([g.ravel() for g in g16])
    assert torch.nn.functional.cosine_similarity(flat32, flat16, dim=0) > 0.5
