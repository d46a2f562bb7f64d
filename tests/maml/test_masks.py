"""maml/masks.py: m(phi) and its straight-through gradients, phi's init, the mask layout
(``weight_mask_list.{i}`` as in the authors' mask.pth), the PLUS hypernetwork, sparsity."""
import pytest
import torch

from maml.masks import (
    GradientMask,
    GradientMaskPlus,
    init_mask_logits_,
    is_learning_rate_kind,
    mask_sparsity,
    mask_value,
)
from tests.conftest import learner_for
from utils import cli

PHI = [-2.0, -0.5, 0.0, 0.5, 3.0]
UPSTREAM = [1.0, -2.0, 3.0, 0.5, -1.0]


def value_and_grad(kind):
    phi = torch.tensor(PHI, requires_grad=True)
    m = mask_value(phi, kind)
    m.backward(torch.tensor(UPSTREAM))
    return m.detach().tolist(), phi.grad.tolist()


def test_binary_is_sign_shifted_with_half_straight_through_gradient():
    m, grad = value_and_grad("binary")
    assert m == [0.0, 0.0, 0.5, 1.0, 1.0]            # (sign(phi) + 1) / 2, sign(0) = 0
    assert grad == [0.5 * u for u in UPSTREAM]       # identity through sign, times 1/2


def test_relu_through_is_relu_forward_identity_backward():
    m, grad = value_and_grad("relu_through")
    assert m == [0.0, 0.0, 0.0, 0.5, 3.0]
    assert grad == UPSTREAM                          # negative phi still get gradient


def test_relu_linear_exp_values_and_gradients():
    m, grad = value_and_grad("relu")
    assert m == [0.0, 0.0, 0.0, 0.5, 3.0]
    assert grad == [0.0, 0.0, 0.0, 0.5, -1.0]
    m, grad = value_and_grad("linear")
    assert m == PHI and grad == UPSTREAM
    m, grad = value_and_grad("exp")
    expected = torch.exp(torch.tensor(PHI))
    torch.testing.assert_close(torch.tensor(m), expected)
    torch.testing.assert_close(torch.tensor(grad), expected * torch.tensor(UPSTREAM))


def test_unknown_kind_and_learning_rate_kinds():
    with pytest.raises(ValueError):
        mask_value(torch.zeros(2), "sigmoid")
    with pytest.raises(ValueError):
        GradientMask(["w"], [(2,)], kind="sigmoid")
    assert not is_learning_rate_kind("binary")
    assert all(is_learning_rate_kind(k) for k in ("relu_through", "relu", "linear", "exp"))


def test_init_constant_and_meta_sgd():
    phi = init_mask_logits_(torch.empty(64, 3, 3, 3), "constant", step_size=0.05)
    assert torch.all(phi == 0.05)
    phi = init_mask_logits_(torch.empty(1000), "meta_sgd", init_shift=3.0)   # shift unused
    assert float(phi.min()) >= 0.005 and float(phi.max()) <= 0.1
    assert float(phi.max() - phi.min()) > 0.08


@pytest.mark.parametrize("init", ["uniform", "kaiming"])
@pytest.mark.parametrize("shape", [(16, 8, 3, 3), (64,)])
@pytest.mark.parametrize("shift", [0.0, 0.3, -1.0])
def test_init_centred_then_shifted(init, shape, shift):
    torch.manual_seed(0)
    phi = init_mask_logits_(torch.empty(shape), init, init_shift=shift)
    assert float(phi.mean()) == pytest.approx(shift, abs=1e-6)
    spread = phi - shift
    if init == "kaiming" and len(shape) > 1:
        bound = (6.0 / (shape[1] * 9)) ** 0.5         # kaiming_uniform, a=0, fan_in
    else:
        bound = 0.5
    # Centring moves the samples by their mean only, so the range stays ~[-bound, bound].
    assert 0.85 * bound < float(spread.abs().max()) <= 1.2 * bound


def test_mask_state_dict_follows_the_named_parameter_order():
    torch.manual_seed(0)
    learner = learner_for(cli.parse_args(["--dataset", "Strokes", "--hidden_size", "4",
                                            "--method", "sparse-maml", "--dont_use_cuda"]))
    named = list(learner.model.named_parameters())
    state = learner.mask.state_dict()
    assert list(state) == [f"weight_mask_list.{i}" for i in range(len(named))]
    assert learner.mask.names == [n for n, _ in named]
    for (name, p), phi in zip(named, state.values(), strict=True):
        assert phi.shape == p.shape, name
    masks = learner.mask()
    assert list(masks) == [n for n, _ in named]
    assert all(set(m.unique().tolist()) <= {0.0, 1.0} for m in masks.values())


@pytest.mark.parametrize("dataset, in_channels", [("Strokes", 1), ("MiniImagenet", 3)])
def test_plus_hypernetwork_masks_the_conv_weights(dataset, in_channels):
    torch.manual_seed(0)
    learner = learner_for(cli.parse_args(
        ["--dataset", dataset, "--hidden_size", "8", "--gradient_mask",
         "--gradient_mask_plus", "--meta_sgd_linear", "--dont_use_cuda"]))
    shapes = {n: p.shape for n, p in learner.model.named_parameters()}
    assert shapes["features.layer1.conv.weight"][1] == in_channels
    mask = learner.mask
    assert isinstance(mask.mask_plus, GradientMaskPlus)
    assert not any("conv" in n for n in mask.names)        # no own logits for conv names
    assert mask.names == [n for n in shapes if "conv" not in n]
    first, second = mask(), mask()
    conv_weights = [n for n in shapes if n.endswith("conv.weight")]
    assert sorted(first) == sorted(mask.names + conv_weights)   # conv biases: no mask
    for name in conv_weights:
        assert first[name].shape == shapes[name]
        assert not torch.equal(first[name], second[name]), "noise is drawn on every call"
    torch.manual_seed(5)
    again = mask()
    torch.manual_seed(5)
    repeated = mask()
    assert all(torch.equal(again[n], repeated[n]) for n in conv_weights)
    sum(m.sum() for m in first.values()).backward()
    for name, p in mask.mask_plus.named_parameters():
        assert p.grad is not None and float(p.grad.abs().max()) > 0, name


def test_plus_binary_masks_are_zero_or_one():
    plus = GradientMaskPlus(["a", "b"], [1, 4], out_channels=4, feature_size=6, kind="binary")
    masks = plus()
    assert masks["a"].shape == (4, 1, 3, 3) and masks["b"].shape == (4, 4, 3, 3)
    assert all(set(m.unique().tolist()) <= {0.0, 0.5, 1.0} for m in masks.values())


def test_mask_sparsity_counts_exact_zeros():
    per_tensor, overall = mask_sparsity({"a": torch.tensor([0.0, 1.0, 0.5, 2.0]),
                                         "b": torch.tensor([[0.0, 0.0], [0.0, 1.0]])})
    assert per_tensor == {"a": 0.25, "b": 0.75}
    assert overall == 0.5
    assert mask_sparsity({}) == ({}, 0.0)
