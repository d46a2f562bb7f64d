"""Run outputs of continual.py: metrics rows, TensorBoard scalars and exact checkpoints.

metrics.jsonl has one JSON object per line:
- task sequences: {"task": i, "phase": "eval", "accuracies": [R[i, j] for every task j],
  "mean_seen": mean of R[i, :i+1], "sparsity", "sparsity_per_param"} after each task
  (task -1: the untrained model);
- streams: {"step": s, "phase": "stream", "online_accuracy" (running mean),
  "online_accuracy_per_mode", "window_accuracy" (last ``log_every`` steps),
  "sparsity", "sparsity_per_param"}; pretraining epochs: {"epoch", "phase": "pretrain",
  "loss", "accuracy", "val_accuracy"}.

A checkpoint (``checkpoint.pt``, atomic) holds the learner's state (weights, rates,
optimizers, replay buffer, fast weights, its generator), the benchmark's position (the
stream generator), the progress so far and every RNG state; on resume metrics.jsonl is
cut back to its size at the checkpoint and later TensorBoard events are purged.
"""
import os

from utils.run.atomic_io import save_torch
from utils.run.checkpoint import CHECKPOINT, CheckpointError, read_state
from utils.run.metrics import MetricsLog
from utils.run.rng import rng_states, set_rng_states

FORMAT = "continual-1"


class ContinualLogger(MetricsLog):
    """continual.py's rows (see the module docstring) and their TensorBoard scalars."""

    def row(self, row, step, scalars=None, sparsity=None):
        """Append ``row`` to metrics.jsonl; ``scalars`` {tag: value} and the per-tensor
        ``sparsity`` ({name: fraction}) go to TensorBoard at ``step``."""
        self.append(row)
        if self.writer is None:
            return
        for tag, value in (scalars or {}).items():
            self.writer.add_scalar(tag, value, step)
        if sparsity:
            self.sparsity_scalars(step, row["sparsity"], sparsity)


def layout(learner):
    """What a checkpoint must match: method, parameter shapes, rate kind, optimizers."""
    rates = learner.rates()
    return {"method": learner.config.method,
            "model": {n: list(p.shape) for n, p in learner.model.named_parameters()},
            "rates": None if rates is None else rates.kind,
            "optimizers": sorted(learner.optimizers())}


def save_continual_checkpoint(out_dir, learner, benchmark, progress):
    state = {"format": FORMAT, "layout": layout(learner), "learner": learner.state_dict(),
             "benchmark": benchmark.state_dict() if hasattr(benchmark, "state_dict") else None,
             "progress": progress, "rng": rng_states()}
    save_torch(os.path.join(out_dir, CHECKPOINT), state)


def load_continual_checkpoint(out_dir, learner, benchmark):
    """Restore ``learner`` and ``benchmark`` from out_dir/checkpoint.pt; returns progress."""
    path = os.path.join(out_dir, CHECKPOINT)
    state = read_state(path, FORMAT, "continual.py")
    if state["layout"] != layout(learner):
        saved, here = state["layout"], layout(learner)
        diff = [k for k in here if saved.get(k) != here[k]]
        raise CheckpointError(f"--resume: {path} does not fit this run ({', '.join(diff)} "
                              f"differ: {[saved.get(k) for k in diff]} in the checkpoint, "
                              f"{[here[k] for k in diff]} here)")
    try:
        learner.load_state_dict(state["learner"])
        if state["benchmark"] is not None:
            benchmark.load_state_dict(state["benchmark"])
        set_rng_states(state["rng"])
    except Exception as err:
        raise CheckpointError(f"--resume: {path} is incomplete or does not fit this run "
                              f"({type(err).__name__}: {err})") from err
    return state["progress"]


def save_sparsity_figure(path, positions, per_tensor, xlabel):
    """One line per parameter tensor: % of its learned rates that are 0 over the stream.
    positions: [x]; per_tensor: [{name: fraction}] (same length). Written atomically.
    Uses matplotlib's Figure directly (no pyplot: cheaper to import, no global state)."""
    from matplotlib.figure import Figure

    from utils.run.atomic_io import atomic_write

    names = list(per_tensor[0]) if per_tensor else []
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for name in names:
        ax.plot(positions, [100 * p[name] for p in per_tensor], label=name, linewidth=1.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("learned rates = 0 (%)")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    if names:
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120))
