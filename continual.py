"""Continual learning: (sparse) La-MAML on task sequences, OSAKA's (sparse) Continual-MAML
on streams, and the online-SGD / experience-replay floors.

Reads top to bottom: parse -> build -> loop over the tasks or the stream -> save.
``python continual.py --help`` lists every flag; README.md, "Continual learning", the
benchmarks and configs. Exit status: 0 done, 1 failure mid-run, 2 bad input,
128 + N after signal N (checkpoints at task boundaries / every --checkpoint_every steps).
"""
import copy
import shlex
import signal
import sys
import time

import torch

from maml.continual import build_continual_learner
from maml.continual.metrics import sequence_summary, stream_summary
from maml.functional import accuracy
from models import ConvNet, conv_feature_size
from models.mlp import MLP
from utils.cli.continual import parse_continual_args, resolve
from utils.cli.parser import config_notes
from utils.data.continual import batches, build_benchmark
from utils.data.loaders import DataUnavailable
from utils.run.atomic_io import WriteError, save_json
from utils.run.checkpoint import CheckpointError
from utils.run.continual import (
    ContinualLogger,
    load_continual_checkpoint,
    save_continual_checkpoint,
    save_sparsity_figure,
)
from utils.run.rng import epoch_seed, seed_everything
from utils.run.run_folder import CONFIG, RunFolder, run_metadata
from utils.run.signals import StopSignals


def build(config):
    """The benchmark, and the learner with its backbone (``--backbone``), all drawn from
    the run's seed."""
    seed_everything(config.seed)
    benchmark = build_benchmark(config.data, config.seed)
    channels, side, _ = benchmark.input_shape
    if config.backbone == "mlp":
        model = MLP(channels * side * side, config.mlp_hidden, benchmark.num_classes)
    else:
        model = ConvNet(channels, benchmark.num_classes, config.hidden_size,
                        conv_feature_size(config.hidden_size, side))
    model = model.to(config.learner.device)
    return benchmark, build_continual_learner(config.learner, model, config.seed)


def evaluate(learner, benchmark):
    """[accuracy on task j's test set] for every task j (one row of R)."""
    row = []
    for t in range(benchmark.num_tasks):
        x, y = (v.to(learner.device) for v in benchmark.test_set(t))
        row.append(float(accuracy(learner.logits(x), y)))
    return row


def sparsity_row(learner):
    per_param, overall = learner.sparsity()
    return ({"sparsity": overall, "sparsity_per_param": per_param} if overall is not None
            else {})


def run_tasks(config, folder, stop, learner, benchmark, progress, logger):
    """Train on each task in turn (one pass, --batch_size batches); evaluate every task
    after each; checkpoint at every task boundary."""
    if progress["baseline"] is None:
        progress["baseline"] = evaluate(learner, benchmark)
        logger.row({"task": -1, "phase": "eval", "accuracies": progress["baseline"]}, 0)
    for t in range(progress["task"], benchmark.num_tasks):
        x, y = (v.to(learner.device) for v in benchmark.train_set(t))
        order = torch.Generator().manual_seed(epoch_seed(config.seed, t))
        start = time.time()
        for idx in batches(len(y), config.data.batch_size, order):
            if stop.received:
                raise KeyboardInterrupt(stop.received)
            learner.observe(x[idx], y[idx])
        progress["train_s"] += time.time() - start
        progress["batches"] += -(-len(y) // config.data.batch_size)
        row = evaluate(learner, benchmark)
        progress["R"].append(row)
        sparse = sparsity_row(learner)
        progress["sparsity"].append(sparse.get("sparsity_per_param", {}))
        seen = sum(row[:t + 1]) / (t + 1)
        logger.row({"task": t, "phase": "eval", "accuracies": row, "mean_seen": seen, **sparse},
                   t + 1, {"retained accuracy (seen tasks)": seen,
                           **{f"accuracy/task {j:03d}": a for j, a in enumerate(row)}},
                   sparse.get("sparsity_per_param"))
        print(f"task {t + 1}/{benchmark.num_tasks} ({benchmark.descriptions[t]}): mean accuracy "
              f"on tasks seen {100 * seen:.1f} %"
              + (f", rates = 0: {100 * sparse['sparsity']:.1f} %" if sparse else ""))
        progress["task"] = t + 1
        checkpoint(config, folder, learner, benchmark, progress, logger)
    results = sequence_summary(progress["R"], progress["baseline"])
    results.update(R=progress["R"], baseline=progress["baseline"],
                   descriptions=benchmark.descriptions,
                   ms_per_batch=1000 * progress["train_s"] / max(progress["batches"], 1))
    if config.sparsity_figure and progress["sparsity"] and progress["sparsity"][-1]:
        save_sparsity_figure(folder.file("sparsity.png"), list(range(1, benchmark.num_tasks + 1)),
                             progress["sparsity"], "tasks learned")
    return results


def pretrain(config, folder, stop, learner, benchmark, progress, logger):
    """MAML pretraining on the pretraining classes with early stopping (patience) on the
    next classes; the best epoch's state is restored at the end."""
    p, state = config.pretrain, progress["pretrain"]
    val = benchmark.tasks("val", config.seed + 7).sample(p.val_tasks)
    while not state["done"] and state["epoch"] < p.epochs:
        tasks = benchmark.tasks("train", epoch_seed(config.seed, state["epoch"]))
        start, out = time.time(), {}
        for _ in range(p.batches_per_epoch):
            if stop.received:
                raise KeyboardInterrupt(stop.received)
            out = learner.pretrain_step(tasks.sample(p.meta_batch_size))
        val_acc = learner.evaluate_tasks(val)
        progress["pretrain_s"] += time.time() - start
        if val_acc > state["best_val"]:
            state.update(best_val=val_acc, best_epoch=state["epoch"], bad_epochs=0,
                         best_state=copy.deepcopy(learner.state_dict()))
        else:
            state["bad_epochs"] += 1
        logger.row({"epoch": state["epoch"], "phase": "pretrain", "loss": out["loss"],
                    "accuracy": out["accuracy"], "val_accuracy": val_acc}, state["epoch"],
                   {"pretrain/val accuracy": val_acc})
        print(f"pretrain epoch {state['epoch']}: train acc {out['accuracy']:.3f}, "
              f"val acc {val_acc:.3f} (best {state['best_val']:.3f})")
        state["epoch"] += 1
        state["done"] = state["bad_epochs"] > p.patience or state["epoch"] >= p.epochs
        if state["done"]:
            learner.load_state_dict(state["best_state"])
        checkpoint(config, folder, learner, benchmark, progress, logger)


def run_stream(config, folder, stop, learner, benchmark, progress, logger):
    """Score each incoming batch before learning from it; log every --log_every steps,
    checkpoint every --checkpoint_every."""
    if config.pretrain.epochs and hasattr(learner, "pretrain_step"):
        pretrain(config, folder, stop, learner, benchmark, progress, logger)
    progress["pretrain"]["done"] = True
    rec = progress["stream"]
    start = time.time()
    for step in range(len(rec["accuracy"]), benchmark.steps):
        if stop.received:
            raise KeyboardInterrupt(stop.received)
        x, y, switched, mode = benchmark.next()
        out = learner.step(x.to(learner.device), y.to(learner.device))
        for key, value in (("accuracy", out["accuracy"]), ("mode", mode),
                           ("switch", switched), ("boundary", out["boundary"])):
            rec[key].append(value)
        if (step + 1) % config.log_every == 0 or step + 1 == benchmark.steps:
            summary = stream_summary(rec["accuracy"], rec["mode"], rec["switch"], rec["boundary"])
            recent = rec["accuracy"][-config.log_every:]
            window = sum(recent) / len(recent)
            sparse = sparsity_row(learner)
            rec["sparsity"].append((step + 1, sparse.get("sparsity_per_param", {})))
            logger.row({"step": step + 1, "phase": "stream",
                        "online_accuracy": summary["online_accuracy"],
                        "online_accuracy_per_mode": summary["online_accuracy_per_mode"],
                        "window_accuracy": window, **sparse}, step + 1,
                       {"online accuracy": summary["online_accuracy"],
                        "online accuracy (window)": window}, sparse.get("sparsity_per_param"))
            print(f"step {step + 1}/{benchmark.steps}: online accuracy "
                  f"{100 * summary['online_accuracy']:.1f} % (last {config.log_every}: "
                  f"{100 * window:.1f} %)")
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == benchmark.steps:
            progress["stream_s"] += time.time() - start
            checkpoint(config, folder, learner, benchmark, progress, logger)
            start = time.time()
    results = stream_summary(rec["accuracy"], rec["mode"], rec["switch"], rec["boundary"])
    pre = progress["pretrain"]
    results.update(pretrain_best_val=None if pre["best_epoch"] is None else pre["best_val"],
                   pretrain_epochs=pre["epoch"], pretrain_best_epoch=pre["best_epoch"],
                   pretrain_s=progress["pretrain_s"],
                   ms_per_step=1000 * progress["stream_s"] / max(len(rec["accuracy"]), 1))
    if config.sparsity_figure and rec["sparsity"] and rec["sparsity"][-1][1]:
        save_sparsity_figure(folder.file("sparsity.png"), [s for s, _ in rec["sparsity"]],
                             [p for _, p in rec["sparsity"]], "stream step")
    return results


def checkpoint(config, folder, learner, benchmark, progress, logger):
    logger.flush()
    progress["wall_clock_s"] = time.time() - progress["_t0"]
    progress["metrics_bytes"] = logger.bytes_written()
    saved = {k: v for k, v in progress.items() if k != "_t0"}
    save_continual_checkpoint(folder.path, learner, benchmark, saved)


def purge_step(progress, benchmark):
    """The first TensorBoard step a resumed run writes again (later events are dropped):
    tasks and stream steps log at their position, pretraining epochs at their index."""
    if benchmark.kind == "tasks":
        return progress["task"] + 1
    epochs = progress["pretrain"]["epoch"]
    if not progress["pretrain"]["done"]:
        return epochs
    return max(len(progress["stream"]["accuracy"]) + 1, epochs)


def new_progress():
    return {"task": 0, "R": [], "baseline": None, "sparsity": [], "train_s": 0.0,
            "batches": 0, "pretrain": {"epoch": 0, "best_val": float("-inf"), "best_epoch": None,
                                       "bad_epochs": 0, "best_state": None, "done": False},
            "pretrain_s": 0.0, "stream_s": 0.0, "wall_clock_s": 0.0, "metrics_bytes": 0,
            "stream": {"accuracy": [], "mode": [], "switch": [], "boundary": [], "sparsity": []}}


def run(config, folder, stop):
    """The whole run in ``folder`` (an open RunFolder); returns the results dict."""
    benchmark, learner = build(config)                                        # build
    progress = new_progress()
    if folder.resume:
        progress = load_continual_checkpoint(folder.path, learner, benchmark)
        print(f"Resuming {folder.path}")
    logger = ContinualLogger(folder.path, config.tensorboard, progress["metrics_bytes"],
                             purge_step(progress, benchmark) if folder.resume else None)
    progress["_t0"] = time.time() - progress["wall_clock_s"]
    # config.json is written once the run (or its resume) is known to work, so a refused
    # --resume never overwrites the recorded flags, and before the first checkpoint, so
    # a checkpoint always has the flags that resume it.
    save_json(folder.file(CONFIG), {"args": config.flags, **config_notes(config.config_file),
                                    "_meta": run_metadata()})
    if not folder.resume:
        checkpoint(config, folder, learner, benchmark, progress, logger)
    print(f"{config.learner.method} on {config.data.benchmark} ({learner.device}); "
          f"run folder {folder.path}")
    loop = run_tasks if benchmark.kind == "tasks" else run_stream              # loop
    with stop.deferred():
        results = loop(config, folder, stop, learner, benchmark, progress, logger)
    logger.close()
    per_param, overall = learner.sparsity()                                   # save
    results.update(method=config.learner.method, benchmark=config.data.benchmark,
                   seed=config.seed, sparsity=overall, sparsity_per_param=per_param,
                   wall_clock_s=time.time() - progress["_t0"])
    save_json(folder.file("results.json"), results)
    return results


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    config = resolve(parse_continual_args(argv))                             # parse
    try:
        with StopSignals() as stop, RunFolder(config.out_dir, config.resume) as folder:
            results = run(config, folder, stop)
    except (DataUnavailable, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (WriteError, OSError, KeyboardInterrupt) as err:
        stopped = isinstance(err, KeyboardInterrupt)
        signum = stop.received or signal.SIGINT
        what = f"Stopped by {signal.Signals(signum).name}" if stopped else f"error: {err}"
        print(f"\n{what}. Continue from the last checkpoint with: python continual.py "
              f"--resume --out_dir {shlex.quote(config.out_dir)}", file=sys.stderr)
        return 128 + signum if stopped else 1
    if "retained_accuracy" in results:
        print(f"Retained accuracy {100 * results['retained_accuracy']:.2f} %, BWT "
              f"{100 * results['bwt']:+.2f} %, learning accuracy "
              f"{100 * results['learning_accuracy']:.2f} %")
    else:
        b = results["boundaries"]
        print(f"Online accuracy {100 * results['online_accuracy']:.2f} % ("
              + ", ".join(f"{m} {100 * a:.1f} %"
                          for m, a in results["online_accuracy_per_mode"].items())
              + f"); boundaries: precision {b['precision']:.2f}, recall {b['recall']:.2f}")
    print(f"Results in {config.out_dir}/results.json; TensorBoard: "
          f"tensorboard --logdir {config.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
