"""ResNet-12 as in BOIL (Oh et al., 2021) and the sparse-MAML code.

Four residual blocks, channels 64-128-256-512 (``big``: 64-160-320-640). Each block:
three 3x3 convs (no bias) with BatchNorm and LeakyReLU(0.01), a 1x1-conv + BatchNorm
shortcut, add, LeakyReLU, then MaxPool2d(2, stride 2) after blocks 1-3 (block 3 pads
by 1, so 21x21 -> 11x11) and no pooling after block 4; global average pool; Linear.
BatchNorm keeps no running statistics (batch statistics always), as the original.
"""
import torch.nn as nn


class BasicBlock(nn.Module):
    """x [B, C_in, H, W] -> [B, C_out, H', W']; keys conv{1,2,3}, bn{1,2,3}, downsample.{0,1}."""

    def __init__(self, in_channels, out_channels, pool=True, pool_padding=0):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels, track_running_stats=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels, track_running_stats=False)
        self.conv3 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels, track_running_stats=False)
        self.relu = nn.LeakyReLU(0.01)
        self.downsample = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels, track_running_stats=False),
        )
        self.maxpool = nn.MaxPool2d(2, stride=2, padding=pool_padding) if pool else nn.Identity()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.maxpool(self.relu(out + self.downsample(x)))


class ResNet12(nn.Module):
    """x [B, 3, 84, 84] -> logits [B, num_ways]. Keys layer{1..4}.0.*, classifier.*."""

    def __init__(self, num_ways=5, big=False, in_channels=3):
        super().__init__()
        channels = [64, 160, 320, 640] if big else [64, 128, 256, 512]
        pools = [(True, 0), (True, 0), (True, 1), (False, 0)]
        inputs = [in_channels] + channels[:-1]
        layers = zip(inputs, channels, pools, strict=True)
        for i, (c_in, c_out, (pool, pad)) in enumerate(layers, 1):
            # nn.Sequential wrapper keeps the original's "layerK.0." key prefix.
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(c_in, c_out, pool, pad)))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels[-1], num_ways)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x):
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.classifier(self.avgpool(x).flatten(1))
