"""Acceptance: one step of train.py's MetaLearner equals one step of the original code.

For the same flags, initial weights and batch, the updated theta and phi (and their
outer gradients) of ``build_learner(...).step(batch)`` must match the torchmeta oracle in
``original_oracle.py`` (the authors' MAML.step), float rounding aside. Runs in float64.
"""
import pytest
import torch

from tests.conftest import learner_for
from tests.maml.original_oracle import (
    OriginalConvNet,
    OriginalMask,
    OriginalResNet12,
    original_inner_loop_names,
    original_step,
)
from utils import cli

CONVNET = ["--dataset", "Strokes", "--hidden_size", "8"]
COMMON = ["--num_ways", "5", "--batch_size", "2", "--gradient_steps", "2",
          "--lr", "0.01", "--mask_lr", "0.01", "--dont_use_cuda"]

# name -> (flags, mask kind of the original's flags or None)
CONVNET_CASES = {
    "sparse-maml": (["--gradient_mask"], "binary"),
    "sparse-relu-maml": (["--gradient_mask", "--meta_relu_through", "--meta_constant_init",
                          "--step_size", "0.05"], "relu_through"),
    "first-order-maml": ([], None),
    "meta-sgd": (["--gradient_mask", "--meta_sgd_linear", "--meta_sgd_init"], "linear"),
    "weight-mask": (["--weight_mask"], "binary"),
    "sparse-maml-no-bn": (["--gradient_mask", "--no_bn_in_inner_loop"], "binary"),
}


pytestmark = pytest.mark.usefixtures("one_thread")


def synthetic_batch(side, channels=1, tasks=2, ways=5, query_per_class=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    support_y = torch.arange(ways).repeat(tasks, 1)
    query_y = torch.arange(ways).repeat_interleave(query_per_class).repeat(tasks, 1)
    return {"train": (torch.randn(tasks, ways, channels, side, side, generator=g), support_y),
            "test": (torch.randn(tasks, ways * query_per_class, channels, side, side,
                                 generator=g), query_y)}


def build_pair(flags, kind, resnet=False):
    """Our MetaLearner and the oracle (model, mask, optimizers) with the same weights."""
    torch.manual_seed(0)
    args = cli.parse_args(flags)
    learner = learner_for(args)
    if resnet:
        oracle = OriginalResNet12(args.num_ways, in_channels=1)
    else:
        oracle = OriginalConvNet(1, args.num_ways, args.hidden_size, args.hidden_size)
    oracle.load_state_dict(learner.model.state_dict())
    names = original_inner_loop_names([n for n, _ in oracle.named_parameters()], resnet,
                                      args.no_bn_in_inner_loop,
                                      args.no_downsample_in_inner_loop)
    assert list(learner.rule.names) == names
    mask = optimizer_mask = None
    if kind is not None:
        shapes = [p.shape for n, p in oracle.named_parameters() if n in names]
        mask = OriginalMask(names, shapes, kind)
        mask.load_state_dict(learner.mask.state_dict())
        optimizer_mask = torch.optim.Adam(mask.parameters(), args.mask_lr)
    optimizer_theta = torch.optim.Adam(oracle.parameters(), args.lr)
    return args, learner, (oracle, mask, names, optimizer_theta, optimizer_mask)


def assert_same_step(args, learner, oracle_parts, batch, grad_rtol=1e-9, param_atol=1e-9):
    oracle, mask, names, optimizer_theta, optimizer_mask = oracle_parts
    theta_before = {n: p.detach().clone() for n, p in learner.model.named_parameters()}
    ours = learner.step(batch)
    reference = original_step(oracle, mask, names, batch, optimizer_theta, optimizer_mask,
                              step_size=args.step_size, steps=args.gradient_steps,
                              weight_mask=args.weight_mask,
                              clamp=args.clamp_outer_gradients)
    assert ours["loss"] == pytest.approx(float(reference), rel=1e-10)
    pairs = [(f"theta[{n}]", p, dict(oracle.named_parameters())[n])
             for n, p in learner.model.named_parameters()]
    if mask is not None:
        pairs += [(f"phi[{i}]", p, q) for i, (p, q) in
                  enumerate(zip(learner.mask.weight_mask_list, mask.weight_mask_list, strict=True))]
    scale = max(float(q.grad.abs().max()) for _, _, q in pairs)
    for label, p, q in pairs:
        torch.testing.assert_close(p.grad, q.grad, rtol=grad_rtol, atol=grad_rtol * scale,
                                   msg=lambda m, label=label: f"grad of {label}: {m}")
        torch.testing.assert_close(p.detach(), q.detach(), rtol=0, atol=param_atol,
                                   msg=lambda m, label=label: f"updated {label}: {m}")
    moved = [n for n, p in learner.model.named_parameters() if not torch.equal(p, theta_before[n])]
    assert moved, "the step changed no parameter"
    return pairs


@pytest.mark.parametrize("engine", ["fast", "reference"])
@pytest.mark.parametrize("case", sorted(CONVNET_CASES))
def test_convnet_step_matches_original(case, engine, float64):
    flags, kind = CONVNET_CASES[case]
    args, learner, oracle_parts = build_pair(CONVNET + COMMON + flags + ["--engine", engine],
                                             kind)
    batch = synthetic_batch(28)
    pairs = assert_same_step(args, learner, oracle_parts, batch)
    if kind is not None:       # the masks must actually have been trained
        assert any(float(q.grad.abs().max()) > 0 for label, _, q in pairs
                   if label.startswith("phi"))


def test_second_order_convnet_step_matches_original(float64):
    args, learner, (oracle, mask, names, opt_theta, opt_mask) = build_pair(
        CONVNET + COMMON + ["--gradient_mask", "--second_order"], "binary")
    batch = synthetic_batch(28)
    learner.step(batch)
    original_step(oracle, mask, names, batch, opt_theta, opt_mask, step_size=args.step_size,
                  steps=args.gradient_steps, second_order=True)
    for (n, p), q in zip(learner.model.named_parameters(), oracle.parameters(), strict=True):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=0, atol=1e-9, msg=n)
    for p, q in zip(learner.mask.parameters(), mask.parameters(), strict=True):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=0, atol=1e-9)


def test_resnet12_sparse_maml_no_bn_clamped_matches_original(float64):
    flags = ["--dataset", "Strokes", "--resnet", "--gradient_mask", "--no_bn_in_inner_loop",
             "--clamp_outer_gradients", "--step_size", "0.05", "--num_ways", "5",
             "--batch_size", "1", "--gradient_steps", "2", "--lr", "0.01",
             "--mask_lr", "0.01", "--dont_use_cuda"]
    args, learner, oracle_parts = build_pair(flags, "binary", resnet=True)
    # Large BatchNorm scales in the last block (not adapted: --no_bn_in_inner_loop) give
    # large features, hence classifier gradients beyond +-10: the clamp really acts.
    with torch.no_grad():
        for model in (learner.model, oracle_parts[0]):
            model.layer4[0].bn3.weight.mul_(100.0)
            model.layer4[0].downsample[1].weight.mul_(100.0)
    batch = synthetic_batch(12, tasks=1, query_per_class=1)
    pairs = assert_same_step(args, learner, oracle_parts, batch)
    theta_grads = torch.cat([p.grad.flatten() for label, p, _ in pairs
                             if label.startswith("theta")])
    assert float(theta_grads.abs().max()) == 10.0, "the clamp never acted"
