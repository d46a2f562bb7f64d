"""What every continual learner shares: a backbone used as a pure function of a parameter
dict, its own random generator, gradient clipping and a resumable state.

Two protocols drive a learner:
- task sequences (La-MAML's MNIST benchmarks): ``observe(x, y)`` learns from each
  incoming batch; ``logits(x)`` predicts with the weights it would deploy now;
- streams (OSAKA): ``step(x, y)`` first predicts the incoming batch (the online score),
  then learns from it; it returns {"accuracy", "loss", "boundary"}.

All the learner's randomness (shuffles, replay draws, reservoir slots) comes from
``self.generator``, whose state is part of ``state_dict``: a checkpoint restores the
learner exactly, whatever else used torch's global generator in between.
"""
import torch
from torch.func import functional_call

from maml.functional import accuracy, loss_and_logits


def clip_(params, max_norm):
    """Clip the gradient norm of ``params`` in place (no-op for max_norm <= 0)."""
    grads = [p for p in params if p.grad is not None]
    if max_norm > 0 and grads:
        torch.nn.utils.clip_grad_norm_(grads, max_norm)


class ContinualLearner:
    """Base class. ``supports``: the protocols a method is defined for."""

    supports = ("tasks", "stream")

    def __init__(self, model, config, seed=0):
        self.model = model
        self.config = config
        self.device = torch.device(config.device)
        self.generator = torch.Generator()
        self.generator.manual_seed(int(seed))

    def theta(self):
        """{name: parameter} of the backbone (the slow weights)."""
        return dict(self.model.named_parameters())

    def weights(self):
        """The parameters the learner predicts with now (the slow weights by default)."""
        return self.theta()

    def loss_and_logits(self, params, x, y):
        return loss_and_logits(self.model, params, x, y)

    @torch.no_grad()
    def logits(self, x):
        return functional_call(self.model, self.weights(), (x,))

    def observe(self, x, y):
        raise NotImplementedError

    def step(self, x, y):
        """Stream protocol: score the current weights on (x, y), then learn from it."""
        with torch.no_grad():
            loss, logits = self.loss_and_logits(self.weights(), x, y)
        score = {"accuracy": float(accuracy(logits, y)), "loss": float(loss), "boundary": False}
        self.observe(x, y)
        return score

    def rates(self):
        """The learned rates (a ``LearnedRates``) or None for methods without them."""
        return None

    def sparsity(self):
        """({name: fraction of zero rates}, overall) or ({}, None) without learned rates."""
        rates = self.rates()
        return rates.sparsity() if rates is not None else ({}, None)

    # resumable state
    def optimizers(self):
        """{name: torch optimizer} whose states a checkpoint must keep."""
        return {}

    def extra_state(self):
        """Method-specific state (buffers, fast weights) as tensors / plain values."""
        return {}

    def load_extra_state(self, state):
        pass

    def state_dict(self):
        rates = self.rates()
        return {"model": self.model.state_dict(),
                "rates": rates.state_dict() if rates is not None else None,
                "optimizers": {k: o.state_dict() for k, o in self.optimizers().items()},
                "generator": self.generator.get_state(),
                "extra": self.extra_state()}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        rates = self.rates()
        if rates is not None:
            rates.load_state_dict(state["rates"])
        for name, opt in self.optimizers().items():
            opt.load_state_dict(state["optimizers"][name])
        self.generator.set_state(state["generator"])
        self.load_extra_state(state["extra"])
