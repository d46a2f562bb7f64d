"""A backbone as a pure function of a parameter dict {name: tensor}.

Every engine evaluates the backbone through ``torch.func.functional_call``, so adapted
parameters, masks and outer gradients are plain tensor arithmetic on such dicts (no
MetaModule, no in-place surgery on modules).
"""
import contextlib

import torch
import torch.nn.functional as F
from torch.func import functional_call


def autocast(device, amp):
    """bf16 autocast of the backbone on ``device`` when ``amp`` is a dtype, else nothing."""
    if amp is None:
        return contextlib.nullcontext()
    # No weight cache: it would be stale inside replayed CUDA graphs.
    return torch.autocast(device_type=device.type, dtype=amp, cache_enabled=False)


def loss_and_logits(model, params, x, y, amp=None):
    """(cross-entropy, logits [N, ways]) of ``model`` with ``params`` on x [N, C, H, W],
    y [N]. Under autocast the logits, and so the loss, are brought back to fp32."""
    with autocast(x.device, amp):
        logits = functional_call(model, params, (x,))
    if amp is not None:
        logits = logits.float()
    return F.cross_entropy(logits, y), logits


def loss(model, params, x, y, amp=None):
    """Cross-entropy of ``model`` with ``params`` on (x, y); see ``loss_and_logits``."""
    return loss_and_logits(model, params, x, y, amp)[0]


def accuracy(logits, targets):
    """Fraction of correct argmax predictions, as a 0-dim tensor (no host sync)."""
    return (logits.argmax(dim=1) == targets).float().mean()
