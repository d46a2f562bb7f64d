"""One meta-step and one evaluation equal the numbers recorded before the library was
restructured (float64), for every method, both backbones and both engines.

``pinned_meta_step.json`` was computed with the code of commit 59f4cd5 (before the
mask modes, the engine interface and the typed configuration): per parameter tensor the
sum, the sum of squares and a fixed random projection after one Adam step from torch
seed 0 on a synthetic batch, plus the step's loss and accuracy and an evaluation.

The numbers were pinned on a CPU running torch's AVX2 kernels, and with those kernels
every number agrees to 1e-12. A CPU that runs other kernels (AVX-512) rounds float64
slightly differently, and for the conv biases before BatchNorm, whose gradient is
analytically zero, Adam's normalised step is made of that rounding: they differ by up to
1e-9 there. So the cases compare to 1e-12 under AVX2 kernels and to 1e-8 otherwise (any
change to an update moves a parameter by about the learning rate, 1e-3), and on an
AVX-512 CPU the last test reruns them all under AVX2 kernels (ATEN_CPU_CAPABILITY=avx2).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import learner_from_flags

PINNED = json.loads((Path(__file__).parent / "pinned_meta_step.json").read_text())
CAPABILITY = torch.backends.cpu.get_cpu_capability()         # the kernels this process runs
EXACT = CAPABILITY == "AVX2"
pytestmark = pytest.mark.usefixtures("one_thread", "float64")


def batch(side, tasks, ways=5, queries=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    query_y = torch.arange(ways).repeat_interleave(queries).repeat(tasks, 1)
    return {"train": (torch.randn(tasks, ways, 1, side, side, generator=g),
                      torch.arange(ways).repeat(tasks, 1)),
            "test": (torch.randn(tasks, ways * queries, 1, side, side, generator=g), query_y)}


def summary(t, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(t.numel(), generator=g)
    t = t.detach().reshape(-1)
    return [float(t.sum()), float((t * t).sum()), float((t * w).sum())]


@pytest.mark.parametrize("case", sorted(PINNED))
def test_meta_step_equals_the_pinned_numbers(case):
    pinned = PINNED[case]
    learner = learner_from_flags(pinned["flags"])
    side = 12 if "resnet" in case else 28
    torch.manual_seed(123)          # PLUS draws its mask noise from the global generator
    out = learner.step(batch(side, _tasks(pinned)))
    evaluation = learner.evaluate(batch(side, 2, seed=2))
    assert out["loss"] == pytest.approx(pinned["loss"], rel=1e-12)
    assert out["accuracy"] == pinned["accuracy"]
    assert evaluation["accuracies"] == pinned["eval_accuracies"]
    assert evaluation["loss"] == pytest.approx(pinned["eval_loss"], rel=1e-12)
    params = {f"theta[{n}]": p for n, p in learner.model.named_parameters()}
    if learner.mask is not None:
        params.update({f"phi[{n}]": p for n, p in learner.mask.named_parameters()})
    assert list(params) == list(pinned["params"])
    for i, (name, p) in enumerate(params.items()):
        tolerance = dict(rel=1e-12, abs=1e-13) if EXACT else dict(rel=1e-9, abs=1e-8)
        assert summary(p, i) == pytest.approx(pinned["params"][name], **tolerance), name


def _tasks(pinned):
    flags = pinned["flags"]
    return int(flags[len(flags) - 1 - flags[::-1].index("--batch_size") + 1])


@pytest.mark.skipif(not CAPABILITY.startswith("AVX512"),
                    reason=f"this process runs {CAPABILITY} kernels: the cases above compared "
                           "exactly" if EXACT else "no AVX2 kernels on this CPU")
def test_pinned_numbers_exactly_under_avx2_kernels():
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
         "-k", "equals_the_pinned_numbers"], cwd=Path(__file__).resolve().parents[2],
        env=dict(os.environ, ATEN_CPU_CAPABILITY="avx2"), capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert f"{len(PINNED)} passed" in result.stdout
