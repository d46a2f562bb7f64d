"""Run a grid of train.py or continual.py runs (points x seeds) locally or as a Slurm
job array.

    python sweep.py GRID.json [--seeds N] [--out ROOT] [--executor local|slurm]
                    [--slots K] [--dry-run] [--status] [slurm options] [-- PROGRAM FLAGS]

Reads top to bottom: parse -> expand and validate the grid (exit 2 naming the point and
flag) -> status / dry run / run -> collect ROOT/results.csv and the summary. README.md,
"Running many experiments", describes the grid file (its "program" key picks the
script: utils/sweep/programs.py). Exit status: 0 every run finished
(or --status, --dry-run, a submission), 1 some run failed, 2 bad grid or options,
130/143 stopped by SIGINT/SIGTERM (rerun the same command to continue).
"""
import os
import shlex
import shutil
import sys

from utils.run.atomic_io import WriteError
from utils.sweep import cli, results, slurm
from utils.sweep.grid import GridError
from utils.sweep.layout import open_sweep
from utils.sweep.local import LocalExecutor
from utils.sweep.state import QUEUED, RUNNING, TO_RUN, run_state

REPO = os.path.dirname(os.path.abspath(__file__))


def current_states(sweep):
    """{run folder: state}: the folder's state, or Slurm's view of a task still queued."""
    queue = slurm.queue_states(sweep)
    states = {}
    for run in sweep.runs:
        state = run_state(run.dir, sweep.program)
        if state in TO_RUN and run.dir in queue:
            state = QUEUED if queue[run.dir] == "PD" else RUNNING
        states[run.dir] = state
    return states


def collect(sweep):
    """Write results.csv and the summary files; print the summary of finished runs."""
    collection = results.Collection(sweep, current_states(sweep))
    markdown = collection.write()
    if any(s["seeds_done"] for s in collection.summaries):
        print(markdown, end="")
    print(f"Per run: {os.path.join(sweep.root, 'results.csv')}; per point: "
          f"{os.path.join(sweep.root, 'summary.md')}. Summarise with: "
          + sweep.quoted([sweep.python, "-m", sweep.program.report, sweep.root]))


def main(argv=None):
    try:
        return execute(sys.argv[1:] if argv is None else list(argv))
    except WriteError as err:       # sweep.json, a manifest or results: the message names it
        print(f"sweep.py: error: {err}", file=sys.stderr)
        return 1


def execute(argv):
    args, extra = cli.parse_args(argv)
    grid = args.grid if args.grid == "-" else os.path.abspath(args.grid)
    root = os.path.abspath(args.out)
    os.chdir(REPO)      # the program runs here; grid config paths are relative to it
    try:
        sweep = open_sweep(grid, root, args.seeds, REPO, args.python, extra)
    except GridError as err:
        print(f"sweep.py: {err}", file=sys.stderr)
        return 2
    states = current_states(sweep)
    if args.status:
        print(results.status_table(sweep, states))
        if os.path.isdir(sweep.root):
            collect(sweep)
        return 0
    todo = [run for run in sweep.runs if states[run.dir] in TO_RUN]
    if args.executor == "slurm":
        return submit_slurm(sweep, todo, args)
    if args.dry_run:
        for run in todo:
            print(sweep.quoted(sweep.command(run)))
        return 0
    if shutil.which(args.python) is None:
        print(f"sweep.py: --python {args.python}: no such interpreter", file=sys.stderr)
        return 2
    rerun = None if args.grid == "-" else shlex.join([sys.executable, sys.argv[0], *argv])
    executor = LocalExecutor(sweep, args.slots, rerun=rerun)
    print(f"sweep: {len(sweep.runs)} runs in {sweep.root}: "
          f"{len(sweep.runs) - len(todo)} finished or running elsewhere, {len(todo)} to "
          f"run on {executor.describe()}", flush=True)
    sweep.write_record()
    code = executor.run(todo)
    if code in (0, 1):
        collect(sweep)
    return code


def submit_slurm(sweep, todo, args):
    if not todo:
        print(f"sweep: nothing to submit: every run in {sweep.root} is finished, running or "
              "queued (--status shows them)")
        return 0
    sweep.write_record()
    script = slurm.write_submission(sweep, todo, cli.slurm_options(args))
    if args.dry_run:
        with open(script, encoding="utf-8") as f:
            print(f.read(), end="")
        print(f"# dry run: {len(todo)} array tasks written to {script}, not submitted",
              file=sys.stderr)
        return 0
    try:
        job = slurm.submit(sweep, script)
    except RuntimeError as err:
        print(f"sweep.py: {err}", file=sys.stderr)
        return 2
    print(f"sweep: submitted job array {job} ({len(todo)} tasks): {script}. Watch with: "
          f"squeue -j {job}; python sweep.py {args.grid} --out {sweep.root} --status")
    return 0


if __name__ == "__main__":
    sys.exit(main())
