"""The composition root: a ``LearnerConfig`` in, a ready ``MetaLearner`` out.

train.py, evaluate.py, the benchmarks and the tests all build learners here, so a
meta-learner is assembled in exactly one place: backbone -> inner-loop names -> mask
(phi, optional PLUS hypernetwork) -> mask mode and rule -> engine -> optimizers.
"""
import torch

from maml.cpu_allocator import keep_freed_memory
from maml.fast import FastEngine
from maml.inner_loop import InnerLoopRule, inner_loop_names
from maml.mask_modes import mask_mode
from maml.masks import GradientMask, GradientMaskPlus
from maml.meta_learner import MetaLearner, build_optimizer
from maml.reference import ReferenceEngine
from models import build_backbone, conv_feature_size

AMP_DTYPES = {None: None, "bf16": torch.bfloat16}


def build_mask(config, model, names):
    """The ``GradientMask`` over ``names`` (phi, + PLUS for conv weights), or None."""
    if not mask_mode(config.mask.mode, config.inner.step_size).uses_mask:
        return None
    shapes = {n: p.shape for n, p in model.named_parameters()}
    mask, backbone = config.mask, config.backbone
    plus = None
    if mask.plus:
        conv = [n for n in names if "conv.weight" in n]
        plus = GradientMaskPlus(
            conv, [shapes[n][1] for n in conv], backbone.hidden_size,
            conv_feature_size(backbone.hidden_size, backbone.image_size), kind=mask.kind,
            shift=mask.init_shift + mask.plus_output_shift)
    return GradientMask(names, [shapes[n] for n in names], mask.kind, mask.init,
                        config.inner.step_size, mask.init_shift, plus)


def build_engine(config, model, mask, rule):
    engine, device = config.engine, torch.device(config.device)
    if engine.name == "reference":
        return ReferenceEngine(model, mask, rule, second_order=config.inner.second_order)
    return FastEngine(model, mask, rule, amp=AMP_DTYPES[engine.amp],
                      cuda_graphs=engine.cuda_graphs and device.type == "cuda",
                      compile=engine.compile, task_streams=engine.task_streams)


def build_learner(config):
    """Backbone, mask, engine and both optimizers for ``config`` (a ``LearnerConfig``),
    on ``config.device``. Parameters are initialised from torch's global generator."""
    device = torch.device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True     # fixed task shapes: autotune once
    else:
        keep_freed_memory()     # no page faults for each inner step's activations
    b = config.backbone
    # The reference engine keeps the authors' block order; the fast engine's is cheaper
    # and computes the same values and gradients (models/convnet.py).
    model = build_backbone(b.resnet, b.big, b.hidden_size, b.in_channels, b.image_size,
                           b.num_ways, pool_before_relu=config.engine.name == "fast").to(device)
    if config.engine.channels_last:
        model = model.to(memory_format=torch.channels_last)
    inner = config.inner
    names = inner_loop_names([n for n, _ in model.named_parameters()], b.resnet or b.big,
                             inner.no_bn, inner.no_downsample, inner.anil, inner.boil)
    mask = build_mask(config, model, names)
    optimizer_mask = None
    if mask is not None:
        mask = mask.to(device)
        optimizer_mask = build_optimizer(mask.parameters(), config.mask.optimizer,
                                         config.mask.lr, config.outer.momentum)
    rule = InnerLoopRule(tuple(names), mask_mode(config.mask.mode, inner.step_size))
    optimizer_theta = build_optimizer(model.parameters(), config.outer.optimizer,
                                      config.outer.lr, config.outer.momentum)
    return MetaLearner(model, mask, build_engine(config, model, mask, rule), optimizer_theta,
                       optimizer_mask, config=config)
