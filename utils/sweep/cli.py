"""Command line of sweep.py (arguments after ``--`` go to every run of the grid's program,
train.py or continual.py)."""
import argparse
import os
import sys

from utils.sweep.slurm import SlurmOptions


def _positive_int(value):
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return n


def get_parser():
    p = argparse.ArgumentParser(
        prog="sweep.py", usage="%(prog)s GRID.json [options] [-- PROGRAM FLAGS]",
        description="Run a grid of train.py runs, or of continual.py runs (the grid's "
        "\"program\": \"continual\"), points x seeds, on this machine or as a Slurm job "
        "array. Each run goes to ROOT/<point>/seed<i>; rerunning the same command skips "
        "finished runs and resumes unfinished ones. Flags after -- go to every run (not "
        "part of the point ids: paths, workers). The program runs in the repository "
        "folder: config and data paths are relative to it.")
    D = " (default: %(default)s)"
    p.add_argument("grid", metavar="GRID.json",
                   help="grid file (keys program, config, flags, grid, conditions; see "
                        "README, "
                        "'Running many experiments'), or - to read it from standard input")

    g = p.add_argument_group("sweep")
    g.add_argument("--seeds", type=_positive_int, default=1, metavar="N",
                   help="seeds 0..N-1 per point, passed as --seed" + D)
    g.add_argument("--out", default=None, metavar="ROOT",
                   help="sweep folder ROOT, relative to the current folder; None gives "
                        "runs/sweeps/<grid file name>" + D)
    g.add_argument("--executor", choices=("local", "slurm"), default="local",
                   help="local: processes on this machine; slurm: one sbatch job "
                        "array" + D)
    g.add_argument("--slots", type=_positive_int, default=None, metavar="K",
                   help="local: runs at once (None: one per visible GPU, 1 without a GPU); "
                        "slurm: array tasks at once (None: no limit)" + D)
    g.add_argument("--dry-run", action="store_true",
                   help="local: print the commands of the runs to do, write "
                        "nothing; slurm: write and print the sbatch script, do not "
                        "submit" + D)
    g.add_argument("--status", action="store_true",
                   help="print the points x seeds table of run states and the summary of "
                        "finished runs (and rewrite ROOT/results.csv, summary.csv/md); "
                        "start nothing" + D)
    g.add_argument("--python", default=sys.executable, metavar="PY",
                   help="interpreter that runs the program" + D)

    g = p.add_argument_group("slurm executor (sbatch options of the job array)")
    g.add_argument("--partition", default=None, help="sbatch --partition" + D)
    g.add_argument("--gres", default=None, help="--gres per task, e.g. gpu:1" + D)
    g.add_argument("--gpus", default=None, help="--gpus per task, e.g. 1 or a100:1" + D)
    g.add_argument("--cpus", type=_positive_int, default=None,
                   help="--cpus-per-task; also OMP_NUM_THREADS unless set" + D)
    g.add_argument("--mem", default=None, help="--mem per task, e.g. 32G" + D)
    g.add_argument("--time", default=None, help="--time limit per task, e.g. 8:00:00" + D)
    g.add_argument("--account", default=None, help="sbatch --account" + D)
    g.add_argument("--qos", default=None, help="sbatch --qos" + D)
    g.add_argument("--requeue", action="store_true",
                   help="let Slurm requeue preempted or failed-node tasks (they resume)" + D)
    g.add_argument("--sbatch_extra", action="append", default=[], metavar="LINE",
                   help="extra #SBATCH line, e.g. --sbatch_extra=--constraint=a100 (with "
                        "'=', as the value starts with a dash; repeatable)" + D)
    g.add_argument("--setup", action="append", default=[], metavar="SHELL",
                   help="shell line run before the program in each task, e.g. 'module load "
                        "cuda' or 'source .venv/bin/activate' (repeatable)" + D)
    return p


def parse_args(argv=None):
    """(namespace, the program's arguments after --); argparse errors exit 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    parser = get_parser()
    args = parser.parse_args(argv)
    if args.status and args.dry_run:
        parser.error("--status and --dry-run exclude each other")
    if args.out is None:
        if args.grid == "-":
            parser.error("a grid read from standard input needs --out")
        args.out = os.path.join("runs", "sweeps",
                                os.path.splitext(os.path.basename(args.grid))[0])
    return args, extra


def slurm_options(args):
    return SlurmOptions(partition=args.partition, gres=args.gres, gpus=args.gpus,
                        cpus=args.cpus, mem=args.mem, time=args.time, account=args.account,
                        qos=args.qos, requeue=args.requeue, throttle=args.slots,
                        extra=list(args.sbatch_extra), setup=list(args.setup))
