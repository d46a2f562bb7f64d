"""Resumable checkpoints: theta, phi, both optimizers, progress, best result, RNG states.

A checkpoint is written atomically at the end of every epoch (and once before the
first), so a run killed at any moment resumes from the last finished epoch. Each epoch
reseeds every RNG from (seed, epoch), which makes the resumed run bitwise identical
to an uninterrupted one on CPU. Files are loaded with ``torch.load(weights_only=True)``.
"""
import os

import torch

from utils.run.atomic_io import save_torch
from utils.run.rng import rng_states, set_rng_states

CHECKPOINT = "checkpoint.pt"
FORMAT = 1


class CheckpointError(Exception):
    """A checkpoint is missing, corrupt or belongs to a different model/mask layout."""


def layout(module):
    """{name: shape} of a module's parameters (None for no module).

    A mask's logits are listed by the backbone parameter they mask ("mask of NAME"), so
    a mismatch message names parameters the user knows, not list indices.
    """
    if module is None:
        return None
    if callable(getattr(module, "logits", None)):
        shapes = {f"mask of {n}": list(phi.shape) for n, phi in module.logits().items()}
        plus = getattr(module, "mask_plus", None)
        if plus is not None:
            shapes.update({f"mask_plus.{n}": list(p.shape) for n, p in plus.named_parameters()})
        return shapes
    return {name: list(p.shape) for name, p in module.named_parameters()}


def kinds(learner):
    """What a layout cannot tell apart: optimizer classes and the mask function."""
    return {"optimizer_theta": type(learner.optimizer_theta).__name__,
            "optimizer_mask": (type(learner.optimizer_mask).__name__
                               if learner.optimizer_mask is not None else None),
            "mask_kind": getattr(learner.mask, "kind", None)}


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
        "kinds": kinds(learner),
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


def read_state(path, fmt, program):
    """The checkpoint dict at ``path`` (CPU tensors) if it is one of ``program`` in format
    ``fmt``; CheckpointError (a message for --resume) if it is missing, corrupt or other."""
    if not os.path.isfile(path):
        raise CheckpointError(f"--resume: no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        assert isinstance(state, dict) and state.get("format") == fmt
    except Exception as err:
        raise CheckpointError(f"--resume: {path} is corrupt or not a {program} "
                              f"checkpoint ({type(err).__name__})") from err
    return state


def load_checkpoint(out_dir, learner):
    """Restore ``learner`` from out_dir/checkpoint.pt; returns (epoch, progress)."""
    path = os.path.join(out_dir, CHECKPOINT)
    state = read_state(path, FORMAT, "sparse-maml")
    try:
        for what, module in (("model", learner.model), ("mask", learner.mask)):
            if state["layout"][what] != layout(module):
                raise CheckpointError(
                    f"--resume: {path} does not fit this run: "
                    + _describe_difference(state["layout"][what], layout(module),
                                           "backbone" if what == "model" else "mask layout"))
        saved_kinds, current = state.get("kinds"), kinds(learner)
        if saved_kinds is not None and saved_kinds != current:
            diff = [f"{k} is {saved_kinds.get(k)} in the checkpoint, {v} here"
                    for k, v in current.items() if saved_kinds.get(k) != v]
            raise CheckpointError(f"--resume: {path} does not fit this run: {'; '.join(diff)}")
        learner.model.load_state_dict(state["model"])
        learner.optimizer_theta.load_state_dict(state["optimizer_theta"])
        if learner.mask is not None:
            learner.mask.load_state_dict(state["mask"])
            learner.optimizer_mask.load_state_dict(state["optimizer_mask"])
        set_rng_states(state["rng"])
        return state["epoch"], state["progress"]
    except CheckpointError:
        raise
    except Exception as err:      # a damaged or hand-edited checkpoint
        raise CheckpointError(f"--resume: {path} is incomplete or does not fit this run "
                              f"({type(err).__name__}: {err})") from err
