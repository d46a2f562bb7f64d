"""Test a trained model on the test split of any dataset (cross-domain evaluation).

    python evaluate.py --run RUN_DIR --dataset CUB [--tasks 500] [--data_folder data]
    python evaluate.py --original_dir DIR --dataset CUB -- <the original train.py flags>

``--run`` rebuilds the learner from RUN_DIR/config.json and loads its best model
(best.pt, else the original-format classifier.pth + mask.pth). ``--original_dir`` loads
classifier.pth (+ mask.pth, + mask_plus.pth) written by the authors' code, with the
backbone and mask rebuilt from the original's flags given after ``--``. The backbone
keeps the training dataset's input shape; ``--dataset`` only selects the test data.

Prints accuracy ± 95% CI over the test tasks and merges {dataset: {"accuracy", "ci95",
"num_tasks", "weights"}} into <folder>/cross_domain.json (``utils/evaluation.py``, which
``train.py --cross_domain`` uses too). Exit 2 (message, no traceback) when the folder,
its weights or the data are missing.
"""
import argparse
import os
import sys

from maml.factory import build_learner
from utils import cli
from utils.data.loaders import DataUnavailable
from utils.evaluation import EvaluationError, merge_results, test_accuracy
from utils.run.atomic_io import WriteError
from utils.run.weights import WeightsError, load_best, load_original_format


def get_parser():
    p = argparse.ArgumentParser(
        prog="evaluate.py", description=__doc__.split("\n")[0],
        epilog="Everything after -- is passed to train.py's parser (with --original_dir: "
               "the original run's flags; with --run: overrides of its config).")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="run folder of train.py (config.json, best.pt)")
    source.add_argument("--original_dir",
                        help="folder with the original code's classifier.pth (+ mask.pth)")
    lookup = {d.lower(): d for d in cli.DATASETS}
    p.add_argument("--dataset", required=True, type=lambda s: lookup.get(s.lower(), s),
                   help=f"test data: one of {', '.join(cli.DATASETS)}")
    p.add_argument("--tasks", type=int, default=500, help="test tasks (default: %(default)s)")
    p.add_argument("--data_folder", default=None,
                   help="dataset root (default: the run's --data_folder)")
    p.add_argument("--download", action="store_true", help="let torchmeta download the data")
    p.add_argument("--num_workers", type=int, default=None,
                   help="data loader workers (default: the run's)")
    p.add_argument("--dont_use_cuda", action="store_true", help="evaluate on the CPU")
    return p


def parse(argv):
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    own, train_flags = argv[:split], argv[split + 1:]
    opts = get_parser().parse_args(own)
    if opts.dataset not in cli.DATASETS:
        get_parser().error(f"--dataset: unknown {opts.dataset!r}; choose from "
                           f"{', '.join(cli.DATASETS)}")
    if opts.tasks < 1:
        get_parser().error("--tasks must be >= 1")
    return opts, train_flags


def run_config(opts, train_flags):
    """The RunConfig of ``--run`` (its config.json, then overrides) or ``--original_dir``
    (the original's flags after --), with the folder as out_dir."""
    folder = opts.run or opts.original_dir
    if not os.path.isdir(folder):
        raise EvaluationError(f"{folder} is not a folder")
    overrides = []
    if opts.data_folder is not None:
        overrides += ["--data_folder", opts.data_folder]
    if opts.download:
        overrides.append("--download")
    if opts.num_workers is not None:
        overrides += ["--num_workers", str(opts.num_workers)]
    if opts.dont_use_cuda:
        overrides.append("--dont_use_cuda")
    if opts.run:
        config = os.path.join(folder, "config.json")
        if not os.path.isfile(config):
            raise EvaluationError(f"{config} not found: --run needs a train.py run folder")
        train_flags = ["--config", config] + train_flags
    args = cli.parse_args(train_flags + overrides)
    if cli.device_of(args) == "cpu":
        args.task_streams = 1       # CUDA streams of a GPU run: one task at a time here
    args.seed = max(args.seed, 0)   # the same test tasks on every call
    return cli.resolve(args, out_dir=folder)


def main(argv=None):
    opts, train_flags = parse(argv)
    try:
        config = run_config(opts, train_flags)
        learner = build_learner(config.learner)
        folder = config.out_dir
        weights = (load_best(learner, folder) if opts.run
                   else load_original_format(learner, folder))
        result = dict(test_accuracy(learner, config.data, opts.dataset, opts.tasks, config.seed),
                      weights=weights)
        path = merge_results(folder, {opts.dataset: result})
    except (EvaluationError, WeightsError, DataUnavailable, WriteError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{opts.dataset} test accuracy of {folder} ({weights}): "
          f"{100 * result['accuracy']:.2f} +- {100 * result['ci95']:.2f} % "
          f"({result['num_tasks']} tasks, 95% CI); written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
