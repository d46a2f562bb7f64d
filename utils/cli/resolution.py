"""From parsed flags to the typed configuration of a run, resolved once.

``resolve(args)`` draws the seed (``--seed -1``), chooses the run folder (and, under
torchrun, whether a restarted group resumes), picks the device (one GPU per torchrun
process) and the dataset's input shape and turns the original's flags into the typed configs of
``maml.config`` / ``utils.run.config``; ``config.flags`` (what config.json records)
holds the same resolved values, so a run folder's config.json rebuilds the run.
``parse_train_args(argv)`` is train.py's command line, with ``--resume --out_dir DIR``
taking every flag it does not set from DIR/config.json.
"""
import dataclasses
import os
import sys

import torch

from maml.config import (
    BackboneConfig,
    EngineConfig,
    InnerLoopConfig,
    LearnerConfig,
    MaskConfig,
    OuterLoopConfig,
)
from maml.precision import resolve_precision
from utils.cli.common import run_seed
from utils.cli.methods import mask_init, mask_kind, mask_mode_name
from utils.cli.parser import get_parser, parse_args
from utils.data.loaders import DataConfig, dataset_shape
from utils.run import distributed
from utils.run.config import RunConfig, ScheduleConfig
from utils.run.run_folder import CONFIG, default_out_dir, recorded_flags

NOT_RECORDED = ("resume",)      # actions, not settings of the run


def device_of(args):
    """"cpu", or "cuda"; under torchrun with several processes "cuda:LOCAL_RANK" (one GPU
    per process, counted within CUDA_VISIBLE_DEVICES)."""
    if not torch.cuda.is_available() or args.dont_use_cuda:
        return "cpu"
    if distributed.world_size() == 1:
        return "cuda"
    rank, count = distributed.local_rank(), torch.cuda.device_count()
    if rank >= count:
        get_parser().error(f"torchrun started local rank {rank}, but this node has {count} "
                           "visible GPU(s): use at most one process per GPU "
                           "(--nproc_per_node), or --dont_use_cuda")
    return f"cuda:{rank}"


def precision_of(args, device=None):
    """The ``maml.precision.Precision`` of ``--amp`` / ``--channels_last`` on the device:
    ``auto`` becomes bf16 or fp32 and a layout here, once."""
    return resolve_precision(args.amp, args.channels_last, device or device_of(args),
                             engine=args.engine,
                             backbone="resnet12" if args.resnet or args.big_resnet else "convnet")


def learner_config(args, device=None, precision=None):
    """The ``LearnerConfig`` of parsed flags (device: ``device_of(args)`` by default;
    precision: ``precision_of(args, device)`` by default)."""
    in_channels, image_size = dataset_shape(args.dataset, args.image_size, args.grayscale)
    device = device or device_of(args)
    precision = precision or precision_of(args, device)
    return LearnerConfig(
        backbone=BackboneConfig(resnet=args.resnet or args.big_resnet, big=args.big_resnet,
                                hidden_size=args.hidden_size, in_channels=in_channels,
                                image_size=image_size, num_ways=args.num_ways),
        mask=MaskConfig(mode=mask_mode_name(args), kind=mask_kind(args), init=mask_init(args),
                        init_shift=args.init_shift, plus=args.gradient_mask_plus,
                        plus_output_shift=args.plus_output_shift,
                        optimizer=args.optimizer_mask, lr=args.mask_lr),
        inner=InnerLoopConfig(step_size=args.step_size, steps=args.gradient_steps,
                              steps_test=args.gradient_steps_test,
                              step_sampling=args.gradient_step_sampling,
                              second_order=args.second_order, no_bn=args.no_bn_in_inner_loop,
                              no_downsample=args.no_downsample_in_inner_loop,
                              anil=args.anil, boil=args.boil),
        engine=EngineConfig(name=args.engine, amp=precision.amp,
                            channels_last=precision.channels_last, cuda_graphs=args.cuda_graphs,
                            compile=args.compile, task_streams=args.task_streams),
        outer=OuterLoopConfig(optimizer=args.optimizer_theta, lr=args.lr, momentum=args.momentum,
                              clamp_gradients=args.clamp_outer_gradients,
                              skip_nonfinite=args.skip_nonfinite),
        device=device)


def data_config(args):
    return DataConfig(dataset=args.dataset, data_folder=args.data_folder,
                      download=args.download, num_ways=args.num_ways,
                      num_shots=args.num_shots_train, num_queries=args.num_shots_test,
                      batch_size=args.batch_size, test_batch_size=args.test_batch_size,
                      num_workers=args.num_workers, data_aug=args.data_aug,
                      cache_images=args.cache_images, sampler=args.sampler,
                      image_size=args.image_size, grayscale=args.grayscale,
                      omniglot_split=args.omniglot_split)


def schedule_config(args):
    fields = {f.name for f in dataclasses.fields(ScheduleConfig)}
    return ScheduleConfig(**{name: getattr(args, name) for name in fields})


def resolve(args, out_dir=None):
    """The ``RunConfig`` of parsed flags. ``out_dir`` overrides ``--out_dir``."""
    device = device_of(args)
    if args.task_streams > 1 and not device.startswith("cuda"):
        get_parser().error("--task_streams overlaps tasks on CUDA streams; it does nothing "
                           f"on {device}")
    if distributed.world_size() > 1 and not (out_dir or args.out_dir):
        get_parser().error("under torchrun, give --out_dir: the processes share it, and a "
                           "group that torchrun restarts continues the run from it")
    out_dir = out_dir or args.out_dir or default_out_dir(args.method)
    # torchrun restarted the group after a failure: continue this launch's run
    resume = args.resume or distributed.restarted_run(out_dir)
    seed = run_seed(args.seed, resume, out_dir)
    precision = precision_of(args, device)
    learner = learner_config(args, device, precision)
    flags = {k: v for k, v in vars(args).items() if k not in NOT_RECORDED}
    # What --amp auto chose is recorded as plain flags, so a resume (which reads
    # config.json back as a config) keeps it; the "_" keys document the choice.
    flags.update(seed=seed, out_dir=out_dir, amp=precision.amp or "none",
                 channels_last=precision.channels_last)
    if args.amp == "auto":
        flags.update(_amp_requested="auto", _amp_reason=precision.reason)
    return RunConfig(learner=learner, data=data_config(args),
                     schedule=schedule_config(args), seed=seed, out_dir=out_dir,
                     resume=resume, method=args.method, flags=flags,
                     config_file=args.config)


def parse_train_args(argv):
    """train.py's flags. With ``--resume --out_dir DIR`` and no --config, every flag not
    given comes from DIR/config.json (explicit flags override it; the changes are listed
    on stderr), so the one-line resume command printed on errors is enough."""
    args = parse_args(argv)
    recorded = recorded_flags(args.out_dir) if args.resume and args.out_dir else None
    if recorded is None or args.config is not None:
        return args
    given = args
    args = parse_args(list(argv) + ["--config", os.path.join(args.out_dir, CONFIG)])
    changed = sorted(k for k, v in vars(args).items()
                     if k not in ("resume", "config", "out_dir") and k in recorded
                     and recorded[k] != v and not (k == "seed" and given.seed < 0))
    print(f"Resuming with the flags recorded in {os.path.join(args.out_dir, CONFIG)}"
          + (f"; changed: {', '.join(f'{k}={getattr(args, k)}' for k in changed)}"
             if changed else ""), file=sys.stderr)
    return args
