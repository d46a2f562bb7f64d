"""continual.py's command line and its typed run configuration, resolved once.

Flags are grouped by topic; every hyperparameter of every method is a flag (a method
uses the ones its algorithm has, see ``maml/continual/config.py``). ``--config FILE``
(JSON, keys = flag names; keys starting with "_" document the file) sets defaults that
explicit flags override; a run's config.json is itself a config. ``--resume --out_dir
DIR`` without --config takes every flag it does not set from DIR/config.json.
"""
import argparse
import dataclasses
import os
import sys
from dataclasses import dataclass, field
from typing import Optional

import torch

from maml.continual import METHODS, method_supports
from maml.continual.config import ContinualConfig, PretrainConfig
from utils.cli.common import BOOL, add_run_flags, non_negative, positive, read_config, run_seed
from utils.data.continual import BENCHMARKS, ContinualDataConfig, benchmark_kind
from utils.run.run_folder import CONFIG, default_out_dir, recorded_flags

NOT_RECORDED = ("resume",)


@dataclass(frozen=True)
class ContinualRunConfig:
    learner: ContinualConfig
    data: ContinualDataConfig
    pretrain: PretrainConfig
    backbone: str                 # "mlp" or "convnet"
    hidden_size: int              # ConvNet channels
    mlp_hidden: tuple             # MLP hidden sizes
    seed: int
    out_dir: str
    resume: bool
    tensorboard: bool = True
    sparsity_figure: bool = True  # sparsity.png at the end (methods with learned rates)
    log_every: int = 100          # stream steps per metrics row
    checkpoint_every: int = 500   # stream steps per checkpoint
    flags: dict = field(default_factory=dict)
    config_file: Optional[str] = None


def _probability(value):
    x = float(value)
    if not 0.0 <= x <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return x


def get_parser():
    p = argparse.ArgumentParser(
        prog="continual.py", description="Continual learning with (sparse) La-MAML, OSAKA's "
        "Continual-MAML and the online-SGD / experience-replay floors.")
    pi, pf, ni, nf = positive(int), positive(float), non_negative(int), non_negative(float)
    D = " (default: %(default)s)"
    c, m, d = ContinualConfig(), ContinualDataConfig(), PretrainConfig()

    g = p.add_argument_group("general")
    add_run_flags(g, "seed of the model, the data (angles, permutations, subsets, the "
                     "stream) and the learner")
    g.add_argument("--sparsity_figure", action=BOOL, default=True,
                   help="plot the learned rates' sparsity per tensor over the run "
                        "(sparsity.png)" + D)
    g.add_argument("--log_every", type=pi, default=100,
                   help="stream steps per metrics row" + D)
    g.add_argument("--checkpoint_every", type=pi, default=500,
                   help="stream steps per checkpoint (task sequences: every task)" + D)

    g = p.add_argument_group("benchmark")
    g.add_argument("--benchmark", choices=BENCHMARKS, default=m.benchmark,
                   help="task sequence or OSAKA stream (utils/data/continual.py)" + D)
    g.add_argument("--data_folder", type=str, default=m.data_folder,
                   help="root of MNIST/FashionMNIST (torchvision) and omniglot/" + D)
    g.add_argument("--download", action=BOOL, default=False,
                   help="let torchvision / torchmeta download missing data" + D)
    g.add_argument("--batch_size", type=pi, default=m.batch_size,
                   help="samples per incoming batch (task sequences)" + D)
    g.add_argument("--num_tasks", type=pi, default=None,
                   help="tasks of a sequence; None: the benchmark's" + D)
    g.add_argument("--samples_per_task", type=pi, default=None,
                   help="training samples per task; None: the benchmark's" + D)
    g.add_argument("--test_samples", type=pi, default=None,
                   help="test images per task; None: the whole test set" + D)
    g.add_argument("--num_ways", type=pi, default=m.num_ways, help="stream: classes per task" + D)
    g.add_argument("--num_shots", type=pi, default=m.num_shots,
                   help="stream: images per class and step" + D)
    g.add_argument("--num_queries", type=pi, default=m.num_queries,
                   help="stream: pretraining query images per class" + D)
    g.add_argument("--stream_steps", type=pi, default=m.stream_steps,
                   help="stream: steps (batches)" + D)
    g.add_argument("--prob_statio", type=_probability, default=m.prob_statio,
                   help="stream: probability that a step stays on the current task" + D)
    g.add_argument("--mode_probs", type=_probability, nargs="+", default=list(m.mode_probs),
                   help="stream: probability of each mode at a switch" + D)
    g.add_argument("--pretrain_classes", type=pi, default=m.pretrain_classes,
                   help="stream: Omniglot classes for pretraining" + D)
    g.add_argument("--val_classes", type=pi, default=m.val_classes,
                   help="stream: the next classes, for early stopping" + D)

    g = p.add_argument_group("method")
    g.add_argument("--method", choices=sorted(METHODS), default=c.method,
                   help="; ".join(f"{k}: {v.description}" for k, v in METHODS.items()) + D)
    g.add_argument("--glances", type=pi, default=c.glances,
                   help="passes over each incoming batch" + D)
    g.add_argument("--grad_clip_norm", type=nf, default=c.grad_clip_norm,
                   help="gradient-norm clip of theta and of the rates; 0: off" + D)
    g.add_argument("--lr", type=pf, default=c.lr, help="SGD lr of online-sgd and er" + D)
    g.add_argument("--memories", type=ni, default=c.memories, help="replay buffer size" + D)
    g.add_argument("--replay_batch_size", type=ni, default=c.replay_batch_size,
                   help="replayed samples per step" + D)

    g = p.add_argument_group("La-MAML")
    g.add_argument("--alpha_init", type=pf, default=c.alpha_init,
                   help="initial rate; the fixed step of binary (sparse) rates" + D)
    g.add_argument("--opt_lr", type=pf, default=c.opt_lr, help="SGD lr of the rates" + D)
    g.add_argument("--opt_wt", type=pf, default=c.opt_wt,
                   help="SGD lr of the weights (synchronous updates)" + D)
    g.add_argument("--rate_init", choices=("constant", "uniform", "kaiming"), default=c.rate_init,
                   help="init of the rate scores: constant = alpha_init, or sparse-MAML's "
                        "centred uniform / kaiming init" + D)
    g.add_argument("--rate_init_shift", type=float, default=c.rate_init_shift,
                   help="added to the initial scores (constant: alpha_init + shift)" + D)

    g = p.add_argument_group("Continual-MAML (OSAKA)")
    g.add_argument("--step_size", type=pf, default=c.step_size,
                   help="inner step size (initial learned step sizes)" + D)
    g.add_argument("--inner_steps", type=pi, default=c.inner_steps,
                   help="adaptation steps per batch" + D)
    g.add_argument("--meta_lr", type=pf, default=c.meta_lr,
                   help="Adam lr of theta and the step sizes" + D)
    g.add_argument("--mask_lr", type=pf, default=c.mask_lr,
                   help="Adam lr of the sparse-C-MAML mask scores" + D)
    g.add_argument("--mask_init", choices=("uniform", "kaiming", "constant"), default=c.mask_init,
                   help="init of the sparse-C-MAML mask scores (constant = step_size)" + D)
    g.add_argument("--mask_init_shift", type=float, default=c.mask_init_shift,
                   help="added to the initial mask scores" + D)
    g.add_argument("--smoothing", type=nf, default=c.smoothing,
                   help="lambda: meta-losses weighted by 1 - exp(-lambda L)" + D)
    g.add_argument("--boundary_threshold", type=float, default=c.boundary_threshold,
                   help="gamma: loss drop after adaptation that declares a task boundary; "
                        "< 0: never" + D)
    g.add_argument("--pa_buffer", type=pi, default=c.pa_buffer,
                   help="prolonged adaptation: meta-update once more batches wait" + D)

    g = p.add_argument_group("pretraining (streams)")
    g.add_argument("--pretrain_epochs", type=ni, default=d.epochs,
                   help="MAML pretraining epochs before the stream; 0: none" + D)
    g.add_argument("--pretrain_batches", type=pi, default=d.batches_per_epoch,
                   help="meta-batches per pretraining epoch" + D)
    g.add_argument("--meta_batch_size", type=pi, default=d.meta_batch_size,
                   help="tasks per pretraining meta-batch" + D)
    g.add_argument("--pretrain_val_tasks", type=pi, default=d.val_tasks,
                   help="early-stopping tasks per epoch" + D)
    g.add_argument("--patience", type=pi, default=d.patience,
                   help="epochs without a better val accuracy before stopping" + D)

    g = p.add_argument_group("backbone")
    g.add_argument("--backbone", choices=("auto", "mlp", "convnet"), default="auto",
                   help="auto: the MLP for task sequences (La-MAML's), the 4-block ConvNet "
                        "for streams (OSAKA's)" + D)
    g.add_argument("--hidden_size", type=pi, default=64,
                   help="ConvNet channels (BatchNorm without running statistics)" + D)
    g.add_argument("--mlp_hidden", type=pi, nargs="+", default=[100, 100],
                   help="MLP hidden sizes" + D)
    return p


def parse_args(argv):
    """Parse and check continual.py's flags (precedence: defaults < --config < flags)."""
    parser = get_parser()
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    if known.config:
        parser.set_defaults(**read_config(known.config, parser))
    args = parser.parse_args(argv)
    kind = benchmark_kind(args.benchmark)
    if kind not in method_supports(args.method):
        parser.error(f"--method {args.method} runs on "
                     f"{' or '.join(method_supports(args.method))}, not on the {kind} "
                     f"benchmark {args.benchmark}")
    return args


def parse_continual_args(argv):
    """Flags, with ``--resume --out_dir DIR`` (no --config) filled from DIR/config.json."""
    args = parse_args(argv)
    recorded = recorded_flags(args.out_dir) if args.resume and args.out_dir else None
    if recorded is None or args.config is not None:
        return args
    print(f"Resuming with the flags recorded in {os.path.join(args.out_dir, CONFIG)}",
          file=sys.stderr)
    return parse_args(list(argv) + ["--config", os.path.join(args.out_dir, CONFIG)])


def _fields(cls, values):
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


def resolve(args):
    """The ``ContinualRunConfig`` of parsed flags: seed drawn, run folder and device chosen."""
    out_dir = args.out_dir or default_out_dir(args.method)
    seed = run_seed(args.seed, args.resume, out_dir)
    device = "cuda" if torch.cuda.is_available() and not args.dont_use_cuda else "cpu"
    values = dict(vars(args), device=device, mode_probs=tuple(args.mode_probs))
    pretrain = PretrainConfig(epochs=args.pretrain_epochs, batches_per_epoch=args.pretrain_batches,
                              meta_batch_size=args.meta_batch_size,
                              val_tasks=args.pretrain_val_tasks, patience=args.patience)
    flags = {k: v for k, v in vars(args).items() if k not in NOT_RECORDED}
    flags.update(seed=seed, out_dir=out_dir)
    return ContinualRunConfig(
        learner=_fields(ContinualConfig, values), data=_fields(ContinualDataConfig, values),
        pretrain=pretrain, backbone=(args.backbone if args.backbone != "auto" else
                                     "mlp" if benchmark_kind(args.benchmark) == "tasks"
                                     else "convnet"),
        hidden_size=args.hidden_size, mlp_hidden=tuple(args.mlp_hidden),
        seed=seed, out_dir=out_dir, resume=args.resume, tensorboard=args.tensorboard,
        sparsity_figure=args.sparsity_figure,
        log_every=args.log_every, checkpoint_every=args.checkpoint_every, flags=flags,
        config_file=args.config)
