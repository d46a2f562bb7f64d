"""Failure and recovery of train.py: exact resume after SIGKILL/SIGINT/SIGTERM, crash-safe
writes, non-finite steps, and one-paragraph errors (exit 2) for bad input.

Killed runs are real processes forked from a "zygote" that imported train.py once (an
import costs seconds on a busy CI machine); a hook pauses a child at a chosen point
(before a step, after a metrics row, before a checkpoint rename) so the kill lands there
deterministically. The final resume of the SIGKILL chain is a plain ``python train.py``.
"""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--dataset", "Strokes", "--method", "sparse-maml", "--seed", "3", "--hidden_size", "8",
        "--gradient_steps", "1", "--gradient_steps_test", "1", "--num_shots_test", "2",
        "--epochs", "3", "--batches_train", "3", "--batches_val", "2", "--batches_test", "2",
        "--val_after", "1", "--dont_use_cuda"]
ENV = dict(os.environ, OMP_NUM_THREADS="1")     # 2 shared cores: threads only contend

ZYGOTE = r'''
import json, os, sys, time
import torch
torch.set_num_threads(1)
import train
from maml.meta_learner import MetaLearner
from utils.metrics import RunLogger

def hold(marker):
    # announce the pause, then wait: SIGKILL ends the process here, SIGINT/SIGTERM set the flag
    open(marker, "w").close()
    while train.StopRequest.received is None:
        time.sleep(0.02)

def install(pause, marker):
    kind, *rest = pause.split(":")
    if kind == "step":          # before the n-th meta-step of this process
        calls, step = [0], MetaLearner.step
        def patched(self, batch):
            calls[0] += 1
            if calls[0] == int(rest[0]):
                hold(marker)
            return step(self, batch)
        MetaLearner.step = patched
    elif kind == "log":         # after the metrics row (epoch, phase), TensorBoard flushed
        log = RunLogger.log
        def patched(self, epoch, phase, *a, **k):
            log(self, epoch, phase, *a, **k)
            if (epoch, phase) == (int(rest[0]), rest[1]):
                self.flush()
                hold(marker)
        RunLogger.log = patched
    elif kind == "replace":     # before the n-th rename onto a file name (temp file complete)
        calls, replace = [0], os.replace
        def patched(src, dst, *a, **k):
            if os.path.basename(dst) == rest[0]:
                calls[0] += 1
                if calls[0] == int(rest[1]):
                    hold(marker)
            return replace(src, dst, *a, **k)
        os.replace = patched

for line in sys.stdin:
    cmd = json.loads(line)
    if "wait" in cmd:
        deadline = time.time() + cmd["timeout"]
        while True:
            pid, status = os.waitpid(cmd["wait"], os.WNOHANG)
            if pid or time.time() > deadline:
                break
            time.sleep(0.05)
        if not pid:
            os.killpg(cmd["wait"], 9)
            os.waitpid(cmd["wait"], 0)
        print(json.dumps({"code": os.waitstatus_to_exitcode(status) if pid else "timeout"}),
              flush=True)
        continue
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setpgid(0, 0)
            fd = os.open(cmd["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            if cmd.get("pause"):
                install(cmd["pause"], cmd["marker"])
            code = train.main(cmd["argv"])
        except SystemExit as err:
            code = err.code if isinstance(err.code, int) else 2
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    print(json.dumps({"pid": pid}), flush=True)
'''


class Zygote:
    """Forks train.main(argv) children from one process that imported train.py."""

    def __init__(self, tmp):
        self.tmp, self.count = tmp, 0
        self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE], cwd=REPO, env=ENV,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def start(self, argv, pause=None):
        self.count += 1
        log, marker = self.tmp / f"log{self.count}", self.tmp / f"paused{self.count}"
        pid = self.ask(argv=[str(a) for a in argv], log=str(log), pause=pause,
                       marker=str(marker))["pid"]
        return Child(self, pid, log, marker)

    def run(self, argv):
        return self.start(argv).wait()

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


class Child:
    def __init__(self, zygote, pid, log, marker):
        self.zygote, self.pid, self.log, self.marker = zygote, pid, log, marker

    def wait_paused(self, timeout=120):
        deadline = time.time() + timeout
        while not self.marker.exists():
            assert time.time() < deadline, "child never paused:\n" + self.output()
            time.sleep(0.02)

    def wait(self, timeout=240):
        code = self.zygote.ask(wait=self.pid, timeout=timeout)["code"]
        assert code != "timeout", "child hung:\n" + self.output()
        return code

    def output(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture(scope="module")
def zygote(tmp_path_factory):
    z = Zygote(tmp_path_factory.mktemp("zygote"))
    yield z
    z.close()


def uninterrupted(zygote, tmp_path_factory, cache, workers):
    """The reference run (computed once per worker count)."""
    if workers not in cache:
        out = tmp_path_factory.mktemp(f"reference{workers}") / "run"
        assert zygote.run(TINY + ["--num_workers", workers, "--out_dir", out]) == 0
        cache[workers] = out
    return cache[workers]


@pytest.fixture(scope="module")
def reference(zygote, tmp_path_factory):
    cache = {}
    return lambda workers: uninterrupted(zygote, tmp_path_factory, cache, workers)


def main(argv):
    """train.main in this process (flags may be paths)."""
    return train.main([str(a) for a in argv])


def metrics_rows(out_dir):
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


def tensors_equal(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(tensors_equal(x, y) for x, y in zip(a, b))
    return a == b


def scalars(out_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(out_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"]}


def assert_same_run(expected, got):
    """Bitwise-equal weights and optimizer states, identical metrics rows and results."""
    assert metrics_rows(got) == metrics_rows(expected)
    results = [json.loads((d / "results.json").read_text()) for d in (expected, got)]
    for r in results:
        r.pop("wall_clock_s")
    assert results[1] == results[0]
    for name in ("best.pt", "checkpoint.pt"):
        a, b = (torch.load(d / name, weights_only=True) for d in (expected, got))
        for key in ("model", "mask") + (("optimizer_theta", "optimizer_mask", "epoch")
                                        if name == "checkpoint.pt" else ()):
            assert tensors_equal(a[key], b[key]), f"{name}: {key} differs"
    assert not [f for f in os.listdir(got) if f.startswith(".tmp-")]


@pytest.fixture(scope="module")
def killed_chain(zygote, tmp_path_factory):
    """A run SIGKILLed at four points (resumed after each), then finished by the CLI."""
    out = tmp_path_factory.mktemp("killed") / "run"
    argv = TINY + ["--num_workers", "0", "--out_dir", out]
    resume = argv + ["--resume"]
    for args, pause in [
            (argv, "log:0:val"),                # first epoch, TensorBoard events on disk
            (resume, "step:2"),                 # mid-epoch 0 of a resumed run
            (resume, "log:1:train"),            # metrics row written, checkpoint not yet
            (resume, "replace:checkpoint.pt:2")]:   # last checkpoint's temp file written
        child = zygote.start(args, pause)
        child.wait_paused()
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait() == -signal.SIGKILL
    leftovers = [f for f in os.listdir(out) if f.startswith(".tmp-checkpoint.pt")]
    done = subprocess.run([sys.executable, "train.py"] + [str(a) for a in resume], cwd=REPO,
                          env=ENV, capture_output=True, text=True, timeout=300)
    return out, leftovers, done


def test_sigkill_anywhere_then_resume_matches_uninterrupted_run(killed_chain, reference):
    out, leftovers, done = killed_chain
    assert leftovers        # the kill inside a checkpoint write left its temp file ...
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert_same_run(reference("0"), out)        # ... which the resume removed


def test_cli_killed_after_an_epoch_with_a_loader_worker_resumes_exactly(zygote, reference,
                                                                         tmp_path):
    """Plain ``python train.py``, SIGKILLed (main process only, as the OOM killer would)
    once metrics.jsonl shows epoch 1; its orphaned loader worker exits by itself."""
    out = tmp_path / "run"
    argv = TINY + ["--num_workers", "1", "--out_dir", out]
    proc = subprocess.Popen([sys.executable, "train.py"] + [str(a) for a in argv], cwd=REPO,
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    metrics, deadline = out / "metrics.jsonl", time.time() + 240
    while not (metrics.exists() and '"epoch": 1' in metrics.read_text()):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline
        time.sleep(0.02)
    proc.kill()
    assert proc.wait() == -signal.SIGKILL
    proc.stderr.close()
    assert zygote.run(["--resume", "--out_dir", out]) == 0
    assert_same_run(reference("1"), out)


def test_sigkill_then_resume_leaves_one_tensorboard_value_per_epoch(killed_chain, reference):
    out, _, done = killed_chain
    assert done.returncode == 0, done.stderr
    assert scalars(out) == scalars(reference("0"))


@pytest.mark.parametrize("sig, workers, pause, code", [
    (signal.SIGINT, "1", "step:5", 130),        # Ctrl-C reaches the loader worker too
    (signal.SIGTERM, "1", "log:1:train", 143)])  # before validation, train worker alive
def test_signal_stops_cleanly_and_resume_matches(zygote, reference, tmp_path, sig, workers,
                                                 pause, code):
    out = tmp_path / "run"
    argv = TINY + ["--num_workers", workers, "--out_dir", out]
    child = zygote.start(argv, pause)
    child.wait_paused()
    os.killpg(child.pid, sig)       # the whole process group, as a terminal or scheduler
    assert child.wait() == code
    log = child.output()
    assert "Traceback" not in log
    assert f"Stopped by {signal.Signals(sig).name}" in log
    assert f"python train.py --resume --out_dir {out}" in log
    assert zygote.run(["--resume", "--out_dir", out]) == 0     # flags from config.json
    assert_same_run(reference(workers), out)
    assert scalars(out) == scalars(reference(workers))   # resumed after epoch 0: purged


@pytest.mark.parametrize("signalled", [True, False])
def test_runtime_error_is_a_clean_stop_only_after_a_signal(monkeypatch, tmp_path, capsys,
                                                           signalled):
    def workers_gone(args):     # what a SIGTERM to the process group does to the loader
        if signalled:
            train.StopRequest.received = signal.SIGTERM
        raise RuntimeError("DataLoader worker (pid(s) 1) exited unexpectedly")
    monkeypatch.setattr(train, "train", workers_gone)
    if not signalled:           # a real bug keeps its traceback
        with pytest.raises(RuntimeError):
            main(TINY + ["--out_dir", tmp_path / "run"])
        return
    assert main(TINY + ["--out_dir", tmp_path / "run"]) == 143
    assert "Stopped by SIGTERM" in capsys.readouterr().err


# ---- in-process runs: crash-safe writes, non-finite steps, bad input ---------------------

INPROC = TINY + ["--num_workers", "0", "--epochs", "2", "--batches_train", "2"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 2-epoch run with --checkpoint_models; tests copy it."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(INPROC + ["--checkpoint_models", "--out_dir", out]) == 0
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


def test_disk_full_while_saving_checkpoint_keeps_the_previous_one(monkeypatch, tmp_path,
                                                                  capsys):
    real_save, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and "format" in obj:
            calls.append(obj["epoch"])
            if obj["epoch"] == 2:                 # the checkpoint after epoch 1
                f.write(b"partial checkpoint bytes")
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)
    monkeypatch.setattr(torch, "save", save)
    out = tmp_path / "run"
    argv = INPROC + ["--out_dir", out]
    assert main(argv) == 1
    clean_error(capsys, out / "checkpoint.pt", "No space left on device",
                f"python train.py --resume --out_dir {out}")
    assert checkpoint_epoch(out) == 1 and no_temp_files(out)
    monkeypatch.undo()
    assert main(argv + ["--resume"]) == 0
    assert json.loads((out / "results.json").read_text())["epochs"] == 2


def fail_fsync_of(monkeypatch, name):
    """fsync of the temporary file of ``name`` fails: its bytes are written, not committed."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc to tell files apart")
    real_fsync = os.fsync

    def fsync(fd):
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(f".tmp-{name}-"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)
    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize("name", ["config.json", "results.json", "best.pt", "classifier.pth"])
def test_failed_write_leaves_previous_file_and_no_temp_file(monkeypatch, run_copy, capsys,
                                                            name):
    state = torch.load(run_copy / "checkpoint.pt", weights_only=True)
    state["progress"]["best_val"] = -1.0        # epoch 2 is then a new best: best.pt etc.
    torch.save(state, run_copy / "checkpoint.pt")
    before = (run_copy / name).read_bytes()
    fail_fsync_of(monkeypatch, name)
    assert main(["--resume", "--out_dir", run_copy, "--epochs", "3"]) == 1
    clean_error(capsys, run_copy / name, "No space left on device", "previous version")
    assert (run_copy / name).read_bytes() == before and no_temp_files(run_copy)


def poison_steps(monkeypatch, bad_calls, what):
    """Meta-steps number ``bad_calls`` (1-based) get a NaN query loss or theta gradient."""
    from maml.fast import FastEngine
    real, calls = FastEngine.train_tasks, [0]

    def train_tasks(self, tasks, steps):
        loss, accuracies = real(self, tasks, steps)
        calls[0] += 1
        if calls[0] in bad_calls:
            if what == "loss":
                loss = loss * float("nan")
            else:
                next(self.model.parameters()).grad.fill_(float("inf"))
        return loss, accuracies
    monkeypatch.setattr(FastEngine, "train_tasks", train_tasks)


@pytest.mark.parametrize("what, quantity", [
    ("loss", "non-finite query loss"),
    ("grad", "non-finite gradient of theta[features.layer1.conv.weight]")])
def test_nonfinite_step_stops_naming_epoch_step_and_quantity(monkeypatch, tmp_path, capsys,
                                                             what, quantity):
    poison_steps(monkeypatch, {4}, what)      # 2 steps per epoch: epoch 1, step 1
    out = tmp_path / "run"
    assert main(INPROC + ["--out_dir", out]) == 1
    clean_error(capsys, quantity, "at epoch 1, step 1", "--skip_nonfinite",
                f"python train.py --resume --out_dir {out}")
    assert checkpoint_epoch(out) == 1         # the last good checkpoint loads


def test_huge_learning_rate_is_reported(tmp_path, capsys):
    assert main(INPROC + ["--lr", "1e30", "--out_dir", tmp_path / "run"]) == 1
    clean_error(capsys, "non-finite", "at epoch 0, step 1")


@pytest.mark.parametrize("poison", [{2, 3}, "lr"])
def test_skip_nonfinite_completes_and_counts_skipped_steps(monkeypatch, tmp_path, poison):
    extra = ["--lr", "1e30"] if poison == "lr" else []
    if poison != "lr":
        poison_steps(monkeypatch, poison, "loss")
    out = tmp_path / "run"
    assert main(INPROC + extra + ["--skip_nonfinite", "--out_dir", out]) == 0
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
def test_bad_dataset_is_one_paragraph_and_exit_2(mini_source, tmp_path, capsys, case, flags,
                                                 expected):
    root = tmp_path / "data"
    if case != "missing":
        shutil.copytree(mini_source, root / "miniimagenet")
    expected = expected + _damage(root / "miniimagenet", case)
    argv = INPROC + ["--dataset", "MiniImagenet", "--data_folder", root, "--num_ways", "3",
                     "--num_shots_train", "1", "--out_dir", tmp_path / "run"] + flags
    assert main(argv) == 2
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
def test_bad_flag_is_an_argparse_error(tmp_path, capsys, flags, expected):
    with pytest.raises(SystemExit) as exit_:
        main(INPROC + ["--out_dir", tmp_path / "run"] + flags)
    assert exit_.value.code == 2
    clean_error(capsys, expected)
    assert not (tmp_path / "run").exists()


def test_resume_without_a_run_exits_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "empty", tmp_path / "absent"):
        assert main(INPROC + ["--resume", "--out_dir", out]) == 2
        clean_error(capsys, f"--resume: no checkpoint in {out}")


def test_resume_with_corrupt_checkpoint_exits_2(run_copy, capsys):
    (run_copy / "checkpoint.pt").write_bytes(os.urandom(2048))
    assert main(["--resume", "--out_dir", run_copy]) == 2
    clean_error(capsys, run_copy / "checkpoint.pt", "corrupt")


@pytest.mark.parametrize("flags, expected", [
    (["--hidden_size", "16"], "backbone differs (features.layer1.conv.weight has shape "
                              "[8, 1, 3, 3] in the checkpoint, [16, 1, 3, 3] here)"),
    (["--anil"], "mask layout differs (only in the checkpoint: mask of features.layer1"),
    (["--optimizer_theta", "SGD"], "optimizer_theta is Adam in the checkpoint, SGD here"),
    (["--method", "meta-sgd"], "mask_kind is binary in the checkpoint, linear here"),
    (["--method", "maml"], "the checkpoint has a mask, this run has no mask")])
def test_resume_with_incompatible_checkpoint_says_what_differs(run_copy, capsys, flags,
                                                               expected):
    if "maml" in flags:     # without config.json: the flags given are all there is
        (run_copy / "config.json").unlink()
        flags = INPROC + flags
    assert main(["--resume", "--out_dir", run_copy] + flags) == 2
    clean_error(capsys, "does not fit this run", expected)


def test_out_dir_holding_another_run_is_refused(run_copy, tmp_path, capsys):
    before = {p.name: p.read_bytes() for p in run_copy.iterdir()}
    assert main(INPROC + ["--hidden_size", "16", "--out_dir", run_copy]) == 2
    clean_error(capsys, "already holds a run; pass --resume")
    assert {p.name: p.read_bytes() for p in run_copy.iterdir()} == before
    (tmp_path / "file").write_text("not a folder")
    assert main(INPROC + ["--out_dir", tmp_path / "file"]) == 2
    clean_error(capsys, "is a file, not a folder")


def test_out_dir_in_use_by_another_process_is_refused(run_copy, capsys):
    holder = subprocess.Popen(          # another process holds the run's lock
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
         "fcntl.lockf(f.fileno(), fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)",
         str(run_copy / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["--resume", "--out_dir", run_copy]) == 2
    finally:
        holder.kill()
        holder.wait()
    clean_error(capsys, "in use by another training process")


def test_resume_of_a_run_without_a_preset_name(tmp_path):
    out = tmp_path / "run"
    flags = [f for f in INPROC if f not in ("--method", "sparse-maml")]
    assert main(flags + ["--gradient_mask", "--meta_exp", "--epochs", "1", "--out_dir", out]) == 0
    assert json.loads((out / "config.json").read_text())["args"]["method"] == "mask-exp"
    assert main(["--resume", "--out_dir", out, "--epochs", "2"]) == 0


def test_run_stopped_before_its_first_checkpoint_starts_over(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"args": {"seed": 3}}))
    (out / ".tmp-checkpoint.pt-dead").write_bytes(b"half")
    assert main(INPROC + ["--epochs", "1", "--resume", "--out_dir", out]) == 0
    assert "starting it from the beginning" in capsys.readouterr().err
    assert checkpoint_epoch(out) == 1 and no_temp_files(out)


def test_checkpoint_with_code_is_refused_not_run(run_copy, tmp_path, capsys):
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))
    torch.save({"format": 1, "payload": Payload()}, run_copy / "checkpoint.pt")
    assert main(["--resume", "--out_dir", run_copy]) == 2
    clean_error(capsys, "corrupt or not a sparse-maml checkpoint")
    assert not marker.exists()


def test_repository_loads_checkpoints_weights_only_and_never_uses_a_shell():
    """Static guard: every torch.load passes weights_only=True; no shell commands."""
    offenders = []
    for folder, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("tests", "runs")]
        for name in files:
            if name.endswith(".py"):
                text = open(os.path.join(folder, name), encoding="utf-8").read()
                for i, part in enumerate(text.split("torch.load(")[1:]):
                    if "weights_only=True" not in part.split(")\n")[0]:
                        offenders.append(f"{name}: torch.load #{i + 1}")
                for bad in ("shell=True", "os.system(", "os.popen(", "pickle.load",
                            "allow_pickle=True"):
                    if bad in text:
                        offenders.append(f"{name}: {bad}")
    assert not offenders
