"""Seeds and RNG states: every epoch restarts python, numpy and torch from (seed, epoch),
and checkpoints carry the generators' states, so a resumed run replays exactly."""
import random

import numpy as np
import torch


def epoch_seed(seed, epoch):
    """Seed of one epoch: every RNG restarts from it, so epochs replay exactly."""
    return (int(seed) * 1_000_003 + int(epoch) * 7919 + 1) % (2 ** 32)


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)      # also seeds every CUDA device


def rng_states():
    """The states of python's, numpy's, torch's (and CUDA's) generators, as plain tensors
    and lists (loadable with ``torch.load(weights_only=True)``)."""
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
