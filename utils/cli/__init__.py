"""train.py's command line: the original's flags (``parser``), method presets
(``methods``), consistency rules (``checks``) and the resolved run configuration
(``resolution``).

Parsing imports no torch, so tools that only check flags (``sweep.py --status``, dry
runs) answer at once; the resolution functions (which need torch and the data loaders)
are imported on first use.
"""
from utils.cli.parser import DATASETS, config_notes, get_parser, load_config, parse_args

_RESOLUTION = ("device_of", "learner_config", "parse_train_args", "resolve")
__all__ = ["DATASETS", "config_notes", "get_parser", "load_config", "parse_args",
           *_RESOLUTION]


def __getattr__(name):
    if name in _RESOLUTION:
        from utils.cli import resolution
        return getattr(resolution, name)
    raise AttributeError(f"module 'utils.cli' has no attribute {name!r}")
