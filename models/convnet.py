"""The 4-block ConvNet of MAML (Finn et al., 2017) as used by sparse-MAML.

Block: Conv2d 3x3 (pad 1, with bias) -> BatchNorm2d -> ReLU -> MaxPool2d(2).
BatchNorm keeps no running statistics (``track_running_stats=False``): it always
normalises with the statistics of the batch it sees, as the authors' torchmeta model.
The original always has conv and classifier biases (its ``--bias`` flag is stored as
a one-element tuple and is therefore always true); we keep that parameter set.
"""
from collections import OrderedDict

import torch.nn as nn


def conv_feature_size(hidden_size, image_size):
    """Flattened feature size after four 2x2 max-pools: 84 -> 5x5, 28 -> 1x1."""
    side = image_size
    for _ in range(4):
        side //= 2
    return hidden_size * side * side


def conv_block(in_channels, out_channels):
    return nn.Sequential(OrderedDict([
        ("conv", nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1,
                           padding=1, bias=True)),
        ("norm", nn.BatchNorm2d(out_channels, track_running_stats=False)),
        ("relu", nn.ReLU()),
        ("pool", nn.MaxPool2d(2)),
    ]))


class ConvNet(nn.Module):
    """x [B, C, H, W] -> logits [B, num_ways].

    Keys: features.layer{1..4}.conv.{weight,bias}, features.layer{1..4}.norm.{weight,bias},
    classifier.{weight,bias}.
    """

    def __init__(self, in_channels=3, num_ways=5, hidden_size=64, feature_size=64 * 5 * 5):
        super().__init__()
        self.features = nn.Sequential(OrderedDict([
            ("layer1", conv_block(in_channels, hidden_size)),
            ("layer2", conv_block(hidden_size, hidden_size)),
            ("layer3", conv_block(hidden_size, hidden_size)),
            ("layer4", conv_block(hidden_size, hidden_size)),
        ]))
        self.classifier = nn.Linear(feature_size, num_ways, bias=True)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))
