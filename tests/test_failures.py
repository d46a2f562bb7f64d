"""Failure and recovery of train.py, part 2: crash-safe writes, non-finite steps, and
one-paragraph errors (exit 2, no traceback) for bad input. Part 1 (tests/test_resume.py)
kills real processes and checks exact resume. Runs are ``python train.py`` processes
(tests/scripts.py); disk-full writes and non-finite steps are injected by its hooks.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

TINY = ["--dataset", "Strokes", "--method", "sparse-maml", "--seed", "3", "--hidden_size", "8",
        "--gradient_steps", "1", "--gradient_steps_test", "1", "--num_shots_test", "2",
        "--epochs", "3", "--batches_train", "3", "--batches_val", "2", "--batches_test", "2",
        "--val_after", "1", "--dont_use_cuda"]


INPROC = TINY + ["--num_workers", "0", "--epochs", "2", "--batches_train", "2"]


@pytest.fixture
def run(zygote, capsys):
    """run(argv, hooks=()) -> exit code of ``python train.py ARGV``; its stderr is printed
    to this test's stderr, so ``capsys`` sees it as if the run were in-process."""
    def run_(argv, hooks=()):
        result = zygote.run("train.py", argv, hooks)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        return result.code
    return run_


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, zygote):
    """A finished 2-epoch run with --checkpoint_models; tests copy it."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert zygote.run("train.py", INPROC + ["--checkpoint_models", "--out_dir", out]).code == 0
    return out


@pytest.fixture
def run_copy(finished_run, tmp_path):
    return shutil.copytree(finished_run, tmp_path / "run")


def clean_error(capsys, *fragments):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for fragment in fragments:
        assert str(fragment) in err, err
    return err


def checkpoint_epoch(out_dir):
    return torch.load(out_dir / "checkpoint.pt", weights_only=True)["epoch"]


def no_temp_files(out_dir):
    return not [f for f in os.listdir(out_dir) if f.startswith(".tmp-")]


def test_disk_full_while_saving_checkpoint_keeps_the_previous_one(run, tmp_path, capsys):
    out = tmp_path / "run"
    argv = INPROC + ["--out_dir", out]
    # checkpoints are written before epoch 0 and after epochs 0 and 1: the third fails
    assert run(argv, ["enospc:checkpoint.pt:3"]) == 1
    clean_error(capsys, out / "checkpoint.pt", "No space left on device",
                f"python train.py --resume --out_dir {out}")
    assert checkpoint_epoch(out) == 1 and no_temp_files(out)
    assert run(argv + ["--resume"]) == 0
    assert json.loads((out / "results.json").read_text())["epochs"] == 2


@pytest.mark.parametrize("name", ["config.json", "results.json", "best.pt", "classifier.pth"])
def test_failed_write_leaves_previous_file_and_no_temp_file(run, run_copy, capsys, name):
    state = torch.load(run_copy / "checkpoint.pt", weights_only=True)
    state["progress"]["best_val"] = -1.0        # epoch 2 is then a new best: best.pt etc.
    torch.save(state, run_copy / "checkpoint.pt")
    before = (run_copy / name).read_bytes()
    assert run(["--resume", "--out_dir", run_copy, "--epochs", "3"], [f"enospc:{name}:1"]) == 1
    clean_error(capsys, run_copy / name, "No space left on device", "previous version")
    assert (run_copy / name).read_bytes() == before and no_temp_files(run_copy)


@pytest.mark.parametrize("what, quantity", [
    ("loss", "non-finite query loss"),
    ("grad", "non-finite gradient of theta[features.layer1.conv.weight]")])
def test_nonfinite_step_stops_naming_epoch_step_and_quantity(run, tmp_path, capsys, what,
                                                             quantity):
    out = tmp_path / "run"
    # 2 steps per epoch: the 4th meta-step is epoch 1, step 1
    assert run(INPROC + ["--out_dir", out], [f"nonfinite:{what}:4"]) == 1
    clean_error(capsys, quantity, "at epoch 1, step 1", "--skip_nonfinite",
                f"python train.py --resume --out_dir {out}")
    assert checkpoint_epoch(out) == 1         # the last good checkpoint loads


def test_huge_learning_rate_is_reported(run, tmp_path, capsys):
    assert run(INPROC + ["--lr", "1e30", "--out_dir", tmp_path / "run"]) == 1
    clean_error(capsys, "non-finite", "at epoch 0, step 1")


@pytest.mark.parametrize("poison", ["2,3", "lr"])
def test_skip_nonfinite_completes_and_counts_skipped_steps(run, tmp_path, poison):
    extra = ["--lr", "1e30"] if poison == "lr" else []
    hooks = [] if poison == "lr" else [f"nonfinite:loss:{poison}"]
    out = tmp_path / "run"
    assert run(INPROC + extra + ["--skip_nonfinite", "--out_dir", out], hooks) == 0
    skipped = json.loads((out / "results.json").read_text())["skipped_steps"]
    assert skipped == 2 if poison != "lr" else skipped > 0


def _fabricate_miniimagenet(root, classes=6, images=4):
    """MiniImageNet in torchmeta's processed layout (small: 6 classes x 4 images a split)."""
    import h5py
    import numpy as np
    folder = root / "miniimagenet"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        names = [f"n{split}{c:03d}" for c in range(classes)]
        with h5py.File(folder / f"{split}_data.hdf5", "w") as f:
            group = f.create_group("datasets")
            for name in names:
                group.create_dataset(name, data=rng.integers(0, 256, (images, 84, 84, 3),
                                                             dtype=np.uint8))
        (folder / f"{split}_labels.json").write_text(json.dumps(names))
    return folder


@pytest.fixture(scope="module")
def mini_source(tmp_path_factory):
    return _fabricate_miniimagenet(tmp_path_factory.mktemp("mini_source"))


def _damage(folder, case):
    if case == "partial":
        (folder / "val_data.hdf5").unlink()
        return [folder / "val_data.hdf5"]
    if case == "corrupt_hdf5":
        (folder / "test_data.hdf5").write_bytes(os.urandom(4096))
        return [folder / "test_data.hdf5", "corrupt"]
    if case == "labels_mismatch":
        (folder / "val_labels.json").write_text(json.dumps(["nzzz1", "nzzz2", "nzzz3"]))
        return [folder / "val_labels.json", "nzzz1"]
    if case == "corrupt_labels":
        (folder / "train_labels.json").write_bytes(os.urandom(300))
        return [folder / "train_labels.json"]
    return []


@pytest.mark.parametrize("case, flags, expected", [
    ("missing", [], ["data not found", "train_data.hdf5"]),
    ("partial", [], ["data not found"]),
    ("corrupt_hdf5", [], []),
    ("labels_mismatch", [], ["does not match"]),
    ("corrupt_labels", [], ["could not be read"]),
    ("ok", ["--num_ways", "7"], ["--num_ways 7 exceeds the 6 classes"]),
    ("ok", ["--num_shots_train", "3"], ["only 4 images", "= 5"])])
def test_bad_dataset_is_one_paragraph_and_exit_2(run, mini_source, tmp_path, capsys, case, flags,
                                                 expected):
    root = tmp_path / "data"
    if case != "missing":
        shutil.copytree(mini_source, root / "miniimagenet")
    expected = expected + _damage(root / "miniimagenet", case)
    argv = INPROC + ["--dataset", "MiniImagenet", "--data_folder", root, "--num_ways", "3",
                     "--num_shots_train", "1", "--out_dir", tmp_path / "run"] + flags
    assert run(argv) == 2
    err = clean_error(capsys, "error: ", *expected)
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("flags, expected", [
    (["--epochs", "0"], "must be > 0"), (["--batches_train=-1"], "must be > 0"),
    (["--gradient_steps", "0"], "must be > 0"), (["--batch_size", "0"], "must be > 0"),
    (["--test_batch_size", "0"], "must be > 0"), (["--lr", "0"], "must be > 0"),
    (["--mask_lr=-1e-3"], "must be > 0"), (["--step_size", "0"], "must be > 0"),
    (["--dataset", "ImageNet"], "unknown value 'ImageNet'"),
    (["--method", "reptile"], "invalid choice: 'reptile'"),
    (["--optimizer_theta", "RMSprop"], "unknown value 'RMSprop'")])
def test_bad_flag_is_an_argparse_error(run, tmp_path, capsys, flags, expected):
    assert run(INPROC + ["--out_dir", tmp_path / "run"] + flags) == 2
    clean_error(capsys, expected)
    assert not (tmp_path / "run").exists()


def test_resume_without_a_run_exits_2(run, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "empty", tmp_path / "absent"):
        assert run(INPROC + ["--resume", "--out_dir", out]) == 2
        clean_error(capsys, f"--resume: no checkpoint in {out}")


def test_resume_with_corrupt_checkpoint_exits_2(run, run_copy, capsys):
    (run_copy / "checkpoint.pt").write_bytes(os.urandom(2048))
    assert run(["--resume", "--out_dir", run_copy]) == 2
    clean_error(capsys, run_copy / "checkpoint.pt", "corrupt")


@pytest.mark.parametrize("flags, expected", [
    (["--hidden_size", "16"], "backbone differs (features.layer1.conv.weight has shape "
                              "[8, 1, 3, 3] in the checkpoint, [16, 1, 3, 3] here)"),
    (["--anil"], "mask layout differs (only in the checkpoint: mask of features.layer1"),
    (["--optimizer_theta", "SGD"], "optimizer_theta is Adam in the checkpoint, SGD here"),
    (["--method", "meta-sgd"], "mask_kind is binary in the checkpoint, linear here"),
    (["--method", "maml"], "the checkpoint has a mask, this run has no mask")])
def test_resume_with_incompatible_checkpoint_says_what_differs(run, run_copy, capsys, flags,
                                                               expected):
    if "maml" in flags:     # without config.json: the flags given are all there is
        (run_copy / "config.json").unlink()
        flags = INPROC + flags
    assert run(["--resume", "--out_dir", run_copy] + flags) == 2
    clean_error(capsys, "does not fit this run", expected)


def test_out_dir_holding_another_run_is_refused(run, run_copy, tmp_path, capsys):
    before = {p.name: p.read_bytes() for p in run_copy.iterdir()}
    assert run(INPROC + ["--hidden_size", "16", "--out_dir", run_copy]) == 2
    clean_error(capsys, "already holds a run; pass --resume")
    assert {p.name: p.read_bytes() for p in run_copy.iterdir()} == before
    (tmp_path / "file").write_text("not a folder")
    assert run(INPROC + ["--out_dir", tmp_path / "file"]) == 2
    clean_error(capsys, "is a file, not a folder")


def test_out_dir_in_use_by_another_process_is_refused(run, run_copy, capsys):
    holder = subprocess.Popen(          # another process holds the run's lock
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
         "fcntl.lockf(f.fileno(), fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)",
         str(run_copy / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert run(["--resume", "--out_dir", run_copy]) == 2
    finally:
        holder.kill()
        holder.wait()
    clean_error(capsys, "in use by another training process")


def test_resume_of_a_run_without_a_preset_name(run, tmp_path):
    out = tmp_path / "run"
    flags = [f for f in INPROC if f not in ("--method", "sparse-maml")]
    assert run(flags + ["--gradient_mask", "--meta_exp", "--epochs", "1", "--out_dir", out]) == 0
    assert json.loads((out / "config.json").read_text())["args"]["method"] == "mask-exp"
    assert run(["--resume", "--out_dir", out, "--epochs", "2"]) == 0


def test_run_stopped_before_its_first_checkpoint_starts_over(run, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"args": {"seed": 3}}))
    (out / ".tmp-checkpoint.pt-dead").write_bytes(b"half")
    assert run(INPROC + ["--epochs", "1", "--resume", "--out_dir", out]) == 0
    assert "starting it from the beginning" in capsys.readouterr().err
    assert checkpoint_epoch(out) == 1 and no_temp_files(out)


def test_run_whose_first_checkpoint_failed_restarts_from_its_recorded_flags(run, tmp_path,
                                                                           capsys):
    out = tmp_path / "run"
    assert run(INPROC + ["--out_dir", out], ["enospc:checkpoint.pt:1"]) == 1
    assert not (out / "checkpoint.pt").exists() and (out / "config.json").exists()
    capsys.readouterr()
    assert run(["--resume", "--out_dir", out]) == 0        # no flags: config.json's
    assert "starting it from the beginning" in capsys.readouterr().err
    assert json.loads((out / "results.json").read_text())["epochs"] == 2


def test_checkpoint_with_code_is_refused_not_run(run, run_copy, tmp_path, capsys):
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))
    torch.save({"format": 1, "payload": Payload()}, run_copy / "checkpoint.pt")
    assert run(["--resume", "--out_dir", run_copy]) == 2
    clean_error(capsys, "corrupt or not a sparse-maml checkpoint")
    assert not marker.exists()


def test_skipped_steps_survive_a_resume(run, tmp_path):
    out = tmp_path / "run"          # epoch 0, step 0 is skipped
    assert run(INPROC + ["--skip_nonfinite", "--epochs", "1", "--out_dir", out],
               ["nonfinite:loss:1"]) == 0
    assert run(["--resume", "--out_dir", out, "--epochs", "2"]) == 0
    assert json.loads((out / "results.json").read_text())["skipped_steps"] == 1
