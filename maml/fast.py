"""The fast engine: first-order meta-gradients in closed form, no graph across steps.

Because each inner gradient g_t is a constant for the outer gradient (first order),
theta_T is an explicit function of theta_0 and m (Eq. 3 unrolled); the mask mode
(``maml/mask_modes.py``) keeps the running sums that function needs (G = sum_t g_t, or
the weight mask's J and P) and turns d = dL_query/d theta_T into dL/d theta_0 and
dL/dm. One ``autograd.backward`` then carries those through m(phi) (straight-through
estimators, the PLUS hypernetwork) and theta_0. The inner loop keeps only the running
sums, so memory does not grow with the number of steps. Identical updates to
``ReferenceEngine`` for every first-order method (tested).

On CUDA the engine can run each inner step from a captured CUDA graph (``cuda_graphs``
True; "emulate" runs the same static-buffer code eagerly, which is how CPU tests check
it), with ``task_streams`` tasks adapted concurrently in one graph, and under bf16
autocast (``amp``); theta, phi and the inner updates stay fp32. ``compile`` runs the
inner step (a pure function of the parameter dict) through torch.compile.
"""
import torch

from maml import functional
from maml.engine import Engine


class FastEngine(Engine):
    """Closed-form first-order meta-gradients (see the module docstring)."""

    name = "fast"

    def __init__(self, model, mask, rule, amp=None, cuda_graphs=False, compile=False,
                 task_streams=1):
        super().__init__(model, mask, rule)
        self.amp = amp
        self.grads_fn, self.step_fn, self.query_loss = (
            self.support_grads, self.step_values, self.loss_and_logits)
        self.compiled = bool(compile)
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

    def loss_and_logits(self, params, x, y):
        """(cross-entropy, logits) of the backbone with ``params`` on (x [N, C, H, W], y [N])."""
        return functional.loss_and_logits(self.model, params, x, y, self.amp)

    def support_grads(self, params, x, y):
        """{name: g = dL_support/d theta} for the inner-loop names, at ``params`` (detached)."""
        leaves = {n: params[n].detach().requires_grad_(True) for n in self.rule.names}
        with torch.enable_grad():
            loss, _ = self.loss_and_logits({**params, **leaves}, x, y)
        return dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values())), strict=True))

    def support_grads_traceable(self, params, x, y):
        """``support_grads`` via torch.func.grad, which torch.compile traces (autograd.grad
        would break the compiled graph); eagerly it costs more Python, so only compiled."""
        inner = {n: params[n] for n in self.rule.names}
        rest = {n: p for n, p in params.items() if n not in inner}
        return torch.func.grad(lambda i: self.loss_and_logits({**rest, **i}, x, y)[0])(inner)

    def start_sums(self, params, masks):
        """{name: {sum name: tensor}}: the mode's running sums before the first step."""
        return {name: self.rule.mode_for(masks, name).start_sums(params[name])
                for name in self.rule.names}

    def step_values(self, params, sums, masks, x, y):
        """One inner step as a pure function: ({name: theta_t}, {name: sums}) for the
        inner-loop names from theta_{t-1} (``params``) and the sums (None: not kept; a
        name missing from them: this is step 1, see ``MaskMode.first_sums``)."""
        grads = self.grads_fn(params, x, y)
        new_params, new_sums = {}, None if sums is None else {}
        for name in self.rule.names:
            g, m, theta = grads[name], masks.get(name), params[name]
            mode = self.rule.mode_for(masks, name)
            if sums is not None:
                new_sums[name] = (mode.accumulate(sums[name], theta, g, m) if name in sums
                                  else mode.first_sums(theta, g, m))
            new_params[name] = mode.update(theta, g, m)
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
        for name, values in (new_sums or {}).items():
            for key, value in values.items():
                sums[name][key].copy_(value)

    @torch.no_grad()
    def inner_loops(self, tasks, steps, need_sums=True):
        """Adapt each task [(theta0, masks, x_support, y_support)] (detached tensors) with
        ``steps`` inner steps (an int, or one per task).

        Returns [(theta_T, sums)] per task: sums {name: {sum name: tensor}}, None when
        ``need_sums`` is False (evaluation).
        """
        steps = [steps] * len(tasks) if isinstance(steps, int) else list(steps)
        if self.graphs is not None and len(set(steps)) == 1:
            return self.graphs.inner_loops(tasks, steps[0], need_sums)
        if self.graphs is not None:     # --gradient_step_sampling: one task at a time
            return [self.graphs.inner_loops([task], n, need_sums)[0]
                    for task, n in zip(tasks, steps, strict=True)]
        results = []
        for (theta0, masks, x, y), n_steps in zip(tasks, steps, strict=True):
            params = dict(theta0)
            sums = None
            if need_sums:
                # Eagerly, step 1 starts the sums from its own tensors; a compiled step
                # keeps one graph for every step (no second compilation for step 1).
                sums = {} if n_steps and not self.compiled else self.start_sums(params, masks)
            for _ in range(n_steps):
                self.inner_step_(params, sums, masks, x, y)
            results.append((params, sums))
        return results

    def query(self, params, x, y, need_grad):
        """(query loss, accuracy, [dL/d params] or None) at the adapted ``params``."""
        leaves = {n: p.detach().requires_grad_(need_grad) for n, p in params.items()}
        with torch.set_grad_enabled(need_grad):
            loss, logits = self.query_loss(leaves, x, y)
        grads = torch.autograd.grad(loss, list(leaves.values())) if need_grad else None
        return loss.detach(), functional.accuracy(logits.detach(), y), grads

    def train_tasks(self, tasks, steps):
        # Tasks that share m(phi) and theta_0 (all but PLUS) have their closed-form
        # gradients summed first, then carried through m(phi) and theta_0 by one backward.
        draws = self.draws(len(tasks), self.theta())
        detached = [({n: m.detach() for n, m in masks.items()},
                     {n: t.detach() for n, t in theta0.items()}) for masks, theta0 in draws]
        adapted = self.inner_loops([(theta0, masks, xs, ys) for (masks, theta0), (xs, ys, _, _)
                                    in zip(detached, tasks, strict=True)], steps)
        inner = set(self.rule.names)
        totals = {}         # id(draw) -> (draw, {name: dL/dm}, {name: dL/d theta_0})
        losses, accuracies = [], []
        for (_, _, xq, yq), (params, sums), draw, (m_detached, _) in zip(
                tasks, adapted, draws, detached, strict=True):
            loss, acc, d_theta_T = self.query(params, xq, yq, need_grad=True)
            _, d_masks, d_theta0 = totals.setdefault(id(draw), (draw, {}, {}))
            for name, d in zip(params, d_theta_T, strict=True):
                d_mask = None
                if name in inner:
                    mode = self.rule.mode_for(m_detached, name)
                    d, d_mask = mode.outer_grads(d, m_detached.get(name), sums[name])
                _accumulate(d_theta0, name, d)
                if d_mask is not None:
                    _accumulate(d_masks, name, d_mask)
            losses.append(loss)
            accuracies.append(acc)
        theta = self.theta()
        outputs, grads = [], []
        for (masks, theta0), d_masks, d_theta0 in totals.values():
            outputs += [masks[n] for n in d_masks]
            grads += list(d_masks.values())
            for name, d in d_theta0.items():
                if theta0[name] is theta[name]:     # theta_0 = theta: d is its gradient
                    _accumulate_grad(theta[name], d)
                else:
                    outputs.append(theta0[name])
                    grads.append(d)
        if outputs:
            torch.autograd.backward(outputs, grads)
        return torch.stack(losses).sum(), accuracies

    def eval_tasks(self, tasks, steps):
        with torch.no_grad():
            theta = {n: p.detach() for n, p in self.model.named_parameters()}
            draws = self.draws(len(tasks), theta)
        adapted = self.inner_loops([(theta0, masks, xs, ys) for (masks, theta0), (xs, ys, _, _)
                                    in zip(draws, tasks, strict=True)], steps, need_sums=False)
        results = [self.query(params, xq, yq, need_grad=False)[:2]
                   for (_, _, xq, yq), (params, _) in zip(tasks, adapted, strict=True)]
        return (torch.stack([loss for loss, _ in results]),
                torch.stack([acc for _, acc in results]))


def _accumulate(totals, name, value):
    totals[name] = value if name not in totals else totals[name] + value


@torch.no_grad()
def _accumulate_grad(param, grad):
    """``param.grad += grad`` as autograd's AccumulateGrad does it (same values), without
    the parameter-sized copy it makes of a gradient that the caller still references."""
    if param.grad is not None:
        param.grad += grad
    elif grad.stride() == param.stride():
        param.grad = grad
    else:       # the parameter's layout, as AccumulateGrad gives it
        param.grad = torch.empty_like(param).copy_(grad)

