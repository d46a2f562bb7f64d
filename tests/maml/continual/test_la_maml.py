"""La-MAML's update rules against values computed by hand (numpy, float64) on a linear
softmax classifier: the inner step, the meta-loss and its gradients, the rate step and
the asynchronous / synchronous weight steps, for every La-MAML variant."""
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn as nn

from maml.continual import build_continual_learner
from maml.continual.config import ContinualConfig

pytestmark = pytest.mark.usefixtures("float64")


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def ce(W, b, X, Y):
    """Mean cross-entropy of a linear classifier and its gradients (hand-derived:
    dL/dz = softmax(z) - onehot(y), averaged over the rows)."""
    P = softmax(X @ W.T + b)
    loss = -np.log(P[np.arange(len(Y)), Y]).mean()
    P[np.arange(len(Y)), Y] -= 1
    P /= len(Y)
    return loss, P.T @ X, P.sum(0)


def make(method, seed=0, **overrides):
    torch.manual_seed(seed)
    model = nn.Sequential(OrderedDict(fc=nn.Linear(3, 2)))
    settings = dict(glances=1, memories=0, replay_batch_size=0, grad_clip_norm=0.0,
                    alpha_init=0.15, opt_lr=0.3, opt_wt=0.1)
    config = ContinualConfig(method=method, **{**settings, **overrides})
    return build_continual_learner(config, model, seed=seed)


def params(learner):
    p = dict(learner.model.named_parameters())
    return p["fc.weight"].detach().numpy().copy(), p["fc.bias"].detach().numpy().copy()


def scores(learner):
    s = learner.learned_rates.scores.logits()
    return s["fc.weight"].detach().numpy().copy(), s["fc.bias"].detach().numpy().copy()


def set_scores(learner, w, b):
    s = learner.learned_rates.scores.logits()
    with torch.no_grad():
        s["fc.weight"].copy_(torch.as_tensor(w))
        s["fc.bias"].copy_(torch.as_tensor(b))


DATA = (np.array([[0.5, -1.0, 2.0], [1.5, 0.3, -0.7]]), np.array([1, 0]))


def tensors(X, Y):
    return torch.as_tensor(X), torch.as_tensor(Y)


def test_inner_step_is_w_minus_relu_alpha_times_gradient():
    learner = make("la-maml")
    aw, ab = np.array([[0.2, -0.1, 0.3], [0.05, 0.4, -0.2]]), np.array([0.1, -0.3])
    set_scores(learner, aw, ab)
    W, b = params(learner)
    X, Y = DATA
    _, gW, gb = ce(W, b, X[:1], Y[:1])
    fast, g = learner.inner_step(learner.theta(), *tensors(X[:1], Y[:1]),
                                 {k: m.detach() for k, m in learner.learned_rates.masks().items()})
    np.testing.assert_allclose(fast["fc.weight"].numpy(), W - np.maximum(aw, 0) * gW, atol=1e-12)
    np.testing.assert_allclose(fast["fc.bias"].numpy(), b - np.maximum(ab, 0) * gb, atol=1e-12)
    np.testing.assert_allclose(g["fc.weight"].numpy(), gW, atol=1e-12)


def hand_glance(W, b, rate_w, rate_b, X, Y, bX, bY):
    """One glance by hand: inner loop sample by sample, then the meta-loss
    (1/B) sum_i L(w_i; bX, bY) and its gradients wrt w and wrt the rates r."""
    w, v = W.copy(), b.copy()
    GW, Gb = np.zeros_like(W), np.zeros_like(b)
    dW, db, drW, drb, meta = 0, 0, 0, 0, 0
    for i in range(len(Y)):
        _, gW, gb = ce(w, v, X[i:i + 1], Y[i:i + 1])
        w, v = w - rate_w * gW, v - rate_b * gb
        GW, Gb = GW + gW, Gb + gb
        loss, mW, mb = ce(w, v, bX, bY)
        meta += loss / len(Y)
        dW, db = dW + mW / len(Y), db + mb / len(Y)
        drW, drb = drW - GW * mW / len(Y), drb - Gb * mb / len(Y)
    return meta, dW, db, drW, drb


def test_meta_loss_and_its_gradients():
    learner = make("la-maml")
    W, b = params(learner)
    X, Y = DATA
    masks = {k: m.detach() for k, m in learner.learned_rates.masks().items()}
    weights, sums = learner.inner_loop(*tensors(X, Y), masks)
    meta, d_theta, d_masks = learner.meta_gradients(weights, sums, masks, *tensors(X, Y))
    want = hand_glance(W, b, 0.15, 0.15, X, Y, X, Y)
    assert float(meta) == pytest.approx(want[0], abs=1e-12)
    for got, expected in zip((d_theta["fc.weight"], d_theta["fc.bias"], d_masks["fc.weight"],
                              d_masks["fc.bias"]), want[1:], strict=True):
        np.testing.assert_allclose(got.numpy(), expected, atol=1e-12)


def observe_once(learner, X, Y, seed=0):
    """observe() on (X, Y); returns the permutation it used (the learner's generator
    draws it first, and an empty buffer draws nothing)."""
    perm = torch.randperm(len(Y), generator=torch.Generator().manual_seed(seed)).numpy()
    learner.observe(*tensors(X, Y))
    return perm


@pytest.mark.parametrize("method", ["la-maml", "sync-la-maml", "c-maml"])
def test_rate_step_and_weight_step(method):
    learner = make(method)
    aw, ab = np.array([[0.2, -0.1, 0.3], [0.05, 0.4, -0.2]]), np.array([0.1, 0.3])
    if method != "c-maml":
        set_scores(learner, aw, ab)
    else:
        aw, ab = np.full((2, 3), 0.15), np.full(2, 0.15)
    W, b = params(learner)
    X, Y = DATA
    perm = observe_once(learner, X, Y)
    X, Y = X[perm], Y[perm]
    _, dW, db, drW, drb = hand_glance(W, b, np.maximum(aw, 0), np.maximum(ab, 0), X, Y, X, Y)
    if method == "c-maml":                      # rates fixed
        new_aw, new_ab = aw, ab
    else:                                       # alpha <- alpha - opt_lr * dL/dalpha
        new_aw = aw - 0.3 * drW * (aw > 0)      # ReLU: no gradient where alpha <= 0
        new_ab = ab - 0.3 * drb * (ab > 0)
    np.testing.assert_allclose(scores(learner)[0], new_aw, atol=1e-12)
    np.testing.assert_allclose(scores(learner)[1], new_ab, atol=1e-12)
    if method == "la-maml":                     # asynchronous: the updated rates
        want_W, want_b = W - np.maximum(new_aw, 0) * dW, b - np.maximum(new_ab, 0) * db
    else:                                       # synchronous: SGD with opt_wt
        want_W, want_b = W - 0.1 * dW, b - 0.1 * db
    np.testing.assert_allclose(params(learner)[0], want_W, atol=1e-12)
    np.testing.assert_allclose(params(learner)[1], want_b, atol=1e-12)


def test_sparse_binary_rates_step_with_straight_through_gradient():
    learner = make("sparse-la-maml")
    sw, sb = np.array([[0.2, -0.1, 0.3], [-0.05, 0.4, -0.2]]), np.array([0.1, -0.3])
    set_scores(learner, sw, sb)
    W, b = params(learner)
    X, Y = DATA
    perm = observe_once(learner, X, Y)
    X, Y = X[perm], Y[perm]
    gate_w, gate_b = (sw > 0).astype(float), (sb > 0).astype(float)
    _, dW, db, drW, drb = hand_glance(W, b, 0.15 * gate_w, 0.15 * gate_b, X, Y, X, Y)
    # r = 0.15 m, m = (sign(s) + 1) / 2 with dm/ds = 1/2 (straight-through), for every s
    new_sw, new_sb = sw - 0.3 * 0.15 * 0.5 * drW, sb - 0.3 * 0.15 * 0.5 * drb
    np.testing.assert_allclose(scores(learner)[0], new_sw, atol=1e-12)
    np.testing.assert_allclose(scores(learner)[1], new_sb, atol=1e-12)
    np.testing.assert_allclose(params(learner)[0], W - 0.15 * (new_sw > 0) * dW, atol=1e-12)
    np.testing.assert_allclose(params(learner)[1], b - 0.15 * (new_sb > 0) * db, atol=1e-12)


def test_straight_through_relu_rates_reach_negative_scores_and_come_back():
    X, Y = DATA
    negative = np.array([[-1e-4, -1e-4, -1e-4], [-1e-4, -1e-4, -1e-4]]), np.array([0.2, 0.2])
    moved = {}
    for method in ("la-maml", "sparse-relu-la-maml"):
        learner = make(method, opt_lr=50.0)
        set_scores(learner, *negative)
        observe_once(learner, X, Y)
        moved[method] = scores(learner)[0] - negative[0]
    # La-MAML: ReLU has no gradient below 0, so those rates are off for good
    assert np.all(moved["la-maml"] == 0)
    # straight-through ReLU: they get gradient, and some come back above 0
    assert np.all(moved["sparse-relu-la-maml"] != 0)
    assert np.any(negative[0] + moved["sparse-relu-la-maml"] > 0)


def test_gradients_are_clipped_to_the_norm():
    learner = make("c-maml", grad_clip_norm=1e-3)
    W, b = params(learner)
    X, Y = DATA
    observe_once(learner, X, Y)
    W2, b2 = params(learner)
    step = np.concatenate([(W - W2).ravel(), b - b2]) / 0.1        # = clipped gradient
    assert np.linalg.norm(step) == pytest.approx(1e-3, rel=1e-5)    # torch adds 1e-6


def test_samples_enter_the_buffer_once_in_the_first_glance():
    learner = make("la-maml", memories=50, replay_batch_size=4, glances=3)
    X, Y = DATA
    learner.observe(*tensors(X, Y))
    learner.observe(*tensors(X, Y))
    assert learner.buffer.seen == 4 and len(learner.buffer) == 4
