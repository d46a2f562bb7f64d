"""README "Extending": the worked example (a new mask mode) runs as printed there, trains
through the command line and both engines give the same meta-gradients for it."""
import re
from pathlib import Path

import pytest
import torch

from maml.mask_modes import MASK_MODES
from tests.conftest import learner_from_flags
from tests.maml.test_mask_modes import closed_form_matches_autograd

README = Path(__file__).resolve().parents[2] / "README.md"
FLAGS = ["--dataset", "Strokes", "--hidden_size", "8", "--gradient_steps", "3",
         "--batch_size", "2", "--dont_use_cuda", "--gradient_mask", "--mask_mode", "sign"]


@pytest.fixture
def sign_mode():
    text = README.read_text(encoding="utf-8")
    block = re.search(r"<!-- extending-example.*?-->\s*```python\n(.*?)```", text, re.S)
    assert block, "README lost its extending example"
    namespace = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)   # noqa: S102
    yield namespace["SignGradientMask"]
    MASK_MODES.pop("sign", None)


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"train": (torch.randn(2, 5, 1, 28, 28, generator=g, dtype=torch.float64),
                      torch.arange(5).repeat(2, 1)),
            "test": (torch.randn(2, 10, 1, 28, 28, generator=g, dtype=torch.float64),
                     torch.arange(5).repeat_interleave(2).repeat(2, 1))}


def test_the_new_mode_meets_the_closed_form_contract(sign_mode):
    (d_theta, d_mask), (c_theta, c_mask) = closed_form_matches_autograd(sign_mode(0.3))
    torch.testing.assert_close(c_theta, d_theta)
    torch.testing.assert_close(c_mask, d_mask)


def test_both_engines_agree_on_the_new_mode(sign_mode, float64):
    grads = {}
    for engine in ("reference", "fast"):
        learner = learner_from_flags(FLAGS + ["--engine", engine])
        assert isinstance(learner.rule.mode, sign_mode)
        learner.zero_grad()
        learner.engine.train_tasks(learner.tasks(batch()), [3, 3])
        grads[engine] = [p.grad for p in learner.model.parameters()] + \
                        [p.grad for p in learner.mask.parameters()]
    assert any(float(g.abs().max()) > 0 for g in grads["reference"])
    for ref, fast in zip(grads["reference"], grads["fast"], strict=True):
        torch.testing.assert_close(fast, ref, rtol=1e-9, atol=1e-12)


def test_the_new_mode_trains_through_the_command_line(sign_mode):
    learner = learner_from_flags(FLAGS)
    before = [p.detach().clone() for p in learner.mask.parameters()]
    out = learner.step({k: (x.float(), y) for k, (x, y) in batch().items()})
    assert torch.isfinite(torch.tensor(out["loss"]))
    assert any(not torch.equal(p, q) for p, q in zip(learner.mask.parameters(), before,
                                                     strict=True))
