"""Learned learning rates of the continual learners, built from sparse-MAML's mask objects.

La-MAML learns one rate alpha per parameter (same shape) and steps with ReLU(alpha);
OSAKA's Continual-MAML learns one scalar step size per parameter tensor. The sparse
variants of the paper (von Oswald et al., 2021, continual learning) replace the rate by
sparse-MAML's straight-through functions of a learned score s:

- ``relu`` (La-MAML): r = ReLU(alpha); a negative alpha gets no gradient and stays off;
- ``relu_through`` (sparse-ReLU): r = ReLU(s) forward, identity backward, so a rate
  that was switched off still gets gradient and can come back;
- ``binary`` (sparse): r = step_size * (sign(s) + 1) / 2, straight-through (dr/ds =
  step_size / 2): each parameter either adapts with the fixed step size or not at all;
- ``linear``: r = alpha (OSAKA's learned step sizes, Meta-SGD style).

Every kind is a ``maml.masks.GradientMask`` (the scores in ``weight_mask_list``,
``mask_value`` for r) and every update goes through ``maml.mask_modes`` (``learning_rate``
mode: theta - r g; ``gradient`` mode for binary masks: theta - step_size m g), so the
continual learners share sparse-MAML's code rather than copying it.
"""
import torch

from maml.mask_modes import mask_mode
from maml.masks import GradientMask, is_learning_rate_kind, mask_sparsity

KINDS = ("relu", "relu_through", "binary", "linear")


class LearnedRates:
    """Scores over named parameter shapes and the rule that turns them into steps.

    named_shapes: {name: shape} (ordered); kind: one of KINDS; step_size: the fixed step
    of ``binary`` rates (unused otherwise); init "constant" sets every score to
    ``value`` (La-MAML's alpha_init, OSAKA's initial step size), "uniform"/"kaiming" are
    sparse-MAML's mask inits (centred); every init is then shifted by ``shift``
    (e.g. binary scores just above 0 switch off easily); ``per_tensor`` gives one scalar
    per tensor (OSAKA) instead of one per element.
    """

    def __init__(self, named_shapes, kind, step_size=0.1, init="constant", value=0.1,
                 shift=0.0, per_tensor=False):
        if kind not in KINDS:
            raise ValueError(f"unknown rate kind {kind!r}; expected one of {KINDS}")
        names = list(named_shapes)
        shapes = [torch.Size([]) if per_tensor else named_shapes[n] for n in names]
        self.kind = kind
        self.scores = GradientMask(names, shapes, kind=kind, init=init, step_size=value,
                                   init_shift=shift)
        if init == "constant" and shift:     # GradientMask shifts centred inits only
            with torch.no_grad():
                for s in self.scores.weight_mask_list:
                    s.add_(shift)
        self.rule = mask_mode("learning_rate" if is_learning_rate_kind(kind) else "gradient",
                              step_size)

    def parameters(self):
        return self.scores.parameters()

    def masks(self):
        """{name: m(s)} with its graph to the scores (m is the rate, or the binary gate)."""
        return self.scores()

    def update(self, theta, grads, masks):
        """{name: theta - r * g} for the names of ``masks`` (others unchanged)."""
        return {n: self.rule.update(t, grads[n], masks[n]) if n in masks else t
                for n, t in theta.items()}

    def values(self):
        """{name: effective rate r} (detached): m, or step_size * m for binary gates."""
        with torch.no_grad():
            masks = self.masks()
            if is_learning_rate_kind(self.kind):
                return masks
            return {n: self.rule.step_size * m for n, m in masks.items()}

    def sparsity(self):
        """({name: fraction of rates exactly 0}, overall fraction)."""
        with torch.no_grad():
            return mask_sparsity(self.masks())

    def to(self, device):
        self.scores.to(device)
        return self

    def state_dict(self):
        return self.scores.state_dict()

    def load_state_dict(self, state):
        self.scores.load_state_dict(state)
