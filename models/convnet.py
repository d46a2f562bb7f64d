"""The 4-block ConvNet of MAML (Finn et al., 2017) as used by sparse-MAML.

Block: Conv2d 3x3 (pad 1, with bias) -> BatchNorm2d -> ReLU -> MaxPool2d(2).
BatchNorm keeps no running statistics (``track_running_stats=False``): it always
normalises with the statistics of the batch it sees, as the authors' torchmeta model.
The original always has conv and classifier biases (its ``--bias`` flag is stored as
a one-element tuple and is therefore always true); we keep that parameter set.

``pool_before_relu`` runs each block as conv -> BatchNorm -> MaxPool -> ReLU. ReLU is
monotone, so max(relu(a), relu(b), ...) = relu(max(a, b, ...)) bit for bit, and the
gradient reaches the same element of each window (the window's first maximum, or none
when the maximum is <= 0): the same values and gradients, with ReLU and its backward on
a quarter of the elements. The fast engine uses it; the reference engine keeps the
authors' order. (ResNet-12's LeakyReLU is not swapped: 0.01 * x rounds distinct
negative values to ties, and then the gradient could reach a different element.)
"""
from collections import OrderedDict

import torch.nn as nn


def conv_feature_size(hidden_size, image_size):
    """Flattened feature size after four 2x2 max-pools: 84 -> 5x5, 28 -> 1x1."""
    side = image_size
    for _ in range(4):
        side //= 2
    return hidden_size * side * side


def conv_block(in_channels, out_channels, pool_before_relu=False):
    layers = [
        ("conv", nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1,
                           padding=1, bias=True)),
        ("norm", nn.BatchNorm2d(out_channels, track_running_stats=False)),
        ("relu", nn.ReLU()),
        ("pool", nn.MaxPool2d(2)),
    ]
    if pool_before_relu:        # the same function (module docstring), cheaper
        layers[2], layers[3] = layers[3], layers[2]
    return nn.Sequential(OrderedDict(layers))


class ConvNet(nn.Module):
    """x [B, C, H, W] -> logits [B, num_ways].

    Keys: features.layer{1..4}.conv.{weight,bias}, features.layer{1..4}.norm.{weight,bias},
    classifier.{weight,bias}.
    """

    def __init__(self, in_channels=3, num_ways=5, hidden_size=64, feature_size=64 * 5 * 5,
                 pool_before_relu=False):
        super().__init__()
        channels = [in_channels] + [hidden_size] * 4
        self.features = nn.Sequential(OrderedDict(
            (f"layer{i}", conv_block(channels[i - 1], channels[i], pool_before_relu))
            for i in range(1, 5)))
        self.classifier = nn.Linear(feature_size, num_ways, bias=True)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))
