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
it), with ``task_streams`` tasks adapted concurrently in one graph, and under bf16
autocast (``amp``); theta, phi and the inner updates stay fp32. ``compile`` runs the
inner step (a pure function of the parameter dict) through torch.compile.
"""
import contextlib

import torch
import torch.nn.functional as F
from torch.func import functional_call

from maml.reference import accuracy


class FastEngine:
    """Closed-form first-order meta-gradients; same interface as ``ReferenceEngine``."""

    name = "fast"

    def __init__(self, model, mask, rule, amp=None, cuda_graphs=False, compile=False,
                 task_streams=1):
        self.model = model
        self.mask = mask
        self.rule = rule
        self.amp = amp
        self.grads_fn, self.step_fn, self.query_loss = (
            self.support_grads, self.step_values, self.loss_and_logits)
        if compile:
            # Whole inner step (forward, backward, masked update, sums) in one compiled
            # graph: inductor fuses BatchNorm/ReLU/pooling and their backward. Static
            # shapes: one compilation per task shape, then no guards on sizes.
            # fullgraph: a graph break would silently run eagerly. Dynamo keeps up to
            # recompile_limit variants per function for the whole process (engines,
            # shapes, train/eval), then silently runs eagerly: allow more (the setting is
            # cache_size_limit before torch 2.6).
            config = torch._dynamo.config
            limit = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
            setattr(config, limit, max(getattr(config, limit), 64))
            self.grads_fn = self.support_grads_traceable
            self.step_fn = torch.compile(self.step_values, dynamic=False, fullgraph=True)
            self.query_loss = torch.compile(self.loss_and_logits, dynamic=False, fullgraph=True)
        self.graphs = None
        if cuda_graphs:
            from maml.cuda_graphs import InnerStepGraphs
            self.graphs = InnerStepGraphs(self, use_cuda_graphs=cuda_graphs is True,
                                          task_streams=task_streams)

    def autocast(self, device):
        if self.amp is None:
            return contextlib.nullcontext()
        # no autocast weight cache: it would be stale inside replayed CUDA graphs
        return torch.autocast(device_type=device.type, dtype=self.amp, cache_enabled=False)

    def full_precision(self, logits):
        """Losses in fp32 under bf16 autocast; unchanged otherwise (float64 tests)."""
        return logits.float() if self.amp is not None else logits

    def loss_and_logits(self, params, x, y):
        """(cross-entropy, logits) of the backbone with ``params`` on (x [N, C, H, W], y [N])."""
        with self.autocast(x.device):
            logits = functional_call(self.model, params, (x,))
        logits = self.full_precision(logits)
        return F.cross_entropy(logits, y), logits

    def support_grads(self, params, x, y):
        """{name: g = dL_support/d theta} for the inner-loop names, at ``params`` (detached)."""
        leaves = {n: params[n].detach().requires_grad_(True) for n in self.rule.names}
        with torch.enable_grad():
            loss, _ = self.loss_and_logits({**params, **leaves}, x, y)
        return dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()))))

    def support_grads_traceable(self, params, x, y):
        """``support_grads`` via torch.func.grad, which torch.compile traces (autograd.grad
        would break the compiled graph); eagerly it costs more Python, so only compiled."""
        inner = {n: params[n] for n in self.rule.names}
        rest = {n: p for n, p in params.items() if n not in inner}
        return torch.func.grad(lambda i: self.loss_and_logits({**rest, **i}, x, y)[0])(inner)

    def start_sums(self, params):
        """Zeroed running sums: [G] per inner-loop name, or [J, P] for weight masks."""
        weight = self.rule.mask_mode == "weight"
        sums = {}
        for name in self.rule.names:
            zero = torch.zeros_like(params[name])
            sums[name] = [zero, torch.ones_like(zero)] if weight else [zero]
        return sums

    def step_values(self, params, sums, masks, x, y):
        """One inner step as a pure function: ({name: theta_t}, {name: sums}) for the
        inner-loop names from theta_{t-1} (``params``) and the sums (None: not kept)."""
        rule, weight = self.rule, self.rule.mask_mode == "weight"
        grads = self.grads_fn(params, x, y)
        new_params, new_sums = {}, None if sums is None else {}
        for name in rule.names:
            g, m, theta = grads[name], masks.get(name), params[name]
            if sums is not None:
                acc = sums[name]
                if weight and m is not None:
                    new_sums[name] = [acc[0] * m + (theta - rule.step_size * g),   # J
                                      acc[1] * m]                                  # P
                else:
                    new_sums[name] = [acc[0] + g] + acc[1:]                       # G
            new_params[name] = rule.update(name, theta, g, m)
        return new_params, new_sums

    @torch.no_grad()
    def inner_step_(self, params, sums, masks, x, y, inplace=False):
        """One inner step: theta_{t-1} -> theta_t in ``params``, running sums updated.

        ``sums`` None (evaluation) skips the sums. ``inplace`` writes into the existing
        tensors (static CUDA-graph buffers); otherwise the dicts get new tensors.
        """
        new_params, new_sums = self.step_fn(params, sums, masks, x, y)
        if not inplace:
            params.update(new_params)
            if sums is not None:
                sums.update(new_sums)
            return
        for name, value in new_params.items():
            params[name].copy_(value)
        for name, acc in (new_sums or {}).items():
            for buffer, value in zip(sums[name], acc):
                buffer.copy_(value)

    @torch.no_grad()
    def inner_loops(self, tasks, steps, need_sums=True):
        """Adapt each task [(theta0, masks, x_support, y_support)] (detached tensors) with
        ``steps`` inner steps (an int, or one per task).

        Returns [(theta_T, sums)] per task: sums[name] holds G (or J and P for weight
        masks); None when ``need_sums`` is False (evaluation).
        """
        steps = [steps] * len(tasks) if isinstance(steps, int) else list(steps)
        if self.graphs is not None and len(set(steps)) == 1:
            return self.graphs.inner_loops(tasks, steps[0], need_sums)
        if self.graphs is not None:     # --gradient_step_sampling: one task at a time
            return [self.graphs.inner_loops([task], n, need_sums)[0]
                    for task, n in zip(tasks, steps)]
        results = []
        for (theta0, masks, x, y), n_steps in zip(tasks, steps):
            params = dict(theta0)
            sums = self.start_sums(params) if need_sums else None
            for _ in range(n_steps):
                self.inner_step_(params, sums, masks, x, y)
            results.append((params, sums))
        return results

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
        with torch.set_grad_enabled(need_grad):
            loss, logits = self.query_loss(leaves, x, y)
        grads = torch.autograd.grad(loss, list(leaves.values())) if need_grad else None
        return loss.detach(), accuracy(logits.detach(), y), grads

    def draws(self, n_tasks, theta):
        """[(masks, theta0)] per task: m(phi) and theta_0, with their graph to theta and
        phi. One shared draw unless the mask is stochastic (PLUS: fresh noise per task)."""
        stochastic = getattr(self.mask, "mask_plus", None) is not None
        draws = []
        for _ in range(n_tasks if stochastic else 1):
            masks = self.mask() if self.mask is not None else {}
            draws.append((masks, self.rule.initial(theta, masks)))
        return draws if stochastic else draws * n_tasks

    def train_tasks(self, tasks, steps):
        """Same contract as ``ReferenceEngine.train_tasks``: grads into theta.grad, phi.grad.

        Tasks that share m(phi) and theta_0 (all but PLUS) have their closed-form
        gradients summed first, then carried through m(phi) and theta_0 by one backward.
        """
        draws = self.draws(len(tasks), dict(self.model.named_parameters()))
        detached = [({n: m.detach() for n, m in masks.items()},
                     {n: t.detach() for n, t in theta0.items()}) for masks, theta0 in draws]
        adapted = self.inner_loops([(theta0, masks, xs, ys) for (masks, theta0), (xs, ys, _, _)
                                    in zip(detached, tasks)], steps)
        inner = set(self.rule.names)
        totals = {}         # id(draw) -> (draw, {name: dL/dm}, {name: dL/d theta_0})
        losses, accuracies = [], []
        for (_, _, xq, yq), (params, sums), draw, (m_detached, _) in zip(
                tasks, adapted, draws, detached):
            loss, acc, d_theta_T = self.query(params, xq, yq, need_grad=True)
            _, d_masks, d_theta0 = totals.setdefault(id(draw), (draw, {}, {}))
            for name, d in zip(params, d_theta_T):
                d_mask = None
                if name in inner:
                    d, d_mask = self.closed_form(name, d, m_detached, sums)
                _accumulate(d_theta0, name, d)
                if d_mask is not None:
                    _accumulate(d_masks, name, d_mask)
            losses.append(loss)
            accuracies.append(acc)
        outputs, grads = [], []
        for (masks, theta0), d_masks, d_theta0 in totals.values():
            outputs += [masks[n] for n in d_masks] + [theta0[n] for n in d_theta0]
            grads += list(d_masks.values()) + list(d_theta0.values())
        torch.autograd.backward(outputs, grads)
        return torch.stack(losses).sum(), accuracies

    def eval_tasks(self, tasks, steps):
        """Adapt to each task [(x_s, y_s, x_q, y_q)] and return (query losses [B],
        accuracies [B]) as device tensors; no parameter changes, no host sync."""
        with torch.no_grad():
            theta = {n: p.detach() for n, p in self.model.named_parameters()}
            draws = self.draws(len(tasks), theta)
        adapted = self.inner_loops([(theta0, masks, xs, ys) for (masks, theta0), (xs, ys, _, _)
                                    in zip(draws, tasks)], steps, need_sums=False)
        results = [self.query(params, xq, yq, need_grad=False)[:2]
                   for (_, _, xq, yq), (params, _) in zip(tasks, adapted)]
        return (torch.stack([loss for loss, _ in results]),
                torch.stack([acc for _, acc in results]))


def _accumulate(totals, name, value):
    totals[name] = value if name not in totals else totals[name] + value
