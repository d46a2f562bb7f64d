"""The inner loop's rules (Sec. 3 of the paper) and its reference implementation.

Parameters travel as a dict {name: tensor} and the backbone is evaluated with
``torch.func.functional_call``, so adapting, masking and the outer gradient are plain
tensor arithmetic on that dict: no MetaModule, no in-place surgery on modules.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch.func import functional_call


@dataclass(frozen=True)
class InnerLoopRule:
    """What adapts in the inner loop, and how.

    names: inner-loop parameter names (the others stay theta_0 during adaptation).
    step_size: alpha. mask_mode: None, "gradient" (sparse-MAML and Meta-SGD kinds) or
    "weight" (``--weight_mask``). lr_mask: m is a per-parameter learning rate (every mask
    kind but binary): alpha is then not applied.
    """

    names: Tuple[str, ...]
    step_size: float = 0.1
    mask_mode: Optional[str] = None
    lr_mask: bool = False

    def update(self, name, theta, grad, mask):
        """theta_t from theta_{t-1} and g_t for one parameter (any shape).

        binary gradient mask: theta - alpha * (m * g)    (Eq. 3)
        learning-rate masks:  theta - m * g              (Meta-SGD style)
        weight mask:          (theta - alpha * g) * m
        no mask:              theta - alpha * g          (MAML)
        """
        if mask is None or self.mask_mode is None:
            return theta - self.step_size * grad
        if self.mask_mode == "weight":
            return (theta - self.step_size * grad) * mask
        if self.lr_mask:
            return theta - grad * mask
        return theta - self.step_size * (grad * mask)

    def initial(self, theta, masks):
        """theta_0: theta, or theta * m with ``--weight_mask``."""
        if self.mask_mode != "weight" or not masks:
            return dict(theta)
        return {n: p * masks[n] if n in masks else p for n, p in theta.items()}


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


def support_loss(model, params, x, y):
    """Cross-entropy of the backbone with parameters ``params`` on (x [N, C, H, W], y [N])."""
    return F.cross_entropy(functional_call(model, params, (x,)), y)


def adapt(model, rule, params, masks, x, y, steps, create_graph=False):
    """Reference inner loop: ``steps`` gradient steps on the support set (x, y).

    params: {name: theta_0}; masks: {name: m} or None. First order by default: each g_t
    is a constant (no ``create_graph``) while the update stays differentiable, so the
    outer gradient reaches theta through the identity path and phi through m at every
    step, as the original. ``create_graph=True`` gives full second-order MAML.
    Returns {name: theta_T}.
    """
    masks = masks or {}
    for _ in range(steps):
        loss = support_loss(model, params, x, y)
        grads = torch.autograd.grad(loss, [params[n] for n in rule.names],
                                    create_graph=create_graph)
        params = dict(params)
        for name, grad in zip(rule.names, grads):
            params[name] = rule.update(name, params[name], grad, masks.get(name))
    return params
