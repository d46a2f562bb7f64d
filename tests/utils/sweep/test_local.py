"""The local executor's scheduling with a stand-in train.py (a script that logs when it
runs and honours SIGINT like train.py): at most K at once, one GPU per slot, Ctrl-C
forwarded once to the running runs and none started after it. The real train.py runs
under the executor in tests/test_sweep.py."""
import json
import os
import signal
import sys
import threading
import time

import pytest

from utils.sweep.grid import expand
from utils.sweep.layout import Sweep
from utils.sweep.local import LocalExecutor
from utils.sweep.programs import CONTINUAL, TRAIN
from utils.sweep.state import DONE, FAILED, PENDING, STOPPED, run_state

STAND_IN = """
import json, os, signal, sys, time
out = sys.argv[sys.argv.index("--out_dir") + 1]
os.makedirs(out, exist_ok=True)
stop = []
signal.signal(signal.SIGINT, lambda *_: stop.append(1))
t0 = time.time()
with open(os.path.join(out, "seen.json"), "w") as f:
    json.dump({"start": t0, "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
               "omp": os.environ.get("OMP_NUM_THREADS"), "cwd": os.getcwd(),
               "argv": sys.argv[1:]}, f)
while time.time() - t0 < float(os.environ.get("STAND_IN_SECONDS", "0.6")) and not stop:
    time.sleep(0.02)
if stop:
    open(os.path.join(out, "checkpoint.pt"), "w").close()
    sys.exit(130)
if "--lr" in sys.argv and sys.argv[sys.argv.index("--lr") + 1] == "0.5":
    sys.exit(1)
json.dump({"end": time.time()}, open(os.path.join(out, "results.json"), "w"))
"""


def make(tmp_path, lrs, python, program=TRAIN):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / program.script).write_text(STAND_IN)
    return Sweep(tmp_path / "root", expand({"grid": {"lr": lrs}}), range(1), repo, python,
                 program)


def seen(run):
    with open(os.path.join(run.dir, "seen.json")) as f:
        return json.load(f)


def test_at_most_k_at_once_each_on_its_gpu(tmp_path):
    sweep = make(tmp_path, [0.1, 0.2, 0.3, 0.4, 0.5], sys.executable)
    executor = LocalExecutor(sweep, slots=2, gpus=["3", "5"], out=open(os.devnull, "w"))
    assert executor.run(sweep.runs) == 1                 # lr=0.5 exits 1
    states = [run_state(r.dir, TRAIN) for r in sweep.runs]
    assert states == [DONE, DONE, DONE, DONE, FAILED]
    spans = []
    for run in sweep.runs[:4]:
        with open(os.path.join(run.dir, "results.json")) as f:
            spans.append((seen(run)["start"], json.load(f)["end"]))
    for t in (s for s, _ in spans):           # never more than 2 running at any start
        assert sum(s <= t < e for s, e in spans) <= 2
    assert sum(s < spans[0][1] for s, _ in spans) == 2      # the second slot was used
    assert {seen(r)["cuda"] for r in sweep.runs} == {"3", "5"}
    assert all(seen(r)["cwd"] == str(sweep.repo) for r in sweep.runs)
    log = open(os.path.join(sweep.runs[0].dir, "train.log")).read()
    assert log.startswith("=== sweep:") and "train.py --lr 0.1 --seed 0" in log


def test_cpu_slots_share_the_cores(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    sweep = make(tmp_path, [0.1], sys.executable)
    LocalExecutor(sweep, slots=2, gpus=[], out=open(os.devnull, "w")).run(sweep.runs)
    assert seen(sweep.runs[0])["omp"] == str(max(1, os.cpu_count() // 2))
    assert seen(sweep.runs[0])["cuda"] is None


@pytest.fixture
def python_sigint():
    """Python's own Ctrl-C handler for the test (a shell's background job starts with
    SIGINT ignored), the inherited one back afterwards."""
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, inherited)


def test_ctrl_c_stops_the_running_and_starts_nothing_more(tmp_path, monkeypatch,
                                                           python_sigint):
    monkeypatch.setenv("STAND_IN_SECONDS", "30")
    sweep = make(tmp_path, [0.1, 0.2, 0.3], sys.executable)
    executor = LocalExecutor(sweep, slots=2, gpus=[], out=open(os.devnull, "w"))

    def interrupt():
        while not all(os.path.exists(os.path.join(r.dir, "seen.json")) for r in sweep.runs[:2]):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    t0 = time.time()
    assert executor.run(sweep.runs) == 130
    assert time.time() - t0 < 20                      # did not wait for the 30 s runs
    assert [run_state(r.dir, TRAIN) for r in sweep.runs] == [STOPPED, STOPPED, PENDING]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_continual_sweep_starts_continual_py_and_logs_to_continual_log(tmp_path):
    sweep = make(tmp_path, [0.1], sys.executable, program=CONTINUAL)
    assert LocalExecutor(sweep, slots=1, gpus=[], out=open(os.devnull, "w")).run(sweep.runs) == 0
    assert run_state(sweep.runs[0].dir, CONTINUAL) == DONE
    log = open(os.path.join(sweep.runs[0].dir, "continual.log")).read()
    assert log.startswith("=== sweep:") and "continual.py --lr 0.1 --seed 0" in log
