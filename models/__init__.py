"""Backbones: the 4-layer ConvNet and ResNet-12 of the paper, as plain nn.Modules.

Both are used functionally (``torch.func.functional_call`` with a parameter dict), so
they hold no meta-learning logic. Parameter names match the authors' torchmeta
models, so their ``classifier.pth`` files load with ``load_state_dict``.
"""
from models.convnet import ConvNet, conv_feature_size
from models.resnet12 import ResNet12


def build_backbone(resnet=False, big_resnet=False, hidden_size=64, in_channels=3,
                   image_size=84, num_ways=5, pool_before_relu=False):
    """The backbone selected by the command-line flags (``--resnet``, ``--big_resnet``).
    ``pool_before_relu``: the ConvNet's cheaper, identical block order (models/convnet.py)."""
    if resnet or big_resnet:
        return ResNet12(num_ways=num_ways, big=big_resnet, in_channels=in_channels)
    return ConvNet(in_channels=in_channels, num_ways=num_ways, hidden_size=hidden_size,
                   feature_size=conv_feature_size(hidden_size, image_size),
                   pool_before_relu=pool_before_relu)


__all__ = ["ConvNet", "ResNet12", "build_backbone", "conv_feature_size"]
