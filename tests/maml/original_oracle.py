"""Test oracle: the authors' sparse-MAML meta-step, re-expressed with torchmeta MetaModules.

Written for the tests from the behaviour of Johswald/learning_where_to_learn
(``models.py``, ``train.py``), not copied from it. It keeps the original's structure on
purpose, because that structure is what our reimplementation must agree with:

- the backbones are torchmeta ``MetaModule``s evaluated as ``model(x, params=...)``,
  with BatchNorm that never tracks running statistics and the parameter names of the
  authors' ``classifier.pth``;
- the mask is a ``ParameterList`` ``weight_mask_list`` of logits phi, one per inner-loop
  parameter, in named-parameter order (the layout of ``mask.pth``);
- one meta-step draws m(phi) once per task, differentiates the support loss w.r.t. ALL
  parameters (``create_graph`` only for second order), updates only the inner-loop
  names, sums the query losses over the meta-batch, backpropagates once and then steps
  both optimizers.

Used by tests/models/test_backbones.py and tests/maml/test_original_equivalence.py.
"""
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.data.torchmeta_compat import (
    MetaBatchNorm2d,
    MetaConv2d,
    MetaLinear,
    MetaModule,
    MetaSequential,
)

LEARNING_RATE_KINDS = ("relu_through", "relu", "linear", "exp")


# ---------------------------------------------------------------- backbones
def _conv_block(in_channels, out_channels):
    return MetaSequential(OrderedDict([
        ("conv", MetaConv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1,
                            bias=True)),
        ("norm", MetaBatchNorm2d(out_channels, track_running_stats=False)),
        ("relu", nn.ReLU()),
        ("pool", nn.MaxPool2d(2)),
    ]))


class OriginalConvNet(MetaModule):
    """The 4-block MetaConvModel: x [B, C, H, W] -> logits, ``forward(x, params=None)``."""

    def __init__(self, in_channels, num_ways, hidden_size, feature_size):
        super().__init__()
        self.features = MetaSequential(OrderedDict([
            ("layer1", _conv_block(in_channels, hidden_size)),
            ("layer2", _conv_block(hidden_size, hidden_size)),
            ("layer3", _conv_block(hidden_size, hidden_size)),
            ("layer4", _conv_block(hidden_size, hidden_size)),
        ]))
        self.classifier = MetaLinear(feature_size, num_ways, bias=True)

    def forward(self, x, params=None):
        h = self.features(x, params=self.get_subdict(params, "features"))
        return self.classifier(h.flatten(1), params=self.get_subdict(params, "classifier"))


class OriginalBlock(MetaModule):
    """BOIL's residual block: 3 x (conv3x3, BN), LeakyReLU(0.01), 1x1 shortcut, max-pool."""

    def __init__(self, in_channels, out_channels, pool, pool_padding):
        super().__init__()
        bn = lambda: MetaBatchNorm2d(out_channels, track_running_stats=False)  # noqa: E731
        self.conv1 = MetaConv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = bn()
        self.conv2 = MetaConv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = bn()
        self.conv3 = MetaConv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn3 = bn()
        self.downsample = MetaSequential(
            MetaConv2d(in_channels, out_channels, kernel_size=1, bias=False), bn())
        self.pool = nn.MaxPool2d(2, stride=2, padding=pool_padding) if pool else None

    def forward(self, x, params=None):
        sub = lambda key: self.get_subdict(params, key)  # noqa: E731
        out = F.leaky_relu(self.bn1(self.conv1(x, params=sub("conv1")), params=sub("bn1")))
        out = F.leaky_relu(self.bn2(self.conv2(out, params=sub("conv2")), params=sub("bn2")))
        out = self.bn3(self.conv3(out, params=sub("conv3")), params=sub("bn3"))
        out = F.leaky_relu(out + self.downsample(x, params=sub("downsample")))
        return self.pool(out) if self.pool is not None else out


class OriginalResNet12(MetaModule):
    """ResNet-12: pooling after blocks 1-3 (block 3 pads by 1), none after block 4."""

    def __init__(self, num_ways=5, big=False, in_channels=3):
        super().__init__()
        channels = [64, 160, 320, 640] if big else [64, 128, 256, 512]
        pools = [(True, 0), (True, 0), (True, 1), (False, 0)]
        for i, (c_out, (pool, pad)) in enumerate(zip(channels, pools, strict=True)):
            c_in = in_channels if i == 0 else channels[i - 1]
            setattr(self, f"layer{i + 1}", MetaSequential(OriginalBlock(c_in, c_out, pool, pad)))
        self.classifier = MetaLinear(channels[-1], num_ways)
        for module in self.modules():       # the original re-initialises weights only
            if isinstance(module, (MetaConv2d, MetaLinear)):
                nn.init.xavier_uniform_(module.weight)

    def forward(self, x, params=None):
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x, params=self.get_subdict(params, f"layer{i}"))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.classifier(x, params=self.get_subdict(params, "classifier"))


# ---------------------------------------------------------------- mask
class _Sign(torch.autograd.Function):
    """sign forward, identity backward (the original's BinaryLayer)."""

    @staticmethod
    def forward(ctx, x):
        return torch.sign(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


class _ReluIdentityBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.relu(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


class OriginalMask(nn.Module):
    """phi per inner-loop parameter in ``weight_mask_list``; ``forward() -> {name: m}``."""

    def __init__(self, names, shapes, kind="binary"):
        super().__init__()
        self.names = list(names)
        self.kind = kind
        self.weight_mask_list = nn.ParameterList(
            [nn.Parameter(torch.zeros(shape)) for shape in shapes])

    def forward(self):
        masks = {}
        for name, phi in zip(self.names, self.weight_mask_list, strict=True):
            if self.kind == "relu_through":
                masks[name] = _ReluIdentityBackward.apply(phi)
            elif self.kind == "linear":
                masks[name] = phi
            elif self.kind == "relu":
                masks[name] = torch.relu(phi)
            elif self.kind == "exp":
                masks[name] = torch.exp(phi)
            else:
                masks[name] = 0.5 * (_Sign.apply(phi) + 1)
        return masks


# ---------------------------------------------------------------- meta-step
def original_inner_loop_names(named_parameters, resnet=False, no_bn=False,
                              no_downsample=False):
    """The original's selection (it has no ANIL/BOIL flags)."""
    names = []
    for name in named_parameters:
        if resnet and no_bn and ("bn" in name or "downsample.1" in name):
            continue
        if resnet and no_downsample and "downsample" in name:
            continue
        if not resnet and no_bn and "norm" in name:
            continue
        names.append(name)
    return names


def original_step(model, mask, inner_names, batch, optimizer_theta, optimizer_mask=None,
                  step_size=0.1, steps=1, weight_mask=False, second_order=False,
                  clamp=False):
    """One meta-training step of the original MAML class on a torchmeta-style batch.

    Leaves the outer gradients in ``.grad`` and returns the summed query loss.
    ``clamp`` clamps theta's gradients to +-10 before the optimizer steps, which is
    what this project's ``--clamp_outer_gradients`` does. (The stored original
    train.py parses that flag but never reads it, so there it is a no-op.)
    """
    lr_mask = mask is not None and mask.kind in LEARNING_RATE_KINDS
    (xs, ys), (xq, yq) = batch["train"], batch["test"]
    inner = set(inner_names)
    outer_loss = 0.0
    for task in range(xs.shape[0]):
        m = mask() if mask is not None else {}
        params = OrderedDict(
            (n, p * m[n] if weight_mask and n in m else p) for n, p in model.named_parameters())
        for _ in range(steps):
            loss = F.cross_entropy(model(xs[task], params=params), ys[task])
            grads = torch.autograd.grad(loss, list(params.values()),
                                        create_graph=second_order)
            updated = OrderedDict()
            for (name, p), g in zip(params.items(), grads, strict=True):
                if name not in inner:
                    updated[name] = p                               # not adapted
                elif name in m and weight_mask:
                    updated[name] = (p - step_size * g) * m[name]
                elif name in m and lr_mask:
                    updated[name] = p - g * m[name]
                elif name in m:
                    updated[name] = p - step_size * (g * m[name])
                else:
                    updated[name] = p - step_size * g
            params = updated
        outer_loss = outer_loss + F.cross_entropy(model(xq[task], params=params), yq[task])
    optimizer_theta.zero_grad()
    if optimizer_mask is not None:
        optimizer_mask.zero_grad()
    outer_loss.backward()
    if clamp:
        for p in model.parameters():
            if p.grad is not None:
                p.grad.clamp_(-10.0, 10.0)
    optimizer_theta.step()
    if optimizer_mask is not None:
        optimizer_mask.step()
    return outer_loss.detach()
