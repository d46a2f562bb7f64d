"""Task throughput of the data path alone: torchmeta's loader vs ``--sampler device``.

Draws meta-batches of N-way K-shot tasks (no model) and prints one JSON line per
sampler: tasks/s after the first batch, and the one-off set-up seconds (the device
sampler transforms and stores the whole split first).

    python bench/data_path.py --dataset Omniglot --data_folder ../shared/data
    python bench/data_path.py --dataset Strokes --device cuda --workers 0 2 8
"""
import argparse
import json
import os
import sys
import time

import torch

# ``python bench/data_path.py`` from anywhere: the library sits one folder up.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from utils import cli  # noqa: E402
from utils.data.loaders import build_loaders  # noqa: E402


def rate(loader, batches, device):
    """(tasks/s over ``batches`` batches after the first, tasks per batch)."""
    it = iter(loader)
    first = next(it)
    tasks = first["train"][0].shape[0]
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(it)
        batch["train"][0].to(device, non_blocking=True)    # what the learner does first
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batches * tasks / (time.perf_counter() - start), tasks


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="Strokes")
    p.add_argument("--data_folder", default="data")
    p.add_argument("--split", default="train")
    p.add_argument("--ways", type=int, default=5)
    p.add_argument("--shots", type=int, default=1)
    p.add_argument("--queries", type=int, default=15)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--batches", type=int, default=50)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    opts = p.parse_args(argv)
    device = torch.device(opts.device)
    flags = ["--dataset", opts.dataset, "--data_folder", opts.data_folder,
             "--num_ways", str(opts.ways), "--num_shots_train", str(opts.shots),
             "--num_shots_test", str(opts.queries), "--batch_size", str(opts.batch_size)]
    setups = [(f"torchmeta, {w} workers", ["--num_workers", str(w)]) for w in opts.workers]
    setups.append(("device", ["--sampler", "device"]))
    for name, extra in setups:
        data = cli.resolve(cli.parse_args(flags + extra)).data
        torch.manual_seed(0)
        start = time.perf_counter()
        loader = build_loaders(data, device, splits=(opts.split,))[opts.split]
        setup = time.perf_counter() - start
        tasks_per_s, _ = rate(loader, opts.batches, device)
        print(json.dumps({"sampler": name, "dataset": opts.dataset, "split": opts.split,
                          "ways": opts.ways, "shots": opts.shots, "queries": opts.queries,
                          "device": str(device), "cpus": os.cpu_count(),
                          "tasks_per_s": round(tasks_per_s, 1),
                          "setup_s": round(setup, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
