"""Continual learners beside the few-shot MetaLearner: La-MAML and its variants, OSAKA's
Continual-MAML, their sparse versions, and the online-SGD / experience-replay floors.

``METHODS`` maps each method name to (class, fixed options, protocols); the options are
what distinguishes the variants of one algorithm in its public code.
``build_continual_learner(config, model, seed)`` is the one place a learner is assembled.
"""
from typing import NamedTuple

from maml.continual.baselines import ExperienceReplay, OnlineSGD
from maml.continual.c_maml import ContinualMAML
from maml.continual.la_maml import LaMAML


class Method(NamedTuple):
    cls: type
    options: dict
    description: str


METHODS = {
    "online-sgd": Method(OnlineSGD, {}, "SGD on each incoming batch (floor)"),
    "er": Method(ExperienceReplay, {}, "experience replay, reservoir buffer (floor)"),
    "la-maml": Method(LaMAML, dict(kind="relu", learn_rates=True, sync_update=False),
                      "La-MAML: learned ReLU rates, asynchronous weight update"),
    "sync-la-maml": Method(LaMAML, dict(kind="relu", learn_rates=True, sync_update=True),
                           "Sync-La-MAML: learned rates, SGD weight update (opt_wt)"),
    "c-maml": Method(LaMAML, dict(kind="relu", learn_rates=False, sync_update=True),
                     "C-MAML of La-MAML's code: fixed rates, SGD weight update"),
    "sparse-la-maml": Method(LaMAML, dict(kind="binary", learn_rates=True, sync_update=False),
                             "La-MAML with binary straight-through rates"),
    "sparse-relu-la-maml": Method(
        LaMAML, dict(kind="relu_through", learn_rates=True, sync_update=False),
        "La-MAML with straight-through ReLU rates"),
    "continual-maml": Method(ContinualMAML, dict(kind="linear", prolonged=False),
                             "OSAKA's C-MAML without prolonged adaptation"),
    "continual-maml-pa": Method(ContinualMAML, dict(kind="linear", prolonged=True),
                                "OSAKA's C-MAML with prolonged adaptation"),
    "sparse-continual-maml": Method(ContinualMAML, dict(kind="binary", prolonged=True),
                                    "sparse-C-MAML: binary gradient masks, prolonged "
                                    "adaptation"),
}


def method_supports(name):
    """The protocols ("tasks", "stream") method ``name`` is defined for."""
    return METHODS[name].cls.supports


def build_continual_learner(config, model, seed=0):
    """The learner of ``config.method`` (a ``ContinualConfig``) around ``model`` (already on
    ``config.device``); its generator is seeded with ``seed``."""
    if config.method not in METHODS:
        raise ValueError(f"unknown method {config.method!r}; expected one of {sorted(METHODS)}")
    method = METHODS[config.method]
    return method.cls(model, config, seed, **method.options)


__all__ = ["METHODS", "build_continual_learner", "method_supports", "ContinualMAML",
           "ExperienceReplay", "LaMAML", "OnlineSGD"]
