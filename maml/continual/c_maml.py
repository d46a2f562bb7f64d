"""Continual-MAML (OSAKA; Caccia et al., NeurIPS 2020), with and without prolonged
adaptation, and sparse-C-MAML (von Oswald et al., 2021).

Slow weights theta and learned rates are meta-learned; fast weights phi adapt to the
current task. Adaptation is first order (as OSAKA's best configurations):
phi = start - sum_t r * g_t with each g_t a constant, so only the values of phi and the
running sum G = sum_t g_t are kept, and ``with_graph`` rebuilds a tensor equal to phi
whose gradient is the identity to theta and -G to the rates (what autograd through
OSAKA's first-order ``update_parameters`` gives). Kept values make a checkpoint exact.

One stream step on a batch (x, y), as ElementAI/osaka's ``MAML/metalearners/maml.py``:

- ``observe`` (no prolonged adaptation): the online score is phi's accuracy on (x, y)
  before adapting; phi' = adapt(theta, x, y); a task boundary is declared when
  L(phi; x, y) - L(phi'; x, y) >= gamma (``boundary_threshold``); otherwise theta and
  the rates take one Adam step on w * L(phi; x, y), w = 1 - exp(-lambda L) (detached,
  lambda = ``smoothing``): phi was adapted on the previous batch, so this is a MAML
  meta-loss. Then phi <- phi'.
- ``observe_accumulate`` (prolonged adaptation): phi keeps adapting from itself
  (from theta again right after a boundary); batches wait in a buffer; at a boundary
  (buffer non-empty), or once the buffer holds more than ``pa_buffer`` batches, theta
  takes one step on the MAML loss of the buffer (its first half are supports, paired
  with the second half as queries), weighted as above, and the buffer empties.
  OSAKA's code compares its buffer with 2 x the number of images of a batch (its
  ``batch_size`` is overwritten by them), i.e. 100 batches for 10-way 5-shot: the
  default of ``pa_buffer``.

Rates: ``linear`` = one learned step size per parameter tensor (OSAKA's
``per_param_step_size``), in the same Adam as theta; ``binary`` = sparse-C-MAML, an
elementwise gate m(s) = (sign(s) + 1) / 2 (straight-through) on the fixed step size,
its scores in that Adam with lr ``mask_lr``. The first batch of a stream has no fast
weights yet: it is scored with theta (OSAKA's code scores it 0).
"""
import math

import torch

from maml.continual.base import ContinualLearner
from maml.continual.rates import LearnedRates
from maml.functional import accuracy


class ContinualMAML(ContinualLearner):
    supports = ("stream",)

    def __init__(self, model, config, seed=0, kind="linear", prolonged=False):
        super().__init__(model, config, seed)
        shapes = {n: p.shape for n, p in model.named_parameters()}
        if kind == "linear":
            rates = LearnedRates(shapes, "linear", init="constant", value=config.step_size,
                                 per_tensor=True)
            rates_lr = config.meta_lr
        else:
            rates = LearnedRates(shapes, kind, step_size=config.step_size,
                                 init=config.mask_init, value=config.step_size,
                                 shift=config.mask_init_shift)
            rates_lr = config.mask_lr
        self.learned_rates = rates.to(self.device)
        self.prolonged = prolonged
        self.optimizer = torch.optim.Adam([
            {"params": list(model.parameters()), "lr": config.meta_lr},
            {"params": list(self.learned_rates.parameters()), "lr": rates_lr}])
        self.fast = None            # {name: phi} (values)
        self.inner_sum = None       # {name: G}, the inner gradients summed since theta
        self.pending = []           # prolonged adaptation: [(x, y)] awaiting a meta-update
        self.last_boundary = False

    def rates(self):
        return self.learned_rates

    def optimizers(self):
        return {"meta": self.optimizer}

    def weights(self):
        return self.theta() if self.fast is None else self.fast

    # adaptation and meta-losses
    def adapt(self, start, x, y, inner_sum=None):
        """``inner_steps`` first-order steps from ``start`` on (x, y): (phi, G) as values."""
        masks = {n: m.detach() for n, m in self.learned_rates.masks().items()}
        fast = {n: t.detach() for n, t in start.items()}
        total = ({n: torch.zeros_like(t) for n, t in fast.items()} if inner_sum is None
                 else dict(inner_sum))
        for _ in range(self.config.inner_steps):
            params = {n: t.clone().requires_grad_() for n, t in fast.items()}
            with torch.enable_grad():
                loss, _ = self.loss_and_logits(params, x, y)
                grads = dict(zip(params, torch.autograd.grad(loss, list(params.values())),
                                 strict=True))
            with torch.no_grad():
                fast = self.learned_rates.update(fast, grads, masks)
                total = {n: total[n] + grads[n] for n in total}
        return fast, total

    def with_graph(self, fast, inner_sum):
        """Tensors equal to ``fast`` with d/dtheta = identity and d/drates = -G (first
        order), so a loss at the fast weights meta-trains theta and the rates."""
        masks = self.learned_rates.masks()
        theta = self.theta()
        return {n: self.learned_rates.rule.update(fast[n] + (theta[n] - theta[n].detach()),
                                                  inner_sum[n], masks[n] - masks[n].detach())
                for n in fast}

    def maml_loss(self, tasks):
        """Mean query loss after adapting theta to each support set; tasks: [(xs, ys, xq,
        yq)]. Returns (loss with graph to theta and the rates, mean query accuracy)."""
        losses, accs = [], []
        for xs, ys, xq, yq in tasks:
            fast, total = self.adapt(self.theta(), xs, ys)
            loss, logits = self.loss_and_logits(self.with_graph(fast, total), xq, yq)
            losses.append(loss)
            accs.append(accuracy(logits, yq))
        return torch.stack(losses).mean(), float(torch.stack(accs).mean())

    def meta_update(self, loss, smooth=True):
        """One Adam step on theta and the rates for ``loss`` (weighted by 1 - exp(-lambda
        L) on the stream, as OSAKA's ``loss_smooth`` strategy)."""
        if smooth:
            loss = (1 - torch.exp(-self.config.smoothing * loss.detach())) * loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    # pretraining (MAML on few-shot tasks) and its early-stopping evaluation
    def pretrain_step(self, tasks):
        loss, acc = self.maml_loss(tasks)
        self.meta_update(loss, smooth=False)
        return {"loss": float(loss.detach()), "accuracy": acc}

    def evaluate_tasks(self, tasks):
        """Mean query accuracy after adaptation (no parameter changes)."""
        accs = []
        for xs, ys, xq, yq in tasks:
            fast, _ = self.adapt(self.theta(), xs, ys)
            with torch.no_grad():
                accs.append(float(accuracy(self.loss_and_logits(fast, xq, yq)[1], yq)))
        return sum(accs) / len(accs)

    # the stream
    def is_boundary(self, old_loss, new_fast, x, y):
        """Whether adapting dropped the loss on (x, y) by >= gamma (old_loss: a float)."""
        if self.config.boundary_threshold < 0:
            return False
        with torch.no_grad():
            new_loss, _ = self.loss_and_logits(new_fast, x, y)
        return float(new_loss) + self.config.boundary_threshold <= old_loss

    def step(self, x, y):
        if self.fast is None:
            with torch.no_grad():
                loss, logits = self.loss_and_logits(self.theta(), x, y)
            self.fast, self.inner_sum = self.adapt(self.theta(), x, y)
            if self.prolonged:
                self.pending.append((x, y))
            return {"accuracy": float(accuracy(logits, y)), "loss": float(loss),
                    "boundary": False}
        return (self.observe_accumulate if self.prolonged else self.observe)(x, y)

    def observe(self, x, y):
        old_loss, logits = self.loss_and_logits(self.with_graph(self.fast, self.inner_sum), x, y)
        score = {"accuracy": float(accuracy(logits, y)), "loss": float(old_loss.detach())}
        fast, total = self.adapt(self.theta(), x, y)
        score["boundary"] = self.is_boundary(score["loss"], fast, x, y)
        if not score["boundary"]:
            self.meta_update(old_loss)
        self.fast, self.inner_sum = fast, total
        return score

    def observe_accumulate(self, x, y):
        with torch.no_grad():
            old_loss, logits = self.loss_and_logits(self.fast, x, y)
        score = {"accuracy": float(accuracy(logits, y)), "loss": float(old_loss.detach())}
        if self.last_boundary:
            self.fast, self.inner_sum = self.adapt(self.theta(), x, y)
        else:
            self.fast, self.inner_sum = self.adapt(self.fast, x, y, self.inner_sum)
        boundary = self.is_boundary(score["loss"], self.fast, x, y)
        if (boundary and self.pending) or len(self.pending) > self.config.pa_buffer:
            self.meta_update(self.buffer_loss())
            self.pending = []
        else:
            self.pending.append((x, y))
        self.last_boundary = boundary
        score["boundary"] = boundary
        return score

    def buffer_loss(self):
        """MAML loss of the waiting batches: the first half adapt, the second half query,
        paired in order (a single batch is paired with itself)."""
        batches = self.pending if len(self.pending) > 1 else self.pending * 2
        half = math.ceil(len(batches) / 2)
        tasks = [(xs, ys, xq, yq) for (xs, ys), (xq, yq) in zip(batches[:half], batches[half:],
                                                                  strict=False)]
        return self.maml_loss(tasks)[0]

    # resumable state
    def extra_state(self):
        return {"fast": self.fast, "inner_sum": self.inner_sum,
                "pending": [list(b) for b in self.pending],
                "last_boundary": self.last_boundary}

    def load_extra_state(self, state):
        self.fast, self.inner_sum = state["fast"], state["inner_sum"]
        self.pending = [tuple(b) for b in state["pending"]]
        self.last_boundary = bool(state["last_boundary"])
