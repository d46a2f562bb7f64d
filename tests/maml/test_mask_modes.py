"""maml/mask_modes.py: each mode's inner update by hand, and its closed-form first-order
outer gradient against autograd through the mode's own update.

The second test is the contract every mode (a new one included) must meet: unroll T
updates with constant inner gradients g_t, backpropagate dL/d theta_T, and compare with
what ``accumulate`` / ``outer_grads`` give from the running sums.
"""
import pytest
import torch

from maml.mask_modes import MASK_MODES, GradientMask, LearningRateMask, NoMask, WeightMask

THETA = torch.tensor([1.0, 2.0, -1.0])
GRAD = torch.tensor([0.5, -1.0, 2.0])
MASK = torch.tensor([1.0, 0.0, 0.5])


@pytest.mark.parametrize("mode, expected", [
    (GradientMask(0.1), [0.95, 2.0, -1.1]),          # theta - alpha * (m * g)
    (LearningRateMask(0.1), [0.5, 2.0, -2.0]),       # theta - m * g, alpha not applied
    (WeightMask(0.1), [0.95, 0.0, -0.6]),            # (theta - alpha * g) * m
    (NoMask(0.1), [0.95, 2.1, -1.2]),                # theta - alpha * g (MAML)
])
def test_update_by_hand(mode, expected):
    torch.testing.assert_close(mode.update(THETA, GRAD, MASK), torch.tensor(expected),
                               rtol=0, atol=1e-6)


def closed_form_matches_autograd(mode, steps=4, seed=0):
    """(autograd, closed form) of (dL/d theta, dL/dm) for L = <w, theta_T>, in float64."""
    g = torch.Generator().manual_seed(seed)
    shape = (3, 4)
    theta = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(shape, generator=g, dtype=torch.float64, requires_grad=True)
    grads = [torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(steps)]
    w = torch.randn(shape, generator=g, dtype=torch.float64)
    # autograd through the unrolled updates (the reference engine's first order)
    current = mode.initial(theta, mask)
    sums = mode.start_sums(theta.detach())
    for grad in grads:
        sums = mode.accumulate(sums, current.detach(), grad, mask.detach())
        current = mode.update(current, grad, mask)
    d_theta, d_mask = torch.autograd.grad((w * current).sum(), [theta, mask],
                                          allow_unused=True)
    # closed form: dL/d theta_0 and dL/dm, then the backward through theta_0 = initial(...)
    d0, dm = mode.outer_grads(w, mask.detach(), sums)
    theta0 = mode.initial(theta, mask)
    outputs, seeds = [theta0], [d0]
    if dm is not None:
        outputs.append(mask)
        seeds.append(dm)
    closed = torch.autograd.grad(outputs, [theta, mask], seeds, allow_unused=True)
    return (d_theta, d_mask), closed


@pytest.mark.parametrize("name", sorted(MASK_MODES))
def test_closed_form_outer_gradient_equals_autograd(name):
    mode = MASK_MODES[name](0.3)
    (d_theta, d_mask), (c_theta, c_mask) = closed_form_matches_autograd(mode)
    torch.testing.assert_close(c_theta, d_theta, rtol=1e-12, atol=1e-12)
    if d_mask is None:
        assert c_mask is None and not mode.uses_mask
    else:
        assert float(d_mask.abs().max()) > 0
        torch.testing.assert_close(c_mask, d_mask, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(MASK_MODES))
def test_reset_sums_restores_the_start(name):
    mode = MASK_MODES[name](0.3)
    theta = torch.randn(5)
    sums = mode.start_sums(theta)
    changed = mode.accumulate(sums, theta, torch.randn(5), torch.rand(5))
    mode.reset_sums_(changed)
    assert changed.keys() == sums.keys()
    for key in sums:
        assert torch.equal(changed[key], sums[key]), key


@pytest.mark.parametrize("name", sorted(MASK_MODES))
def test_first_sums_equal_one_accumulate_from_the_start(name):
    """The fast engine starts its sums at step 1 with ``first_sums`` (no zeros to add to):
    the same values as ``accumulate`` from ``start_sums``, for every mode."""
    mode = MASK_MODES[name](0.3)
    g = torch.Generator().manual_seed(1)
    theta, grad, mask = (torch.randn(4, 3, generator=g) for _ in range(3))
    expected = mode.accumulate(mode.start_sums(theta), theta, grad, mask)
    first = mode.first_sums(theta, grad, mask)
    assert first.keys() == expected.keys()
    for key in expected:
        assert torch.equal(first[key], expected[key]), key


def test_a_subclass_that_changes_the_sums_gets_the_generic_first_step():
    """A parent's ``first_sums`` shortcut ({"G": g}) would be wrong for a subclass whose
    ``accumulate`` sums something else: such a subclass falls back to the generic one."""
    class SignSums(GradientMask):
        def accumulate(self, sums, theta, grad, mask):
            return {"G": sums["G"] + torch.sign(grad)}

    first = SignSums(0.1).first_sums(THETA, GRAD, MASK)
    assert torch.equal(first["G"], torch.sign(GRAD))
    assert LearningRateMask.first_sums is GradientMask.first_sums     # same sums, kept
