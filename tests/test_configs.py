"""configs/: every file parses and builds; the table cells are complete and faithful.

The ConvNet/ResNet-12 table cells must say what they run (backbone, shots, method) and
quote the paper's number; the cells with an original command must match that command's
flags (``run_sparse_MAML.sh --original --dry-run``) except the 1-shot bug; the quick
configs must train end to end on CPU.
"""
import json
import shlex
import subprocess
from pathlib import Path

import pytest
import torch

from tests.conftest import learner_for
from utils import cli
from utils.report import PAPER

REPO = Path(__file__).resolve().parents[1]
# configs/continual/ holds continual.py configs (tests/test_continual.py checks them)
CONFIGS = sorted(p for p in (REPO / "configs").rglob("*.json") if "continual" not in p.parts)
TABLE = sorted((REPO / "configs" / "miniimagenet").glob("*.json"))
QUICK = sorted((REPO / "configs" / "quick").glob("*.json"))
BACKBONES = {"convnet": ("ConvNet", False), "resnet12": ("ResNet-12", True)}
METHODS = ("maml", "anil", "boil", "sparse-maml", "sparse-relu-maml")
PLUS = ("convnet_5shot_sparse-maml-plus", "convnet_1shot_sparse-maml-plus")
# Run-management and logging flags: not part of what a cell trains.
BOOKKEEPING = {"config", "out_dir", "seed", "resume"}


def _id(path):
    return f"{path.parent.name}/{path.stem}"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny CPU models run far faster on one thread than on oversubscribed cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _args(path, *extra):
    return cli.parse_args(["--config", str(path), "--dont_use_cuda", *extra])


def _doc(path):
    return json.loads(path.read_text())


def test_config_files_exist():
    assert len(TABLE) == 20 + len(PLUS)
    assert len(QUICK) >= 6


@pytest.mark.parametrize("path", CONFIGS, ids=_id)
def test_every_config_parses_and_builds(path):
    args = _args(path)
    learner = learner_for(args)
    assert sum(p.numel() for p in learner.model.parameters()) > 0
    assert (learner.mask is not None) == (args.gradient_mask or args.weight_mask)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
@pytest.mark.parametrize("shots", (5, 1))
@pytest.mark.parametrize("method", METHODS)
def test_table_cell(backbone, shots, method):
    cell = f"{backbone}_{shots}shot_{method}"
    path = REPO / "configs" / "miniimagenet" / f"{cell}.json"
    assert path.is_file(), f"missing table cell {cell}"
    doc, args = _doc(path), _args(path)
    name, resnet = BACKBONES[backbone]
    assert (args.dataset, args.num_ways, args.num_shots_test) == ("MiniImagenet", 5, 15)
    assert (args.resnet, args.big_resnet, args.num_shots_train) == (resnet, False, shots)
    assert args.method == method
    assert doc["_cell"] == cell
    assert doc["_paper_accuracy"] == PAPER[(name, shots)][method]
    assert doc["_source"] and isinstance(doc["_notes"], list) and doc["_notes"]
    assert args.checkpoint_models        # classifier.pth/mask.pth, as the original


@pytest.mark.parametrize("cell", PLUS)
def test_plus_configs_use_sgd(cell):
    args = _args(REPO / "configs" / "miniimagenet" / f"{cell}.json")
    assert args.gradient_mask and args.gradient_mask_plus
    assert (args.optimizer_theta, args.optimizer_mask, args.momentum) == ("SGD", "SGD", 0.9)
    assert args.method == "sparse-maml-plus"      # reported apart from sparse-MAML


@pytest.mark.parametrize("path", CONFIGS, ids=_id)
def test_shots_in_name_match_the_flags(path):
    args = _args(path)
    if "1shot" in path.stem:
        assert args.num_shots_train == 1
    if "5shot" in path.stem:
        assert args.num_shots_train == 5
    if path.parent.name == "miniimagenet":
        assert _doc(path)["_cell"] == path.stem


def _original_commands():
    """{cell: train.py flags} of the authors' commands, from the run script's dry run."""
    out = subprocess.run(["bash", str(REPO / "run_sparse_MAML.sh"), "--original", "--dry-run"],
                         capture_output=True, text=True, check=True).stdout
    commands = {}
    for line in out.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        words = shlex.split(line)
        flags = words[2:words.index("--seed")]
        commands[Path(words[words.index("--out_dir") + 1]).parent.name] = flags
    return commands


def test_cells_with_an_original_command_match_it():
    commands = _original_commands()
    assert len(commands) == 8
    for cell, flags in commands.items():
        ours = vars(_args(REPO / "configs" / "miniimagenet" / f"{cell}.json"))
        theirs = vars(cli.parse_args(flags + ["--dont_use_cuda"]))
        differ = {k for k in ours if ours[k] != theirs[k]} - BOOKKEEPING
        # The one intended difference: the original's "1-shot" ConvNet runs are 5-shot.
        expected = {"num_shots_train"} if cell.startswith("convnet_1shot") else set()
        assert differ == expected, cell
        if expected:
            assert (ours["num_shots_train"], theirs["num_shots_train"]) == (1, 5)


@pytest.mark.parametrize("path", QUICK, ids=_id)
def test_quick_config_trains_end_to_end(path, tmp_path, zygote):
    out = tmp_path / "run"
    argv = ["--config", str(path), "--dont_use_cuda", "--out_dir", str(out)]
    assert zygote.run("train.py", argv).code == 0
    results = json.loads((out / "results.json").read_text())
    args = _args(path)
    assert results["num_test_tasks"] == args.batches_test * args.test_batch_size
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    test_rows = {r["epoch"]: r["accuracy"] for r in rows if r["phase"] == "test"}
    assert test_rows[results["best_epoch"]] == pytest.approx(results["test_accuracy"])
    assert (out / "best.pt").is_file() and (out / "classifier.pth").is_file()
    recorded = json.loads((out / "config.json").read_text())["args"]
    assert recorded["dataset"] == "Strokes"
    assert recorded["method"] == _args(path).method


@pytest.mark.parametrize("path", CONFIGS, ids=_id)
def test_paper_configs_run_fp32_and_cpu_configs_pick_their_precision(path):
    """The table cells (and Finn et al.'s Omniglot budgets) stay faithful: fp32, no
    layout change. What a CPU user runs first (the demo, the quick configs, the Omniglot
    quick run) asks for ``--amp auto``: bf16 only where the device computes it natively."""
    flags = json.loads(path.read_text())
    cpu_first = path.parent.name == "quick" or "quick" in path.stem or "demo" in path.stem
    if cpu_first:
        assert flags.get("amp") == "auto"
    else:
        assert flags.get("amp", "none") == "none" and not flags.get("channels_last", False)
