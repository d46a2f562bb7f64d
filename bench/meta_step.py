"""Meta-step throughput: reference vs fast engine, side by side in one process.

Synthetic 5-way tasks on the chosen device; for every (backbone, shots) the script
first checks that both engines give the same meta-gradient on one batch, then times
meta-training steps and evaluation (inner loop + query) per engine variant, the
variants in turns within every round (so a noisy neighbour slows one round, not one
variant). Output: one JSON line per measurement {engine, flags, backbone, shots, phase,
tasks_per_s (best round), ...} and one per (backbone, shots, phase, variant) with
"speedup" = best variant / best reference, the per-round ratios (median, min, max) and
the same ratio in tasks per CPU-second of the process ("speedup_cpu_time": with one thread
on a shared machine, what other processes take does not count).

    python bench/meta_step.py --device cpu --quick        # ~1-2 min on 2 idle CPU cores
    python bench/meta_step.py --device cuda               # paper settings (84x84, 35 steps)
    python bench/meta_step.py --device cpu --variants reference fast fast-auto fast-bf16
"""
import argparse
import functools
import json
import os
import statistics
import sys
import time

import torch

# ``python bench/meta_step.py`` from anywhere: the library sits one folder up.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from maml.cpu_allocator import keep_freed_memory  # noqa: E402
from maml.factory import build_learner  # noqa: E402
from maml.precision import cpu_native_bf16  # noqa: E402
from utils import cli  # noqa: E402


def build(args):
    return build_learner(cli.learner_config(args))


parse_args = cli.parse_args

# Paper settings: ConvNet sparse-MAML (meta-batch 2), ResNet-12 sparse-ReLU-MAML (meta-batch 1).
SETUPS = {
    "convnet": ["--method", "sparse-maml", "--batch_size", "2"],
    "resnet12": ["--method", "sparse-relu-maml", "--resnet", "--batch_size", "1",
                 "--no_bn_in_inner_loop", "--clamp_outer_gradients", "--step_size", "0.05"],
}


# name: extra train.py flags. fast-auto is what --amp auto picks on this device (on a CPU
# without native bf16: fp32, channels-last); the CUDA variants add up: bf16 autocast with
# channels-last, then torch.compile of the inner step, then several tasks in flight.
VARIANTS = {
    "reference": ["--engine", "reference"],
    "fast": ["--engine", "fast"],
    "fast-channels-last": ["--engine", "fast", "--channels_last"],
    "fast-auto": ["--engine", "fast", "--amp", "auto"],
    "fast-compile": ["--engine", "fast", "--compile"],
    "fast-bf16": ["--engine", "fast", "--amp", "bf16", "--channels_last"],
    "fast-bf16-compile": ["--engine", "fast", "--amp", "bf16", "--channels_last", "--compile"],
    "fast-bf16-compile-streams": ["--engine", "fast", "--amp", "bf16", "--channels_last",
                                  "--compile", "--task_streams", "{streams}"],
}
CPU_ONLY = ("fast-channels-last",)
CUDA_ONLY = ("fast-bf16-compile", "fast-bf16-compile-streams")


def default_variants(device):
    """The variants worth timing on this device (compiling costs minutes on a CPU)."""
    if device == "cuda":
        return [name for name in VARIANTS if name not in ("fast-compile",) + CPU_ONLY]
    return [name for name in VARIANTS if name not in ("fast-compile",) + CUDA_ONLY]


def variant_flags(name, streams):
    return [f.format(streams=streams) for f in VARIANTS[name]]


def synthetic_batch(tasks, ways, shots, queries, channels, side, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    def split(k):
        x = torch.randn(tasks, ways * k, channels, side, side, generator=g)
        y = torch.arange(ways).repeat_interleave(k).repeat(tasks, 1)
        return x.to(device), y.to(device)
    return {"train": split(shots), "test": split(queries)}


def flags(backbone, shots, opts, device):
    base = SETUPS[backbone] + ["--num_shots_train", str(shots), "--num_ways", "5",
                               "--num_shots_test", str(opts.queries),
                               "--gradient_steps", str(opts.steps),
                               "--gradient_steps_test", str(opts.steps), "--seed", "0"]
    if opts.quick:
        base += ["--dataset", "Strokes"]
        if backbone == "convnet":
            base += ["--hidden_size", "32"]
    if device == "cpu":
        base.append("--dont_use_cuda")
    return base


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, repeats, device, warmup=2):
    for _ in range(warmup):                # CUDA-graph capture, cuDNN autotuning, compiling
        fn(warmup=True)
    sync(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        fn(warmup=False)
    sync(device)
    return time.perf_counter() - start, time.process_time() - cpu_start


def peak_memory_mb(argv, batch, phase):
    """Peak CUDA memory (MiB) one learner of ``argv`` needs for ``phase`` on ``batch``,
    alone on the device: (allocated, reserved). Reserved counts the CUDA-graph private
    pools (one set of activations per task stream), which allocated does not."""
    import gc
    gc.collect()
    torch.cuda.empty_cache()
    base_allocated, base_reserved = torch.cuda.memory_allocated(), torch.cuda.memory_reserved()
    torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(0)
    learner = build(parse_args(argv))
    for _ in range(3):
        learner.step(batch) if phase == "train" else learner.evaluate(batch)
    torch.cuda.synchronize()
    peaks = (torch.cuda.max_memory_allocated() - base_allocated,
             torch.cuda.max_memory_reserved() - base_reserved)
    del learner
    return tuple(round(p / 2 ** 20, 1) for p in peaks)


def run_phase(learner, phase, batch, device, warmup=False):
    """One meta-training step or one evaluation of ``batch``. A CPU warm-up (oneDNN
    primitives for every shape, the heap) needs one inner step only, not all of them."""
    if warmup and device == "cpu":
        tasks = learner.tasks(batch)
        if phase == "train":
            learner.engine.train_tasks(tasks, [1] * len(tasks))
            learner.zero_grad()
        else:
            learner.engine.eval_tasks(tasks, 1)
        return
    if phase == "train":
        learner.step(batch)
    else:
        learner.evaluate(batch)


def measure(learners, batches, repeats, rounds, device, warmup):
    """{(variant, phase): [(tasks/s, tasks per CPU-second of this process) per round]}:
    within every round and phase the variants run in turns (the order reversed every other
    round), so the ratio of two variants in one round compares equal conditions. The
    CPU-time rate is the steadier one on a shared machine with one thread (other
    processes take wall time, not this CPU time)."""
    rates = {}
    for round_ in range(rounds):
        # Every other round in reverse order, so that running first (or right after a
        # particular variant) favours no variant over the rounds.
        order = list(learners.items())[::-1 if round_ % 2 else 1]
        for phase, b in batches.items():
            for name, learner in order:
                fn = functools.partial(run_phase, learner, phase, b, device)
                wall, cpu = timed(fn, repeats, device, warmup if round_ == 0 else 0)
                tasks = repeats * len(b["train"][0])
                rates.setdefault((name, phase), []).append((tasks / wall, tasks / cpu))
    return rates


def cpu_model():
    """The CPU's model name (/proc/cpuinfo), or the platform's processor string."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or "unknown"


def machine(device):
    """What the rows were measured on: CPU model and capability, threads, load, torch."""
    info = {"date": time.strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__,
            "cpu": cpu_model(), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_native_bf16": cpu_native_bf16()[0],
            "load_average_1m": round(os.getloadavg()[0], 2),
            "malloc_keeps_freed_memory": keep_freed_memory() if device == "cpu" else None}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


def gradients(learner, batch, steps):
    learner.zero_grad()
    tasks = learner.tasks(batch)
    learner.engine.train_tasks(tasks, [steps] * len(tasks))
    params = list(learner.model.parameters()) + list(learner.mask.parameters())
    return [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in params]


def agreement(argv, batch, steps):
    """Max |g_fast - g_ref| / max |g_ref| over theta and phi (fp32, same init and batch,
    ``steps`` inner steps)."""
    grads = []
    for engine in ("reference", "fast"):
        torch.manual_seed(0)
        grads.append(gradients(build(parse_args(argv + ["--engine", engine])), batch, steps))
    scale = max(float(g.abs().max()) for g in grads[0])
    return max(float((a - b).abs().max()) for a, b in zip(*grads, strict=True)) / scale


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="tiny settings for a CPU smoke run")
    p.add_argument("--backbones", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    p.add_argument("--shots", nargs="+", type=int, default=[1, 5])
    p.add_argument("--repeats", type=int, default=None, help="timed steps per measurement")
    p.add_argument("--rounds", type=int, default=3,
                   help="measurements per variant, taken in turns; the best counts, and the "
                        "per-round ratios show the spread")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=None,
                   help="engine variants to time; reference first (default: all but "
                        "fast-compile and fast-channels-last on cuda, all but fast-compile and "
                        "the streams/compile bf16 variants on cpu)")
    p.add_argument("--eval_tasks", type=int, default=None,
                   help="tasks per evaluation batch (default: 8 on cuda, the meta-batch on cpu)")
    p.add_argument("--task_streams", type=int, default=4,
                   help="--task_streams of the *-streams variant (default: 4)")
    p.add_argument("--check_steps", type=int, default=None,
                   help="inner steps of the meta-gradient agreement check (default: all; "
                        "fewer keep a CPU run of ResNet-12 at paper settings shorter)")
    p.add_argument("--steps", type=int, default=None,
                   help="inner steps (default: 35, the paper's; 1 with --quick); fewer keep "
                        "ResNet-12 on a CPU within minutes, recorded in every row")
    p.add_argument("--out", default=None, help="also append the JSON lines to this file")
    opts = p.parse_args(argv)
    names = opts.variants or default_variants(opts.device)
    if names[0] != "reference":
        p.error("--variants must start with reference (speedups are relative to it)")
    steps, opts.queries = (1, 2) if opts.quick else (35, 15)
    opts.steps = opts.steps or steps
    repeats = opts.repeats or (2 if opts.quick else 10)
    side = 16 if opts.quick else 84           # quick: 16x16 keeps ResNet-12 cheap on CPU
    if opts.device == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True    # the original ran with TF32 convs
        torch.backends.cudnn.allow_tf32 = True

    def emit(row):
        # Written as measured: a run stopped by a timeout keeps every finished row.
        print(json.dumps(row), flush=True)
        if opts.out:
            with open(opts.out, "a") as f:
                f.write(json.dumps(row) + "\n")

    emit({"meta": {**machine(opts.device), "quick": opts.quick, "inner_steps": opts.steps,
                   "queries": opts.queries, "image_side": side, "repeats": repeats,
                   "rounds": opts.rounds, "task_streams": opts.task_streams}})

    for backbone in opts.backbones:
        for shots in opts.shots:
            argv_ = flags(backbone, shots, opts, opts.device)
            probe = parse_args(argv_)
            channels = 1 if opts.quick else 3
            batch = synthetic_batch(probe.batch_size, 5, shots, opts.queries, channels, side,
                                    opts.device)
            eval_tasks = opts.eval_tasks or (8 if opts.device == "cuda" else probe.batch_size)
            eval_batch = synthetic_batch(eval_tasks, 5, shots, opts.queries, channels, side,
                                         opts.device, seed=1)
            check_steps = min(opts.check_steps or opts.steps, opts.steps)
            emit({"backbone": backbone, "shots": shots, "check": "meta-gradient agreement",
                  "inner_steps": check_steps,
                  "max_rel_diff": agreement(argv_, batch, check_steps)})
            learners = {}
            for name in names:
                torch.manual_seed(0)
                learners[name] = build(parse_args(argv_ + variant_flags(name, opts.task_streams)))
            rates = measure(learners, {"train": batch, "eval": eval_batch}, repeats,
                            opts.rounds, opts.device, 1 if opts.quick else 2)
            del learners        # the memory measurements below need the device to themselves
            best = {key: max(wall for wall, _ in values) for key, values in rates.items()}
            best_cpu = {key: max(cpu for _, cpu in values) for key, values in rates.items()}
            for (name, phase), rate in best.items():
                peak = (None, None)
                if opts.device == "cuda":
                    peak = peak_memory_mb(argv_ + variant_flags(name, opts.task_streams),
                                          batch if phase == "train" else eval_batch, phase)
                emit({"engine": name, "flags": variant_flags(name, opts.task_streams),
                      "backbone": backbone, "shots": shots, "phase": phase,
                      "tasks_per_s": round(rate, 4),
                      "tasks_per_s_rounds": [round(r, 4) for r, _ in rates[(name, phase)]],
                      "tasks_per_cpu_s": round(best_cpu[(name, phase)], 4),
                      "peak_mem_mb": peak[0], "peak_reserved_mb": peak[1],
                      "device": opts.device, "threads": torch.get_num_threads(),
                      "inner_steps": opts.steps,
                      "tasks_per_batch": probe.batch_size if phase == "train" else eval_tasks,
                      "rounds": opts.rounds})
            for name in names[1:]:
                for phase in ("train", "eval"):
                    ratios = [a / b for (a, _), (b, _) in zip(
                        rates[(name, phase)], rates[("reference", phase)], strict=True)]
                    emit({"backbone": backbone, "shots": shots, "phase": phase, "engine": name,
                          "speedup": round(best[(name, phase)] / best[("reference", phase)], 3),
                          "speedup_cpu_time": round(best_cpu[(name, phase)]
                                                    / best_cpu[("reference", phase)], 3),
                          "round_ratio_median": round(statistics.median(ratios), 3),
                          "round_ratio_min": round(min(ratios), 3),
                          "round_ratio_max": round(max(ratios), 3)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
