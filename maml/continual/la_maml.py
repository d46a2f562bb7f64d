"""La-MAML (Gupta, Yadav, Paull; NeurIPS 2020) and the variants of its code, with the
sparse learning rates of von Oswald et al. (2021).

Per incoming batch (x, y) of B samples and per glance, as montrealrobotics/La-MAML's
``model/lamaml.py`` does it:

1. shuffle the batch; draw ``replay_batch_size`` samples from the reservoir buffer and
   form the meta-batch (bx, by) = replay + the whole incoming batch;
2. inner loop, one sample at a time: w_i = w_{i-1} - r * g_i, with r the current rates
   (ReLU(alpha) for La-MAML) and g_i = dL(w_{i-1}; x_i, y_i)/dw_{i-1} taken as a
   constant (first order; the meta-gradient still reaches the rates through r * g_i).
   In the first glance each sample enters the buffer right after its inner step;
3. meta-loss = (1/B) sum_i L(w_i; bx, by), backpropagated to w and to the rates;
   both gradients are clipped to norm ``grad_clip_norm`` (separately);
4. the rates take an SGD step (lr ``opt_lr``) when they are learned;
5. the weights: asynchronous (La-MAML) w <- w - r' * dmeta/dw with the *updated* rates
   r', or synchronous (Sync-La-MAML, C-MAML) an SGD step with the fixed lr ``opt_wt``.

Variants (registry in ``maml.continual``): la-maml (learned ReLU rates, asynchronous),
sync-la-maml (learned rates, synchronous), c-maml (fixed rates = alpha_init,
synchronous), sparse-la-maml (binary straight-through rates r = alpha_init * m(s)) and
sparse-relu-la-maml (ReLU rates with a straight-through backward), both asynchronous.

Two details of the public code, kept or not: its inner loop calls ``torch.clamp`` on the
gradients without using the result, so inner gradients are not clipped (not here
either); it keeps two replay lists (``M``, ``M_new``) that become the same list object
at the first task switch, i.e. one reservoir buffer (one here).
"""
import torch
from torch.func import grad_and_value, vmap

from maml.continual.base import ContinualLearner, clip_
from maml.continual.rates import LearnedRates
from maml.continual.replay import ReservoirBuffer


class LaMAML(ContinualLearner):
    supports = ("tasks",)

    def __init__(self, model, config, seed=0, kind="relu", learn_rates=True,
                 sync_update=False):
        super().__init__(model, config, seed)
        shapes = {n: p.shape for n, p in model.named_parameters()}
        self.learned_rates = LearnedRates(shapes, kind, step_size=config.alpha_init,
                                          init=config.rate_init, value=config.alpha_init,
                                          shift=config.rate_init_shift).to(self.device)
        self.learn_rates = learn_rates
        self.opt_rates = (torch.optim.SGD(self.learned_rates.parameters(), lr=config.opt_lr)
                          if learn_rates else None)
        if not learn_rates:
            for s in self.learned_rates.parameters():
                s.requires_grad_(False)
        self.opt_weights = (torch.optim.SGD(model.parameters(), lr=config.opt_wt)
                            if sync_update else None)
        self.buffer = ReservoirBuffer(config.memories, self.generator)

    def rates(self):
        return self.learned_rates

    def optimizers(self):
        return {k: o for k, o in (("rates", self.opt_rates), ("theta", self.opt_weights))
                if o is not None}

    def extra_state(self):
        return {"buffer": self.buffer.state_dict()}

    def load_extra_state(self, state):
        self.buffer.load_state_dict(state["buffer"])

    def sample_loss(self, params, x, y):
        return self.loss_and_logits(params, x, y)[0]

    def inner_step(self, fast, x, y, masks):
        """w' = w - r * g on one (mini-)batch, g = dL(w; x, y)/dw; r is the rate of the
        masks m (r = m, or alpha_init * m for binary gates). Returns (w', g)."""
        params = {n: t.detach().requires_grad_() for n, t in fast.items()}
        with torch.enable_grad():
            loss = self.sample_loss(params, x, y)
            g = dict(zip(params, torch.autograd.grad(loss, list(params.values())), strict=True))
        with torch.no_grad():
            return self.learned_rates.update(fast, g, masks), g

    def inner_loop(self, x, y, masks, push=False):
        """One inner step per sample of (x, y) from the slow weights: the fast weights
        w_1..w_B and the running sums G_i = g_1 + ... + g_i, stacked as {name: [B, ...]}.
        With ``push`` each sample enters the buffer right after its step."""
        fast = {n: p.detach() for n, p in self.theta().items()}
        total = {n: torch.zeros_like(t) for n, t in fast.items()}
        weights, sums = [], []
        for i in range(len(y)):
            fast, g = self.inner_step(fast, x[i:i + 1], y[i:i + 1], masks)
            total = {n: total[n] + g[n] for n in total}
            weights.append(fast)
            sums.append(total)
            if push:
                self.buffer.add(x[i:i + 1], y[i:i + 1])
        return ({n: torch.stack([w[n] for w in weights]) for n in fast},
                {n: torch.stack([t[n] for t in sums]) for n in fast})

    def meta_gradients(self, weights, sums, masks, bx, by):
        """Meta-loss (1/B) sum_i L(w_i; bx, by) and its first-order gradients.

        w_i = w - r * G_i with every g constant, so dmeta/dw = (1/B) sum_i d_i and
        dmeta/dr = -(1/B) sum_i G_i * d_i, d_i = dL(w_i; bx, by)/dw_i (the mask mode's
        ``outer_grads`` gives dmeta/dm from it): what autograd through La-MAML's unrolled
        loop gives, with the B meta-losses in one vmap.
        Returns (meta-loss, {name: dmeta/dw}, {name: dmeta/dm}).
        """
        d, losses = vmap(grad_and_value(self.sample_loss), in_dims=(0, None, None))(
            weights, bx, by)
        rule = self.learned_rates.rule
        d_theta, d_masks = {}, {}
        for n in d:
            d_w0, d_m = rule.outer_grads(d[n], masks[n], {"G": sums[n]})
            d_theta[n], d_masks[n] = d_w0.mean(0), d_m.mean(0)
        return losses.mean(), d_theta, d_masks

    def zero_grad(self):
        self.model.zero_grad(set_to_none=True)
        for s in self.learned_rates.parameters():
            s.grad = None

    def meta_update(self, d_theta, d_masks, masks):
        """Steps 3-5 above from the meta-gradients: clip, rate step, weight step.
        ``masks`` (with graph to the scores) carry d_masks into the scores' gradient,
        through sparse-MAML's straight-through functions where the kind has them."""
        self.zero_grad()
        for name, p in self.model.named_parameters():
            p.grad = d_theta[name].clone()
        if self.learn_rates:
            names = list(masks)
            torch.autograd.backward([masks[n] for n in names], [d_masks[n] for n in names])
        clip_(self.model.parameters(), self.config.grad_clip_norm)
        clip_(self.learned_rates.parameters(), self.config.grad_clip_norm)
        if self.opt_rates is not None:
            self.opt_rates.step()
        if self.opt_weights is not None:
            self.opt_weights.step()
        else:
            with torch.no_grad():
                masks = self.learned_rates.masks()      # the rates after their step
                for name, p in self.model.named_parameters():
                    p.copy_(self.learned_rates.rule.update(p, p.grad, masks[name]))
        self.zero_grad()

    def observe(self, x, y):
        meta_loss = None
        for glance in range(self.config.glances):
            perm = torch.randperm(len(y), generator=self.generator).to(y.device)
            x, y = x[perm], y[perm]
            replay = self.buffer.sample(self.config.replay_batch_size)
            bx, by = (x, y) if replay is None else (torch.cat([replay[0], x]),
                                                    torch.cat([replay[1], y]))
            masks = self.learned_rates.masks()
            values = {n: m.detach() for n, m in masks.items()}
            weights, sums = self.inner_loop(x, y, values, push=glance == 0)
            meta_loss, d_theta, d_masks = self.meta_gradients(weights, sums, values, bx, by)
            self.meta_update(d_theta, d_masks, masks)
        return {"loss": float(meta_loss)}
