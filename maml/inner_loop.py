"""The inner loop (Sec. 3 of the paper): which parameters adapt, and the reference loop.

Parameters travel as a dict {name: tensor}; the mask mode (``maml/mask_modes.py``) says
how m enters each step, so masking is one call per parameter.
"""
from dataclasses import dataclass
from typing import Tuple

import torch

from maml import functional
from maml.mask_modes import MaskMode, NoMask


@dataclass(frozen=True)
class InnerLoopRule:
    """What adapts in the inner loop (``names``; the others stay theta_0) and how (``mode``)."""

    names: Tuple[str, ...]
    mode: MaskMode

    def mode_for(self, masks, name):
        """The mode of one parameter: ``mode``, or plain MAML where no mask covers it (with
        PLUS, conv biases have no mask)."""
        return self.mode if name in masks else NoMask(self.mode.step_size)

    def initial(self, theta, masks):
        """theta_0 for every parameter of ``theta`` {name: tensor} given masks {name: m}."""
        return {n: self.mode.initial(p, masks[n]) if n in masks else p for n, p in theta.items()}


def inner_loop_names(named_parameters, resnet=False, no_bn=False, no_downsample=False,
                     anil=False, boil=False):
    """The inner-loop parameter names, in the model's order, as the original selects them.

    ``no_bn`` drops BatchNorm parameters (ConvNet: names containing "norm"; ResNet: "bn"
    or "downsample.1"); ``no_downsample`` drops ResNet names containing "downsample";
    ``anil`` keeps only ``classifier.*``; ``boil`` drops ``classifier.*``.
    """
    names = []
    for name in named_parameters:
        if resnet:
            if no_bn and ("bn" in name or "downsample.1" in name):
                continue
            if no_downsample and "downsample" in name:
                continue
        elif no_bn and "norm" in name:
            continue
        is_head = name.startswith("classifier.")
        if (anil and not is_head) or (boil and is_head):
            continue
        names.append(name)
    return names


def adapt(model, rule, params, masks, x, y, steps, create_graph=False):
    """Reference inner loop: ``steps`` gradient steps on the support set (x, y).

    params: {name: theta_0}; masks: {name: m} (empty without a mask). First order by
    default: each g_t is a constant (no ``create_graph``) while the update stays
    differentiable, so the outer gradient reaches theta through the identity path and
    phi through m at every step, as the original. ``create_graph=True`` gives full
    second-order MAML. Returns {name: theta_T}.
    """
    for _ in range(steps):
        loss = functional.loss(model, params, x, y)
        grads = torch.autograd.grad(loss, [params[n] for n in rule.names],
                                    create_graph=create_graph)
        params = dict(params)
        for name, grad in zip(rule.names, grads, strict=True):
            params[name] = rule.mode_for(masks, name).update(params[name], grad, masks.get(name))
    return params
