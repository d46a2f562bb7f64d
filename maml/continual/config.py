"""Typed configuration of a continual learner: what ``build_continual_learner`` needs.

One frozen dataclass for every method; a method reads the fields it uses (the method
registry in ``maml.continual`` says which). Names follow the base algorithms' code:
La-MAML's ``glances``, ``memories``, ``replay_batch_size``, ``alpha_init``, ``opt_lr``,
``opt_wt``, ``grad_clip_norm``; OSAKA's ``step_size``, ``inner_steps`` (its
``num_steps``), ``meta_lr``, ``smoothing`` (its ``cl_strategy_thres``, lambda) and
``boundary_threshold`` (its ``cl_tbd_thres``, gamma).
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class ContinualConfig:
    method: str = "la-maml"
    # shared by every method
    glances: int = 1               # passes over each incoming batch
    grad_clip_norm: float = 2.0    # clip the gradient norm of theta (and of the rates); 0: off
    lr: float = 0.03               # SGD learning rate of online-sgd and er
    memories: int = 200            # replay buffer capacity (reservoir sampling)
    replay_batch_size: int = 10    # replayed samples per step
    # La-MAML, Sync-La-MAML, C-MAML (La-MAML's code) and their sparse variants
    alpha_init: float = 0.15       # initial rate (and the fixed step of binary rates)
    opt_lr: float = 0.3            # SGD learning rate of the rates
    opt_wt: float = 0.1            # SGD learning rate of theta for synchronous updates
    rate_init: str = "constant"    # scores: "constant" (= alpha_init), "uniform", "kaiming"
    rate_init_shift: float = 0.0   # added to the initial scores
    # Continual-MAML (OSAKA) and sparse-C-MAML
    step_size: float = 0.1         # inner step size (initial per-tensor step size of C-MAML)
    inner_steps: int = 8           # adaptation steps per batch
    meta_lr: float = 1e-4          # Adam learning rate of theta (and of C-MAML's step sizes)
    mask_lr: float = 1e-3          # Adam learning rate of the sparse-C-MAML mask scores
    mask_init: str = "uniform"     # sparse-C-MAML mask scores: "uniform", "kaiming", "constant"
    mask_init_shift: float = 0.0
    smoothing: float = 0.25        # lambda: meta-losses are weighted by 1 - exp(-lambda L)
    boundary_threshold: float = 2.5  # gamma: a loss drop >= gamma after adapting = boundary
    pa_buffer: int = 100           # prolonged adaptation: meta-update once more batches wait
    device: str = "cpu"


@dataclass(frozen=True)
class PretrainConfig:
    """MAML pretraining before an OSAKA stream (first order, learned step sizes), with
    early stopping on held-out classes. epochs 0: no pretraining."""

    epochs: int = 0
    batches_per_epoch: int = 100   # meta-batches per epoch
    meta_batch_size: int = 4       # tasks per meta-batch
    val_tasks: int = 50            # early-stopping tasks per epoch
    patience: int = 10             # stop after this many epochs without a better val accuracy
