"""maml/inner_loop.py: the inner-loop parameter selection, theta_0, adapt().

Expected values are computed by hand (literals) or from the closed-form softmax
cross-entropy gradient in numpy, never from the autograd code under test.
"""
import numpy as np
import pytest
import torch
import torch.nn as nn

from maml.functional import loss as support_loss
from maml.inner_loop import InnerLoopRule, adapt, inner_loop_names
from maml.mask_modes import GradientMask, NoMask, WeightMask
from tests.conftest import learner_for
from utils import cli


def test_initial_applies_the_weight_mask_only_where_there_is_one():
    theta = {"a": torch.tensor([1.0, -2.0]), "b": torch.tensor([3.0])}
    masks = {"a": torch.tensor([0.0, 1.0])}
    weight = InnerLoopRule(("a", "b"), WeightMask(0.1))
    out = weight.initial(theta, masks)
    assert torch.equal(out["a"], torch.tensor([0.0, -2.0]))
    assert out["b"] is theta["b"]
    for rule in (InnerLoopRule(("a", "b"), GradientMask(0.1)), InnerLoopRule(("a", "b"),
                                                                              NoMask(0.1))):
        out = rule.initial(theta, masks)
        assert out is not theta and all(out[n] is theta[n] for n in theta)
    assert all(weight.initial(theta, {})[n] is theta[n] for n in theta)


def test_a_parameter_without_a_mask_adapts_as_in_maml():
    rule = InnerLoopRule(("a", "b"), GradientMask(0.1))
    masks = {"a": torch.tensor([0.0])}
    assert isinstance(rule.mode_for(masks, "b"), NoMask)
    assert rule.mode_for(masks, "a") is rule.mode


CONVNET_NAMES = [f"features.layer{i}.{m}.{p}" for i in range(1, 5)
                 for m in ("conv", "norm") for p in ("weight", "bias")] + \
                ["classifier.weight", "classifier.bias"]
RESNET_BLOCK = ["conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight", "bn2.weight",
                "bn2.bias", "conv3.weight", "bn3.weight", "bn3.bias", "downsample.0.weight",
                "downsample.1.weight", "downsample.1.bias"]
RESNET_NAMES = [f"layer{i}.0.{n}" for i in range(1, 5) for n in RESNET_BLOCK] + \
               ["classifier.weight", "classifier.bias"]


def _resnet(keep):
    return [f"layer{i}.0.{n}" for i in range(1, 5) for n in keep] + \
           ["classifier.weight", "classifier.bias"]


CONVS = ["conv1.weight", "conv2.weight", "conv3.weight"]
SELECTIONS = [
    (CONVNET_NAMES, {}, CONVNET_NAMES),
    (CONVNET_NAMES, {"no_bn": True}, [n for n in CONVNET_NAMES if ".norm." not in n]),
    (CONVNET_NAMES, {"anil": True}, ["classifier.weight", "classifier.bias"]),
    (CONVNET_NAMES, {"boil": True}, CONVNET_NAMES[:-2]),
    (CONVNET_NAMES, {"boil": True, "no_bn": True},
     [n for n in CONVNET_NAMES[:-2] if ".norm." not in n]),
    (RESNET_NAMES, {"resnet": True}, RESNET_NAMES),
    (RESNET_NAMES, {"resnet": True, "no_bn": True}, _resnet(CONVS + ["downsample.0.weight"])),
    (RESNET_NAMES, {"resnet": True, "no_downsample": True}, _resnet(RESNET_BLOCK[:9])),
    (RESNET_NAMES, {"resnet": True, "no_bn": True, "no_downsample": True}, _resnet(CONVS)),
    (RESNET_NAMES, {"resnet": True, "anil": True}, ["classifier.weight", "classifier.bias"]),
    (RESNET_NAMES, {"resnet": True, "boil": True}, RESNET_NAMES[:-2]),
]


@pytest.mark.parametrize("names, flags, expected", SELECTIONS)
def test_inner_loop_names(names, flags, expected):
    assert inner_loop_names(names, **flags) == expected


@pytest.mark.parametrize("flags, expected", [
    ([], CONVNET_NAMES),
    (["--no_bn_in_inner_loop"], SELECTIONS[1][2]),
    (["--anil"], ["classifier.weight", "classifier.bias"]),
    (["--method", "boil"], CONVNET_NAMES[:-2]),
    (["--resnet", "--no_bn_in_inner_loop"], SELECTIONS[6][2]),
    (["--resnet", "--no_downsample_in_inner_loop", "--gradient_mask"], SELECTIONS[7][2]),
])
def test_train_build_selects_the_same_names(flags, expected):
    args = cli.parse_args(["--dataset", "Strokes", "--hidden_size", "4", "--dont_use_cuda"]
                            + flags)
    learner = learner_for(args)
    assert list(learner.rule.names) == expected
    assert [n for n, _ in learner.model.named_parameters()] == \
        (RESNET_NAMES if args.resnet else CONVNET_NAMES)
    if learner.mask is not None:
        assert learner.mask.names == expected


# ---------------------------------------------------------------- adapt on a tiny model
def ce_grads(W, b, X, Y):
    """(loss, dL/dW, dL/db) of mean softmax cross-entropy for logits X W^T + b, in numpy."""
    logits = X @ W.T + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    delta = p.copy()
    delta[np.arange(len(Y)), Y] -= 1.0
    delta /= len(Y)
    loss = -np.mean(np.log(p[np.arange(len(Y)), Y]))
    return loss, delta.T @ X, delta.sum(0)


X = np.array([[1.0, 2.0], [-1.0, 0.5]])
Y = np.array([0, 1])
XQ, YQ = np.array([[0.5, -1.0], [2.0, 1.0]]), np.array([1, 0])
T = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731


def linear(W, b):
    model = nn.Linear(W.shape[1], W.shape[0]).double()
    with torch.no_grad():
        model.weight.copy_(T(W))
        model.bias.copy_(T(b))
    return model


def test_first_inner_gradient_by_hand():
    # W = 0, b = 0: p = (1/2, 1/2) for both examples, delta = [[-1/4, 1/4], [1/4, -1/4]].
    _, gW, gb = ce_grads(np.zeros((2, 2)), np.zeros(2), X, Y)
    np.testing.assert_allclose(gW, [[-0.5, -0.375], [0.5, 0.375]])
    np.testing.assert_allclose(gb, [0.0, 0.0])


def test_two_step_masked_adaptation_and_first_order_outer_gradient():
    alpha = 0.5
    W0, b0 = np.array([[0.2, -0.1], [0.0, 0.3]]), np.array([0.1, -0.1])
    m = np.array([[1.0, 0.0], [1.0, 1.0]])
    # By hand: theta_t = theta_{t-1} - alpha * m * g_t on the weight, plain on the bias.
    _, g1W, g1b = ce_grads(W0, b0, X, Y)
    W1, b1 = W0 - alpha * m * g1W, b0 - alpha * g1b
    _, g2W, g2b = ce_grads(W1, b1, X, Y)
    W2, b2 = W1 - alpha * m * g2W, b1 - alpha * g2b
    query_loss, dW, db = ce_grads(W2, b2, XQ, YQ)

    model = linear(W0, b0)
    rule = InnerLoopRule(("weight", "bias"), GradientMask(alpha))
    weight, bias = T(W0).requires_grad_(), T(b0).requires_grad_()
    mask = T(m).requires_grad_()
    out = adapt(model, rule, {"weight": weight, "bias": bias}, {"weight": mask}, T(X),
                torch.tensor(Y), steps=2)
    np.testing.assert_allclose(out["weight"].detach().numpy(), W2, atol=1e-12)
    np.testing.assert_allclose(out["bias"].detach().numpy(), b2, atol=1e-12)
    loss = support_loss(model, out, T(XQ), torch.tensor(YQ))
    assert float(loss.detach()) == pytest.approx(query_loss, rel=1e-12)
    loss.backward()
    # First order: identity path to theta, -alpha * sum_t g_t * dL/dtheta_T to m.
    np.testing.assert_allclose(weight.grad.numpy(), dW, atol=1e-12)
    np.testing.assert_allclose(bias.grad.numpy(), db, atol=1e-12)
    np.testing.assert_allclose(mask.grad.numpy(), -alpha * (g1W + g2W) * dW, atol=1e-12)


def test_names_outside_the_inner_loop_keep_theta_0():
    model = linear(np.array([[0.2, -0.1], [0.0, 0.3]]), np.array([0.1, -0.1]))
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    params["weight"].requires_grad_()
    out = adapt(model, InnerLoopRule(("weight",), NoMask(0.5)), params, {}, T(X),
                torch.tensor(Y), steps=2)
    assert out["bias"] is params["bias"]
    assert not torch.equal(out["weight"], params["weight"])


def _query_loss(model, theta, mask, create_graph):
    rule = InnerLoopRule(("weight", "bias"), GradientMask(0.5))
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(6, 3, generator=g, dtype=torch.float64)
    xq = torch.randn(4, 3, generator=g, dtype=torch.float64)
    ys, yq = torch.tensor([0, 1, 0, 1, 1, 0]), torch.tensor([1, 0, 0, 1])
    out = adapt(model, rule, theta, {"weight": mask}, xs, ys, 2, create_graph=create_graph)
    return support_loss(model, out, xq, yq)


def test_second_order_matches_finite_differences_and_differs_from_first_order():
    torch.manual_seed(0)
    model = nn.Linear(3, 2).double()
    w0, b0 = model.weight.detach().clone(), model.bias.detach().clone()
    m0 = torch.rand(2, 3, dtype=torch.float64)
    leaves = [w0, b0, m0]

    def outer_grads(create_graph):
        xs = [t.clone().requires_grad_() for t in leaves]
        loss = _query_loss(model, {"weight": xs[0], "bias": xs[1]}, xs[2], create_graph)
        return torch.autograd.grad(loss, xs)

    def loss_at(values):
        with torch.enable_grad():
            w, b = (v.clone().requires_grad_() for v in values[:2])
            return float(_query_loss(model, {"weight": w, "bias": b}, values[2], False).detach())

    h = 1e-6
    finite = []
    for k, tensor in enumerate(leaves):
        grad = torch.zeros_like(tensor)
        for i in range(tensor.numel()):
            plus = [t.clone() for t in leaves]
            minus = [t.clone() for t in leaves]
            plus[k].view(-1)[i] += h
            minus[k].view(-1)[i] -= h
            grad.view(-1)[i] = (loss_at(plus) - loss_at(minus)) / (2 * h)
        finite.append(grad)
    second, first = outer_grads(True), outer_grads(False)
    for s, f in zip(second, finite, strict=True):
        torch.testing.assert_close(s, f, rtol=1e-6, atol=1e-8)
    gap = max(float((a - b).abs().max()) for a, b in zip(first, second, strict=True))
    assert gap > 1e-3, "first- and second-order outer gradients should differ"
