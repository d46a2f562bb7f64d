"""The sbatch script and manifest of a job array; the script's own logic (skip a finished
run, resume one with a checkpoint, record the exit status) run by bash as one array task.
A real cluster runs it in tests/test_sweep.py."""
import json
import os
import shlex
import subprocess

from utils.sweep.grid import expand
from utils.sweep.layout import Sweep
from utils.sweep.programs import CONTINUAL, TRAIN
from utils.sweep.slurm import SlurmOptions, manifest_text, render_script, write_submission

GRID = {"flags": {"dataset": "Strokes"}, "grid": {"lr": [0.1, 0.2]}}


def make(tmp_path, python="python", extra=(), program=TRAIN):
    return Sweep(tmp_path / "root", expand(GRID), range(2), tmp_path, python, program, (), extra)


def directives(script):
    return [line[len("#SBATCH "):] for line in script.splitlines() if line.startswith("#SBATCH")]


def test_options_become_sbatch_lines(tmp_path):
    sweep = make(tmp_path)
    options = SlurmOptions(partition="gpu", gres="gpu:1", gpus="a100:1", cpus=8, mem="32G",
                           time="8:00:00", account="lab", qos="high", requeue=True, throttle=3,
                           extra=["--constraint=a100", "#SBATCH --exclusive"],
                           setup=["module load cuda"])
    script = render_script(sweep, "/m.runs", options, 4)
    assert directives(script) == [
        "--job-name=sweep-root", "--array=0-3%3",
        f"--output={tmp_path}/root/slurm/%A_%a.out", "--open-mode=append",
        "--partition=gpu", "--gres=gpu:1", "--gpus=a100:1", "--cpus-per-task=8",
        "--mem=32G", "--time=8:00:00", "--account=lab", "--qos=high", "--requeue",
        "--constraint=a100", "--exclusive"]
    assert "export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}\nmodule load cuda\n" in script
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    plain = directives(render_script(sweep, "/m.runs", SlurmOptions(), 2))
    assert plain == ["--job-name=sweep-root", "--array=0-1",
                     f"--output={tmp_path}/root/slurm/%A_%a.out", "--open-mode=append"]


def test_manifest_lines_hold_folder_fresh_and_resume_commands(tmp_path):
    sweep = make(tmp_path, extra=["--data_folder", "/my data"])
    lines = manifest_text(sweep, sweep.runs).splitlines()
    assert len(lines) == 4
    folder, fresh, resume = lines[3].split("\t")
    assert folder == sweep.shown_dir(sweep.runs[3]) == os.path.join("root", "lr=0.2", "seed1")
    assert shlex.split(fresh) == sweep.fresh_command(sweep.runs[3])
    assert shlex.split(resume) == sweep.resume_command(sweep.runs[3])


def run_task(script, task, tmp_path):
    env = dict(os.environ, SLURM_ARRAY_TASK_ID=str(task), SLURM_ARRAY_JOB_ID="77")
    return subprocess.run(["bash", script], env=env, capture_output=True, text=True,
                          cwd=tmp_path)


def test_task_starts_resumes_skips_and_records_the_exit(tmp_path):
    # "python" that only echoes its arguments: the task's choice lands in train.log
    sweep = make(tmp_path, python="echo")
    script = write_submission(sweep, sweep.runs, SlurmOptions())
    run = sweep.runs[1]
    log = os.path.join(run.dir, "train.log")
    assert run_task(script, 1, tmp_path).returncode == 0
    text = open(log).read()
    assert "job 77_1" in text
    assert "train.py --dataset Strokes --lr 0.1 --seed 1 --out_dir" in text
    assert json.load(open(os.path.join(run.dir, "sweep_exit.json")))["returncode"] == 0
    open(os.path.join(run.dir, "checkpoint.pt"), "wb").close()
    assert run_task(script, 1, tmp_path).returncode == 0
    assert open(log).read().splitlines()[-1] == "train.py --resume --out_dir root/lr=0.1/seed1"
    open(os.path.join(run.dir, "results.json"), "w").close()
    done = run_task(script, 1, tmp_path)
    assert done.returncode == 0 and "is finished" in done.stdout
    assert run_task(script, 9, tmp_path).returncode == 1          # no such line


def test_failing_run_records_its_status(tmp_path):
    sweep = make(tmp_path, python="false")
    script = write_submission(sweep, sweep.runs, SlurmOptions())
    assert run_task(script, 0, tmp_path).returncode == 1
    record = json.load(open(os.path.join(sweep.runs[0].dir, "sweep_exit.json")))
    assert record == {"returncode": 1, "executor": "slurm", "job": "77_0"}


def test_each_submission_gets_its_own_files(tmp_path):
    sweep = make(tmp_path)
    first = write_submission(sweep, sweep.runs, SlurmOptions())
    second = write_submission(sweep, sweep.runs[:1], SlurmOptions())
    assert first != second and os.path.isfile(first) and os.path.isfile(second)
    assert len(open(os.path.splitext(second)[0] + ".runs").read().splitlines()) == 1


def test_continual_task_runs_continual_py_into_its_log(tmp_path):
    sweep = make(tmp_path, python="echo", program=CONTINUAL)
    script = write_submission(sweep, sweep.runs, SlurmOptions())
    run = sweep.runs[0]
    assert run_task(script, 0, tmp_path).returncode == 0
    log = open(os.path.join(run.dir, "continual.log")).read()
    assert "continual.py --dataset Strokes --lr 0.1 --seed 0 --out_dir" in log
    assert "continual.py stops at its next step" in open(script).read()
    assert not os.path.exists(os.path.join(run.dir, "train.log"))
    open(os.path.join(run.dir, CONTINUAL.checkpoint), "wb").close()
    assert run_task(script, 0, tmp_path).returncode == 0
    assert open(os.path.join(run.dir, "continual.log")).read().splitlines()[-1] == \
        "continual.py --resume --out_dir root/lr=0.1/seed0"
