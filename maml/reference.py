"""The reference engine: plain autograd through the whole inner loop.

This is the readable specification of the meta-update (Algorithm 1 of the paper). The
fast engine (``maml/fast.py``) must give the same theta and phi gradients for every
first-order method; only this engine supports ``--second_order``.
"""
import torch

from maml import functional
from maml.engine import Engine
from maml.inner_loop import adapt


class ReferenceEngine(Engine):
    """Meta-gradients by backpropagating through the unrolled inner loop."""

    name = "reference"

    def __init__(self, model, mask, rule, second_order=False):
        super().__init__(model, mask, rule)
        self.second_order = second_order

    def train_tasks(self, tasks, steps):
        # One mask draw per task, as the original draws m(phi) in every task's forward.
        draws = self.draws(len(tasks), self.theta(), shared=False)
        outer_loss, accuracies = 0.0, []
        for (xs, ys, xq, yq), n_steps, (masks, theta0) in zip(tasks, steps, draws, strict=True):
            params = adapt(self.model, self.rule, theta0, masks, xs, ys, n_steps,
                           create_graph=self.second_order)
            loss, logits = functional.loss_and_logits(self.model, params, xq, yq)
            outer_loss = outer_loss + loss
            accuracies.append(functional.accuracy(logits.detach(), yq))
        outer_loss.backward()
        return outer_loss.detach(), accuracies

    def eval_task(self, task, steps, masks, theta0):
        """(query loss, query accuracy) after adapting from theta0 (detached)."""
        xs, ys, xq, yq = task
        params = dict(theta0)
        for name in self.rule.names:
            params[name] = params[name].detach().requires_grad_(True)
        params = adapt(self.model, self.rule, params, masks, xs, ys, steps)
        with torch.no_grad():
            loss, logits = functional.loss_and_logits(self.model, params, xq, yq)
            return loss, functional.accuracy(logits, yq)

    def eval_tasks(self, tasks, steps):
        with torch.no_grad():
            theta = {n: p.detach() for n, p in self.model.named_parameters()}
            draws = self.draws(len(tasks), theta, shared=False)
        results = [self.eval_task(task, steps, *draw)
                   for task, draw in zip(tasks, draws, strict=True)]
        return (torch.stack([loss for loss, _ in results]),
                torch.stack([acc for _, acc in results]))
