"""A reservoir-sampling replay buffer (Vitter's Algorithm R), as La-MAML and ER use.

After n samples have been offered to a buffer of capacity M, each of them is in the
buffer with probability min(1, M / n), whatever the order of the stream. La-MAML's
and MER's code draw the replacement slot with ``random.randint(0, age)`` (both ends
inclusive, after counting the sample), which keeps sample n with probability
M / (n + 1) instead; this buffer uses the exact rule.

All randomness comes from the ``torch.Generator`` it is given, and ``state_dict`` holds
the stored samples and the count, so a checkpoint restores it exactly.
"""
import torch


class ReservoirBuffer:
    """Up to ``capacity`` (x, y) samples, x of any fixed shape, y a class index."""

    def __init__(self, capacity, generator):
        self.capacity = int(capacity)
        self.generator = generator
        self.x = None          # [capacity, *shape] once the first sample arrives
        self.y = None          # [capacity] long
        self.size = 0          # samples held
        self.seen = 0          # samples offered so far

    def __len__(self):
        return self.size

    def add(self, x, y):
        """Offer the samples of a batch x [B, *shape], y [B], one after another."""
        if self.capacity <= 0:
            self.seen += len(y)
            return
        if self.x is None:
            self.x = torch.zeros((self.capacity,) + tuple(x.shape[1:]), dtype=x.dtype,
                                 device=x.device)
            self.y = torch.zeros(self.capacity, dtype=torch.long, device=x.device)
        for i in range(len(y)):
            self.seen += 1
            if self.size < self.capacity:
                slot = self.size
                self.size += 1
            else:
                slot = int(torch.randint(self.seen, (1,), generator=self.generator))
                if slot >= self.capacity:
                    continue
            self.x[slot] = x[i]
            self.y[slot] = y[i]

    def sample(self, n):
        """min(n, len) samples drawn uniformly with replacement: (x [k, *shape], y [k]),
        or None when empty (La-MAML draws each replay sample independently)."""
        k = min(int(n), self.size)
        if k == 0:
            return None
        index = torch.randint(self.size, (k,), generator=self.generator).to(self.y.device)
        return self.x[index], self.y[index]

    def state_dict(self):
        held = slice(0, self.size)
        return {"x": None if self.x is None else self.x[held].clone(),
                "y": None if self.y is None else self.y[held].clone(),
                "seen": self.seen, "capacity": self.capacity}

    def load_state_dict(self, state):
        if state["capacity"] != self.capacity:
            raise ValueError(f"replay buffer capacity {state['capacity']} in the checkpoint, "
                             f"{self.capacity} here")
        self.seen, self.x, self.y, self.size = state["seen"], None, None, 0
        if state["x"] is not None and len(state["y"]):
            self.add(state["x"], state["y"])
            self.seen = state["seen"]
