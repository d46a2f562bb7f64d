"""Resumable checkpoints: theta, phi, both optimizers, progress, best result, RNG states.

A checkpoint is written atomically at the end of every epoch (and once before the
first), so a run killed at any moment resumes from the last finished epoch. Each epoch
reseeds every RNG from (seed, epoch), which makes the resumed run bitwise identical
to an uninterrupted one on CPU. Files are loaded with ``torch.load(weights_only=True)``.
"""
import os
import random

import numpy as np
import torch

from utils.io import save_torch

CHECKPOINT = "checkpoint.pt"
FORMAT = 1


class CheckpointError(Exception):
    """A checkpoint is missing, corrupt or belongs to a different model/mask layout."""


def epoch_seed(seed, epoch):
    """Seed of one epoch: every RNG restarts from it, so epochs replay exactly."""
    return (int(seed) * 1_000_003 + int(epoch) * 7919 + 1) % (2 ** 32)


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)      # also seeds every CUDA device


def rng_states():
    py_version, py_state, py_gauss = random.getstate()
    np_state = np.random.get_state()
    states = {"python": [py_version, list(py_state), py_gauss],
              "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                        int(np_state[2]), int(np_state[3]), float(np_state[4])],
              "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states):
    version, state, gauss = states["python"]
    random.setstate((version, tuple(state), gauss))
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def layout(module):
    """{name: shape} of a module's parameters (None for no module)."""
    if module is None:
        return None
    return {name: list(p.shape) for name, p in module.named_parameters()}


def save_checkpoint(out_dir, learner, epoch, progress):
    """Write checkpoint.pt: the state *before* ``epoch`` runs (``progress``: best etc.)."""
    state = {
        "format": FORMAT,
        "epoch": epoch,
        "model": learner.model.state_dict(),
        "mask": learner.mask.state_dict() if learner.mask is not None else None,
        "optimizer_theta": learner.optimizer_theta.state_dict(),
        "optimizer_mask": (learner.optimizer_mask.state_dict()
                           if learner.optimizer_mask is not None else None),
        "layout": {"model": layout(learner.model), "mask": layout(learner.mask)},
        "progress": progress,
        "rng": rng_states(),
    }
    save_torch(os.path.join(out_dir, CHECKPOINT), state)


def _describe_difference(saved, current, what):
    if saved is None or current is None:
        return f"{what}: the checkpoint has {'no' if saved is None else 'a'} mask, " \
               f"this run has {'no' if current is None else 'a'} mask"
    missing = sorted(set(saved) - set(current))
    extra = sorted(set(current) - set(saved))
    shapes = [n for n in saved if n in current and saved[n] != current[n]]
    parts = []
    if missing:
        parts.append(f"only in the checkpoint: {', '.join(missing[:4])}")
    if extra:
        parts.append(f"only in this run: {', '.join(extra[:4])}")
    if shapes:
        n = shapes[0]
        parts.append(f"{n} has shape {saved[n]} in the checkpoint, {current[n]} here")
    return f"{what} differs ({'; '.join(parts)})"


def load_checkpoint(out_dir, learner):
    """Restore ``learner`` from out_dir/checkpoint.pt; returns (epoch, progress)."""
    path = os.path.join(out_dir, CHECKPOINT)
    if not os.path.isfile(path):
        raise CheckpointError(f"--resume: no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        assert isinstance(state, dict) and state.get("format") == FORMAT
    except Exception as err:
        raise CheckpointError(f"--resume: {path} is corrupt or not a sparse-maml "
                              f"checkpoint ({type(err).__name__})") from err
    for what, module in (("model", learner.model), ("mask", learner.mask)):
        if state["layout"][what] != layout(module):
            raise CheckpointError(
                f"--resume: {path} does not fit this run: "
                + _describe_difference(state["layout"][what], layout(module),
                                       "backbone" if what == "model" else "mask layout"))
    learner.model.load_state_dict(state["model"])
    learner.optimizer_theta.load_state_dict(state["optimizer_theta"])
    if learner.mask is not None:
        learner.mask.load_state_dict(state["mask"])
        learner.optimizer_mask.load_state_dict(state["optimizer_mask"])
    set_rng_states(state["rng"])
    return state["epoch"], state["progress"]
