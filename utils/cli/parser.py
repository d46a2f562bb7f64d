"""Command line of train.py: every flag of the authors' parser plus the new ones.

Original flags keep their names, types and defaults, so the original commands in
``run_sparse_MAML.sh --original`` run unchanged. ``--config FILE`` (JSON, keys = the
flags' dest names) sets defaults that explicit flags override; keys starting with "_"
are documentation and ignored. Inconsistent combinations are argparse errors (exit 2).
"""
import argparse
import json

from maml.mask_modes import MASK_MODES
from maml.precision import AMP_CHOICES
from utils.cli.checks import check_consistency
from utils.cli.common import BOOL, add_run_flags, choice, non_negative, positive, read_config
from utils.cli.methods import METHODS, describe, preset

DATASETS = ("MiniImagenet", "TieredImagenet", "CUB", "CARS", "Omniglot", "Strokes", "folder")
OPTIMIZERS = ("ADAM", "SGD")


def get_parser():
    p = argparse.ArgumentParser(
        prog="train.py", description="Meta-train sparse-MAML (and MAML, ANIL, BOIL, "
        "Meta-SGD, sparse-ReLU-MAML) on few-shot image classification.")
    pi, pf = positive(int), positive(float)
    D = " (default: %(default)s)"

    g = p.add_argument_group("general")
    add_run_flags(g, "seed for python, numpy, torch and the task sampler")
    g.add_argument("--val_after", type=pi, default=5,
                   help="validate every this many epochs" + D)
    g.add_argument("--val_start", type=int, default=-1,
                   help="validate only once epoch > val_start" + D)
    g.add_argument("--test_start", type=int, default=-1,
                   help="test on improvement only once epoch > test_start" + D)
    g.add_argument("--checkpoint_models", action=BOOL, default=False,
                   help="save the best model as classifier.pth / mask.pth (original format)" + D)
    g.add_argument("--cross_domain", action=BOOL, default=False,
                   help="after training, test the best model on TieredImagenet, CUB, CARS" + D)
    g.add_argument("--cross_domain_tasks", type=pi, default=500,
                   help="test tasks per cross-domain dataset" + D)
    g.add_argument("--skip_nonfinite", action=BOOL, default=False,
                   help="skip meta-steps with a non-finite loss/gradient instead of stopping" + D)

    g = p.add_argument_group("training")
    g.add_argument("--batch_size", type=pi, default=2, help="tasks per meta-batch" + D)
    g.add_argument("--test_batch_size", type=pi, default=1,
                   help="tasks per evaluation batch" + D)
    g.add_argument("--epochs", type=pi, default=300, help="training epochs" + D)
    g.add_argument("--batches_train", type=pi, default=100, help="meta-batches per epoch" + D)
    g.add_argument("--batches_test", type=pi, default=300, help="test batches" + D)
    g.add_argument("--batches_val", type=pi, default=300, help="validation batches" + D)
    g.add_argument("--num_workers", type=non_negative(int), default=2,
                   help="data loader worker processes" + D)

    g = p.add_argument_group("engine")
    g.add_argument("--engine", choices=("auto", "fast", "reference"), default="auto",
                   help="fast: closed-form first-order meta-gradients; reference: autograd "
                        "through the inner loop (needed for --second_order); auto: fast "
                        "unless --second_order" + D)
    g.add_argument("--amp", choices=AMP_CHOICES, default="none",
                   help="bf16 autocast for the backbone's forward/backward (fast engine; "
                        "theta, phi and inner updates stay fp32); auto: bf16 where the "
                        "device computes it natively (CUDA compute capability >= 8.0, a CPU "
                        "with AVX512-BF16 or AMX), else fp32, and the faster layout "
                        "(channels-last on CPUs and with bf16); config.json records the "
                        "choice" + D)
    g.add_argument("--channels_last", action=BOOL, default=False,
                   help="channels-last memory format (faster convolutions on GPUs)" + D)
    g.add_argument("--cuda_graphs", action=argparse.BooleanOptionalAction, default=True,
                   help="replay inner steps from captured CUDA graphs (fast engine, CUDA)" + D)
    g.add_argument("--compile", action=BOOL, default=False,
                   help="torch.compile the inner step and the query forward (fast engine; "
                        "compiles ~30-60 s per task shape at start)" + D)
    g.add_argument("--task_streams", type=pi, default=1,
                   help="tasks of a batch adapted concurrently, one CUDA stream each, "
                        "inside one captured graph (fast engine with CUDA graphs; more "
                        "memory; no effect on CPU, nor on training steps with "
                        "--gradient_step_sampling)" + D)

    g = p.add_argument_group("data")
    g.add_argument("--dataset", type=choice(DATASETS), default="MiniImagenet",
                   help=f"one of {', '.join(DATASETS)}; folder: your own images in "
                        "--data_folder/{train,val,test}/<class>/<images>" + D)
    g.add_argument("--data_folder", type=str, default="data",
                   help="root folder of the datasets (torchmeta layout; with --dataset "
                        "folder the folder holding train/, val/, test/)" + D)
    g.add_argument("--image_size", type=pi, default=84,
                   help="--dataset folder: images are resized to this side (square)" + D)
    g.add_argument("--grayscale", action=BOOL, default=False,
                   help="--dataset folder: one channel (no normalisation) instead of RGB "
                        "(ImageNet normalisation)" + D)
    g.add_argument("--omniglot_split", choices=("vinyals", "lake"), default="vinyals",
                   help="Omniglot classes: vinyals (1028/172/423 characters, torchmeta's "
                        "split) or lake (the 30 background alphabets for meta-training, of "
                        "which every sixth in alphabetical order, 5 alphabets, is held out "
                        "for meta-validation; the 20 evaluation alphabets for testing)" + D)
    g.add_argument("--download", action=BOOL, default=False,
                   help="try torchmeta's download when the data is missing" + D)
    g.add_argument("--cache_images", action=BOOL, default=False,
                   help="keep transformed images in memory after first use (much faster "
                        "small-image runs; use with --num_workers 0, not with --data_aug)" + D)
    g.add_argument("--sampler", choices=("torchmeta", "device"), default="torchmeta",
                   help="torchmeta: its DataLoader with --num_workers processes; device: "
                        "every image of a split held on the device and tasks drawn there "
                        "(same task distribution, no workers, so --num_workers is unused; "
                        "not with --data_aug)" + D)
    g.add_argument("--data_aug", action=BOOL, default=False,
                   help="MiniImagenet training augmentation: crop, color jitter, flip" + D)
    g.add_argument("--num_shots_train", type=pi, default=5,
                   help="support examples per class (K)" + D)
    g.add_argument("--num_shots_test", type=pi, default=15,
                   help="query examples per class" + D)
    g.add_argument("--num_ways", type=pi, default=5, help="classes per task (N)" + D)

    g = p.add_argument_group("optimizer")
    g.add_argument("--optimizer_theta", type=choice(OPTIMIZERS), default="ADAM",
                   help="outer optimizer for theta: ADAM or SGD (Nesterov momentum)" + D)
    g.add_argument("--optimizer_mask", type=choice(OPTIMIZERS), default="ADAM",
                   help="outer optimizer for the mask logits phi: ADAM or SGD" + D)
    g.add_argument("--lr", type=pf, default=0.001, help="outer learning rate for theta" + D)
    g.add_argument("--mask_lr", type=pf, default=0.001,
                   help="outer learning rate for phi" + D)
    g.add_argument("--momentum", type=float, default=0.9,
                   help="SGD momentum (Nesterov when > 0)" + D)
    g.add_argument("--clamp_outer_gradients", action=BOOL, default=False,
                   help="clamp theta's outer gradients to +-10" + D)

    g = p.add_argument_group("backbone")
    g.add_argument("--resnet", action=BOOL, default=False, help="ResNet-12 instead of ConvNet" + D)
    g.add_argument("--big_resnet", action=BOOL, default=False,
                   help="ResNet-12 with 64-160-320-640 channels" + D)
    g.add_argument("--hidden_size", type=pi, default=64, help="ConvNet channels" + D)
    g.add_argument("--bias", action=BOOL, default=False,
                   help="kept for compatibility: the ConvNet always has biases, as the "
                        "original (which stores this flag as an always-true tuple)" + D)

    g = p.add_argument_group("inner loop")
    g.add_argument("--method", choices=sorted(METHODS), default=None,
                   help="preset that sets the flags of a paper method" + D)
    g.add_argument("--step_size", type=pf, default=0.1, help="inner learning rate alpha" + D)
    g.add_argument("--gradient_steps", type=pi, default=35, help="inner steps in training" + D)
    g.add_argument("--gradient_step_sampling", type=non_negative(int), default=0,
                   help="train with inner steps drawn uniformly from gradient_steps +- this" + D)
    g.add_argument("--gradient_steps_test", type=non_negative(int), default=35,
                   help="inner steps at validation/test (0: no adaptation)" + D)
    g.add_argument("--second_order", action=BOOL, default=False,
                   help="full second-order MAML (reference engine only)" + D)
    g.add_argument("--no_bn_in_inner_loop", action=BOOL, default=False,
                   help="do not adapt BatchNorm parameters in the inner loop" + D)
    g.add_argument("--no_downsample_in_inner_loop", action=BOOL, default=False,
                   help="do not adapt ResNet downsample parameters in the inner loop" + D)
    g.add_argument("--anil", action=BOOL, default=False,
                   help="adapt only the classifier (ANIL)" + D)
    g.add_argument("--boil", action=BOOL, default=False,
                   help="adapt everything but the classifier (BOIL)" + D)

    g = p.add_argument_group("masks")
    g.add_argument("--mask_mode", choices=sorted(MASK_MODES), default=None,
                   help="how the mask enters the inner update (maml/mask_modes.py); None "
                        "derives it from the original's flags: gradient (--gradient_mask), "
                        "learning_rate (--gradient_mask with --meta_relu_through, "
                        "--meta_relu, --meta_sgd_linear or --meta_exp), weight "
                        "(--weight_mask), none" + D)
    g.add_argument("--gradient_mask", action=BOOL, default=False,
                   help="learn a mask on the inner-loop gradients (sparse-MAML)" + D)
    g.add_argument("--weight_mask", action=BOOL, default=False,
                   help="learn a mask on the weights instead" + D)
    g.add_argument("--gradient_mask_plus", action=BOOL, default=False,
                   help="conv masks from a noise-driven hypernetwork (ConvNet only)" + D)
    g.add_argument("--plus_output_shift", type=float, default=0.0,
                   help="extra shift of the PLUS masks' logits (dead in the original; "
                        "added to --init_shift, which the original uses there)" + D)
    g.add_argument("--init_shift", type=float, default=0.0,
                   help="shift of the mask-logit init (controls initial sparsity)" + D)
    g.add_argument("--kaiming_init", action=BOOL, default=False,
                   help="kaiming-uniform mask-logit init for tensors with > 1 dim" + D)
    g.add_argument("--meta_relu", action=BOOL, default=False, help="m = ReLU(phi)" + D)
    g.add_argument("--meta_relu_through", action=BOOL, default=False,
                   help="m = ReLU(phi), straight-through backward (sparse-ReLU-MAML)" + D)
    g.add_argument("--meta_sgd_linear", action=BOOL, default=False, help="m = phi (Meta-SGD)" + D)
    g.add_argument("--meta_exp", action=BOOL, default=False, help="m = exp(phi)" + D)
    g.add_argument("--meta_sgd_init", action=BOOL, default=False, help="phi ~ U(0.005, 0.1)" + D)
    g.add_argument("--meta_constant_init", action=BOOL, default=False, help="phi = step_size" + D)
    return p


def load_config(path, parser):
    """train.py's flag values from a JSON config file (or a run's config.json)."""
    def described_method(recorded):     # a run records e.g. "sparse-maml-plus": no preset
        if recorded.get("method") not in METHODS:
            recorded.pop("method", None)
    return read_config(path, parser, described_method)


def config_notes(path):
    """The documentation keys ("_cell", "_source", ...) of a config file, to keep in the run."""
    if not path:
        return {}
    with open(path) as f:
        values = json.load(f)
    return {k: v for k, v in values.items() if k.startswith("_") and k != "_meta"}


def parse_args(argv=None):
    """Parse train.py's command line (list of strings) into a checked Namespace.

    Precedence, lowest first: the parser's defaults, the --config file, the flags of
    --method (``utils.cli.methods``), explicit flags. ``engine`` "auto" and a missing
    ``method`` are resolved here; seed, run folder and device in ``utils.cli.resolution``.
    """
    parser = get_parser()
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    pre.add_argument("--method")
    known, _ = pre.parse_known_args(argv)
    defaults = load_config(known.config, parser) if known.config else {}
    method = known.method or defaults.get("method")
    parser.set_defaults(**{**defaults, **preset(method)})     # --method over --config
    args = parser.parse_args(argv)
    if args.out_dir == "out_dir_default":       # the original's sentinel
        args.out_dir = None
    check_consistency(args, parser)
    if args.engine == "auto":
        args.engine = "reference" if args.second_order else "fast"
    described = describe(args)
    if args.method is not None and not described.startswith(args.method):
        parser.error(f"the flags describe {described}, not --method {args.method} (a "
                     f"--no- flag undid part of the preset?); drop --method to run {described}")
    args.method = args.method or described
    return args
