"""Typed configuration of a meta-learner: what ``build_learner`` needs, nothing else.

Built once from the command line (``utils.cli.resolution``), or directly in code:

    LearnerConfig(backbone=BackboneConfig(in_channels=1, image_size=28),
                  mask=MaskConfig(mode="gradient"), inner=InnerLoopConfig(steps=5))
"""
from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class BackboneConfig:
    resnet: bool = False          # ResNet-12 instead of the 4-block ConvNet
    big: bool = False             # ResNet-12 with 64-160-320-640 channels
    hidden_size: int = 64         # ConvNet channels
    in_channels: int = 3
    image_size: int = 84
    num_ways: int = 5


@dataclass(frozen=True)
class MaskConfig:
    """mode: a key of ``maml.mask_modes.MASK_MODES`` ("none" learns no mask); kind: m(phi),
    a key of ``maml.masks.MASK_KINDS``; init: "uniform", "kaiming", "constant" or
    "meta_sgd" (``maml.masks.init_mask_logits_``)."""

    mode: str = "none"
    kind: str = "binary"
    init: str = "uniform"
    init_shift: float = 0.0
    plus: bool = False            # conv masks from the PLUS hypernetwork
    plus_output_shift: float = 0.0
    optimizer: str = "ADAM"
    lr: float = 0.001


@dataclass(frozen=True)
class InnerLoopConfig:
    step_size: float = 0.1        # alpha
    steps: int = 35               # in meta-training
    steps_test: int = 35          # at validation / test
    step_sampling: int = 0        # train with steps drawn uniformly from steps +- this
    second_order: bool = False
    no_bn: bool = False           # BatchNorm parameters do not adapt
    no_downsample: bool = False   # ResNet downsample parameters do not adapt
    anil: bool = False            # only the classifier adapts
    boil: bool = False            # everything but the classifier adapts


@dataclass(frozen=True)
class EngineConfig:
    name: str = "fast"            # "fast" (closed-form first order) or "reference"
    amp: Optional[str] = None     # None or "bf16"
    channels_last: bool = False
    cuda_graphs: bool = True      # used on CUDA only
    compile: bool = False
    task_streams: int = 1


@dataclass(frozen=True)
class OuterLoopConfig:
    optimizer: str = "ADAM"       # for theta: "ADAM" or "SGD" (Nesterov when momentum > 0)
    lr: float = 0.001
    momentum: float = 0.9
    clamp_gradients: bool = False  # clamp theta's outer gradients to +-10
    skip_nonfinite: bool = False   # skip, instead of stopping at, non-finite meta-steps


@dataclass(frozen=True)
class LearnerConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    inner: InnerLoopConfig = field(default_factory=InnerLoopConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    outer: OuterLoopConfig = field(default_factory=OuterLoopConfig)
    device: str = "cpu"
