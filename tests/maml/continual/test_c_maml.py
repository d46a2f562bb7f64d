"""OSAKA's Continual-MAML: the first-order fast weights and their meta-gradient, the
stream step with boundary detection, prolonged adaptation, sparse gates, exact state."""
import copy
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from maml.continual import build_continual_learner
from maml.continual.config import ContinualConfig

pytestmark = pytest.mark.usefixtures("float64")


def make(method="continual-maml", seed=0, **overrides):
    torch.manual_seed(seed)
    model = nn.Sequential(OrderedDict(fc=nn.Linear(4, 3)))
    settings = dict(inner_steps=2, step_size=0.1, meta_lr=1e-2, smoothing=0.25,
                    boundary_threshold=1e9, pa_buffer=3, mask_init="uniform")
    return build_continual_learner(ContinualConfig(method=method, **{**settings, **overrides}),
                                   model, seed)


def batch(seed, n=6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.arange(n) % 3


def test_fast_weights_and_meta_gradient_match_autograd_through_first_order_steps():
    learner = make()
    x, y = batch(0)
    xq, yq = batch(1)
    theta = dict(learner.model.named_parameters())
    alpha = learner.learned_rates.scores.logits()           # one step size per tensor
    # OSAKA's update_parameters, first order: params - alpha * grad, grad a constant
    params = dict(theta)
    for _ in range(2):
        logits = F.linear(x, params["fc.weight"], params["fc.bias"])
        grads = torch.autograd.grad(F.cross_entropy(logits, y), list(params.values()))
        params = {n: p - alpha[n] * g.detach() for (n, p), g in zip(params.items(), grads,
                                                                             strict=True)}
    loss = F.cross_entropy(F.linear(xq, params["fc.weight"], params["fc.bias"]), yq)
    want = torch.autograd.grad(loss, list(theta.values()) + list(alpha.values()))

    fast, total = learner.adapt(learner.theta(), x, y)
    for n in fast:
        torch.testing.assert_close(fast[n], params[n].detach(), rtol=0, atol=1e-12)
    got_loss, _ = learner.loss_and_logits(learner.with_graph(fast, total), xq, yq)
    got = torch.autograd.grad(got_loss, list(theta.values()) + list(alpha.values()))
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_a_step_meta_trains_on_the_previous_fast_weights_unless_a_boundary():
    x0, y0 = batch(0)
    x1, y1 = batch(1)
    for gamma, boundary in ((1e9, False), (0.0, True)):
        learner = make(boundary_threshold=gamma)
        first = learner.step(x0, y0)
        assert first["boundary"] is False and learner.fast is not None
        before = {n: p.detach().clone() for n, p in learner.model.named_parameters()}
        # the expected meta-gradient: loss of the fast weights adapted on batch 0, on batch 1
        probe = copy.deepcopy(learner)
        loss, _ = probe.loss_and_logits(probe.with_graph(probe.fast, probe.inner_sum), x1, y1)
        loss.backward()
        out = learner.step(x1, y1)
        assert out["boundary"] is boundary
        assert out["loss"] == pytest.approx(float(loss.detach()))
        for n, p in learner.model.named_parameters():
            delta = p.detach() - before[n]
            if boundary:                      # no meta-update at a boundary
                assert torch.equal(delta, torch.zeros_like(delta))
            else:                             # Adam's first step: -lr * sign(gradient)
                g = dict(probe.model.named_parameters())[n].grad
                big = g.abs() > 1e-6
                torch.testing.assert_close(delta[big], -1e-2 * torch.sign(g[big]),
                                           rtol=1e-3, atol=1e-9)
        # the new fast weights are adapted from theta (before its update) on batch 1
        probe_fast, _ = make(boundary_threshold=gamma).adapt(before, x1, y1)
        for n in probe_fast:
            torch.testing.assert_close(learner.fast[n], probe_fast[n], rtol=0, atol=1e-12)


def test_prolonged_adaptation_buffers_batches_and_restarts_after_a_boundary():
    learner = make("continual-maml-pa")
    theta0 = {n: p.detach().clone() for n, p in learner.model.named_parameters()}
    for s in range(4):                                   # no boundary: fast weights accumulate
        learner.step(*batch(s))
    assert len(learner.pending) == 4                     # 4 > pa_buffer = 3: update next step
    assert all(torch.equal(p.detach(), theta0[n]) for n, p in learner.model.named_parameters())
    x, y = batch(10)
    continued, _ = learner.adapt(learner.fast, x, y)
    learner.step(x, y)
    assert learner.pending == []                         # one meta-update on the buffer
    assert not all(torch.equal(p.detach(), theta0[n])
                   for n, p in learner.model.named_parameters())
    for n in continued:                                  # phi kept adapting from itself
        torch.testing.assert_close(learner.fast[n], continued[n], rtol=0, atol=1e-12)
    learner.last_boundary = True                         # after a boundary: back to theta
    x, y = batch(11)
    restart, _ = learner.adapt(learner.theta(), x, y)
    learner.step(x, y)
    for n in restart:
        torch.testing.assert_close(learner.fast[n], restart[n], rtol=0, atol=1e-12)


def test_sparse_gates_freeze_parameters_and_pass_gradient_to_negative_scores():
    learner = make("sparse-continual-maml")
    x, y = batch(0)
    scores = learner.learned_rates.scores.logits()
    assert any((s < 0).any() for s in scores.values())   # uniform init: about half are off
    fast, total = learner.adapt(learner.theta(), x, y)
    for n, p in learner.model.named_parameters():
        off = scores[n] < 0
        assert torch.equal(fast[n][off], p.detach()[off])        # gated: not adapted
        assert not torch.equal(fast[n][~off], p.detach()[~off])
    loss, _ = learner.loss_and_logits(learner.with_graph(fast, total), *batch(1))
    loss.backward()
    for s in scores.values():                             # straight-through: every score
        assert (s.grad[s < 0] != 0).all()


def test_state_dict_restores_the_stream_exactly():
    a = make("continual-maml-pa")
    for s in range(3):
        a.step(*batch(s))
    state = copy.deepcopy(a.state_dict())
    outs_a = [a.step(*batch(s)) for s in range(3, 7)]
    b = make("continual-maml-pa", seed=5)                 # different init, then restored
    b.load_state_dict(state)
    outs_b = [b.step(*batch(s)) for s in range(3, 7)]
    assert outs_a == outs_b
    for (n, p), q in zip(a.model.named_parameters(), b.model.parameters(), strict=True):
        assert torch.equal(p, q), n
