"""evaluate.py and utils/evaluation.py: test a run's best model on a dataset's test
split; cross_domain().

One tiny Strokes run (``python train.py``) serves all tests. The same weights must give the same
accuracy from best.pt, from classifier.pth + mask.pth, and from an "original" folder
rebuilt from train.py flags: the test tasks are seeded.
"""
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import learner_for
from utils import cli
from utils.evaluation import cross_domain

REPO = Path(__file__).resolve().parents[1]
QUICK = REPO / "configs" / "quick" / "sparse-maml.json"
# The quick config as the original's command line would give it (same model and mask).
ORIGINAL_FLAGS = ["--dataset", "Strokes", "--hidden_size", "8", "--gradient_mask",
                  "--kaiming_init", "--step_size", "0.25", "--num_shots_train", "1",
                  "--num_shots_test", "2", "--gradient_steps_test", "2", "--num_workers", "0",
                  "--seed", "0"]
TASKS = 6


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def evaluate(zygote, capsys):
    """evaluate(argv) -> exit code of ``python evaluate.py ARGV`` (its output reaches capsys)."""
    def run(argv):
        result = zygote.run("evaluate.py", argv)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        return result.code
    return run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, zygote):
    out = tmp_path_factory.mktemp("eval") / "run"
    # fp32, as the original flags below give: the quick config's --amp auto is bf16 on a
    # CPU with native bf16, and these tests compare the weights' formats, not precisions.
    argv = ["--config", str(QUICK), "--amp", "none", "--dont_use_cuda", "--out_dir", str(out)]
    assert zygote.run("train.py", argv).code == 0
    return out


@pytest.fixture(scope="module")
def reference(run_dir, tmp_path_factory, zygote):
    """Accuracy of the run's best.pt on TASKS Strokes test tasks (in a copy of the run)."""
    copy = tmp_path_factory.mktemp("ref") / "run"
    shutil.copytree(run_dir, copy)
    assert zygote.run("evaluate.py", ["--run", str(copy), "--dataset", "Strokes", "--tasks",
                                      str(TASKS), "--dont_use_cuda"]).code == 0
    return json.loads((copy / "cross_domain.json").read_text())["Strokes"]


def _copy(run_dir, tmp_path, drop=()):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns(*drop))
    return copy


def test_run_is_evaluated_and_written(evaluate, run_dir, reference, tmp_path, capsys):
    copy = _copy(run_dir, tmp_path)
    (copy / "cross_domain.json").write_text(json.dumps({"CUB": {"accuracy": 0.5}}))
    assert evaluate(["--run", str(copy), "--dataset", "strokes", "--tasks", str(TASKS),
                          "--dont_use_cuda"]) == 0
    written = json.loads((copy / "cross_domain.json").read_text())
    assert written["CUB"] == {"accuracy": 0.5}          # merged, not overwritten
    result = written["Strokes"]
    assert result["num_tasks"] == TASKS and result["weights"] == "best.pt"
    assert result == reference                           # seeded: same tasks, same result
    assert "Strokes test accuracy" in capsys.readouterr().out


def test_falls_back_to_the_original_format_files(evaluate, run_dir, reference, tmp_path):
    copy = _copy(run_dir, tmp_path, drop=("best.pt",))
    assert evaluate(["--run", str(copy), "--dataset", "Strokes", "--tasks", str(TASKS),
                          "--dont_use_cuda"]) == 0
    result = json.loads((copy / "cross_domain.json").read_text())["Strokes"]
    assert result["weights"] == "classifier.pth+mask.pth"
    assert result["accuracy"] == reference["accuracy"]


def _learner(flags):
    return learner_for(cli.parse_args(flags + ["--dont_use_cuda"]))


def test_original_checkpoint_folder(evaluate, run_dir, reference, tmp_path):
    best = torch.load(run_dir / "best.pt", weights_only=True)
    learner = _learner(ORIGINAL_FLAGS)            # the model and mask the original builds
    learner.model.load_state_dict(best["model"])
    learner.mask.load_state_dict(best["mask"])
    original = tmp_path / "original"
    original.mkdir()
    torch.save(learner.model.state_dict(), original / "classifier.pth")
    torch.save(learner.mask.state_dict(), original / "mask.pth")
    assert evaluate(["--original_dir", str(original), "--dataset", "Strokes", "--tasks",
                          str(TASKS), "--dont_use_cuda", "--", *ORIGINAL_FLAGS]) == 0
    result = json.loads((original / "cross_domain.json").read_text())["Strokes"]
    assert result["accuracy"] == reference["accuracy"]


def test_original_plus_masks_from_mask_plus_pth(evaluate, tmp_path):
    flags = ORIGINAL_FLAGS + ["--gradient_mask_plus", "--optimizer_mask", "SGD"]
    learner = _learner(flags)
    folders = {}
    for name, split in (("whole", False), ("split", True)):
        folders[name] = folder = tmp_path / name
        folder.mkdir()
        mask_state = learner.mask.state_dict()
        if split:       # mask.pth without the hypernetwork, which comes from mask_plus.pth
            mask_state = {k: v for k, v in mask_state.items() if not k.startswith("mask_plus.")}
        torch.save(learner.model.state_dict(), folder / "classifier.pth")
        torch.save(mask_state, folder / "mask.pth")
        torch.save(learner.mask.mask_plus.state_dict(), folder / "mask_plus.pth")
        assert evaluate(["--original_dir", str(folder), "--dataset", "Strokes", "--tasks",
                              "4", "--dont_use_cuda", "--", *flags]) == 0
    whole, split = (json.loads((folders[n] / "cross_domain.json").read_text())["Strokes"]
                    for n in ("whole", "split"))
    assert whole["accuracy"] == split["accuracy"]


def test_original_flags_that_do_not_fit_exit_2(evaluate, run_dir, tmp_path, capsys):
    original = tmp_path / "original"
    original.mkdir()
    shutil.copy(run_dir / "classifier.pth", original / "classifier.pth")
    shutil.copy(run_dir / "mask.pth", original / "mask.pth")
    flags = [f if f != "8" else "16" for f in ORIGINAL_FLAGS]          # hidden_size 16
    assert evaluate(["--original_dir", str(original), "--dataset", "Strokes",
                          "--dont_use_cuda", "--", *flags]) == 2
    err = capsys.readouterr().err
    assert "does not fit" in err and "Traceback" not in err


@pytest.mark.parametrize("problem", ["no folder", "no config", "no weights", "no data",
                                     "other shape"])
def test_unusable_input_exits_2_with_a_message(evaluate, problem, run_dir, tmp_path, capsys):
    folder, dataset = _copy(run_dir, tmp_path), "Strokes"
    extra = []
    if problem == "no folder":
        folder = tmp_path / "missing"
    elif problem == "no config":
        (folder / "config.json").unlink()
    elif problem == "no weights":
        for name in ("best.pt", "classifier.pth"):
            (folder / name).unlink()
    elif problem == "no data":      # same input shape as Strokes, files absent
        dataset, extra = "Omniglot", ["--data_folder", str(tmp_path / "empty")]
    else:
        dataset = "CUB"
    assert evaluate(["--run", str(folder), "--dataset", dataset, "--dont_use_cuda",
                          *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert not (folder / "cross_domain.json").exists()


def test_cross_domain_skips_unusable_datasets(run_dir, tmp_path):
    copy = _copy(run_dir, tmp_path)
    config = cli.resolve(cli.parse_args(["--config", str(copy / "config.json"),
                                         "--dont_use_cuda", "--data_folder",
                                         str(tmp_path / "empty")]), out_dir=str(copy))
    learner = learner_for(cli.parse_args(["--config", str(copy / "config.json"),
                                          "--dont_use_cuda"]))
    # fresh weights: cross_domain must load best.pt itself
    results = cross_domain(learner, config.data, str(copy), 4,
                           datasets=("Strokes", "Omniglot", "CUB"))
    assert set(results["Strokes"]) == {"accuracy", "ci95", "num_tasks"}
    assert results["Strokes"]["num_tasks"] == 4
    assert "not found" in results["Omniglot"]["error"]
    assert "3x84x84" in results["CUB"]["error"]
    assert json.loads((copy / "cross_domain.json").read_text()) == results
    best = torch.load(copy / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(best[k], v) for k, v in learner.model.state_dict().items())


def test_cross_domain_on_rgb_data(fake_miniimagenet, tmp_path, quick_args):
    """A MiniImageNet-shaped model on (fabricated) MiniImageNet; absent sets are skipped."""
    out = tmp_path / "run"
    config = cli.resolve(cli.parse_args(quick_args(out, "MiniImagenet", fake_miniimagenet)))
    learner = learner_for(cli.parse_args(quick_args(out, "MiniImagenet", fake_miniimagenet)))
    out.mkdir()
    torch.save({"model": learner.model.state_dict(), "mask": None}, out / "best.pt")
    results = cross_domain(learner, config.data, str(out), 3,
                           datasets=("MiniImagenet", "TieredImagenet"))
    assert results["MiniImagenet"]["num_tasks"] == 3
    assert "TieredImagenet data not found" in results["TieredImagenet"]["error"]


def test_real_omniglot(evaluate, run_dir, omniglot_root, tmp_path):
    copy = _copy(run_dir, tmp_path)
    assert evaluate(["--run", str(copy), "--dataset", "Omniglot", "--tasks", "4",
                          "--data_folder", str(omniglot_root), "--dont_use_cuda"]) == 0
    assert json.loads((copy / "cross_domain.json").read_text())["Omniglot"]["num_tasks"] == 4
