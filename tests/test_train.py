"""End-to-end ``python train.py`` runs on tiny settings: run-folder outputs, data errors,
presets, the validation / test schedule."""
import json
import math

import pytest
import torch

from tests.conftest import learner_for
from utils import cli
from utils.cli.methods import METHODS

TB_TAGS = ("Training Loss", "Training Accuracy", "Val Accuracy", "Test Accuracy",
           "zeros (%) in group features.layer1.conv.weight", "mean zeros (%)")


def read_rows(out_dir):
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


def events_files(out_dir):
    return sorted(out_dir.glob("events.out.tfevents.*"))


@pytest.fixture(scope="module")
def mini_run(fake_miniimagenet, quick_args, tmp_path_factory, zygote):
    """(argv, out_dir, Result) of one sparse-MAML run on the fabricated MiniImageNet."""
    out_dir = tmp_path_factory.mktemp("mini") / "run"
    argv = quick_args(out_dir, "MiniImagenet", fake_miniimagenet) + [
        "--method", "sparse-maml", "--checkpoint_models"]
    return argv, out_dir, zygote.run("train.py", argv)


def test_mini_run_exits_0(mini_run):
    result = mini_run[2]
    assert result.code == 0, result.stderr
    assert "Best epoch" in result.stdout and "mean sparsity" in result.stdout


def test_config_json_holds_args_and_versions(mini_run):
    argv, out_dir, _ = mini_run
    config = json.loads((out_dir / "config.json").read_text())
    assert set(config) == {"args", "_meta"}
    args = config["args"]
    assert args["method"] == "sparse-maml" and args["gradient_mask"] is True
    assert args["dataset"] == "MiniImagenet" and args["seed"] == 0
    meta = config["_meta"]
    assert "git_commit" in meta
    for package in ("torch", "torchvision", "torchmeta"):
        assert isinstance(meta[package], str) and meta[package]
    assert not [p for p in out_dir.iterdir() if p.suffix in (".pkl", ".pickle")]


def test_metrics_rows(mini_run):
    _, out_dir, _ = mini_run
    rows = read_rows(out_dir)
    for row in rows:
        assert row["phase"] in ("train", "val", "test")
        assert 0.0 <= row["accuracy"] <= 1.0
        if row["phase"] == "train":
            assert math.isfinite(row["loss"])
            assert 0.0 <= row["sparsity"] <= 1.0
            assert "features.layer1.conv.weight" in row["sparsity_per_param"]
        else:
            assert row["ci95"] >= 0.0
    for phase in ("train", "val"):
        assert sorted(r["epoch"] for r in rows if r["phase"] == phase) == [0, 1]
    test_epochs = [r["epoch"] for r in rows if r["phase"] == "test"]
    assert test_epochs and len(set(test_epochs)) == len(test_epochs)
    assert set(test_epochs) <= {0, 1}


def test_results_json(mini_run):
    _, out_dir, _ = mini_run
    results = json.loads((out_dir / "results.json").read_text())
    for key in ("best_epoch", "test_accuracy", "test_ci95", "mean_sparsity", "sparsity",
                "wall_clock_s"):
        assert key in results
    assert results["best_epoch"] in (0, 1)
    assert 0.0 <= results["test_accuracy"] <= 1.0 and results["test_ci95"] >= 0.0
    assert 0.0 <= results["mean_sparsity"] <= 1.0
    best_train = [r for r in read_rows(out_dir)
                  if r["phase"] == "train" and r["epoch"] == results["best_epoch"]]
    assert results["sparsity"] == best_train[0]["sparsity_per_param"]
    assert results["mean_sparsity"] == pytest.approx(best_train[0]["sparsity"])
    assert results["wall_clock_s"] > 0
    best_test = [r for r in read_rows(out_dir)
                 if r["phase"] == "test" and r["epoch"] == results["best_epoch"]]
    assert best_test[0]["accuracy"] == pytest.approx(results["test_accuracy"])


def test_saved_models_load_into_model_and_mask(mini_run):
    argv, out_dir, _ = mini_run
    checkpoint = torch.load(out_dir / "checkpoint.pt", weights_only=True)
    assert checkpoint["epoch"] == 2
    learner = learner_for(cli.parse_args(argv))
    classifier = torch.load(out_dir / "classifier.pth", weights_only=True)
    mask = torch.load(out_dir / "mask.pth", weights_only=True)
    learner.model.load_state_dict(classifier)
    learner.mask.load_state_dict(mask)
    best = torch.load(out_dir / "best.pt", weights_only=True)
    for name, value in learner.model.state_dict().items():
        assert torch.equal(value, best["model"][name]), name
    learner.model.load_state_dict(checkpoint["model"])
    learner.mask.load_state_dict(checkpoint["mask"])


def test_tensorboard_scalars_and_histograms(mini_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    _, out_dir, _ = mini_run
    assert len(events_files(out_dir)) == 1
    events = EventAccumulator(str(out_dir), size_guidance={"scalars": 0, "histograms": 0})
    events.Reload()
    tags = events.Tags()
    assert set(TB_TAGS) <= set(tags["scalars"])
    rows = read_rows(out_dir)
    train_rows = [r for r in rows if r["phase"] == "train"]
    accuracy = events.Scalars("Training Accuracy")
    assert [e.step for e in accuracy] == [0, 1]
    assert [e.value for e in accuracy] == pytest.approx([r["accuracy"] for r in train_rows])
    zeros = events.Scalars("mean zeros (%)")
    assert [e.value for e in zeros] == pytest.approx(
        [100 * r["sparsity"] for r in train_rows], rel=1e-5)
    assert [e.step for e in events.Scalars("Val Accuracy")] == [0, 1]
    assert "mask logits/features.layer1.conv.weight" in tags["histograms"]


def test_existing_run_without_resume_exits_2(mini_run, zygote):
    argv, out_dir, _ = mini_run
    before = {p.name: p.read_bytes() for p in out_dir.iterdir() if p.is_file()}
    result = zygote.run("train.py", argv)
    assert result.code == 2 and "already holds a run" in result.stderr
    after = {p.name: p.read_bytes() for p in out_dir.iterdir() if p.is_file()}
    assert after == before


def test_resnet_tiny_run(fake_miniimagenet, quick_args, tmp_path, zygote):
    out_dir = tmp_path / "run"
    argv = quick_args(out_dir, "MiniImagenet", fake_miniimagenet) + [
        "--method", "sparse-relu-maml", "--resnet", "--no_bn_in_inner_loop", "--epochs", "1",
        "--batches_train", "1", "--batches_val", "1", "--batches_test", "1",
        "--batch_size", "1", "--num_ways", "2", "--num_shots_test", "1"]
    assert zygote.run("train.py", argv).code == 0
    rows = read_rows(out_dir)
    assert [r["phase"] for r in rows if r["phase"] != "test"] == ["train", "val"]
    assert json.loads((out_dir / "results.json").read_text())["method"] == "sparse-relu-maml"


def test_real_omniglot_tiny_run(omniglot_root, quick_args, tmp_path, zygote):
    out_dir = tmp_path / "run"
    argv = quick_args(out_dir, "Omniglot", omniglot_root) + ["--num_shots_test", "1"]
    assert zygote.run("train.py", argv).code == 0
    results = json.loads((out_dir / "results.json").read_text())
    assert results["method"] == "maml" and results["mean_sparsity"] is None


def test_missing_data_exits_2_with_message(quick_args, tmp_path, zygote):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = zygote.run("train.py", quick_args(tmp_path / "run", "MiniImagenet", empty))
    assert result.code == 2
    err = result.stderr
    assert "Traceback" not in err
    assert str(empty / "miniimagenet") in err and "train_data.hdf5" in err
    assert not (tmp_path / "run" / "results.json").exists()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_each_method_runs_one_epoch_on_strokes(method, quick_args, tmp_path, zygote):
    out_dir = tmp_path / "run"
    argv = quick_args(out_dir) + ["--method", method, "--epochs", "1", "--batches_train", "1",
                                  "--batches_val", "1", "--batches_test", "1",
                                  "--no-tensorboard"]
    assert zygote.run("train.py", argv).code == 0
    assert not events_files(out_dir)
    config = json.loads((out_dir / "config.json").read_text())
    assert config["args"]["method"] == method
    train_row = read_rows(out_dir)[0]
    assert train_row["phase"] == "train" and math.isfinite(train_row["loss"])
    assert ("sparsity" in train_row) == config["args"]["gradient_mask"]


def test_device_sampler_runs_reproducibly_and_resumes_exactly(fake_miniimagenet, quick_args,
                                                              tmp_path, zygote):
    """``--sampler device``: two runs of one seed agree, a different seed differs, and a
    run resumed after its first epoch ends exactly where the uninterrupted one does."""
    def summary(name):
        return [(r["phase"], r["accuracy"], r.get("loss")) for r in read_rows(tmp_path / name)]

    def run(name, *extra):
        argv = quick_args(tmp_path / name, "MiniImagenet", fake_miniimagenet) + [
            "--method", "sparse-maml", "--sampler", "device", "--epochs", "3"] + list(extra)
        assert zygote.run("train.py", argv).code == 0
        model = torch.load(tmp_path / name / "best.pt", weights_only=True)["model"]
        return summary(name), model

    def same(a, b):
        return all(torch.equal(a[name], b[name]) for name in a)

    rows, model = run("a")
    rows_b, model_b = run("b")
    assert rows_b == rows and same(model_b, model)
    rows_c, model_c = run("c", "--seed", "1")
    assert not same(model_c, model)
    first = quick_args(tmp_path / "d", "MiniImagenet", fake_miniimagenet) + [
        "--method", "sparse-maml", "--sampler", "device", "--epochs", "1"]
    assert zygote.run("train.py", first).code == 0
    assert zygote.run("train.py", ["--resume", "--out_dir", tmp_path / "d",
                                   "--epochs", "3"]).code == 0
    assert summary("d") == rows
    assert same(torch.load(tmp_path / "d" / "best.pt", weights_only=True)["model"], model)


def test_validation_and_test_gating_decide_the_best_model(quick_args, tmp_path, zygote):
    """--val_start 1 --test_start 2: validation only after epoch 1, the first test (and
    best.pt) only after epoch 2, although epoch 2's validation is the best so far."""
    out_dir = tmp_path / "run"
    argv = quick_args(out_dir) + ["--method", "sparse-maml", "--epochs", "4", "--val_after",
                                  "1", "--val_start", "1", "--test_start", "2"]
    assert zygote.run("train.py", argv).code == 0
    rows = read_rows(out_dir)
    assert [r["epoch"] for r in rows if r["phase"] == "val"] == [2, 3]
    assert [r["epoch"] for r in rows if r["phase"] == "test"] == [3]
    assert json.loads((out_dir / "results.json").read_text())["best_epoch"] == 3
    assert (out_dir / "best.pt").is_file()


def test_no_test_and_no_best_model_before_test_start(quick_args, tmp_path, zygote):
    out_dir = tmp_path / "run"
    argv = quick_args(out_dir) + ["--epochs", "2", "--test_start", "5"]
    assert zygote.run("train.py", argv).code == 0
    assert not [r for r in read_rows(out_dir) if r["phase"] == "test"]
    results = json.loads((out_dir / "results.json").read_text())
    assert results["best_epoch"] is None and results["test_accuracy"] is None
    assert not (out_dir / "best.pt").exists()
