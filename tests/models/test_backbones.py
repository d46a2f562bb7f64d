"""models/: ConvNet and ResNet-12 parameter layout, shapes, BatchNorm mode, init, and
loading state dicts written by the authors' torchmeta models (classifier.pth, mask.pth)."""
import math

import pytest
import torch
import torch.nn as nn

from maml.masks import GradientMask
from models import ConvNet, ResNet12, build_backbone
from tests.maml.original_oracle import OriginalConvNet, OriginalMask, OriginalResNet12

CONVNET_84_RGB = [
    ("features.layer1.conv.weight", (64, 3, 3, 3)), ("features.layer1.conv.bias", (64,)),
    ("features.layer1.norm.weight", (64,)), ("features.layer1.norm.bias", (64,)),
    ("features.layer2.conv.weight", (64, 64, 3, 3)), ("features.layer2.conv.bias", (64,)),
    ("features.layer2.norm.weight", (64,)), ("features.layer2.norm.bias", (64,)),
    ("features.layer3.conv.weight", (64, 64, 3, 3)), ("features.layer3.conv.bias", (64,)),
    ("features.layer3.norm.weight", (64,)), ("features.layer3.norm.bias", (64,)),
    ("features.layer4.conv.weight", (64, 64, 3, 3)), ("features.layer4.conv.bias", (64,)),
    ("features.layer4.norm.weight", (64,)), ("features.layer4.norm.bias", (64,)),
    ("classifier.weight", (5, 1600)), ("classifier.bias", (5,)),
]

RESNET12 = [
    ("layer1.0.conv1.weight", (64, 3, 3, 3)), ("layer1.0.bn1.weight", (64,)),
    ("layer1.0.bn1.bias", (64,)), ("layer1.0.conv2.weight", (64, 64, 3, 3)),
    ("layer1.0.bn2.weight", (64,)), ("layer1.0.bn2.bias", (64,)),
    ("layer1.0.conv3.weight", (64, 64, 3, 3)), ("layer1.0.bn3.weight", (64,)),
    ("layer1.0.bn3.bias", (64,)), ("layer1.0.downsample.0.weight", (64, 3, 1, 1)),
    ("layer1.0.downsample.1.weight", (64,)), ("layer1.0.downsample.1.bias", (64,)),
    ("layer2.0.conv1.weight", (128, 64, 3, 3)), ("layer2.0.bn1.weight", (128,)),
    ("layer2.0.bn1.bias", (128,)), ("layer2.0.conv2.weight", (128, 128, 3, 3)),
    ("layer2.0.bn2.weight", (128,)), ("layer2.0.bn2.bias", (128,)),
    ("layer2.0.conv3.weight", (128, 128, 3, 3)), ("layer2.0.bn3.weight", (128,)),
    ("layer2.0.bn3.bias", (128,)), ("layer2.0.downsample.0.weight", (128, 64, 1, 1)),
    ("layer2.0.downsample.1.weight", (128,)), ("layer2.0.downsample.1.bias", (128,)),
    ("layer3.0.conv1.weight", (256, 128, 3, 3)), ("layer3.0.bn1.weight", (256,)),
    ("layer3.0.bn1.bias", (256,)), ("layer3.0.conv2.weight", (256, 256, 3, 3)),
    ("layer3.0.bn2.weight", (256,)), ("layer3.0.bn2.bias", (256,)),
    ("layer3.0.conv3.weight", (256, 256, 3, 3)), ("layer3.0.bn3.weight", (256,)),
    ("layer3.0.bn3.bias", (256,)), ("layer3.0.downsample.0.weight", (256, 128, 1, 1)),
    ("layer3.0.downsample.1.weight", (256,)), ("layer3.0.downsample.1.bias", (256,)),
    ("layer4.0.conv1.weight", (512, 256, 3, 3)), ("layer4.0.bn1.weight", (512,)),
    ("layer4.0.bn1.bias", (512,)), ("layer4.0.conv2.weight", (512, 512, 3, 3)),
    ("layer4.0.bn2.weight", (512,)), ("layer4.0.bn2.bias", (512,)),
    ("layer4.0.conv3.weight", (512, 512, 3, 3)), ("layer4.0.bn3.weight", (512,)),
    ("layer4.0.bn3.bias", (512,)), ("layer4.0.downsample.0.weight", (512, 256, 1, 1)),
    ("layer4.0.downsample.1.weight", (512,)), ("layer4.0.downsample.1.bias", (512,)),
    ("classifier.weight", (5, 512)), ("classifier.bias", (5,)),
]
# --big_resnet: the same names; every shape with 128/256/512 channels changes.
BIG = {128: 160, 256: 320, 512: 640}


pytestmark = pytest.mark.usefixtures("one_thread")


def layout(model):
    return [(n, tuple(p.shape)) for n, p in model.named_parameters()]


def test_convnet_layout_84x84_rgb():
    model = build_backbone(hidden_size=64, in_channels=3, image_size=84, num_ways=5)
    assert layout(model) == CONVNET_84_RGB
    assert list(model.state_dict()) == [n for n, _ in CONVNET_84_RGB]   # no buffers
    assert model(torch.randn(2, 3, 84, 84)).shape == (2, 5)


def test_convnet_layout_28x28_grayscale():
    model = build_backbone(hidden_size=64, in_channels=1, image_size=28, num_ways=5)
    expected = [(n, (64, 1, 3, 3) if n == "features.layer1.conv.weight" else
                 (5, 64) if n == "classifier.weight" else s) for n, s in CONVNET_84_RGB]
    assert layout(model) == expected
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 5)


@pytest.mark.parametrize("big", [False, True])
def test_resnet12_layout(big):
    model = build_backbone(resnet=not big, big_resnet=big, num_ways=5)
    expected = RESNET12 if not big else \
        [(n, tuple(BIG.get(d, d) for d in s)) for n, s in RESNET12]
    assert layout(model) == expected
    assert list(model.state_dict()) == [n for n, _ in RESNET12]


def test_resnet12_spatial_sizes_84_42_21_11_11():
    model = ResNet12(num_ways=5)
    sizes = {}
    for i in range(1, 5):
        getattr(model, f"layer{i}").register_forward_hook(
            lambda _m, _inp, out, i=i: sizes.__setitem__(i, tuple(out.shape[1:])))
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 84, 84))
    assert sizes == {1: (64, 42, 42), 2: (128, 21, 21), 3: (256, 11, 11), 4: (512, 11, 11)}
    assert logits.shape == (2, 5)


@pytest.mark.parametrize("make, x", [
    (lambda: ConvNet(1, 5, 8, 8), torch.randn(4, 1, 28, 28)),
    (lambda: ResNet12(num_ways=5, in_channels=1), torch.randn(4, 1, 12, 12)),
])
def test_batchnorm_uses_batch_statistics_in_eval_mode_and_keeps_none(make, x):
    torch.manual_seed(0)
    model = make()
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(m.running_mean is None and m.running_var is None for m in norms)
    assert list(model.buffers()) == []
    with torch.no_grad():
        train_out = model.train()(x)
        eval_out = model.eval()(x)
        other_batch = model(torch.cat([x[:1], 3 * x[1:] + 1]))
    torch.testing.assert_close(eval_out, train_out, rtol=0, atol=0)
    # The first example's output depends on the rest of its batch: batch statistics.
    assert not torch.allclose(other_batch[0], eval_out[0])


def test_resnet12_init_xavier_weights_unit_batchnorm():
    torch.manual_seed(0)
    model = ResNet12(num_ways=5)
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            w = module.weight.detach()
            receptive = w[0, 0].numel() if w.dim() > 2 else 1
            fan_in, fan_out = w.shape[1] * receptive, w.shape[0] * receptive
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            assert float(w.abs().max()) <= bound, name
            if w.numel() >= 1000:      # uniform(-b, b) has std b / sqrt(3)
                assert float(w.std()) == pytest.approx(bound / math.sqrt(3), rel=0.1), name
        if isinstance(module, nn.Conv2d):
            assert module.bias is None, name
        if isinstance(module, nn.BatchNorm2d):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0), name
    # The classifier bias: zero here; the original keeps nn.Linear's default
    # U(-1/sqrt(fan_in), 1/sqrt(fan_in)). Both satisfy this bound.
    assert float(model.classifier.bias.detach().abs().max()) <= 1 / math.sqrt(512)


@pytest.mark.parametrize("in_channels, side", [(3, 84), (1, 28)])
def test_convnet_loads_the_originals_classifier_pth(tmp_path, in_channels, side):
    torch.manual_seed(0)
    feature = 8 * (side // 16) ** 2
    original = OriginalConvNet(in_channels, 5, 8, feature)
    with torch.no_grad():                   # non-trivial BatchNorm parameters
        for name, p in original.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    torch.save(original.state_dict(), tmp_path / "classifier.pth")
    ours = ConvNet(in_channels, 5, 8, feature)
    ours.load_state_dict(torch.load(tmp_path / "classifier.pth"))      # strict
    x = torch.randn(4, in_channels, side, side)
    with torch.no_grad():
        assert torch.equal(ours(x), original(x))
        back = OriginalConvNet(in_channels, 5, 8, feature)
        back.load_state_dict(ours.state_dict())
        assert torch.equal(back(x), original(x))


def test_resnet12_loads_the_originals_classifier_pth(tmp_path):
    torch.manual_seed(0)
    original = OriginalResNet12(num_ways=5, in_channels=3)
    torch.save(original.state_dict(), tmp_path / "classifier.pth")
    ours = ResNet12(num_ways=5)
    ours.load_state_dict(torch.load(tmp_path / "classifier.pth"))
    x = torch.randn(2, 3, 20, 20)
    with torch.no_grad():
        assert torch.equal(ours(x), original(x))


def test_gradient_mask_loads_the_originals_mask_pth(tmp_path):
    torch.manual_seed(0)
    model = ConvNet(1, 5, 8, 8)
    names = [n for n, _ in model.named_parameters() if "norm" not in n]
    shapes = [dict(model.named_parameters())[n].shape for n in names]
    original = OriginalMask(names, shapes, "binary")
    with torch.no_grad():
        for phi in original.weight_mask_list:
            phi.uniform_(-0.5, 0.5)
    torch.save(original.state_dict(), tmp_path / "mask.pth")
    assert list(torch.load(tmp_path / "mask.pth")) == \
        [f"weight_mask_list.{i}" for i in range(len(names))]
    ours = GradientMask(names, shapes, kind="binary")
    ours.load_state_dict(torch.load(tmp_path / "mask.pth"))            # strict
    expected, got = original(), ours()
    assert list(got) == names
    for name in names:
        assert torch.equal(got[name], expected[name]), name


def _convnet_outputs_and_grads(pool_before_relu, x, layout, amp):
    torch.manual_seed(0)
    model = ConvNet(3, 5, 8, 8 * 2 * 2, pool_before_relu=pool_before_relu)
    with torch.no_grad():       # small integers: many equal values in a pooling window
        for p in model.parameters():
            p.copy_(torch.randint(-2, 3, p.shape))
    model = model.to(memory_format=layout)
    x = x.contiguous(memory_format=layout).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        logits = model(x)
    grads = torch.autograd.grad(logits.float().square().sum(), [x, *model.parameters()])
    return logits, grads


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last],
                         ids=["contiguous", "channels_last"])
def test_convnet_pool_before_relu_is_the_same_function_bit_for_bit(layout, amp):
    """The fast engine's block order (pool, then ReLU) against the authors' (ReLU, then
    pool): equal logits and equal gradients for the input and every parameter, with
    ties in the pooling windows and windows whose maximum is negative."""
    x = torch.randint(-3, 4, (6, 3, 32, 32)).float()
    x[:, :, :8] = -1.0              # windows with a negative maximum and only ties
    ours, ours_grads = _convnet_outputs_and_grads(True, x, layout, amp)
    theirs, their_grads = _convnet_outputs_and_grads(False, x, layout, amp)
    assert torch.equal(ours, theirs)
    for a, b in zip(ours_grads, their_grads, strict=True):
        assert torch.equal(a, b)
    assert float(their_grads[0].abs().sum()) > 0


def test_pool_before_relu_keeps_the_parameters_and_their_init():
    torch.manual_seed(0)
    authors = ConvNet(3, 5, 8, 8 * 5 * 5)
    torch.manual_seed(0)
    ours = ConvNet(3, 5, 8, 8 * 5 * 5, pool_before_relu=True)
    assert list(ours.state_dict()) == list(authors.state_dict())
    for a, b in zip(ours.state_dict().values(), authors.state_dict().values(), strict=True):
        assert torch.equal(a, b)
