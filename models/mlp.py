"""The fully connected learner of the MNIST continual-learning benchmarks (GEM, MER,
La-MAML): in_features -> 100 -> 100 -> num_classes with ReLU, one shared head.

Used functionally (``torch.func.functional_call`` with a parameter dict), like the
few-shot backbones. Initialisation as La-MAML's ``Learner``: every weight
``kaiming_normal_`` (fan-in, ReLU gain), every bias zero.
"""
from collections import OrderedDict

import torch.nn as nn


class MLP(nn.Sequential):
    """x [B, ...] (flattened to [B, in_features]) -> logits [B, num_classes].

    Keys: hidden{1..H}.{weight,bias}, classifier.{weight,bias}.
    """

    def __init__(self, in_features=784, hidden_sizes=(100, 100), num_classes=10):
        layers, width = OrderedDict(), in_features
        for i, size in enumerate(hidden_sizes, 1):
            layers[f"hidden{i}"] = nn.Linear(width, size)
            layers[f"relu{i}"] = nn.ReLU()
            width = size
        layers["classifier"] = nn.Linear(width, num_classes)
        super().__init__(layers)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.kaiming_normal_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        return super().forward(x.flatten(1))
