"""maml/precision.py: what ``--amp auto`` chooses, with torch's capability probes replaced,
so every branch runs on any machine (CPU with / without AVX512-BF16 or AMX, probes missing
in an older torch, CUDA below / from compute capability 8.0, the reference engine)."""
import pytest
import torch

from maml import precision
from maml.precision import native_bf16, resolve_precision

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture
def cpu_probes(monkeypatch):
    """set(avx512_bf16=..., amx_tile=...): True / False per probe, None = absent in torch."""
    def set_(**probes):
        for name in ("avx512_bf16", "amx_tile"):
            attr, value = f"_is_{name}_supported", probes.get(name)
            if value is None:
                monkeypatch.delattr(torch.cpu, attr, raising=False)
            else:
                monkeypatch.setattr(torch.cpu, attr, lambda value=value: value, raising=False)
    return set_


@pytest.fixture
def capability(monkeypatch):
    def set_(major, minor):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, minor))
    return set_


@pytest.mark.parametrize("avx512_bf16, amx_tile, native", [
    (True, False, True), (False, True, True), (True, True, True), (False, False, False),
    (None, None, False), (None, True, True), (True, None, True)])
def test_cpu_is_native_bf16_when_torch_reports_avx512_bf16_or_amx(cpu_probes, avx512_bf16,
                                                                   amx_tile, native):
    cpu_probes(avx512_bf16=avx512_bf16, amx_tile=amx_tile)
    ok, reason = native_bf16(CPU)
    assert ok is native
    chosen = resolve_precision("auto", False, CPU)
    assert chosen.amp == ("bf16" if native else None)
    assert chosen.channels_last            # measured faster on CPUs, with and without bf16
    assert chosen.reason == reason and ("has" if native else "no ") in reason


@pytest.mark.parametrize("major, minor, native", [(7, 5, False), (8, 0, True), (9, 0, True),
                                                  (6, 1, False), (8, 6, True)])
def test_cuda_is_native_bf16_from_compute_capability_8_0(capability, major, minor, native):
    capability(major, minor)
    chosen = resolve_precision("auto", False, CUDA)
    assert chosen.amp == ("bf16" if native else None)
    assert chosen.channels_last is native     # tensor cores want NHWC; fp32 GPUs keep NCHW
    assert f"{major}.{minor}" in chosen.reason


def test_the_reference_engine_gets_fp32_without_probing(monkeypatch):
    def probe():
        raise AssertionError("probed the device for an engine that runs fp32 only")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", probe, raising=False)
    chosen = resolve_precision("auto", False, CPU, engine="reference")
    assert chosen.amp is None and "reference engine" in chosen.reason


@pytest.mark.parametrize("device", [CPU, CUDA])
def test_explicit_choices_are_taken_as_given(cpu_probes, capability, device):
    cpu_probes(avx512_bf16=True)
    capability(9, 0)
    assert resolve_precision("none", False, device).amp is None
    assert resolve_precision("bf16", False, device).amp == "bf16"
    assert not resolve_precision("bf16", False, device).channels_last
    assert resolve_precision("none", True, device).channels_last


@pytest.mark.parametrize("native", [True, False])
def test_resnet12_stays_contiguous_in_fp32_on_a_cpu(cpu_probes, native):
    """Channels-last made ResNet-12 meta-training slower in fp32 on a CPU (0.8x), and the
    ConvNet faster (1.2x); with bf16 both take it."""
    cpu_probes(avx512_bf16=native, amx_tile=False)
    resnet = resolve_precision("auto", False, CPU, backbone="resnet12")
    assert resnet.channels_last is native
    assert resolve_precision("auto", False, CPU, backbone="convnet").channels_last
    assert resolve_precision("auto", True, CPU, backbone="resnet12").channels_last


def test_auto_keeps_an_explicit_channels_last(capability):
    capability(7, 0)
    assert resolve_precision("auto", False, CUDA).channels_last is False
    assert resolve_precision("auto", True, CUDA).channels_last is True


def test_other_devices_run_fp32_and_unknown_requests_are_errors():
    chosen = resolve_precision("auto", False, torch.device("meta"))
    assert chosen.amp is None and "meta" in chosen.reason
    with pytest.raises(ValueError, match="fp8"):
        resolve_precision("fp8", False, CPU)


def test_describe_names_precision_and_layout():
    assert precision.describe("bf16", True) == "bf16 autocast, channels-last"
    assert precision.describe(None, False) == "fp32, contiguous layout"
