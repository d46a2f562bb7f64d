"""Meta-train sparse-MAML (and MAML, ANIL, BOIL, Meta-SGD, sparse-ReLU-MAML).

Reads top to bottom: parse -> build -> loop (train, validate, test) -> save.
``python train.py --help`` lists every flag; README.md shows the paper's commands.
Importable: ``parse_args(argv)``, ``build(args) -> MetaLearner``, ``main(argv) -> int``.
"""
import os
import signal
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from maml.fast import FastEngine
from maml.inner_loop import InnerLoopRule, inner_loop_names
from maml.masks import GradientMask, GradientMaskPlus, is_learning_rate_kind, mask_sparsity
from maml.meta_learner import MetaLearner, NonFiniteError, build_optimizer
from maml.methods import mask_kind
from maml.reference import ReferenceEngine
from models import build_backbone, conv_feature_size
from utils import cli
from utils.checkpoint import (CHECKPOINT, CheckpointError, epoch_seed, load_checkpoint,
                              save_checkpoint, seed_everything)
from utils.data import DataUnavailable, build_loaders, dataset_shape
from utils.io import WriteError, save_json, save_torch
from utils.metrics import RunLogger, mean_ci95
from utils.run_folder import StopRequest, prepare_out_dir, run_metadata

parse_args = cli.parse_args


def device_of(args):
    use_cuda = torch.cuda.is_available() and not args.dont_use_cuda
    return torch.device("cuda" if use_cuda else "cpu")


def build(args):
    """Backbone, mask, optimizers and engine for ``args``; opens no dataset."""
    device = device_of(args)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True     # fixed task shapes: autotune once
    in_channels, image_size = dataset_shape(args.dataset)
    model = build_backbone(args.resnet, args.big_resnet, args.hidden_size, in_channels,
                           image_size, args.num_ways).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    resnet = args.resnet or args.big_resnet
    names = inner_loop_names([n for n, _ in model.named_parameters()], resnet,
                             args.no_bn_in_inner_loop, args.no_downsample_in_inner_loop,
                             args.anil, args.boil)
    kind = mask_kind(args)
    mask = optimizer_mask = None
    if args.gradient_mask or args.weight_mask:
        shapes = dict((n, p.shape) for n, p in model.named_parameters())
        plus = None
        if args.gradient_mask_plus:
            conv = [n for n in names if "conv.weight" in n]
            plus = GradientMaskPlus(
                conv, [shapes[n][1] for n in conv], args.hidden_size,
                conv_feature_size(args.hidden_size, image_size), kind=kind,
                shift=args.init_shift + args.plus_output_shift)
        init = ("constant" if args.meta_constant_init else "meta_sgd" if args.meta_sgd_init
                else "kaiming" if args.kaiming_init else "uniform")
        mask = GradientMask(names, [shapes[n] for n in names], kind, init, args.step_size,
                            args.init_shift, plus).to(device)
        optimizer_mask = build_optimizer(mask.parameters(), args.optimizer_mask,
                                         args.mask_lr, args.momentum)
    rule = InnerLoopRule(tuple(names), args.step_size,
                         "weight" if args.weight_mask else "gradient" if mask else None,
                         is_learning_rate_kind(kind))
    if args.engine == "reference":
        engine = ReferenceEngine(model, mask, rule, second_order=args.second_order)
    else:
        engine = FastEngine(model, mask, rule, amp=torch.bfloat16 if args.amp == "bf16" else None,
                            cuda_graphs=args.cuda_graphs and device.type == "cuda",
                            compile=args.compile, task_streams=args.task_streams)
    return MetaLearner(model, mask, rule, engine,
                       build_optimizer(model.parameters(), args.optimizer_theta, args.lr,
                                       args.momentum),
                       optimizer_mask, args.gradient_steps, args.gradient_steps_test,
                       args.gradient_step_sampling, args.clamp_outer_gradients,
                       args.skip_nonfinite, device, args.channels_last)


def current_sparsity(learner):
    """({name: fraction of zeros in m}, overall fraction), or ({}, None) without a mask."""
    if learner.mask is None:
        return {}, None
    with torch.no_grad():
        return mask_sparsity(learner.mask())


def evaluate(learner, loader, num_batches, desc):
    """Per-task query accuracies over ``num_batches`` batches of the loader."""
    accuracies = []
    for i, batch in enumerate(tqdm(loader, total=num_batches, desc=desc, leave=False)):
        if i >= num_batches:
            break
        accuracies.append(learner.evaluate_tensors(batch)[1])
    return torch.cat(accuracies).tolist() if accuracies else []     # one host sync


def train(args):
    """The whole run: returns the results dict (also written to results.json)."""
    prepare_out_dir(args)
    if args.seed < 0:
        args.seed = int.from_bytes(os.urandom(4), "little") % (2 ** 31)
    seed_everything(args.seed)
    learner = build(args)
    loaders = build_loaders(args, pin_memory=learner.device.type == "cuda", device=learner.device)
    progress = {"best_val": float("-inf"), "best": None, "wall_clock_s": 0.0, "metrics_bytes": 0,
                "skipped_steps": 0}
    start = 0
    if args.resume:
        start, progress = load_checkpoint(args.out_dir, learner)
        learner.skipped_steps = progress["skipped_steps"]
        print(f"Resuming {args.out_dir} at epoch {start}")
    logger = RunLogger(args.out_dir, args.tensorboard, progress["metrics_bytes"], start)
    if not args.resume:
        save_checkpoint(args.out_dir, learner, 0, progress)
    # Written once the run (or its resume) is known to work, so a refused --resume
    # never overwrites the recorded flags.
    save_json(os.path.join(args.out_dir, "config.json"),
              {"args": vars(args), **cli.config_notes(args.config), "_meta": run_metadata()})
    stop, t0 = StopRequest(), time.time() - progress["wall_clock_s"]
    print(f"{args.method}: {args.num_ways}-way {args.num_shots_train}-shot {args.dataset}, "
          f"{args.engine} engine on {learner.device}; run folder {args.out_dir}")

    for epoch in range(start, args.epochs):
        seed_everything(epoch_seed(args.seed, epoch))
        losses, accs = [], []
        bar = tqdm(loaders["train"], total=args.batches_train, desc=f"epoch {epoch}", leave=False)
        for step, batch in enumerate(bar):
            if step >= args.batches_train or stop.signum:
                break
            try:
                out = learner.step(batch)
            except NonFiniteError as err:
                raise NonFiniteError(f"{err} at epoch {epoch}, step {step}") from None
            if not out.get("skipped"):
                losses.append(out["loss"])
                accs.append(out["accuracy"])
        if stop.signum:
            raise KeyboardInterrupt(epoch)
        per_param, sparsity = current_sparsity(learner)
        train_acc = float(np.mean(accs)) if accs else float("nan")
        logger.log(epoch, "train", train_acc,
                   loss=float(np.mean(losses)) if losses else float("nan"),
                   sparsity=sparsity, sparsity_per_param=per_param or None)

        if (epoch % args.val_after == 0 and epoch > args.val_start) or epoch == args.epochs - 1:
            val_acc, val_ci = mean_ci95(evaluate(learner, loaders["val"], args.batches_val, "val"))
            logger.log(epoch, "val", val_acc, ci95=val_ci)
            if learner.mask is not None:
                logger.histograms(epoch, learner.mask.logits())
            print(f"epoch {epoch}: train acc {train_acc:.3f}, val acc {val_acc:.4f}"
                  + (f", sparsity {sparsity:.3f}" if sparsity is not None else ""))
            if val_acc > progress["best_val"] and epoch > args.test_start:
                progress["best_val"] = val_acc
                test = evaluate(learner, loaders["test"], args.batches_test, "test")
                test_acc, test_ci = mean_ci95(test)
                logger.log(epoch, "test", test_acc, ci95=test_ci)
                print(f"  new best: test acc {100 * test_acc:.2f} +- {100 * test_ci:.2f} %")
                progress["best"] = {"best_epoch": epoch, "test_accuracy": test_acc,
                                    "test_ci95": test_ci, "num_test_tasks": len(test),
                                    "mean_sparsity": sparsity, "sparsity": per_param}
                save_best(args, learner)
        logger.flush()
        progress.update(wall_clock_s=time.time() - t0, metrics_bytes=logger.bytes_written(),
                        skipped_steps=learner.skipped_steps)
        save_checkpoint(args.out_dir, learner, epoch + 1, progress)

    logger.close()
    results = dict(progress["best"] or {"best_epoch": None, "test_accuracy": None,
                                        "test_ci95": None, "num_test_tasks": 0,
                                        "mean_sparsity": None, "sparsity": {}})
    results.update(wall_clock_s=progress["wall_clock_s"], epochs=args.epochs,
                   skipped_steps=progress["skipped_steps"], method=args.method)
    if args.cross_domain and progress["best"] is not None:
        from evaluate import cross_domain
        results["cross_domain"] = cross_domain(args, learner)
    save_json(os.path.join(args.out_dir, "results.json"), results)
    return results


def save_best(args, learner):
    """best.pt (theta, phi) always; the original's classifier.pth / mask.pth on request."""
    mask_state = learner.mask.state_dict() if learner.mask is not None else None
    save_torch(os.path.join(args.out_dir, "best.pt"),
               {"model": learner.model.state_dict(), "mask": mask_state})
    if args.checkpoint_models:
        save_torch(os.path.join(args.out_dir, "classifier.pth"), learner.model.state_dict())
        if mask_state is not None:
            save_torch(os.path.join(args.out_dir, "mask.pth"), mask_state)
            if learner.mask.mask_plus is not None:
                save_torch(os.path.join(args.out_dir, "mask_plus.pth"),
                           learner.mask.mask_plus.state_dict())


def main(argv=None):
    """Command-line entry: exit 0 done, 1 failure mid-run, 2 bad input, 128+N on signal N.

    ``--resume --out_dir DIR`` takes every other flag from DIR/config.json (explicit
    flags override it), so the one-line resume command printed on errors is enough.
    """
    import shlex
    from utils.checkpoint import CONFIG, recorded_args, unlock_run_folder
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    recorded = recorded_args(args.out_dir) if args.resume and args.out_dir else None
    if recorded is not None and args.config is None:
        given = args
        args = parse_args(argv + ["--config", os.path.join(args.out_dir, CONFIG)])
        changed = sorted(k for k, v in vars(args).items()
                         if k not in ("resume", "config", "out_dir") and k in recorded
                         and recorded[k] != v and not (k == "seed" and given.seed < 0))
        print(f"Resuming with the flags recorded in {os.path.join(args.out_dir, CONFIG)}"
              + (f"; changed: {', '.join(f'{k}={getattr(args, k)}' for k in changed)}"
                 if changed else ""), file=sys.stderr)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    StopRequest.received = None
    # During setup SIGTERM stops at once; the training loop then stops at the next step.
    signal.signal(signal.SIGTERM, StopRequest.stop_now)
    try:
        try:
            results = train(args)
        except RuntimeError as err:
            # A SIGTERM sent to the whole process group also ends the DataLoader workers;
            # the next fetch then fails ("worker exited unexpectedly"): still a clean stop.
            if StopRequest.received is None or isinstance(err, (NonFiniteError, WriteError)):
                raise
            raise KeyboardInterrupt(StopRequest.received) from err
    except (DataUnavailable, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (NonFiniteError, WriteError, OSError, KeyboardInterrupt) as err:
        stopped = isinstance(err, KeyboardInterrupt)
        if stopped:
            signum = StopRequest.received or signal.SIGINT
            what = f"\nStopped by {signal.Signals(signum).name}"
        elif isinstance(err, OSError):      # e.g. metrics.jsonl on a full disk
            what = f"error: {err.strerror or err}" + (f": {err.filename}" if err.filename else "")
        else:
            what = f"error: {err}"
        hint = (" (e.g. a lower --lr, or --skip_nonfinite to skip such steps)"
                if isinstance(err, NonFiniteError) else "")
        if os.path.isfile(os.path.join(str(args.out_dir), CHECKPOINT)):
            what += (f". The checkpoint in {args.out_dir} holds every finished epoch; "
                     + ("" if stopped else f"fix the cause{hint} and ")
                     + "continue with: python train.py --resume --out_dir "
                     + shlex.quote(str(args.out_dir)))
        else:
            what += ". Nothing was trained yet" + ("" if stopped else "; fix the cause and rerun")
        print(what, file=sys.stderr)
        return 128 + signum if stopped else 1
    finally:
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)
        unlock_run_folder(args.out_dir)
    if results["test_accuracy"] is not None:
        print(f"Best epoch {results['best_epoch']}: test accuracy "
              f"{100 * results['test_accuracy']:.2f} +- {100 * results['test_ci95']:.2f} %"
              + (f", mean sparsity {100 * results['mean_sparsity']:.1f} %"
                 if results["mean_sparsity"] is not None else ""))
    print(f"Results in {args.out_dir}/results.json; TensorBoard: "
          f"tensorboard --logdir {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
