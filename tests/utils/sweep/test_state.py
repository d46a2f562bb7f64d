"""Run states from the folder alone: results, a live lock (held by another process),
the recorded exit status, a checkpoint; with each program's file names."""
import subprocess
import sys

import pytest

from utils.sweep.programs import PROGRAMS
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
f = open(sys.argv[1] + "/" + sys.argv[2], "a")
fcntl.lockf(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)    # as utils.run.run_folder.RunFolder
print("locked", flush=True)
sys.stdin.read()
"""

programs = pytest.mark.parametrize("program", PROGRAMS.values(), ids=list(PROGRAMS))


@programs
def test_nothing_is_pending(tmp_path, program):
    assert run_state(str(tmp_path / "absent"), program) == PENDING
    (tmp_path / "config.json").write_text("{}")        # stopped before training
    assert run_state(str(tmp_path), program) == PENDING


@programs
def test_results_mean_done(tmp_path, program):
    (tmp_path / program.checkpoint).write_bytes(b"x")
    (tmp_path / program.results).write_text("{}")
    record_exit(str(tmp_path), 1, "local")
    assert run_state(str(tmp_path), program) == DONE


@programs
def test_checkpoint_without_exit_record_is_stopped(tmp_path, program):
    (tmp_path / program.checkpoint).write_bytes(b"x")
    assert run_state(str(tmp_path), program) == STOPPED


@programs
def test_recorded_exit_decides_stopped_or_failed(tmp_path, program):
    folder = str(tmp_path)
    for code, state in ((130, STOPPED), (143, STOPPED), (-15, STOPPED), (1, FAILED),
                        (2, FAILED), (-9, FAILED)):
        record_exit(folder, code, "slurm")
        assert recorded_exit(folder) == code
        assert run_state(folder, program) == state, code
    clear_exit(folder)
    clear_exit(folder)                  # twice is fine
    assert recorded_exit(folder) is None and run_state(folder, program) == PENDING


@programs
def test_a_lock_held_by_a_live_process_is_running_and_dies_with_it(tmp_path, program):
    (tmp_path / program.checkpoint).write_bytes(b"x")
    assert not is_locked(str(tmp_path), program.lock)
    hold = [sys.executable, "-c", HOLD_LOCK, str(tmp_path), program.lock]
    holder = subprocess.Popen(hold, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert is_locked(str(tmp_path), program.lock)
        assert run_state(str(tmp_path), program) == RUNNING
        # and a second run would still be refused
        probe = subprocess.run(hold, input="", capture_output=True, text=True)
        assert probe.returncode != 0
    finally:
        holder.kill()
        holder.wait()
    assert not is_locked(str(tmp_path), program.lock)
    assert run_state(str(tmp_path), program) == STOPPED
