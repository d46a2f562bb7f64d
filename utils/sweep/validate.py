"""Check every point with its program's own parser before any run starts.

Each point's command line goes through the program's ``parse_args`` (train.py's
``utils.cli``, continual.py's ``utils.cli.continual``; see programs.py), so a point is
refused for exactly the reasons the script would refuse it (unknown flags, bad values,
inconsistent combinations), but before hours of other runs have been spent. Config
paths are read relative to the current folder (sweep.py runs from the repository).
"""
import contextlib
import io

from utils.sweep.grid import RESERVED, point_args

VALIDATION_OUT_DIR = "sweep-validation"     # parsed, never created


def option_actions(parser):
    """{dest: argparse action} of a program's options."""
    return {a.dest: a for a in parser._actions if a.option_strings}


def negatable_flags(parser):
    """Flags that the program can switch off on the command line (``--no-<flag>``)."""
    return {dest for dest in option_actions(parser)
            if f"--no-{dest}" in parser._option_string_actions}


def _flag_errors(point, actions, script):
    for key, value in point.flags.items():
        if key in ("config", "argv"):
            continue
        if key in RESERVED:
            yield f"flag '{key}' is set by the sweep: {RESERVED[key]}"
            continue
        action = actions.get(key)
        if action is None:
            yield f"unknown flag '{key}' (not a {script} flag; see python {script} --help)"
        elif action.nargs == 0 and not isinstance(value, bool):
            yield f"flag '{key}' is a switch: use true or false, not {value!r}"
        elif action.nargs != 0 and isinstance(value, bool):
            yield f"flag '{key}' takes a value, not {str(value).lower()}"


def _parse(program, argv):
    """(namespace, None) or (None, the program's error message)."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            return program.parse_args(argv), None
    except SystemExit:
        lines = [ln for ln in stderr.getvalue().splitlines() if ln.strip()]
        message = lines[-1] if lines else f"rejected by {program.script}'s parser"
        return None, message.split("error: ", 1)[-1]


def check_points(points, program, extra_args=()):
    """Messages "point <id>: ..." for every point the program would refuse ([]: all fine).

    ``extra_args`` are appended to every command (sweep.py's arguments after ``--``).
    """
    parser = program.parser()
    actions, negatable = option_actions(parser), negatable_flags(parser)
    errors = []
    for point in points:
        flag_errors = list(_flag_errors(point, actions, program.script))
        if flag_errors:
            errors += [f"point {point.id}: {e}" for e in flag_errors]
            continue
        argv = point_args(point, negatable) + ["--seed", "0", "--out_dir",
                                               VALIDATION_OUT_DIR, *extra_args]
        args, message = _parse(program, argv)
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
                    f"config file or --method, and {program.script} has no --no-{key})")
    return errors
