"""Numeric precision and memory layout of the backbone: what ``--amp auto`` chooses.

bf16 autocast only pays where the hardware computes bf16 natively: NVIDIA GPUs of
compute capability 8.0 and newer (Ampere on: bf16 tensor cores), and CPUs with
AVX512-BF16 or AMX instructions, as torch reports them. Elsewhere bf16 is emulated
through fp32 conversions and runs slower than fp32, so ``auto`` keeps fp32 there.
Layout, measured (README, "Engines and speed"): with bf16, channels-last (oneDNN's bf16
kernels on CPUs and tensor cores on GPUs want NHWC; 1.35x for the ConvNet on an
AVX512-BF16 CPU). In fp32 on a CPU it depends on the backbone: the ConvNet's pooling,
BatchNorm and ReLU vectorise along channels (1.2x at paper settings), while ResNet-12's
meta-training ran 0.8x in channels-last (paper image size; the cause is not profiled),
so ResNet-12 keeps the contiguous layout there; on a GPU without bf16 too (not
measured). The reference engine runs fp32 only (``--amp`` is a fast-engine option),
so ``auto`` gives it fp32.

Resolved once per run (``utils.cli.resolution``), so config.json records the choice.
"""
from dataclasses import dataclass
from typing import Optional

# torch is imported where a device is probed: the command-line parser imports AMP_CHOICES
# and stays torch-free (sweep.py --status parses every point).
AMP_CHOICES = ("none", "bf16", "auto")
# torch's CPU capability probes (private, absent in older torch: then "not supported").
CPU_BF16_PROBES = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")


@dataclass(frozen=True)
class Precision:
    """amp: None (fp32) or "bf16"; channels_last: the backbone's layout; reason: why."""

    amp: Optional[str]
    channels_last: bool
    reason: str


def describe(amp, channels_last):
    """E.g. "bf16 autocast, channels-last", for the start line of a run."""
    return (("bf16 autocast" if amp else "fp32") + ", "
            + ("channels-last" if channels_last else "contiguous layout"))


def cpu_native_bf16():
    """(True if this CPU computes bf16 natively, the capability found or missing)."""
    import torch

    for probe in CPU_BF16_PROBES:
        check = getattr(torch.cpu, probe, None)
        if check is not None and check():
            return True, probe.removeprefix("_is_").removesuffix("_supported")
    return False, "no avx512_bf16 or amx_tile"


def native_bf16(device):
    """(bool, reason): does ``device`` (a torch.device) compute bf16 natively?"""
    import torch

    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        ok = (major, minor) >= (8, 0)
        return ok, f"compute capability {major}.{minor} {'>=' if ok else '<'} 8.0"
    if device.type == "cpu":
        ok, found = cpu_native_bf16()
        return ok, f"CPU has {found}" if ok else f"CPU with {found}"
    return False, f"{device.type} not probed for bf16"


def faster_channels_last(device, amp, backbone="convnet"):
    """Whether channels-last measured faster for ``amp`` on ``device`` with ``backbone``
    ("convnet" or "resnet12"; see the module doc)."""
    return amp is not None or (device.type == "cpu" and backbone == "convnet")


def resolve_precision(requested, channels_last, device, engine="fast", backbone="convnet"):
    """The ``Precision`` of ``--amp requested`` (one of AMP_CHOICES) on ``device``.

    ``channels_last`` is the ``--channels_last`` flag: True is kept; with ``auto`` a
    False flag becomes the faster layout for ``backbone`` ("convnet" or "resnet12").
    "none" and "bf16" are taken as given.
    """
    import torch

    device = torch.device(device)
    if requested not in AMP_CHOICES:
        raise ValueError(f"--amp {requested!r}: expected one of {AMP_CHOICES}")
    if requested != "auto":
        amp = None if requested == "none" else requested
        return Precision(amp, bool(channels_last), f"--amp {requested} given")
    if engine != "fast":
        amp, why = None, f"the {engine} engine runs fp32"
    else:
        ok, why = native_bf16(device)
        amp = "bf16" if ok else None
    layout = bool(channels_last) or faster_channels_last(device, amp, backbone)
    return Precision(amp, layout, why)
