"""Consistency of train.py's flags: every combination that the original silently
misreads, or that would silently do nothing, is an argparse error (exit 2) with a
one-line reason. Device-dependent rules are checked in ``utils.cli.resolution``."""
import argparse

from maml.mask_modes import MASK_MODES
from utils.cli.methods import MASK_KIND_FLAGS, mask_mode_name


def flag_rules(args):
    """[(broken, reason)] for the flag combinations of ``args`` (a parsed Namespace)."""
    kinds = [f for f in MASK_KIND_FLAGS if getattr(args, f)]
    mode = mask_mode_name(args)
    masked = MASK_MODES[mode].uses_mask
    resnet = args.resnet or args.big_resnet
    init_flags = [f for f in ("kaiming_init", "meta_sgd_init", "meta_constant_init")
                  if getattr(args, f)]
    direct_init = args.meta_constant_init or args.meta_sgd_init
    return [
        (args.gradient_mask and args.weight_mask, "--gradient_mask and --weight_mask"
         " are two mask kinds at once; choose one"),
        (args.mask_mode == "none" and (args.gradient_mask or args.weight_mask),
         "--mask_mode none learns no mask; drop --gradient_mask / --weight_mask"),
        (args.mask_mode not in (None, "weight") and args.weight_mask,
         f"--weight_mask selects the weight mode, not --mask_mode {args.mask_mode}"),
        (args.mask_mode == "weight" and args.gradient_mask,
         "--mask_mode weight masks the weights; drop --gradient_mask"),
        (len(kinds) > 1, "choose at most one of " + ", ".join("--" + k for k in kinds)),
        (kinds and not masked, f"--{kinds[0] if kinds else ''} needs --gradient_mask or "
         "--weight_mask"),
        (init_flags and not masked, f"--{init_flags[0] if init_flags else ''} initialises "
         "the mask logits; it needs --gradient_mask or --weight_mask"),
        (args.init_shift != 0 and not masked,
         "--init_shift shifts the mask-logit init; it needs --gradient_mask or --weight_mask"),
        (args.meta_sgd_init and args.meta_constant_init,
         "--meta_sgd_init and --meta_constant_init are two inits at once"),
        (args.kaiming_init and direct_init, "--kaiming_init has no effect with "
         f"--{'meta_constant_init' if args.meta_constant_init else 'meta_sgd_init'}, which "
         "sets the mask logits directly"),
        (args.init_shift != 0 and direct_init and not args.gradient_mask_plus,
         "--init_shift shifts the uniform/kaiming mask-logit init; it has no effect with "
         f"--{'meta_constant_init' if args.meta_constant_init else 'meta_sgd_init'}"),
        (args.plus_output_shift != 0 and not args.gradient_mask_plus,
         "--plus_output_shift shifts the PLUS masks; it needs --gradient_mask_plus"),
        (args.gradient_mask_plus and not masked,
         "--gradient_mask_plus needs --gradient_mask or --weight_mask"),
        (args.gradient_mask_plus and resnet, "--gradient_mask_plus supports the ConvNet only"),
        (args.anil and args.boil, "--anil and --boil exclude each other"),
        (args.anil and (args.no_bn_in_inner_loop or args.no_downsample_in_inner_loop),
         "--anil adapts the classifier only; --no_bn_in_inner_loop / "
         "--no_downsample_in_inner_loop would change nothing"),
        (args.second_order and args.engine == "fast",
         "the fast engine is first-order only; use --engine reference for --second_order"),
        (args.amp == "bf16" and args.engine == "reference",
         "--amp bf16 needs the fast engine"),
        (args.amp == "bf16" and args.second_order,
         "--amp bf16 is not supported with --second_order"),
        (args.gradient_step_sampling > args.gradient_steps,
         "--gradient_step_sampling must not exceed --gradient_steps"),
        (args.no_downsample_in_inner_loop and not resnet,
         "--no_downsample_in_inner_loop applies to the ResNet only"),
        (args.momentum < 0, "--momentum must be >= 0"),
        (args.data_aug and args.dataset != "MiniImagenet",
         "--data_aug is MiniImagenet's training augmentation; it does nothing for "
         f"{args.dataset}"),
        (args.dataset != "folder" and (args.image_size != 84 or args.grayscale),
         "--image_size and --grayscale set the input of --dataset folder; "
         f"{args.dataset} has a fixed input shape"),
        (args.omniglot_split != "vinyals" and args.dataset != "Omniglot",
         f"--omniglot_split selects Omniglot's classes; it does nothing for {args.dataset}"),
        (args.cache_images and args.data_aug,
         "--cache_images would freeze the random --data_aug transforms; use one of them"),
        (args.task_streams > 1 and not args.cuda_graphs,
         "--task_streams runs tasks concurrently inside captured CUDA graphs; it needs "
         "--cuda_graphs"),
        (args.sampler == "device" and args.cache_images,
         "--cache_images has no effect with --sampler device, which stores every image"),
        (args.sampler == "device" and args.data_aug,
         "--sampler device stores transformed images once, which would freeze the random "
         "--data_aug transforms; use one of them"),
        ((args.engine == "reference" or args.second_order)
         and (args.compile or args.task_streams > 1),
         "--compile and --task_streams need the fast engine (first order)"),
    ]


def check_types(args, parser):
    """Values that came from a --config file bypass argparse's own checks: redo them."""
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        if value is None or not action.option_strings:
            continue
        if action.nargs == 0 and not isinstance(value, bool):
            parser.error(f"argument {action.option_strings[0]}: expected true/false, "
                         f"got {value!r}")
        if action.choices is not None and value not in action.choices:
            parser.error(f"argument {action.option_strings[0]}: invalid choice {value!r}")
        if action.type is not None and not isinstance(value, str):
            try:
                action.type(str(value))
            except (argparse.ArgumentTypeError, ValueError) as err:
                parser.error(f"argument {action.option_strings[0]}: {err}")


def check_consistency(args, parser):
    """argparse errors (exit 2) for the first broken rule and for ill-typed config values."""
    for broken, message in flag_rules(args):
        if broken:
            parser.error(message)
    check_types(args, parser)
