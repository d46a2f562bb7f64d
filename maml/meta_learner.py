"""MetaLearner: one object that owns backbone, mask, optimizers and engine.

``step(batch)`` is one meta-training step (both optimizer steps); ``evaluate(batch)``
adapts to each task and reports its query accuracy without changing any parameter.
A batch is torchmeta's dict {"train": (x [B, N*K, C, H, W], y [B, N*K]), "test": (x, y)}.

Under torchrun, ``distribute(ranks)`` spreads the work over the processes (see
``utils/run/distributed.py``): each adapts its share of a meta-batch's tasks and the
meta-gradients are summed, or evaluates every K-th evaluation batch.
"""
import math

import numpy as np
import torch
from tqdm import tqdm

from maml.engine import Task
from maml.masks import mask_sparsity


class NonFiniteError(RuntimeError):
    """A meta-step produced a non-finite loss or gradient (message names which)."""


def build_optimizer(params, name, lr, momentum):
    """Adam, or SGD with momentum (Nesterov when momentum > 0), as the original."""
    if name.lower() == "adam":
        return torch.optim.Adam(params, lr)
    return torch.optim.SGD(params, lr, momentum=momentum, nesterov=momentum > 0.0)


class MetaLearner:
    """Backbone (theta), mask (phi, or None), engine and optimizers, as ``build_learner``
    assembles them from ``config`` (a ``LearnerConfig``)."""

    def __init__(self, model, mask, engine, optimizer_theta, optimizer_mask=None, *, config):
        self.model = model
        self.mask = mask
        self.engine = engine
        self.rule = engine.rule
        self.optimizer_theta = optimizer_theta
        self.optimizer_mask = optimizer_mask
        self.config = config
        self.device = torch.device(config.device)
        self.skipped_steps = 0
        self.ranks = None           # one process; see distribute()

    def distribute(self, ranks):
        """Share the work with the other processes of ``ranks`` (a ``Ranks`` of
        ``utils.run.distributed``: ``share``, ``sum_meta_gradients``, ``owns``,
        ``gather_batches``); with one process nothing changes."""
        self.ranks = ranks if ranks.world_size > 1 else None

    def tasks(self, batch, share=None):
        """Split a torchmeta batch into per-task (x_support, y_support, x_query, y_query);
        ``share`` (a range) keeps those tasks only, before they go to the device."""
        (xs, ys), (xq, yq) = batch["train"], batch["test"]
        if share is not None:
            xs, ys, xq, yq = (t[share.start:share.stop] for t in (xs, ys, xq, yq))
        xs, ys, xq, yq = (t.to(self.device, non_blocking=True) for t in (xs, ys, xq, yq))
        if self.config.engine.channels_last:     # convert each task's [N, C, H, W]
            fmt = torch.channels_last
            return [Task(xs[i].contiguous(memory_format=fmt), ys[i],
                     xq[i].contiguous(memory_format=fmt), yq[i]) for i in range(xs.shape[0])]
        return [Task(xs[i], ys[i], xq[i], yq[i]) for i in range(xs.shape[0])]

    def sample_steps(self, n_tasks):
        """Inner steps per task: uniform on [T - r, T + r] (``--gradient_step_sampling r``)."""
        r, t = self.config.inner.step_sampling, self.config.inner.steps
        return [int(np.random.randint(t - r, t + r + 1)) for _ in range(n_tasks)]

    def skip_draws(self, n_tasks):
        """Draw and drop the mask noise of ``n_tasks`` tasks that another process adapts.

        PLUS draws fresh noise per task from the global generator, and an engine draws
        every task's mask before it adapts any (``Engine.draws``). Drawing the noise of the
        tasks before this process's share, and of those after it, keeps every process's
        generator where one process's would be: the same noise per task, the same state
        at the end. Without PLUS nothing is random here.
        """
        if n_tasks and self.engine.stochastic_mask:
            with torch.no_grad():
                for _ in range(n_tasks):
                    self.mask()

    def parameters(self):
        theta = list(self.model.parameters())
        phi = list(self.mask.parameters()) if self.mask is not None else []
        return theta, phi

    def zero_grad(self):
        self.optimizer_theta.zero_grad(set_to_none=True)
        if self.optimizer_mask is not None:
            self.optimizer_mask.zero_grad(set_to_none=True)

    def finite_check(self, loss, accuracy):
        """Host copies of (loss, accuracy) and the names of non-finite quantities.

        One device->host transfer per meta-step: the loss, the accuracy and one sum per
        gradient tensor (a sum is non-finite iff some element is) travel together.
        """
        named = [(f"gradient of theta[{n}]", p.grad) for n, p in self.model.named_parameters()]
        if self.mask is not None:
            named += [(f"gradient of phi[{n}]", p.grad) for n, p in self.mask.named_parameters()]
        named = [(n, g) for n, g in named if g is not None]
        stats = torch.stack([loss.detach().double(), accuracy.detach().double()]
                            + [g.detach().double().sum() for _, g in named]).tolist()
        sums = dict(zip(["query loss"] + [n for n, _ in named], [stats[0]] + stats[2:],
                        strict=True))
        bad = [n for n, v in sums.items() if not math.isfinite(v)]
        return stats[0], stats[1], bad

    def step(self, batch):
        """One meta-training step on a batch of tasks. Returns {"loss", "accuracy"} (floats).

        A non-finite loss or gradient raises NonFiniteError (naming it) before any
        parameter changes, or with ``skip_nonfinite`` skips the optimizer steps.
        """
        self.model.train()
        n_tasks = len(batch["train"][1])
        share = self.ranks.share(n_tasks) if self.ranks else range(n_tasks)
        tasks = self.tasks(batch, share)
        steps = self.sample_steps(n_tasks)[share.start:share.stop]   # every task's draw
        self.zero_grad()
        self.skip_draws(share.start)
        loss, accuracies = self.engine.train_tasks(tasks, steps) if tasks else (None, [])
        self.skip_draws(n_tasks - share.stop)
        if self.ranks:
            loss, accuracies = self.ranks.sum_meta_gradients(
                [p for group in self.parameters() for p in group], loss, accuracies, share,
                n_tasks)
        loss, accuracy, bad = self.finite_check(loss, torch.stack(accuracies).mean())
        if bad:
            self.zero_grad()
            if not self.config.outer.skip_nonfinite:
                raise NonFiniteError("non-finite " + ", ".join(bad[:3])
                                     + (" ..." if len(bad) > 3 else ""))
            self.skipped_steps += 1
            return {"loss": float("nan"), "accuracy": float("nan"), "skipped": True}
        if self.config.outer.clamp_gradients:
            for p in self.model.parameters():
                if p.grad is not None:
                    p.grad.clamp_(-10.0, 10.0)
        self.optimizer_theta.step()
        if self.optimizer_mask is not None:
            self.optimizer_mask.step()
        return {"loss": loss, "accuracy": accuracy}

    def evaluate_tensors(self, batch):
        """Per-task (query losses, accuracies) as device tensors: no host sync, so an
        evaluation loop keeps many tasks in flight and synchronises once at its end."""
        self.model.train()     # BatchNorm uses batch statistics at test time too
        losses, accuracies = self.engine.eval_tasks(self.tasks(batch), self.config.inner.steps_test)
        return losses.float(), accuracies.float()

    def evaluate(self, batch):
        """Adapt to every task of the batch; {"accuracies": [per task], "accuracy", "loss"}."""
        losses, accs = self.evaluate_tensors(batch)
        return {"accuracies": accs.tolist(), "accuracy": float(accs.mean()),
                "loss": float(losses.mean())}

    def evaluate_batches(self, loader, num_batches, desc=None):
        """Per-task query accuracies [floats] over the first ``num_batches`` batches of
        ``loader``, with one host sync at the end. Under torchrun every process draws every
        batch (the same tasks as one process), evaluates those it ``owns`` and gets all
        results back in loader order."""
        accuracies, ranks = [], self.ranks
        for i, batch in enumerate(tqdm(loader, total=num_batches, desc=desc, leave=False,
                                       disable=ranks is not None and not ranks.is_main)):
            if i >= num_batches:
                break
            if ranks is None or ranks.owns(i):
                accuracies.append(self.evaluate_tensors(batch)[1])
            else:
                self.skip_draws(len(batch["test"][1]))
        if ranks is not None:
            return ranks.gather_batches(accuracies)
        return torch.cat(accuracies).tolist() if accuracies else []

    def sparsity(self):
        """({name: fraction of zeros in m}, overall fraction), or ({}, None) without a mask."""
        if self.mask is None:
            return {}, None
        with torch.no_grad():
            return mask_sparsity(self.mask())
