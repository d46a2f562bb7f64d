"""The floors: online SGD fine-tuning and experience replay (ER).

- online-sgd (MER's ``online``): ``glances`` SGD steps on each incoming batch, nothing
  else; it forgets freely. On an OSAKA stream it is OSAKA's ``online_sgd`` baseline.
- er (MER's / La-MAML's ``eralg4``, Riemer et al. 2019, Algorithm 4): each glance takes
  one SGD step on the incoming batch plus ``replay_batch_size`` samples drawn from a
  reservoir buffer; the batch enters the buffer after its glances. Task sequences only.

Both clip the gradient norm to ``grad_clip_norm`` before each step, as La-MAML's code.
"""
import torch

from maml.continual.base import ContinualLearner, clip_
from maml.continual.replay import ReservoirBuffer


class OnlineSGD(ContinualLearner):
    def __init__(self, model, config, seed=0):
        super().__init__(model, config, seed)
        self.optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)

    def optimizers(self):
        return {"theta": self.optimizer}

    def sgd_step(self, x, y):
        self.optimizer.zero_grad(set_to_none=True)
        loss, _ = self.loss_and_logits(self.theta(), x, y)
        loss.backward()
        clip_(self.model.parameters(), self.config.grad_clip_norm)
        self.optimizer.step()
        return float(loss.detach())

    def observe(self, x, y):
        loss = float("nan")
        for _ in range(self.config.glances):
            loss = self.sgd_step(x, y)
        return {"loss": loss}


class ExperienceReplay(OnlineSGD):
    # Not for OSAKA streams: their labels are task-relative (0..N-1 per task), so replayed
    # samples carry labels that contradict the current task's.
    supports = ("tasks",)

    def __init__(self, model, config, seed=0):
        super().__init__(model, config, seed)
        self.buffer = ReservoirBuffer(config.memories, self.generator)

    def observe(self, x, y):
        loss = float("nan")
        for _ in range(self.config.glances):
            replay = self.buffer.sample(self.config.replay_batch_size)
            bx, by = (x, y) if replay is None else (torch.cat([replay[0], x]),
                                                    torch.cat([replay[1], y]))
            loss = self.sgd_step(bx, by)
        self.buffer.add(x, y)
        return {"loss": loss}

    def extra_state(self):
        return {"buffer": self.buffer.state_dict()}

    def load_extra_state(self, state):
        self.buffer.load_state_dict(state["buffer"])
