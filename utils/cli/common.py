"""What the entry scripts' command lines share (train.py, continual.py): argparse value
types, --config files, and the resolution of a drawn seed. Imports no torch."""
import argparse
import json
import os

BOOL = argparse.BooleanOptionalAction     # every boolean flag has its --no- form


def choice(options):
    """Case-insensitive choice that returns the canonical spelling."""
    lookup = {o.lower(): o for o in options}

    def parse(value):
        key = value.lower()
        if key not in lookup:
            raise argparse.ArgumentTypeError(
                f"unknown value {value!r}; choose from {', '.join(options)}")
        return lookup[key]
    parse.__name__ = "choice"
    return parse


def positive(kind):
    def parse(value):
        x = kind(value)
        if x <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
        return x
    parse.__name__ = f"positive {kind.__name__}"
    return parse


def non_negative(kind):
    def parse(value):
        x = kind(value)
        if x < 0:
            raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
        return x
    parse.__name__ = f"non-negative {kind.__name__}"
    return parse


def add_run_flags(group, seed_help):
    """The run-folder flags every entry script has, added to argparse ``group``: --config,
    --out_dir, --resume, --seed (``seed_help``: what it seeds), --tensorboard and
    --dont_use_cuda."""
    D = " (default: %(default)s)"
    group.add_argument("--config", type=str, default=None,
                       help="JSON file of flag values (dest names); explicit flags override "
                            "it" + D)
    group.add_argument("--out_dir", type=str, default=None,
                       help="run folder; None gives runs/<date-time>_<method>" + D)
    group.add_argument("--resume", action=BOOL, default=False,
                       help="continue the run in --out_dir from its last checkpoint" + D)
    group.add_argument("--seed", type=int, default=-1,
                       help=seed_help + "; -1 draws one and records it" + D)
    group.add_argument("--tensorboard", action=BOOL, default=True,
                       help="write TensorBoard events to the run folder" + D)
    group.add_argument("--dont_use_cuda", action=BOOL, default=False,
                       help="run on CPU even if CUDA is available" + D)


def read_config(path, parser, run_record_hook=None):
    """{flag: value} of a JSON config file (a run's config.json: its "args", first passed
    through ``run_record_hook``); keys starting with "_" document the file and are dropped;
    an unknown key is an argparse error."""
    try:
        with open(path) as f:
            values = json.load(f)
    except (OSError, ValueError) as err:
        parser.error(f"cannot read --config {path}: {err}")
    if not isinstance(values, dict):
        parser.error(f"--config {path} must hold a JSON object of flag values")
    if isinstance(values.get("args"), dict):      # a run's config.json
        values = dict(values["args"])
        if run_record_hook is not None:
            run_record_hook(values)
    dests = {a.dest for a in parser._actions}
    unknown = sorted(k for k in values if not k.startswith("_") and k not in dests)
    if unknown:
        parser.error(f"unknown keys in --config {path}: {', '.join(unknown)}")
    return {k: v for k, v in values.items() if not k.startswith("_") and k != "config"}


def run_seed(seed, resume, out_dir):
    """The run's seed: ``seed`` if >= 0; resuming, the one out_dir/config.json recorded
    (so a resumed run replays exactly); else one drawn from the OS."""
    from utils.run.run_folder import recorded_flags  # it imports torch; parsing does not
    if seed < 0 and resume:
        recorded = (recorded_flags(out_dir) or {}).get("seed", -1)
        seed = recorded if isinstance(recorded, int) else -1
    if seed < 0:
        seed = int.from_bytes(os.urandom(4), "little") % (2 ** 31)
    return seed
