"""The fast engine: first-order meta-gradients in closed form, no graph across steps.

Because each inner gradient g_t is a constant for the outer gradient (first order),
theta_T is an explicit function of theta_0 and m (Eq. 3 unrolled):

    binary gradient mask:  theta_T = theta_0 - alpha * m * G,   G = sum_t g_t
    learning-rate masks:   theta_T = theta_0 - m * G
    no mask (MAML):        theta_T = theta_0 - alpha * G
    weight mask:           theta_t = (theta_{t-1} - alpha g_t) * m, so
                           d theta_T / d theta_0 = P = m^T and
                           d theta_T / d m = J with J_t = J_{t-1} * m + (theta_{t-1} - alpha g_t).

With d = dL_query/d theta_T this gives dL/d theta_0 (d, or d * P) and dL/dm (-alpha G d,
-G d, or J d) elementwise; one ``autograd.backward`` then carries them through m(phi)
(straight-through estimators, the PLUS hypernetwork) and theta_0 = theta * m. The inner
loop keeps only the running sums, so memory does not grow with the number of steps.
Identical updates to ``ReferenceEngine`` for every first-order method (tested).

On CUDA the engine can run each inner step from a captured CUDA graph (``cuda_graphs``
True; "emulate" runs the same static-buffer code eagerly, which is how CPU tests check
it) and under bf16 autocast (``amp``); theta, phi and the inner updates stay fp32.
"""
import contextlib

import torch
import torch.nn.functional as F
from torch.func import functional_call

from maml.reference import accuracy


class FastEngine:
    """Closed-form first-order meta-gradients; same interface as ``ReferenceEngine``."""

    name = "fast"

    def __init__(self, model, mask, rule, amp=None, cuda_graphs=False):
        self.model = model
        self.mask = mask
        self.rule = rule
        self.amp = amp
        self.graphs = None
        if cuda_graphs:
            from maml.cuda_graphs import InnerStepGraphs
            self.graphs = InnerStepGraphs(self, use_cuda_graphs=cuda_graphs is True)

    def autocast(self, device):
        if self.amp is None:
            return contextlib.nullcontext()
        # no autocast weight cache: it would be stale inside replayed CUDA graphs
        return torch.autocast(device_type=device.type, dtype=self.amp, cache_enabled=False)

    def full_precision(self, logits):
        """Losses in fp32 under bf16 autocast; unchanged otherwise (float64 tests)."""
        return logits.float() if self.amp is not None else logits

    def support_grads(self, params, x, y):
        """g = dL_support/d theta for the inner-loop names, at ``params`` (detached)."""
        leaves = {n: params[n].detach().requires_grad_(True) for n in self.rule.names}
        with torch.enable_grad(), self.autocast(x.device):
            logits = functional_call(self.model, {**params, **leaves}, (x,))
            loss = F.cross_entropy(self.full_precision(logits), y)
        return torch.autograd.grad(loss, list(leaves.values()))

    def start_sums(self, params):
        """Zeroed running sums: [G] per inner-loop name, or [J, P] for weight masks."""
        weight = self.rule.mask_mode == "weight"
        sums = {}
        for name in self.rule.names:
            zero = torch.zeros_like(params[name])
            sums[name] = [zero, torch.ones_like(zero)] if weight else [zero]
        return sums

    @torch.no_grad()
    def inner_step_(self, params, sums, masks, x, y, inplace=False):
        """One inner step: theta_{t-1} -> theta_t in ``params``, running sums updated.

        ``sums`` None (evaluation) skips the sums. ``inplace`` writes into the existing
        tensors (static CUDA-graph buffers); otherwise the dict gets new tensors.
        """
        rule, weight = self.rule, self.rule.mask_mode == "weight"
        grads = self.support_grads(params, x, y)
        for name, g in zip(rule.names, grads):
            m, theta = masks.get(name), params[name]
            if sums is not None:
                acc = sums[name]
                if weight and m is not None:
                    acc[0].mul_(m).add_(theta - rule.step_size * g)          # J
                    acc[1].mul_(m)                                             # P
                else:
                    acc[0].add_(g)                                             # G
            if inplace:
                theta.copy_(rule.update(name, theta, g, m))
            else:
                params[name] = rule.update(name, theta, g, m)

    @torch.no_grad()
    def inner_loop(self, theta0, masks, x, y, steps, need_sums=True):
        """Run ``steps`` detached inner steps from theta0 ({name: tensor}, no graph).

        Returns (theta_T, sums): sums[name] holds G (or J and P for weight masks); None
        when ``need_sums`` is False (evaluation).
        """
        if self.graphs is not None:
            return self.graphs.inner_loop(theta0, masks, x, y, steps, need_sums)
        params = dict(theta0)
        sums = self.start_sums(params) if need_sums else None
        for _ in range(steps):
            self.inner_step_(params, sums, masks, x, y)
        return params, sums

    def closed_form(self, name, d, masks, sums):
        """(dL/d theta_0, dL/dm or None) for one inner-loop parameter from d = dL/d theta_T."""
        rule, m = self.rule, masks.get(name)
        if m is None or rule.mask_mode is None:
            return d, None
        if rule.mask_mode == "weight":
            jacobian, power = sums[name]
            return d * power, d * jacobian
        total = sums[name][0]
        if rule.lr_mask:
            return d, -(total * d)
        return d, -rule.step_size * (total * d)

    def query(self, params, x, y, need_grad):
        leaves = {n: p.detach().requires_grad_(need_grad) for n, p in params.items()}
        with torch.set_grad_enabled(need_grad), self.autocast(x.device):
            logits = self.full_precision(functional_call(self.model, leaves, (x,)))
            loss = F.cross_entropy(logits, y)
        grads = torch.autograd.grad(loss, list(leaves.values())) if need_grad else None
        return loss.detach(), accuracy(logits.detach(), y), grads

    def train_tasks(self, tasks, steps):
        """Same contract as ``ReferenceEngine.train_tasks``: grads into theta.grad, phi.grad."""
        theta = dict(self.model.named_parameters())
        total_loss, accuracies = 0.0, []
        for (xs, ys, xq, yq), n_steps in zip(tasks, steps):
            masks = self.mask() if self.mask is not None else {}
            theta0 = self.rule.initial(theta, masks)                # graph to theta, phi
            detached = {n: t.detach() for n, t in theta0.items()}
            m_detached = {n: m.detach() for n, m in masks.items()}
            params, sums = self.inner_loop(detached, m_detached, xs, ys, n_steps)
            loss, acc, d_theta_T = self.query(params, xq, yq, need_grad=True)
            outputs, grads = [], []
            inner = set(self.rule.names)
            for name, d in zip(params, d_theta_T):
                if name in inner:
                    d_theta0, d_mask = self.closed_form(name, d, m_detached, sums)
                    if d_mask is not None:
                        outputs.append(masks[name])
                        grads.append(d_mask)
                else:
                    d_theta0 = d
                outputs.append(theta0[name])
                grads.append(d_theta0)
            torch.autograd.backward(outputs, grads)
            total_loss = total_loss + loss
            accuracies.append(acc)
        return total_loss, accuracies

    def eval_task(self, task, steps):
        xs, ys, xq, yq = task
        with torch.no_grad():
            masks = self.mask() if self.mask is not None else {}
            theta = {n: p.detach() for n, p in self.model.named_parameters()}
            theta0 = self.rule.initial(theta, masks)
        params, _ = self.inner_loop(theta0, masks, xs, ys, steps, need_sums=False)
        loss, acc, _ = self.query(params, xq, yq, need_grad=False)
        return loss, acc
