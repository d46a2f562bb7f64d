"""Per-step cost of the continual learners at the paper's sizes, on synthetic data.

- la-maml family on MNIST shapes (MLP 784-100-100-10, batch 10, replay 10, La-MAML's
  glances): ms per incoming batch;
- OSAKA's Continual-MAML (ConvNet, 64 channels, 28x28, 10-way 5-shot, 8 inner steps):
  ms per stream step (with and without prolonged adaptation), per batch that prolonged
  adaptation buffers (the meta-update when its buffer empties, divided by the batches
  in it) and per pretraining meta-batch of 4 tasks (15 queries per class).

Prints one JSON line per measurement. Use it to estimate a run's cost on a machine:

    python bench/continual_step.py --device cpu [--repeats 5]
    python bench/continual_step.py --device cuda
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from maml.continual import build_continual_learner  # noqa: E402
from maml.continual.config import ContinualConfig  # noqa: E402
from models import ConvNet, conv_feature_size  # noqa: E402
from models.mlp import MLP  # noqa: E402

BUFFERED = 9       # batches waiting in the prolonged-adaptation buffer, before the flush


def timed(fn, repeats, device):
    fn()                                        # warm-up (allocations, cudnn autotune)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - start) / repeats


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls each (default: %(default)s)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    out = []
    x = torch.rand(10, 1, 28, 28, device=device)
    y = torch.randint(10, (10,), device=device)
    for method, glances in (("online-sgd", 1), ("er", 1), ("la-maml", 5), ("la-maml", 10),
                            ("sparse-la-maml", 5)):
        learner = build_continual_learner(
            ContinualConfig(method=method, glances=glances, device=args.device),
            MLP(784).to(device), seed=0)
        for _ in range(3):                      # fill the replay buffer a little
            learner.observe(x, y)
        ms = timed(lambda learner=learner: learner.observe(x, y), args.repeats, device)
        out.append({"what": "mnist batch", "method": method, "glances": glances,
                    "ms_per_batch": ms})
    xs = torch.rand(50, 1, 28, 28, device=device)
    ys = torch.arange(10, device=device).repeat_interleave(5)
    xq = torch.rand(150, 1, 28, 28, device=device)
    yq = torch.arange(10, device=device).repeat_interleave(15)
    for method in ("continual-maml", "continual-maml-pa", "sparse-continual-maml"):
        learner = build_continual_learner(
            ContinualConfig(method=method, inner_steps=8, device=args.device),
            ConvNet(1, 10, 64, conv_feature_size(64, 28)).to(device), seed=0)
        learner.step(xs, ys)
        ms = timed(lambda learner=learner: learner.step(xs, ys), args.repeats, device)
        out.append({"what": "osaka stream step", "method": method, "ms_per_step": ms})
        if method == "continual-maml-pa":
            # A step that empties a full buffer also meta-updates on every waiting batch;
            # the steady steps above never do, so time that update per buffered batch.
            flusher = build_continual_learner(
                ContinualConfig(method=method, inner_steps=8, pa_buffer=BUFFERED,
                                device=args.device),
                ConvNet(1, 10, 64, conv_feature_size(64, 28)).to(device), seed=0)
            flusher.step(xs, ys)

            def flush(learner=flusher):
                learner.pending = [(xs, ys)] * (BUFFERED + 1)
                learner.step(xs, ys)
                assert not learner.pending, "the buffer did not empty"
            # The flushing step is a steady step plus the update: count the update only.
            update_ms = timed(flush, max(1, args.repeats // 2), device) - ms
            out.append({"what": "osaka prolonged-adaptation meta-update, per buffered batch",
                        "method": method, "buffered": BUFFERED + 1,
                        "ms_per_buffered_batch": update_ms / (BUFFERED + 1)})
        if method == "continual-maml":
            ms = timed(lambda learner=learner: learner.pretrain_step([(xs, ys, xq, yq)] * 4),
                       max(1, args.repeats // 2), device)
            out.append({"what": "osaka pretraining meta-batch (4 tasks)", "method": method,
                        "ms_per_meta_batch": ms})
    meta = {"device": str(device), "torch": torch.__version__,
            "threads": torch.get_num_threads()}
    for row in out:
        print(json.dumps({**row, **meta}), flush=True)


if __name__ == "__main__":
    main()
