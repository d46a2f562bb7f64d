"""Check every point with train.py's own parser before any run starts.

Each point's command line goes through ``utils.cli.parse_args``, so a point is refused
for exactly the reasons train.py would refuse it (unknown flags, bad values,
inconsistent combinations), but before hours of other runs have been spent. Config
paths are read relative to the current folder (sweep.py runs from the repository).
"""
import contextlib
import io

from utils import cli
from utils.sweep.grid import RESERVED, point_args

VALIDATION_OUT_DIR = "sweep-validation"     # parsed, never created


def option_actions(parser):
    """{dest: argparse action} of train.py's options."""
    return {a.dest: a for a in parser._actions if a.option_strings}


def negatable_flags(parser):
    """Flags that train.py can switch off on the command line (``--no-<flag>``)."""
    return {dest for dest in option_actions(parser)
            if f"--no-{dest}" in parser._option_string_actions}


def _flag_errors(point, actions):
    for key, value in point.flags.items():
        if key in ("config", "argv"):
            continue
        if key in RESERVED:
            yield f"flag '{key}' is set by the sweep: {RESERVED[key]}"
            continue
        action = actions.get(key)
        if action is None:
            yield f"unknown flag '{key}' (not a train.py flag; see python train.py --help)"
        elif action.nargs == 0 and not isinstance(value, bool):
            yield f"flag '{key}' is a switch: use true or false, not {value!r}"
        elif action.nargs != 0 and isinstance(value, bool):
            yield f"flag '{key}' takes a value, not {str(value).lower()}"


def _parse(argv):
    """(namespace, None) or (None, train.py's error message)."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            return cli.parse_args(argv), None
    except SystemExit:
        lines = [ln for ln in stderr.getvalue().splitlines() if ln.strip()]
        message = lines[-1] if lines else "rejected by train.py's parser"
        return None, message.split("error: ", 1)[-1]


def check_points(points, extra_args=()):
    """Messages "point <id>: ..." for every point train.py would refuse ([]: all fine).

    ``extra_args`` are appended to every command (sweep.py's arguments after ``--``).
    """
    parser = cli.get_parser()
    actions, negatable = option_actions(parser), negatable_flags(parser)
    errors = []
    for point in points:
        flag_errors = list(_flag_errors(point, actions))
        if flag_errors:
            errors += [f"point {point.id}: {e}" for e in flag_errors]
            continue
        argv = point_args(point, negatable) + ["--seed", "0", "--out_dir",
                                               VALIDATION_OUT_DIR, *extra_args]
        args, message = _parse(argv)
        if message is not None:
            errors.append(f"point {point.id}: {message}")
            continue
        # A false switch without --no-<flag> is simply left out: make sure the run
        # then really gets false (a config file or --method may switch it on).
        for key, value in point.flags.items():
            if isinstance(value, bool) and getattr(args, key) is not value:
                errors.append(
                    f"point {point.id}: flag '{key}' is {str(value).lower()} in the grid, "
                    f"but the run would get {str(getattr(args, key)).lower()} (set by its "
                    "config file or --method, and train.py has no --no-" + key + ")")
    return errors
