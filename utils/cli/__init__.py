"""train.py's command line: the original's flags (``parser``), method presets
(``methods``), consistency rules (``checks``) and the resolved run configuration
(``resolve``)."""
from utils.cli.parser import DATASETS, config_notes, get_parser, load_config, parse_args
from utils.cli.resolve import device_of, learner_config, parse_train_args, resolve

__all__ = ["DATASETS", "config_notes", "device_of", "get_parser", "load_config", "parse_args",
           "learner_config", "parse_train_args", "resolve"]
