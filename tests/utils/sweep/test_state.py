"""Run states from the folder alone: results, a live lock (held by another process),
the recorded exit status, a checkpoint."""
import subprocess
import sys

from utils.sweep.state import (
    DONE,
    FAILED,
    PENDING,
    RUNNING,
    STOPPED,
    clear_exit,
    is_locked,
    record_exit,
    recorded_exit,
    run_state,
)

HOLD_LOCK = """
import fcntl, sys, time
f = open(sys.argv[1] + "/.lock", "a")
fcntl.lockf(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)    # as train.py's lock_run_folder
print("locked", flush=True)
sys.stdin.read()
"""


def test_nothing_is_pending(tmp_path):
    assert run_state(str(tmp_path / "absent")) == PENDING
    (tmp_path / "config.json").write_text("{}")        # stopped before training
    assert run_state(str(tmp_path)) == PENDING


def test_results_mean_done(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"x")
    (tmp_path / "results.json").write_text("{}")
    record_exit(str(tmp_path), 1, "local")
    assert run_state(str(tmp_path)) == DONE


def test_checkpoint_without_exit_record_is_stopped(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"x")
    assert run_state(str(tmp_path)) == STOPPED


def test_recorded_exit_decides_stopped_or_failed(tmp_path):
    folder = str(tmp_path)
    for code, state in ((130, STOPPED), (143, STOPPED), (-15, STOPPED), (1, FAILED),
                        (2, FAILED), (-9, FAILED)):
        record_exit(folder, code, "slurm")
        assert recorded_exit(folder) == code
        assert run_state(folder) == state, code
    clear_exit(folder)
    clear_exit(folder)                  # twice is fine
    assert recorded_exit(folder) is None and run_state(folder) == PENDING


def test_a_lock_held_by_a_live_process_is_running_and_dies_with_it(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"x")
    assert not is_locked(str(tmp_path))
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert is_locked(str(tmp_path)) and run_state(str(tmp_path)) == RUNNING
        # and a second train.py would still be refused
        probe = subprocess.run([sys.executable, "-c", HOLD_LOCK, str(tmp_path)],
                               input="", capture_output=True, text=True)
        assert probe.returncode != 0
    finally:
        holder.kill()
        holder.wait()
    assert not is_locked(str(tmp_path)) and run_state(str(tmp_path)) == STOPPED
