"""run_sparse_MAML.sh: cell selection, seeds, output folders, --original, errors, the
Slurm executor, reruns.

Mostly ``--dry-run`` (prints the train.py command lines, runs nothing; with
``--executor slurm`` writes and prints the sbatch script); one real run of a quick
config checks that the printed commands actually work and that a rerun skips it.
"""
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "run_sparse_MAML.sh"
TABLE_CELLS = sorted(p.stem for p in (REPO / "configs" / "miniimagenet").glob("*.json"))

# The authors' run_sparse_MAML.sh (Johswald/learning_where_to_learn), flags after
# "python3 train.py", in its order: the reference the --original commands must keep.
_CONV = ("--batches_train=100 --batches_test=500 --batches_val=500 --batch_size=2 "
         "--num_shots_train=5 --gradient_mask")
_CONV_TAIL = ("--mask_lr=0.0075 --checkpoint_models --gradient_steps=35 --val_start=100 "
              "--test_start=100 --kaiming_init --tensorboard --val_after 5")
_PLUS = "--gradient_mask_plus --optimizer_mask=SGD --optimizer_theta=SGD"
_RES = "--epochs=40 --batches_train=1000 --batches_test=500 --batches_val=500 --batch_size=1"
_RES_TAIL = ("--mask_lr=0.01 --checkpoint_models --gradient_steps=35 --val_start=10 "
             "--test_start=10 --tensorboard --val_after 1 --resnet --no_bn_in_inner_loop")
ORIGINAL = [
    f"--epochs=400 {_CONV} --step_size=0.25 {_CONV_TAIL}",
    f"--epochs=600 {_CONV} --step_size=0.1 {_CONV_TAIL} {_PLUS}",
    f"--epochs=400 {_CONV} --step_size=0.1 {_CONV_TAIL}",
    f"--epochs=600 {_CONV} --step_size=0.1 {_CONV_TAIL} {_PLUS}",
    f"{_RES} --num_shots_train=5 --gradient_mask --step_size=0.05 {_RES_TAIL} "
    "--meta_relu_through --meta_constant_init --clamp_outer_gradients",
    f"{_RES} --num_shots_train=5 --gradient_mask --step_size=0.05 {_RES_TAIL} "
    "--clamp_outer_gradients",
    f"{_RES} --num_shots_train=1 --gradient_mask --step_size=0.01 {_RES_TAIL} "
    "--meta_relu_through --meta_constant_init --clamp_outer_gradients",
    f"{_RES} --num_shots_train=1 --gradient_mask --step_size=0.05 {_RES_TAIL} "
    "--clamp_outer_gradients",
]


def run(*args, env=None, cwd=REPO):
    full_env = {**os.environ, "PYTHON": sys.executable, **(env or {})}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd)


def commands(result):
    """The printed command lines, split into words (comment lines dropped)."""
    assert result.returncode == 0, result.stderr
    return [shlex.split(line) for line in result.stdout.splitlines()
            if line.strip() and not line.startswith("#")]


def value(words, flag):
    return words[words.index(flag) + 1]


def test_script_is_executable():
    assert os.access(SCRIPT, os.X_OK)


def test_list_names_every_table_config():
    listed = run("--list").stdout.split()
    assert sorted(listed) == TABLE_CELLS
    assert listed[0] == "convnet_5shot_maml"      # table order, not file-name order


def test_dry_run_prints_one_command_per_cell(tmp_path):
    cmds = commands(run("--dry-run", "--out", str(tmp_path / "root")))
    assert len(cmds) == len(TABLE_CELLS) == 22
    cells = []
    for words in cmds:
        assert words[:2] == [sys.executable, "train.py"]
        config = value(words, "--config")
        assert (REPO / config).is_file()
        cell = Path(config).stem
        assert value(words, "--seed") == "0"
        assert value(words, "--out_dir") == str(tmp_path / "root" / cell / "seed0")
        cells.append(cell)
    assert sorted(cells) == TABLE_CELLS
    assert not (tmp_path / "root").exists()        # a dry run creates nothing


def test_named_cells_only_in_the_given_order():
    cmds = commands(run("--dry-run", "resnet12_1shot_boil", "convnet_5shot_sparse-maml"))
    assert [Path(value(w, "--config")).stem for w in cmds] == [
        "resnet12_1shot_boil", "convnet_5shot_sparse-maml"]
    assert value(cmds[0], "--out_dir") == "runs/paper/resnet12_1shot_boil/seed0"


def test_seeds_multiply_the_runs():
    cmds = commands(run("--dry-run", "--seeds", "3", "convnet_1shot_maml", "resnet12_5shot_anil"))
    assert len(cmds) == 6
    assert [value(w, "--seed") for w in cmds] == ["0", "1", "2"] * 2
    assert [Path(value(w, "--out_dir")).name for w in cmds] == ["seed0", "seed1", "seed2"] * 2
    assert len({value(w, "--out_dir") for w in cmds}) == 6


def test_extra_flags_are_forwarded_and_quoted(tmp_path):
    root = tmp_path / "a b"
    python = tmp_path / "py thon"       # an interpreter path with a space
    python.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    python.chmod(0o755)
    cmds = commands(run("--dry-run", "--out", str(root), "convnet_5shot_maml", "--",
                        "--data_folder", "/data/with space", "--num_workers", "4",
                        env={"PYTHON": str(python)}))
    (words,) = cmds
    assert words[0] == str(python)
    assert words[-4:] == ["--data_folder", "/data/with space", "--num_workers", "4"]
    assert value(words, "--out_dir") == str(root / "convnet_5shot_maml" / "seed0")


def test_relative_out_is_relative_to_the_callers_folder(tmp_path):
    cmds = commands(run("--dry-run", "--out", "rel", "convnet_5shot_maml", cwd=tmp_path))
    assert value(cmds[0], "--out_dir") == str(tmp_path / "rel" / "convnet_5shot_maml" / "seed0")


def test_original_prints_the_eight_commands_unchanged():
    result = run("--original", "--dry-run")
    cmds = commands(result)
    assert len(cmds) == 8
    for words, reference in zip(cmds, ORIGINAL, strict=True):
        assert words[2:words.index("--seed")] == reference.split()
        assert words[-2:] == ["--out_dir", value(words, "--out_dir")]
    # the 1-shot bug is kept and said out loud
    notes = [line for line in result.stdout.splitlines() if line.startswith("#")]
    assert len(notes) == 2 and all("num_shots_train=5" in n for n in notes)
    assert value(cmds[2], "--out_dir") == "runs/original/convnet_1shot_sparse-maml/seed0"


def test_original_named_cell():
    cmds = commands(run("--original", "--dry-run", "resnet12_5shot_sparse-maml"))
    assert len(cmds) == 1 and cmds[0][2:cmds[0].index("--seed")] == ORIGINAL[5].split()


def test_errors_exit_non_zero_and_run_nothing():
    for args in (["--dry-run", "no_such_cell"], ["--dry-run", "--seeds", "0"],
                 ["--dry-run", "--seeds", "x"], ["--dry-run", "--bogus"],
                 ["--original", "--dry-run", "convnet_5shot_maml"],   # no original command
                 ["--original", "--quick"]):
        result = run(*args)
        assert result.returncode != 0, args
        assert "train.py" not in result.stdout, args
        assert result.stderr.strip(), args


def test_slurm_dry_run_writes_a_job_array_over_the_cells(tmp_path):
    root = tmp_path / "root"
    result = run("--original", "--executor", "slurm", "--dry-run", "--seeds", "2",
                 "--out", str(root), "--partition", "gpu", "--gres", "gpu:1",
                 "--sbatch_extra", "--constraint=a100", "--requeue",
                 "convnet_1shot_sparse-maml", "resnet12_5shot_sparse-maml")
    assert result.returncode == 0, result.stderr
    script = result.stdout[result.stdout.index("#!/bin/bash"):]
    for line in ("--array=0-3", "--partition=gpu", "--gres=gpu:1", "--constraint=a100",
                 "--requeue"):
        assert f"#SBATCH {line}\n" in script
    (manifest,) = (root / "slurm").glob("*.runs")
    lines = [line.split("\t") for line in manifest.read_text().splitlines()]
    assert [folder for folder, _, _ in lines] == [
        str(root / cell / f"seed{seed}") for cell in ("convnet_1shot_sparse-maml",
                                                     "resnet12_5shot_sparse-maml")
        for seed in (0, 1)]
    for (folder, fresh, _), reference in zip(lines, [ORIGINAL[2]] * 2 + [ORIGINAL[5]] * 2,
                                             strict=True):
        words = shlex.split(fresh)
        assert words[2:words.index("--seed")] == reference.split()
        assert words[-2:] == ["--out_dir", folder]


def test_quick_run_trains_suggests_the_report_and_a_rerun_skips_it(tmp_path):
    env = {"PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    result = run("--quick", "--out", str(tmp_path), "maml", "--", "--dont_use_cuda", env=env)
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "maml" / "seed0" / "results.json").read_text())
    assert results["test_accuracy"] is not None
    recorded = json.loads((tmp_path / "maml" / "seed0" / "config.json").read_text())["args"]
    assert recorded["seed"] == 0 and recorded["dataset"] == "Strokes"
    assert f"-m utils.report {tmp_path}" in result.stdout
    again = run("--quick", "--out", str(tmp_path), "maml", "--", "--dont_use_cuda", env=env)
    assert again.returncode == 0 and "0 to run" in again.stdout, again.stderr
    assert (tmp_path / "maml" / "seed0" / "train.log").read_text().count("=== sweep:") == 1
    status = run("--quick", "--status", "--out", str(tmp_path), "maml", "sparse-maml")
    assert status.stdout.splitlines()[1:3] == ["maml         done", "sparse-maml  pending"]
