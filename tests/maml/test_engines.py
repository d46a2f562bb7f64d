"""The fast engine (closed-form first order) against the reference engine (autograd).

For every first-order method both engines, built from the same seed, must leave the
same outer gradients in theta.grad and phi.grad for the same batch, take the same SGD
step and report the same evaluation accuracies. ``--second_order`` is reference-only.
"""
import pytest
import torch

from maml.fast import FastEngine
from maml.reference import ReferenceEngine
from tests.conftest import learner_for
from utils import cli

CONVNET = ["--dataset", "Strokes", "--hidden_size", "8"]
COMMON = ["--num_ways", "5", "--batch_size", "2", "--gradient_steps", "3",
          "--gradient_steps_test", "2", "--dont_use_cuda"]

METHODS = {
    "maml": CONVNET + ["--method", "maml"],
    "anil": CONVNET + ["--method", "anil"],
    "boil": CONVNET + ["--method", "boil"],
    "meta-sgd": CONVNET + ["--method", "meta-sgd"],
    "sparse-maml": CONVNET + ["--method", "sparse-maml"],
    "sparse-relu-maml": CONVNET + ["--method", "sparse-relu-maml"],
    "sparse-maml-no-bn": CONVNET + ["--method", "sparse-maml", "--no_bn_in_inner_loop"],
    "weight-mask": CONVNET + ["--weight_mask"],
    "weight-mask-relu-through": CONVNET + ["--weight_mask", "--meta_relu_through",
                                           "--meta_constant_init"],
    "sparse-maml-plus": CONVNET + ["--gradient_mask", "--gradient_mask_plus"],
    "meta-exp": CONVNET + ["--gradient_mask", "--meta_exp", "--step_size", "0.01"],
    "meta-relu": CONVNET + ["--gradient_mask", "--meta_relu"],
    "resnet-sparse-maml-no-bn": ["--dataset", "Strokes", "--resnet", "--method", "sparse-maml",
                                 "--no_bn_in_inner_loop", "--batch_size", "1",
                                 "--gradient_steps", "2"],
}


pytestmark = pytest.mark.usefixtures("one_thread")


def synthetic_batch(side=28, tasks=2, ways=5, query_per_class=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    dtype = torch.get_default_dtype()
    query_y = torch.arange(ways).repeat_interleave(query_per_class).repeat(tasks, 1)
    return {"train": (torch.randn(tasks, ways, 1, side, side, generator=g, dtype=dtype),
                      torch.arange(ways).repeat(tasks, 1)),
            "test": (torch.randn(tasks, ways * query_per_class, 1, side, side, generator=g,
                                 dtype=dtype), query_y)}


def build(flags, engine):
    """A learner for ``flags`` (after COMMON, so they override it) from torch seed 0."""
    torch.manual_seed(0)
    return learner_for(cli.parse_args(COMMON + flags + ["--engine", engine]))


def batch_for(method, **kwargs):
    # ResNet-12 pools adaptively, so a 12x12 input keeps its test fast.
    return synthetic_batch(side=12, tasks=1, **kwargs) if "resnet" in method \
        else synthetic_batch(**kwargs)


def outer_grads(learner, batch):
    torch.manual_seed(123)          # the PLUS hypernetwork draws its noise per task
    learner.zero_grad()
    learner.engine.train_tasks(learner.tasks(batch),
                               [learner.config.inner.steps] * len(learner.tasks(batch)))
    grads = {f"theta[{n}]": p.grad for n, p in learner.model.named_parameters()}
    if learner.mask is not None:
        grads.update({f"phi[{n}]": p.grad for n, p in learner.mask.named_parameters()})
    return grads


def assert_same_grads(reference, fast, rtol):
    assert reference.keys() == fast.keys()
    assert all(g is not None for g in reference.values()), "reference left a grad unset"
    assert all(g is not None for g in fast.values()), "fast engine left a grad unset"
    scale = max(float(g.abs().max()) for g in reference.values())
    assert scale > 0
    for name, g_ref in reference.items():
        # Relative to the tensor's own scale; tensors whose true gradient is zero (conv
        # biases before BatchNorm) are compared at the scale of the largest gradient.
        own = float(g_ref.abs().max())
        atol = rtol * max(own, 1e-3 * scale)
        torch.testing.assert_close(fast[name], g_ref, rtol=0, atol=atol,
                                   msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("method", sorted(METHODS))
def test_fast_and_reference_outer_gradients_agree_float64(method, float64):
    batch = batch_for(method)
    reference = outer_grads(build(METHODS[method], "reference"), batch)
    fast = outer_grads(build(METHODS[method], "fast"), batch)
    assert_same_grads(reference, fast, rtol=1e-8)
    if method not in ("maml", "anil", "boil"):
        assert any(float(g.abs().max()) > 0 for n, g in reference.items()
                   if n.startswith("phi")), "no gradient reached the mask"


@pytest.mark.parametrize("method", ["maml", "sparse-maml", "weight-mask", "sparse-relu-maml"])
def test_fast_and_reference_outer_gradients_agree_float32(method):
    assert torch.get_default_dtype() == torch.float32
    batch = batch_for(method)
    reference = outer_grads(build(METHODS[method], "reference"), batch)
    fast = outer_grads(build(METHODS[method], "fast"), batch)
    assert_same_grads(reference, fast, rtol=1e-4)


SGD = ["--optimizer_theta", "SGD", "--optimizer_mask", "SGD", "--momentum", "0",
       "--lr", "0.1", "--mask_lr", "0.1"]


@pytest.mark.parametrize("method", ["maml", "anil", "sparse-maml", "sparse-relu-maml",
                                    "weight-mask", "sparse-maml-plus"])
def test_one_sgd_step_and_evaluation_agree(method, float64):
    batch = batch_for(method)
    learners = {e: build(METHODS[method] + SGD, e) for e in ("reference", "fast")}
    results, steps = {}, {}
    for engine, learner in learners.items():
        torch.manual_seed(7)
        steps[engine] = learner.step(batch)
        torch.manual_seed(8)
        results[engine] = learner.evaluate(batch)
    assert steps["fast"]["loss"] == pytest.approx(steps["reference"]["loss"], rel=1e-10)
    ref, fast = learners["reference"], learners["fast"]
    for (name, p), q in zip(ref.model.named_parameters(), fast.model.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=0, atol=1e-10, msg=name)
    if ref.mask is not None:
        for (name, p), q in zip(ref.mask.named_parameters(), fast.mask.parameters(), strict=True):
            torch.testing.assert_close(q, p, rtol=0, atol=1e-10, msg=name)
    assert results["fast"]["accuracies"] == results["reference"]["accuracies"]
    assert results["fast"]["loss"] == pytest.approx(results["reference"]["loss"], rel=1e-8)


def test_evaluate_changes_no_parameter(float64):
    learner = build(METHODS["sparse-maml"], "fast")
    before = {n: p.detach().clone() for n, p in learner.model.named_parameters()}
    learner.evaluate(synthetic_batch())
    for n, p in learner.model.named_parameters():
        assert torch.equal(p, before[n]), n


def test_second_order_with_fast_engine_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(["--second_order", "--engine", "fast"])
    assert exit_info.value.code == 2
    assert "second_order" in capsys.readouterr().err


def test_auto_engine_picks_reference_for_second_order_and_fast_otherwise():
    second = cli.parse_args(CONVNET + COMMON + ["--second_order"])
    first = cli.parse_args(CONVNET + COMMON)
    assert second.engine == "reference" and first.engine == "fast"
    assert isinstance(learner_for(second).engine, ReferenceEngine)
    assert learner_for(second).engine.second_order
    assert isinstance(learner_for(first).engine, FastEngine)
