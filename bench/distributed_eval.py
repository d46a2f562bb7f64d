"""Evaluation throughput with 1 and with K processes (torch.distributed, gloo), in one run.

What train.py does under torchrun at validation and test: every process draws every task
and evaluates the batches i with i % K == rank (``MetaLearner.evaluate_batches``), and the
per-task accuracies are gathered back. The script forks the processes itself (file://
rendezvous, one thread and one session each, as torchrun), times the same evaluation on
1 and on K of them in turns (rounds), and checks that both give the same per-task
accuracies. Tasks: the paper's
ConvNet cell, 5-way 1-shot with 15 queries per class and 35 inner steps, on synthetic
84x84 RGB tasks (no data loading: the compute alone), or with ``--tasks strokes`` on
torchmeta-loaded Strokes tasks (28x28; every process also draws every task, as train.py).
One JSON line per measurement {ranks, tasks, seconds, tasks_per_s, cpu_seconds_per_rank}
and one with the ratio of the throughputs (and of the busiest process's CPU time).

    python bench/distributed_eval.py                        # paper settings, minutes on CPU
    python bench/distributed_eval.py --steps 5 --tasks_per_run 8 --out bench/results/X.jsonl
"""
import argparse
import json
import os
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

# ``python bench/distributed_eval.py`` from anywhere: the library sits one folder up.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from maml.factory import build_learner  # noqa: E402
from utils import cli  # noqa: E402
from utils.run.distributed import Ranks  # noqa: E402
from utils.run.rng import seed_everything  # noqa: E402

CELL = ["--method", "sparse-maml", "--num_ways", "5", "--num_shots_train", "1",
        "--num_shots_test", "15", "--kaiming_init", "--test_batch_size", "1",
        "--dont_use_cuda", "--seed", "0", "--num_workers", "0"]


def cell_flags(opts):
    flags = CELL + ["--gradient_steps", str(opts.steps), "--gradient_steps_test", str(opts.steps)]
    return flags + ["--dataset", "Strokes" if opts.tasks == "strokes" else "MiniImagenet"]


def synthetic_batches(n, seed=0):
    """n one-task batches of 5-way 1-shot 84x84 RGB tasks (15 queries per class)."""
    g = torch.Generator().manual_seed(seed)

    def split(k):
        return (torch.randn(1, 5 * k, 3, 84, 84, generator=g),
                torch.arange(5).repeat_interleave(k).repeat(1, 1))
    return [{"train": split(1), "test": split(15)} for _ in range(n)]


def task_source(opts, args):
    if opts.tasks == "strokes":
        from utils.data.loaders import build_loaders
        return build_loaders(cli.resolve(args).data, "cpu", splits=("test",))["test"]
    return synthetic_batches(opts.tasks_per_run)


def evaluate(ranks, opts):
    """(wall seconds, [CPU seconds of each process], per-task accuracies) of one
    evaluation of ``tasks_per_run`` tasks."""
    args = cli.parse_args(cell_flags(opts) + ["--out_dir", "unused"])
    torch.manual_seed(0)
    learner = build_learner(cli.learner_config(args))
    learner.distribute(ranks)
    source = task_source(opts, args)
    learner.evaluate_batches(source, ranks.world_size)      # warm-up: one task per process
    seed_everything(1)              # the same tasks for every world size
    ranks.barrier()
    start, cpu = time.perf_counter(), time.process_time()
    accuracies = learner.evaluate_batches(source, opts.tasks_per_run)
    seconds = time.perf_counter() - start        # the gather waited for the slowest
    cpu = [time.process_time() - cpu]
    if ranks.several:
        everyone = [None] * ranks.world_size
        dist.all_gather_object(everyone, cpu[0])
        cpu = everyone
    return seconds, cpu, accuracies


def _rank_main(rank, world, init, out, opts):
    # Each process in a session of its own, as torchrun starts its workers: Linux's
    # autogroup scheduler gives the processes of one session one share of the CPUs.
    os.setsid()
    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        result = evaluate(Ranks(rank, world), opts)
        if rank == 0:
            torch.save(result, out)
    finally:
        if world > 1:
            dist.destroy_process_group()


def run(world, opts, folder, index):
    out = os.path.join(folder, f"result{index}.pt")
    mp.start_processes(_rank_main, args=(world, f"file://{folder}/rendezvous{index}", out, opts),
                       nprocs=world, start_method="fork")
    return torch.load(out, weights_only=False)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ranks", type=int, default=2, help="processes to compare with one "
                   "(default: %(default)s)")
    p.add_argument("--tasks", choices=("synthetic", "strokes"), default="synthetic",
                   help="84x84 synthetic tasks, or torchmeta-loaded Strokes tasks "
                        "(default: %(default)s)")
    p.add_argument("--tasks_per_run", type=int, default=8,
                   help="evaluation tasks per timed run (default: %(default)s)")
    p.add_argument("--steps", type=int, default=35,
                   help="inner steps per task (default: %(default)s, the paper's)")
    p.add_argument("--rounds", type=int, default=2,
                   help="timed runs per world size, taken in turns; the best counts "
                        "(default: %(default)s)")
    p.add_argument("--out", default=None, help="also append the JSON lines to this file "
                   "(default: %(default)s)")
    opts = p.parse_args(argv)

    def emit(row):
        print(json.dumps(row), flush=True)
        if opts.out:
            with open(opts.out, "a") as f:
                f.write(json.dumps(row) + "\n")

    emit({"meta": {"date": time.strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__,
                   "device": f"cpu x{os.cpu_count()}", "threads_per_rank": 1,
                   "load_average": [round(x, 2) for x in os.getloadavg()],
                   "cell": "ConvNet sparse-MAML 5-way 1-shot, 15 queries", "tasks": opts.tasks,
                   "inner_steps": opts.steps, "tasks_per_run": opts.tasks_per_run,
                   "rounds": opts.rounds}})
    best, least_cpu, accuracies = {}, {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(opts.rounds):
            for world in (1, opts.ranks):
                seconds, cpu, accuracies[world] = run(world, opts, folder, f"{round_}-{world}")
                rate = opts.tasks_per_run / seconds
                best[world] = max(best.get(world, 0.0), rate)
                least_cpu[world] = min(least_cpu.get(world, float("inf")), max(cpu))
                emit({"ranks": world, "round": round_, "tasks": opts.tasks_per_run,
                      "seconds": round(seconds, 3), "tasks_per_s": round(rate, 4),
                      "cpu_seconds_per_rank": [round(c, 3) for c in cpu]})
    # ratio: measured wall-clock throughput; cpu_ratio: what it would be with a free core
    # per process (the busiest process's CPU time), which a shared machine hides.
    emit({"ratio": round(best[opts.ranks] / best[1], 3), "ranks": opts.ranks,
          "cpu_ratio": round(least_cpu[1] / least_cpu[opts.ranks], 3),
          "tasks_per_s": {str(k): round(v, 4) for k, v in best.items()},
          "same_accuracies": accuracies[1] == accuracies[opts.ranks],
          "load_average_after": [round(x, 2) for x in os.getloadavg()]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
