"""continual.py as a user runs it: every method end to end on fabricated data in the
real formats, exact resume after SIGKILL (bitwise on CPU), clean stops on SIGINT /
SIGTERM, clear errors, the configs, and a learning test on the real offline digits
benchmark (run_continual.sh: tests/test_run_continual.py).

Runs are real processes forked from the session's zygote (``tests/scripts.py``); the
final resume after a SIGKILL is a plain ``python continual.py``.
"""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from maml.continual import METHODS
from tests.continual_data import write_fake_mnist, write_fake_omniglot

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS="1")
SEQUENCE_METHODS = ["online-sgd", "er", "la-maml", "sync-la-maml", "c-maml", "sparse-la-maml",
                    "sparse-relu-la-maml"]
STREAM_METHODS = ["online-sgd", "continual-maml", "continual-maml-pa", "sparse-continual-maml"]
TIMING = ("wall_clock_s", "ms_per_batch", "ms_per_step", "pretrain_s")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("continual_data")
    write_fake_mnist(root, per_class=(8, 4))
    write_fake_omniglot(root, classes=(30, 6, 6))
    return root


def sequence_flags(root, out_dir, method, seed=0):
    return ["--benchmark", "mnist-permutations", "--data_folder", root, "--method", method,
            "--num_tasks", "3", "--samples_per_task", "20", "--test_samples", "20",
            "--glances", "2", "--memories", "15", "--seed", seed, "--out_dir", out_dir,
            "--no-tensorboard", "--no-sparsity_figure"]


def stream_flags(root, out_dir, method, seed=0):
    return ["--benchmark", "osaka-omniglot", "--data_folder", root, "--method", method,
            "--pretrain_classes", "20", "--val_classes", "5", "--num_ways", "5",
            "--num_shots", "2", "--num_queries", "2", "--stream_steps", "12",
            "--prob_statio", "0.7", "--pretrain_epochs", "2", "--pretrain_batches", "2",
            "--meta_batch_size", "2", "--pretrain_val_tasks", "3", "--inner_steps", "2",
            "--pa_buffer", "3", "--backbone", "mlp", "--mlp_hidden", "16",
            "--log_every", "4", "--checkpoint_every", "5", "--seed", seed,
            "--out_dir", out_dir, "--no-tensorboard", "--no-sparsity_figure"]


def read(out_dir):
    results = json.loads((Path(out_dir) / "results.json").read_text())
    rows = [json.loads(line) for line in (Path(out_dir) / "metrics.jsonl").read_text().splitlines()]
    return results, rows


def without_timing(results):
    return {k: v for k, v in results.items() if k not in TIMING}


@pytest.mark.parametrize("method", SEQUENCE_METHODS)
def test_every_method_runs_a_task_sequence(zygote, data_root, tmp_path, method):
    out = tmp_path / "run"
    result = zygote.run("continual.py", sequence_flags(data_root, out, method))
    assert result.code == 0, result.stderr
    results, rows = read(out)
    assert results["method"] == method and len(results["R"]) == 3
    assert all(len(row) == 3 and all(0 <= a <= 1 for a in row) for row in results["R"])
    assert results["retained_accuracy"] == pytest.approx(sum(results["R"][-1]) / 3)
    assert [r["task"] for r in rows] == [-1, 0, 1, 2]
    config = json.loads((out / "config.json").read_text())
    assert config["args"]["method"] == method and "git_commit" in config["_meta"]
    assert ("sparsity_per_param" in rows[-1]) == ("maml" in method)
    assert "Retained accuracy" in result.stdout


@pytest.mark.parametrize("method", STREAM_METHODS)
def test_every_stream_method_runs_an_osaka_stream(zygote, data_root, tmp_path, method):
    out = tmp_path / "run"
    result = zygote.run("continual.py", stream_flags(data_root, out, method))
    assert result.code == 0, result.stderr
    results, rows = read(out)
    assert results["steps"] == 12 and 0 <= results["online_accuracy"] <= 1
    assert set(results["online_accuracy_per_mode"]) <= {"omniglot", "unseen-alphabets",
                                                         "rotated"}
    assert {"precision", "recall", "true_switches"} <= set(results["boundaries"])
    stream_rows = [r for r in rows if r["phase"] == "stream"]
    assert [r["step"] for r in stream_rows] == [4, 8, 12]
    pretrained = [r for r in rows if r["phase"] == "pretrain"]
    assert len(pretrained) == (2 if "continual-maml" in method else 0)
    assert ("sparsity_per_param" in stream_rows[-1]) == ("continual-maml" in method)


def test_the_convnet_backbone_tensorboard_and_the_sparsity_figure(zygote, data_root, tmp_path):
    out = tmp_path / "run"
    flags = stream_flags(data_root, out, "sparse-continual-maml")
    flags[flags.index("mlp")] = "convnet"
    flags[flags.index("--no-tensorboard")] = "--tensorboard"
    flags[flags.index("--no-sparsity_figure")] = "--sparsity_figure"
    result = zygote.run("continual.py", flags + ["--hidden_size", "4"])
    assert result.code == 0, result.stderr
    assert list(out.glob("events.out.tfevents.*"))
    assert (out / "sparsity.png").read_bytes()[:4] == b"\x89PNG"
    no_rates = tmp_path / "sgd"
    flags = stream_flags(data_root, no_rates, "online-sgd")
    flags[flags.index("--no-sparsity_figure")] = "--sparsity_figure"
    assert zygote.run("continual.py", flags).code == 0
    assert not (no_rates / "sparsity.png").exists()        # nothing learned, nothing drawn


def reference_run(zygote, flags_fn, data_root, tmp_path, method):
    out = tmp_path / "uninterrupted"
    result = zygote.run("continual.py", flags_fn(data_root, out, method, seed=3))
    assert result.code == 0, result.stderr
    return read(out)


@pytest.mark.parametrize("flags_fn,method,kill_at", [
    (sequence_flags, "sparse-la-maml", 3),      # initial, task 0, [killed writing task 1]
    (stream_flags, "continual-maml-pa", 5),     # initial, 2 pretraining epochs, step 5, [10]
])
def test_resume_after_sigkill_is_bitwise_exact(zygote, data_root, tmp_path, flags_fn, method,
                                               kill_at):
    want_results, want_rows = reference_run(zygote, flags_fn, data_root, tmp_path, method)
    out = tmp_path / "killed"
    child = zygote.start("continual.py", flags_fn(data_root, out, method, seed=3),
                         pause=f"replace:checkpoint.pt:{kill_at}")
    child.wait_paused()
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    assert not (out / "results.json").exists()
    resumed = subprocess.run([sys.executable, "continual.py", "--resume", "--out_dir", str(out)],
                             cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    got_results, got_rows = read(out)
    assert without_timing(got_results) == without_timing(want_results)
    assert got_rows == want_rows
    assert not list(out.glob(".tmp-*"))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_cleanly_and_the_run_resumes(zygote, data_root, tmp_path, signum):
    want_results, want_rows = reference_run(zygote, sequence_flags, data_root, tmp_path, "er")
    out = tmp_path / "stopped"
    child = zygote.start("continual.py", sequence_flags(data_root, out, "er", seed=3),
                         pause="replace:checkpoint.pt:2")
    child.wait_paused()
    os.kill(child.pid, signum)
    assert child.wait() == 128 + signum
    assert f"--resume --out_dir {out}" in child.stderr()
    result = zygote.run("continual.py", ["--resume", "--out_dir", out])
    assert result.code == 0, result.stderr
    got_results, got_rows = read(out)
    assert without_timing(got_results) == without_timing(want_results) and got_rows == want_rows


def test_missing_data_and_bad_combinations_exit_2(zygote, tmp_path):
    empty = tmp_path / "empty"
    result = zygote.run("continual.py", sequence_flags(empty, tmp_path / "a", "la-maml"))
    assert result.code == 2
    assert str(empty / "MNIST" / "raw") in result.stderr and "--download" in result.stderr
    result = zygote.run("continual.py", stream_flags(empty, tmp_path / "b", "continual-maml"))
    assert result.code == 2 and "data.hdf5" in result.stderr
    for method, benchmark in (("la-maml", "osaka-omniglot"), ("er", "osaka"),
                              ("continual-maml", "digits-rotations")):
        result = zygote.run("continual.py", ["--method", method, "--benchmark", benchmark,
                                             "--out_dir", tmp_path / method])
        assert result.code == 2 and "runs on" in result.stderr, result.stderr


def test_a_finished_run_folder_needs_resume(zygote, data_root, tmp_path):
    out = tmp_path / "run"
    assert zygote.run("continual.py", sequence_flags(data_root, out, "online-sgd")).code == 0
    again = zygote.run("continual.py", sequence_flags(data_root, out, "online-sgd"))
    assert again.code == 2 and "--resume" in again.stderr


CONFIGS = sorted((REPO / "configs" / "continual").glob("*.json"))


def test_every_method_and_offline_benchmark_has_configs():
    names = {p.stem for p in CONFIGS}
    for benchmark in ("digits-rotations", "digits-permutations", "mnist-rotations",
                      "mnist-permutations", "mnist-many-permutations"):
        assert {f"{benchmark}_{m}" for m in SEQUENCE_METHODS} <= names
    for benchmark in ("osaka", "osaka-omniglot"):
        assert {f"{benchmark}_{m}" for m in STREAM_METHODS} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_files_parse_and_name_their_sources(path):
    from utils.cli.continual import parse_args
    values = json.loads(path.read_text())
    assert values.get("_source") and values.get("_notes")
    args = parse_args(["--config", str(path)])
    benchmark, method = path.stem.split("_")
    assert (args.benchmark, args.method) == (benchmark, method) and method in METHODS


@pytest.mark.slow
def test_la_maml_retains_more_than_online_sgd_on_digits(zygote, tmp_path):
    """The real offline benchmark with its configs (10 permutation tasks): La-MAML's
    retained accuracy minus online SGD's was 0.14 to 0.21 for seeds 0-4
    (bench/results/2026-12-02_cpu_continual.jsonl); 5 tasks gave 0.02 to 0.13, too close
    to test. Two seeds, margin 0.10."""
    retained = {}
    for method in ("la-maml", "online-sgd"):
        for seed in (0, 1):
            out = tmp_path / f"{method}{seed}"
            config = REPO / "configs" / "continual" / f"digits-permutations_{method}.json"
            result = zygote.run("continual.py", ["--config", config, "--seed", seed,
                                                 "--out_dir", out, "--no-tensorboard",
                                                 "--no-sparsity_figure"])
            assert result.code == 0, result.stderr
            retained[method, seed] = read(out)[0]["retained_accuracy"]
    for seed in (0, 1):
        assert retained["la-maml", seed] > retained["online-sgd", seed] + 0.10, retained
