"""Meta-train sparse-MAML (and MAML, ANIL, BOIL, Meta-SGD, sparse-ReLU-MAML).

Reads top to bottom: parse -> build -> loop (train, validate, test) -> save.
``python train.py --help`` lists every flag; README.md shows the paper's commands.
Exit status: 0 done, 1 failure mid-run, 2 bad input, 128 + N after signal N.
``torchrun --nproc_per_node K train.py ...`` runs the same run over K processes
(``utils/run/distributed.py``); only rank 0 writes files.
"""
import os
import shlex
import signal
import sys
import time

import numpy as np

from maml.factory import build_learner
from maml.meta_learner import NonFiniteError
from maml.precision import describe as describe_precision
from utils import cli
from utils.data.loaders import DataUnavailable, build_loaders
from utils.evaluation import cross_domain
from utils.run import distributed
from utils.run.atomic_io import WriteError, save_json
from utils.run.checkpoint import CHECKPOINT, CheckpointError, load_checkpoint, save_checkpoint
from utils.run.metrics import RunLogger, mean_ci95
from utils.run.rng import epoch_seed, seed_everything
from utils.run.run_folder import CONFIG, run_metadata
from utils.run.signals import StopSignals
from utils.run.weights import save_best

NO_RESULT = {"best_epoch": None, "test_accuracy": None, "test_ci95": None,
             "num_test_tasks": 0, "mean_sparsity": None, "sparsity": {}}


def train_epoch(learner, loader, num_batches, epoch, stop, ranks):
    """Meta-train on ``num_batches`` batches, stopping early on a signal (to any process).
    Returns (mean query loss, mean query accuracy) over the steps taken."""
    losses, accuracies = [], []
    for step, batch in enumerate(loader):
        if step >= num_batches or ranks.stopping(stop):
            break
        try:
            out = learner.step(batch)
        except NonFiniteError as err:
            raise NonFiniteError(f"{err} at epoch {epoch}, step {step}") from None
        if not out.get("skipped"):
            losses.append(out["loss"])
            accuracies.append(out["accuracy"])
    mean = lambda values: float(np.mean(values)) if values else float("nan")  # noqa: E731
    return mean(losses), mean(accuracies)


def train(config, folder, stop, ranks=None):
    """The whole run in ``folder`` (an open RunFolder); returns the results dict.
    ``ranks``: torchrun's processes (``distributed.Ranks``); every one trains, rank 0 writes."""
    schedule = config.schedule
    ranks = ranks or distributed.Ranks()
    writes = ranks.is_main
    # build
    seed_everything(config.seed)
    learner = build_learner(config.learner)
    learner.distribute(ranks)
    loaders = build_loaders(config.data, learner.device)
    progress = {"best_val": float("-inf"), "best": None, "wall_clock_s": 0.0,
                "metrics_bytes": 0, "skipped_steps": 0}
    start = 0
    if folder.resume:
        start, progress = load_checkpoint(folder.path, learner)
        learner.skipped_steps = progress["skipped_steps"]
        print(f"Resuming {folder.path} at epoch {start}")
    logger = RunLogger(folder.path, schedule.tensorboard, progress["metrics_bytes"], start,
                       write=writes)
    # config.json is written once the run (or its resume) is known to work, so a refused
    # --resume never overwrites the recorded flags, and before the first checkpoint, so
    # a checkpoint always has the flags that resume it.
    if writes:
        save_json(folder.file(CONFIG), {"args": config.flags,
                                        **cli.config_notes(config.config_file),
                                        "_meta": {**run_metadata(), **ranks.metadata()}})
    if writes and not folder.resume:
        save_checkpoint(folder.path, learner, 0, progress)
    t0 = time.time() - progress["wall_clock_s"]
    engine = config.learner.engine
    auto = config.flags.get("_amp_reason")
    print(f"{config.method}: {config.data.num_ways}-way {config.data.num_shots}-shot "
          f"{config.data.dataset}, {engine.name} engine on {learner.device}"
          + (f" and {ranks.world_size - 1} more processes" if ranks.several else "")
          + f", {describe_precision(engine.amp, engine.channels_last)}"
          + (f" (--amp auto: {auto})" if auto else "") + f"; run folder {folder.path}")

    # loop: train, validate, test on a new best
    with stop.deferred():
        for epoch in range(start, schedule.epochs):
            seed_everything(epoch_seed(config.seed, epoch))
            train_loss, train_acc = train_epoch(learner, loaders["train"],
                                                schedule.batches_train, epoch, stop, ranks)
            if ranks.stopping(stop):
                raise KeyboardInterrupt(stop.received)
            per_param, sparsity = learner.sparsity()
            logger.log(epoch, "train", train_acc, loss=train_loss, sparsity=sparsity,
                       sparsity_per_param=per_param or None)
            if schedule.validates(epoch):
                val_acc, val_ci = mean_ci95(
                    learner.evaluate_batches(loaders["val"], schedule.batches_val, "val"))
                logger.log(epoch, "val", val_acc, ci95=val_ci)
                if learner.mask is not None:
                    logger.histograms(epoch, learner.mask.logits())
                print(f"epoch {epoch}: train acc {train_acc:.3f}, val acc {val_acc:.4f}"
                      + (f", sparsity {sparsity:.3f}" if sparsity is not None else ""))
                if val_acc > progress["best_val"] and schedule.tests(epoch):
                    progress["best_val"] = val_acc
                    test = learner.evaluate_batches(loaders["test"], schedule.batches_test,
                                                    "test")
                    test_acc, test_ci = mean_ci95(test)
                    logger.log(epoch, "test", test_acc, ci95=test_ci)
                    print(f"  new best: test acc {100 * test_acc:.2f} +- {100 * test_ci:.2f} %")
                    progress["best"] = {"best_epoch": epoch, "test_accuracy": test_acc,
                                        "test_ci95": test_ci, "num_test_tasks": len(test),
                                        "mean_sparsity": sparsity, "sparsity": per_param}
                    if writes:
                        save_best(folder.path, learner, schedule.checkpoint_models)
            # save
            logger.flush()
            progress.update(wall_clock_s=time.time() - t0, metrics_bytes=logger.bytes_written(),
                            skipped_steps=learner.skipped_steps)
            if writes:
                save_checkpoint(folder.path, learner, epoch + 1, progress)
    logger.close()

    results = dict(progress["best"] or NO_RESULT)
    results.update(wall_clock_s=progress["wall_clock_s"], epochs=schedule.epochs,
                   skipped_steps=progress["skipped_steps"], method=config.method)
    if schedule.cross_domain and progress["best"] is not None:
        ranks.barrier()         # rank 0's best.pt is complete before anyone loads it
        results["cross_domain"] = cross_domain(learner, config.data, folder.path,
                                               schedule.cross_domain_tasks, config.seed,
                                               write=writes)
    if writes:
        save_json(folder.file("results.json"), results)
    return results


def stop_message(err, out_dir, signum, torchrun=False):
    """What stopped the run, and how to continue it (``torchrun``: it started the run)."""
    stopped = isinstance(err, KeyboardInterrupt)
    if stopped:
        what = f"\nStopped by {signal.Signals(signum).name}"
    elif isinstance(err, OSError):          # e.g. metrics.jsonl on a full disk
        what = f"error: {err.strerror or err}" + (f": {err.filename}" if err.filename else "")
    else:
        what = f"error: {err}"
    hint = (" (e.g. a lower --lr, or --skip_nonfinite to skip such steps)"
            if isinstance(err, NonFiniteError) else "")
    if os.path.isfile(os.path.join(out_dir, CHECKPOINT)):
        return (what + f". The checkpoint in {out_dir} holds every finished epoch; "
                + ("" if stopped else f"fix the cause{hint} and ")
                + f"continue with: python train.py --resume --out_dir {shlex.quote(out_dir)}"
                + (" (started by torchrun as before)" if torchrun else ""))
    return what + ". Nothing was trained yet" + ("" if stopped else "; fix the cause and rerun")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = cli.parse_train_args(argv)                         # parse
    with distributed.ranks() as ranks:    # torchrun's processes, or this one alone
        config = ranks.agree(cli.resolve(args))     # every process: rank 0's seed
        try:
            with StopSignals() as stop, ranks.run_folder(config.out_dir, config.resume) as folder:
                try:
                    results = train(config, folder, stop, ranks)
                except RuntimeError as err:
                    # A SIGTERM sent to the whole process group also ends the DataLoader
                    # workers (or a torchrun peer); the next fetch fails: still a clean stop.
                    if stop.received is None or isinstance(err, (NonFiniteError, WriteError)):
                        raise
                    raise KeyboardInterrupt(stop.received) from err
        except (DataUnavailable, CheckpointError) as err:
            ranks.report(f"error: {err}", err)
            return 2
        except (NonFiniteError, WriteError, OSError, KeyboardInterrupt) as err:
            signum = stop.received or signal.SIGINT
            ranks.report(stop_message(err, config.out_dir, signum, ranks.several), err)
            return 128 + signum if isinstance(err, KeyboardInterrupt) else 1
        if results["test_accuracy"] is not None:
            print(f"Best epoch {results['best_epoch']}: test accuracy "
                  f"{100 * results['test_accuracy']:.2f} +- {100 * results['test_ci95']:.2f} %"
                  + (f", mean sparsity {100 * results['mean_sparsity']:.1f} %"
                     if results["mean_sparsity"] is not None else ""))
        print(f"Results in {config.out_dir}/results.json; TensorBoard: "
              f"tensorboard --logdir {config.out_dir}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
