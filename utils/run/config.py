"""Typed configuration of one training run, resolved once from the command line
(``utils.cli.resolution``): the learner, the data, the epoch schedule and the run's identity.
Nothing changes it afterwards, so config.json records exactly what ran."""
from dataclasses import dataclass, field
from typing import Optional

from maml.config import LearnerConfig
from utils.data.loaders import DataConfig


@dataclass(frozen=True)
class ScheduleConfig:
    epochs: int = 300
    batches_train: int = 100      # meta-batches per epoch
    batches_val: int = 300
    batches_test: int = 300
    val_after: int = 5            # validate every this many epochs ...
    val_start: int = -1           # ... once epoch > val_start (and at the last epoch)
    test_start: int = -1          # test on a new best validation once epoch > test_start
    tensorboard: bool = True
    checkpoint_models: bool = False   # also save the original's classifier.pth / mask.pth
    cross_domain: bool = False
    cross_domain_tasks: int = 500

    def validates(self, epoch):
        """Whether epoch ends with a validation: every val_after epochs once past
        val_start, and always at the last epoch."""
        return ((epoch % self.val_after == 0 and epoch > self.val_start)
                or epoch == self.epochs - 1)

    def tests(self, epoch):
        """Whether a new best validation at ``epoch`` is tested (and saved as best)."""
        return epoch > self.test_start


@dataclass(frozen=True)
class RunConfig:
    learner: LearnerConfig
    data: DataConfig
    schedule: ScheduleConfig
    seed: int                     # >= 0: drawn and recorded when the flags said -1
    out_dir: str
    resume: bool
    method: str
    flags: dict = field(default_factory=dict)   # the resolved flags, as config.json records
    config_file: Optional[str] = None           # the --config file, for its "_" notes
