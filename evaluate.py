"""Test a trained model on the test split of any dataset (cross-domain evaluation), or
classify your own images after adapting on your own support set (predictions).

    python evaluate.py --run RUN_DIR --dataset CUB [--tasks 500] [--data_folder data]
    python evaluate.py --original_dir DIR --dataset CUB -- <the original train.py flags>
    python evaluate.py --run RUN_DIR --support DIR --query DIR [--out predictions.csv]

``--run`` rebuilds the learner from RUN_DIR/config.json and loads its best model
(best.pt, else the original-format classifier.pth + mask.pth). ``--original_dir`` loads
classifier.pth (+ mask.pth, + mask_plus.pth) written by the authors' code, with the
backbone and mask rebuilt from the original's flags given after ``--``. The backbone
keeps the training dataset's input shape; ``--dataset`` only selects the test data.

Cross-domain: prints accuracy ± 95% CI over the test tasks and merges {dataset:
{"accuracy", "ci95", "num_tasks", "weights"}} into <folder>/cross_domain.json
(``utils/evaluation.py``, which ``train.py --cross_domain`` uses too).

Predictions (``utils/predict.py``): --support DIR/<class>/<images> with the run's
num_ways classes, K >= 1 images each; --query a flat folder of images or
DIR/<class>/<images>. Adapts with the run's own inner loop and prints one line per query
image (file, predicted class, probability; tab-separated), or writes them to --out as
CSV; with class subfolders in --query the last line is ``accuracy: X``.

Exit 2 (message, no traceback) when the folder, its weights, the data or the support /
query folders are missing or do not fit the run.
"""
import argparse
import csv
import io
import os
import sys

from maml.factory import build_learner
from utils import cli
from utils.data.loaders import DataUnavailable
from utils.evaluation import EvaluationError, merge_results, test_accuracy
from utils.predict import image_transform, inverts_by_default, load_episode, predict
from utils.run.atomic_io import WriteError, atomic_write
from utils.run.rng import seed_everything
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
    p.add_argument("--dataset", type=lambda s: lookup.get(s.lower(), s),
                   help=f"cross-domain test data: one of {', '.join(cli.DATASETS)}")
    p.add_argument("--tasks", type=int, default=500, help="test tasks (default: %(default)s)")
    p.add_argument("--data_folder", default=None,
                   help="dataset root (default: the run's --data_folder)")
    p.add_argument("--download", action=argparse.BooleanOptionalAction, default=False,
                   help="let torchmeta download the data (default: %(default)s)")
    p.add_argument("--num_workers", type=int, default=None,
                   help="data loader workers (default: the run's)")
    p.add_argument("--dont_use_cuda", action=argparse.BooleanOptionalAction, default=False,
                   help="evaluate on the CPU (default: %(default)s)")
    g = p.add_argument_group("predictions (instead of --dataset)")
    g.add_argument("--support", help="support images: DIR/<class>/<images>, the run's "
                                     "num_ways classes, K >= 1 images each (default: "
                                     "%(default)s)")
    g.add_argument("--query", help="query images: a flat folder, or DIR/<class>/<images> "
                                   "to also get the accuracy (default: %(default)s)")
    g.add_argument("--out", help="write the predictions to this CSV file instead of "
                                 "printing them (default: %(default)s)")
    g.add_argument("--invert", action=argparse.BooleanOptionalAction, default=None,
                   help="invert the images (dark ink on white -> bright on black); None: "
                        "only for runs trained on Omniglot or Strokes (default: %(default)s)")
    return p


def parse(argv):
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    own, train_flags = argv[:split], argv[split + 1:]
    opts = get_parser().parse_args(own)
    predicting = opts.support is not None or opts.query is not None
    if predicting:
        if opts.support is None or opts.query is None:
            get_parser().error("predictions need both --support and --query")
        if opts.dataset is not None:
            get_parser().error("--dataset tests on a dataset's test split; --support / "
                               "--query classify your images: choose one")
        return opts, train_flags
    if opts.out is not None or opts.invert is not None:
        get_parser().error("--out and --invert apply to predictions (--support / --query)")
    if opts.dataset is None:
        get_parser().error("give --dataset (cross-domain test) or --support and --query "
                           "(predictions)")
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


def predictions(opts, config, learner):
    """Adapt on --support, classify --query; returns the lines to print."""
    data = config.data
    invert = inverts_by_default(data.dataset) if opts.invert is None else opts.invert
    episode = load_episode(opts.support, opts.query, image_transform(data, invert),
                           data.num_ways)
    seed_everything(config.seed)        # PLUS draws its mask noise from torch's generator
    probabilities = predict(learner, episode, data.num_ways * data.num_queries)
    best, labels = probabilities.max(dim=1)
    rows = [(f, episode.classes[int(k)], float(p))
            for f, k, p in zip(episode.query_files, labels, best, strict=True)]
    lines = []
    if opts.out is None:
        lines += [f"{f}\t{name}\t{p:.4f}" for f, name, p in rows]
    else:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["file", "predicted", "probability"]
                        + (["true"] if episode.y_query is not None else []))
        truth = ([episode.classes[int(k)] for k in episode.y_query]
                 if episode.y_query is not None else [None] * len(rows))
        for (f, name, p), true in zip(rows, truth, strict=True):
            writer.writerow([f, name, f"{p:.6f}"] + ([true] if true is not None else []))
        atomic_write(opts.out, lambda f: f.write(out.getvalue()), mode="w")
        lines.append(f"{len(rows)} predictions ({episode.x_support.shape[0]} support images, "
                     f"{len(episode.classes)} classes) written to {opts.out}")
    if episode.y_query is not None:
        accuracy = float((labels == episode.y_query).float().mean())
        lines.append(f"accuracy: {accuracy:.4f}")
    return lines


def main(argv=None):
    opts, train_flags = parse(argv)
    try:
        config = run_config(opts, train_flags)
        learner = build_learner(config.learner)
        folder = config.out_dir
        weights = (load_best(learner, folder) if opts.run
                   else load_original_format(learner, folder))
        if opts.support is not None:
            print("\n".join(predictions(opts, config, learner)))
            return 0
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
