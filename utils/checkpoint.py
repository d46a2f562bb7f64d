"""Resumable checkpoints: theta, phi, both optimizers, progress, best result, RNG states.

A checkpoint is written atomically at the end of every epoch (and once before the
first), so a run killed at any moment resumes from the last finished epoch. Each epoch
reseeds every RNG from (seed, epoch), which makes the resumed run bitwise identical
to an uninterrupted one on CPU. Files are loaded with ``torch.load(weights_only=True)``.
"""
import json
import os
import random

import numpy as np
import torch

from utils.io import save_torch

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
LOCK = ".lock"
FORMAT = 1
_held_locks = {}      # realpath of a run folder -> open lock file of this process


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


def recorded_args(out_dir):
    """The flags recorded in out_dir/config.json ({dest: value}), or None if unreadable.

    Parsed as JSON only (never executed or unpickled), so a run folder can be untrusted.
    """
    try:
        with open(os.path.join(out_dir, CONFIG), encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None
    args = config.get("args") if isinstance(config, dict) else None
    return args if isinstance(args, dict) else None


def lock_run_folder(out_dir):
    """Hold an exclusive lock on out_dir for this process (re-entrant within it).

    Two processes writing one run folder would interleave epochs and clobber each
    other's checkpoints. The OS drops the lock when the process dies, even by SIGKILL,
    so a killed run never blocks its own ``--resume``. No-op where fcntl is missing.
    """
    key = os.path.realpath(out_dir)
    if key in _held_locks:
        return
    try:
        import fcntl
    except ImportError:      # Windows
        return
    f = open(os.path.join(out_dir, LOCK), "a")
    try:
        # A POSIX record lock, not flock: it is not inherited by forked DataLoader
        # workers, so an orphaned worker of a killed run cannot block its --resume.
        fcntl.lockf(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise CheckpointError(f"{out_dir} is in use by another training process; wait for "
                              "it to finish or stop it, or choose another --out_dir")
    _held_locks[key] = f


def unlock_run_folder(out_dir):
    f = _held_locks.pop(os.path.realpath(out_dir), None) if out_dir else None
    if f is not None:
        f.close()      # closing the file releases the lock
