"""The best model of a run: best.pt (theta and phi), and the original's format
(classifier.pth, mask.pth, mask_plus.pth) that the authors' code writes and reads.
Files are loaded with ``torch.load(weights_only=True)``."""
import os

import torch

from utils.run.atomic_io import save_torch

BEST = "best.pt"


class WeightsError(Exception):
    """Weights are missing, unreadable or do not fit the learner; the message says why."""


def save_best(folder, learner, original_format=False):
    """best.pt always; with ``original_format`` also classifier.pth / mask.pth (+ PLUS)."""
    mask_state = learner.mask.state_dict() if learner.mask is not None else None
    save_torch(os.path.join(folder, BEST), {"model": learner.model.state_dict(),
                                            "mask": mask_state})
    if not original_format:
        return
    save_torch(os.path.join(folder, "classifier.pth"), learner.model.state_dict())
    if mask_state is not None:
        save_torch(os.path.join(folder, "mask.pth"), mask_state)
        if learner.mask.mask_plus is not None:
            save_torch(os.path.join(folder, "mask_plus.pth"),
                       learner.mask.mask_plus.state_dict())


def _load(path, device):
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # corrupt file, or not a plain tensor dict (weights_only)
        raise WeightsError(f"cannot load {path}: {type(err).__name__}: {err}") from err


def _load_state(module, state, what, path):
    try:
        module.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        first = str(err).strip().splitlines()[0]
        raise WeightsError(f"{path} does not fit the {what} rebuilt from the run's flags "
                           f"({first}); are the flags those of the training run?") from err


def load_original_format(learner, folder):
    """Load classifier.pth (+ mask.pth, + mask_plus.pth) as the authors' code saves them;
    returns the file names loaded."""
    device = learner.device
    path = os.path.join(folder, "classifier.pth")
    if not os.path.isfile(path):
        raise WeightsError(f"no {BEST} or classifier.pth in {folder}: nothing to evaluate "
                           "(a run saves its model at its first test, once epoch > "
                           "--test_start)")
    _load_state(learner.model, _load(path, device), "backbone", path)
    if learner.mask is None:
        return "classifier.pth"
    mask_path = os.path.join(folder, "mask.pth")
    if not os.path.isfile(mask_path):
        raise WeightsError(f"{folder} has no mask.pth, but the flags build a mask "
                           "(--gradient_mask/--weight_mask)")
    state = dict(_load(mask_path, device))
    plus_path = os.path.join(folder, "mask_plus.pth")
    if learner.mask.mask_plus is not None and os.path.isfile(plus_path):
        # mask.pth already holds the PLUS weights in the original; mask_plus.pth fills
        # them in when it does not.
        for key, value in _load(plus_path, device).items():
            state.setdefault("mask_plus." + key, value)
    _load_state(learner.mask, state, "mask", mask_path)
    return "classifier.pth+mask.pth"


def load_best(learner, folder):
    """Load the folder's best model into ``learner`` (best.pt, else the original's
    format); returns the file name(s) loaded."""
    path = os.path.join(folder, BEST)
    if not os.path.isfile(path):
        return load_original_format(learner, folder)
    state = _load(path, learner.device)
    if not isinstance(state, dict) or "model" not in state:
        raise WeightsError(f"{path} is not a sparse-maml {BEST} (no 'model' entry)")
    _load_state(learner.model, state["model"], "backbone", path)
    if (state.get("mask") is None) != (learner.mask is None):
        raise WeightsError(f"{path} {'has no' if state.get('mask') is None else 'has a'} "
                           f"mask, the run's flags {'build' if learner.mask else 'build no'}"
                           " mask")
    if learner.mask is not None:
        _load_state(learner.mask, state["mask"], "mask", path)
    return BEST
