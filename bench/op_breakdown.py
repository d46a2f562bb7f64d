"""Where a CPU meta-step spends its time: seconds per task by kind of operator, per engine
variant, and the ceiling that follows for any speed-up that leaves convolutions alone.

Every ATen call of one meta-training step (or one evaluation) is timed where it is
dispatched (a ``TorchDispatchMode`` below autograd, so the backward kernels count too)
and sorted into conv, batch_norm, pool, relu, linear and other. torch.profiler is not
used: in one ConvNet 1-shot step (AVX2 CPU, 2 threads) it charged the zero-fill inside
max-pooling's backward 418 ms and ReLU's backward 334 ms, where timing each call at
dispatch gives 141 ms for the whole pooling backward and 116 ms for ReLU's, while the
convolutions agree (2.1 vs 2.0 s); so its shares understate the convolutions. The mode
costs Python time per call (``untimed_s_per_task``); the per-kind times are the calls'
own.

For each variant the row "ceiling_without_other_ops" is reference seconds / the
variant's convolution seconds: the speed-up it would have if BatchNorm, pooling, ReLU
and everything else cost nothing, i.e. the most that fusing or removing them can give.
Beyond it only faster convolutions help (bf16 on a CPU that computes it natively: at
most twice the fp32 FLOPs per cycle without AMX, AVX512-BF16 pairs).

    python bench/op_breakdown.py                             # ConvNet, paper settings, 1/5-shot
    python bench/op_breakdown.py --backbones resnet12 --steps 3 --shots 1
    python bench/op_breakdown.py --variants reference fast fast-auto fast-bf16 --out FILE
"""
import argparse
import collections
import json
import os
import sys
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.meta_step import (  # noqa: E402
    SETUPS,
    VARIANTS,
    build,
    flags,
    machine,
    parse_args,
    run_phase,
    synthetic_batch,
    variant_flags,
)

# Kind of operator: the first kind one of whose words is in the ATen name.
KINDS = (("conv", ("convolution",)), ("batch_norm", ("batch_norm",)),
         ("pool", ("pool",)), ("relu", ("relu", "threshold_backward", "clamp_min")),
         ("linear", ("addmm", ".mm.", "linear")))


def kind_of(op_name):
    for kind, words in KINDS:
        if any(w in op_name for w in words):
            return kind
    return "other"


class OpTimer(TorchDispatchMode):
    """Seconds per kind of operator of every ATen call made while it is active."""

    def __init__(self):
        super().__init__()
        self.seconds = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        start = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        self.seconds[kind_of(str(func) + ".")] += time.perf_counter() - start
        return out


def breakdown(learner, phase, batch, repeats):
    """(wall seconds, {kind: seconds}) of ``repeats`` steps of ``phase``."""
    timer = OpTimer()
    start = time.perf_counter()
    with timer:
        for _ in range(repeats):
            run_phase(learner, phase, batch, "cpu")
    return time.perf_counter() - start, timer.seconds


def rows_for(backbone, shots, opts, names):
    """JSON rows: one per (phase, variant), then one ceiling row per non-reference variant.
    The variants run in turns within every round (a noisy neighbour slows one round, not
    one variant); each variant's fastest round counts."""
    argv = flags(backbone, shots, opts, "cpu")
    tasks = parse_args(argv).batch_size
    batch = synthetic_batch(tasks, 5, shots, opts.queries, 3, 84, "cpu")
    learners = {}
    for name in names:
        torch.manual_seed(0)
        learners[name] = build(parse_args(argv + variant_flags(name, 1)))
    rows, n = [], opts.repeats * tasks
    for phase in ("train", "eval"):
        best = {}
        for learner in learners.values():        # warm-up: oneDNN primitives, heap
            run_phase(learner, phase, batch, "cpu")
        for _ in range(opts.rounds):
            for name, learner in learners.items():
                wall, seconds = breakdown(learner, phase, batch, opts.repeats)
                if name not in best or wall < best[name][0]:
                    best[name] = (wall, seconds)
        per_task = {name: {k: v / n for k, v in seconds.items()}
                    for name, (_, seconds) in best.items()}
        for name, (wall, seconds) in best.items():
            order = sorted(per_task[name].items(), key=lambda kv: -kv[1])
            rows.append({"backbone": backbone, "shots": shots, "phase": phase, "engine": name,
                         "flags": variant_flags(name, 1), "inner_steps": opts.steps,
                         "wall_s_per_task": round(wall / n, 4),
                         "untimed_s_per_task": round((wall - sum(seconds.values())) / n, 4),
                         "s_per_task": {k: round(v, 4) for k, v in order},
                         "share": {k: round(v * n / wall, 3) for k, v in order}})
        reference = sum(per_task["reference"].values())
        for name in names[1:]:
            ops = per_task[name]
            rows.append({"backbone": backbone, "shots": shots, "phase": phase, "engine": name,
                         "speedup_ops": round(reference / sum(ops.values()), 3),
                         "speedup_by_kind": {k: round(per_task["reference"].get(k, 0) / v, 3)
                                             for k, v in ops.items() if v > 0},
                         "ceiling_without_other_ops": round(reference / ops["conv"], 3)})
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbones", nargs="+", default=["convnet"], choices=list(SETUPS),
                   help="backbones (default: convnet)")
    p.add_argument("--shots", nargs="+", type=int, default=[1, 5],
                   help="shots per class (default: 1 5)")
    p.add_argument("--steps", type=int, default=35,
                   help="inner steps (default: 35, the paper's)")
    p.add_argument("--repeats", type=int, default=1,
                   help="timed steps per variant, phase and round (default: 1)")
    p.add_argument("--rounds", type=int, default=3,
                   help="rounds, the variants in turns within each; the fastest counts "
                        "(default: 3)")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS),
                   default=["reference", "fast", "fast-auto"],
                   help="engine variants, reference first (default: reference fast fast-auto)")
    p.add_argument("--out", default=None,
                   help="also append the JSON lines to this file (default: none)")
    opts = p.parse_args(argv)
    if opts.variants[0] != "reference":
        p.error("--variants must start with reference (ceilings are relative to it)")
    opts.quick, opts.queries = False, 15

    def emit(row):
        print(json.dumps(row), flush=True)
        if opts.out:
            with open(opts.out, "a") as f:
                f.write(json.dumps(row) + "\n")

    emit({"meta": {**machine("cpu"), "bench": "op_breakdown", "inner_steps": opts.steps,
                   "queries": opts.queries, "image_side": 84, "repeats": opts.repeats,
                   "rounds": opts.rounds}})
    for backbone in opts.backbones:
        for shots in opts.shots:
            for row in rows_for(backbone, shots, opts, opts.variants):
                emit(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
