"""The interface every engine implements, and what all engines share.

An engine turns a batch of tasks into meta-gradients (``train_tasks``) or into query
results after adaptation (``eval_tasks``). ``ReferenceEngine`` (autograd through the
unrolled inner loop) is the specification; ``FastEngine`` (closed-form first order) must
give the same gradients for every first-order method.
"""
import abc
from typing import List, NamedTuple, Sequence, Tuple

import torch


class Task(NamedTuple):
    """One N-way task: support x [N*K, C, H, W], y [N*K]; query x [N*Q, C, H, W], y [N*Q]."""

    x_support: torch.Tensor
    y_support: torch.Tensor
    x_query: torch.Tensor
    y_query: torch.Tensor


class Engine(abc.ABC):
    """Meta-gradients and evaluation for a backbone, its mask and an inner-loop rule.

    model: the backbone (nn.Module, used functionally); mask: a ``GradientMask`` (phi,
    forward() -> {name: m}) or None; rule: ``InnerLoopRule`` (names and mask mode).
    """

    name = "engine"

    def __init__(self, model, mask, rule):
        self.model = model
        self.mask = mask
        self.rule = rule

    @abc.abstractmethod
    def train_tasks(self, tasks: Sequence[Task], steps: Sequence[int]
                    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Accumulate d(sum of the tasks' query losses) / d(theta, phi) into ``.grad``.

        steps: inner steps per task. Returns (summed query loss, [query accuracy per
        task]) as device tensors. Query losses are summed over the meta-batch (not
        averaged), as the original.
        """

    @abc.abstractmethod
    def eval_tasks(self, tasks: Sequence[Task], steps: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Adapt to each task with ``steps`` inner steps; (query losses [B], accuracies [B])
        as device tensors. No parameter changes, no host sync."""

    def theta(self):
        return dict(self.model.named_parameters())

    def draw(self, theta):
        """(masks {name: m(phi)}, theta_0 {name: tensor}) with their graph to phi and theta."""
        masks = self.mask() if self.mask is not None else {}
        return masks, self.rule.initial(theta, masks)

    def draws(self, n_tasks, theta, shared=True):
        """[(masks, theta_0)] per task. With ``shared``, one draw serves every task unless
        the mask is stochastic (PLUS draws fresh noise per task)."""
        if shared and not self.stochastic_mask:
            return [self.draw(theta)] * n_tasks
        return [self.draw(theta) for _ in range(n_tasks)]

    @property
    def stochastic_mask(self):
        return getattr(self.mask, "mask_plus", None) is not None
