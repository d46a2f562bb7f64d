"""The reference engine: plain autograd through the whole inner loop.

This is the readable specification of the meta-update (Algorithm 1 of the paper). The
fast engine (``maml/fast.py``) must give the same theta and phi gradients for every
first-order method; only this engine supports ``--second_order``.
"""
import torch
import torch.nn.functional as F
from torch.func import functional_call

from maml.inner_loop import adapt


def accuracy(logits, targets):
    """Fraction of correct argmax predictions, as a 0-dim tensor (no host sync)."""
    return (logits.argmax(dim=1) == targets).float().mean()


class ReferenceEngine:
    """Meta-gradients by backpropagating through the unrolled inner loop."""

    name = "reference"

    def __init__(self, model, mask, rule, second_order=False):
        self.model = model
        self.mask = mask
        self.rule = rule
        self.second_order = second_order

    def theta(self):
        return dict(self.model.named_parameters())

    def train_tasks(self, tasks, steps):
        """Accumulate d(sum of query losses)/d(theta, phi) into ``.grad``.

        tasks: list of (x_support [N*K, C, H, W], y_support [N*K], x_query, y_query);
        steps: inner steps per task. Returns (summed query loss, [accuracy per task]).
        Query losses are summed over the meta-batch (not averaged), as the original.
        """
        outer_loss, accuracies = 0.0, []
        for (xs, ys, xq, yq), n_steps in zip(tasks, steps):
            masks = self.mask() if self.mask is not None else None
            params = self.rule.initial(self.theta(), masks)
            params = adapt(self.model, self.rule, params, masks, xs, ys, n_steps,
                           create_graph=self.second_order)
            logits = functional_call(self.model, params, (xq,))
            outer_loss = outer_loss + F.cross_entropy(logits, yq)
            accuracies.append(accuracy(logits.detach(), yq))
        outer_loss.backward()
        return outer_loss.detach(), accuracies

    def eval_task(self, task, steps):
        """Adapt on the support set, return (query loss, query accuracy); no parameter change."""
        xs, ys, xq, yq = task
        with torch.no_grad():
            masks = self.mask() if self.mask is not None else None
            theta = {n: p.detach() for n, p in self.theta().items()}
            params = self.rule.initial(theta, masks)
        for name in self.rule.names:
            params[name] = params[name].detach().requires_grad_(True)
        params = adapt(self.model, self.rule, params, masks, xs, ys, steps)
        with torch.no_grad():
            logits = functional_call(self.model, params, (xq,))
            return F.cross_entropy(logits, yq), accuracy(logits, yq)

    def eval_tasks(self, tasks, steps):
        """(query losses [B], accuracies [B]) as device tensors, one task at a time."""
        results = [self.eval_task(task, steps) for task in tasks]
        return (torch.stack([loss for loss, _ in results]),
                torch.stack([acc for _, acc in results]))
