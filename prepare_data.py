"""Build MiniImageNet or tieredImageNet from a local copy of the ILSVRC-2012 training set.

    python prepare_data.py miniimagenet --imagenet DIR [--data_folder data] [--workers N]
    python prepare_data.py tieredimagenet --imagenet DIR [--data_folder data] [--workers N]

DIR holds the training images as DIR/<synset>/<synset>_<id>.JPEG or as the per-class
DIR/<synset>.tar files. The result is torchmeta's processed layout in
DATA/miniimagenet or DATA/tieredimagenet, so ``train.py --dataset MiniImagenet
--data_folder DATA`` reads it unchanged (utils/data/prepare.py says what is written).
A stopped build continues when the same command is run again.

Exit status: 0 built and checked, 1 built but the counts differ from the split (or a
file could not be written), 2 refused (missing classes, too few images, bad input),
130 interrupted (rerun to continue).
"""
import argparse
import os
import sys

from utils.data.imagenet_source import PrepareError
from utils.data.imagenet_splits import SplitFileError
from utils.data.prepare import NAMES, build
from utils.run.atomic_io import WriteError


def get_parser():
    D = " (default: %(default)s)"
    p = argparse.ArgumentParser(prog="prepare_data.py", description=__doc__.split("\n")[0])
    p.add_argument("dataset", choices=sorted(NAMES),
                   help="miniimagenet: Ravi & Larochelle's split, 64 / 16 / 20 classes x 600 "
                        "images; tieredimagenet: Ren et al.'s split, 351 / 97 / 160 classes, "
                        "all images of each class")
    p.add_argument("--imagenet", required=True,
                   help="the ILSVRC-2012 training set: DIR/<synset>/<synset>_<id>.JPEG or "
                        "DIR/<synset>.tar")
    p.add_argument("--data_folder", default="data",
                   help="where the dataset folder is written (train.py's --data_folder)" + D)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="processes that decode and resize images (0: this process)" + D)
    p.add_argument("--split_files", default=None,
                   help="folder of split files in the format of "
                        "utils/data/assets/splits/<dataset>_* (None: the shipped split)" + D)
    return p


def main(argv=None):
    opts = get_parser().parse_args(argv)
    if opts.workers < 0:
        get_parser().error("--workers must be >= 0")
    try:
        report = build(opts.dataset, opts.imagenet, opts.data_folder, opts.workers,
                       opts.split_files)
    except (PrepareError, SplitFileError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except WriteError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nInterrupted. Finished classes are kept; run the same command again to "
              "continue.", file=sys.stderr)
        return 130
    name, folder = NAMES[opts.dataset], report["folder"]
    if report["converted"]:
        print(f"Converted {report['converted']:,} images in {report['seconds']:.1f} s "
              f"({report['converted'] / max(report['seconds'], 1e-9):.0f} images/s)")
    print(f"{name} in {folder}:")
    for split, (classes, images) in report["counts"].items():
        print(f"  {split}: {classes} classes, {images:,} images")
    if report["problems"]:
        print("error: the built files differ from the split: " + "; ".join(report["problems"]),
              file=sys.stderr)
        return 1
    print(f"Counts match the split. Train with: python train.py --dataset {name} "
          f"--data_folder {opts.data_folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
