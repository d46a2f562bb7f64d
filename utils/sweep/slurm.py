"""Run a sweep as one Slurm job array: one array task per run still to do.

Each submission writes ROOT/slurm/<stamp>.runs (the manifest: line i+1 holds task i's
run folder and its fresh and resume commands) and ROOT/slurm/<stamp>.sbatch, submits
the script with ``sbatch --parsable`` and appends the job id to ROOT/slurm/jobs.jsonl.
A task skips a finished run, resumes one that has a checkpoint (so a requeued or
preempted task continues: Slurm's SIGTERM before the kill makes train.py / continual.py
stop at their next step and checkpoint), else starts it; the program's output goes to
the run's log (train.log, continual.log), the task's own to ROOT/slurm/<job>_<task>.out.
Runs still queued in an earlier array (per squeue) are not submitted again.
"""
import datetime
import getpass
import json
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field

from utils.run.atomic_io import atomic_write
from utils.sweep.state import EXIT_FILE

SLURM_DIR, JOBS_FILE = "slurm", "jobs.jsonl"


@dataclass
class SlurmOptions:
    """sbatch settings; None leaves a setting to the cluster's defaults."""
    partition: str = None
    gres: str = None
    gpus: str = None
    cpus: int = None
    mem: str = None
    time: str = None
    account: str = None
    qos: str = None
    requeue: bool = False
    throttle: int = None            # at most this many array tasks at once (--array=...%K)
    extra: list = field(default_factory=list)      # more "#SBATCH ..." lines
    setup: list = field(default_factory=list)      # shell lines before the program


def _directives(options, n_tasks, job_name, out_pattern):
    lines = [f"--job-name={job_name}",
             f"--array=0-{n_tasks - 1}" + (f"%{options.throttle}" if options.throttle else ""),
             f"--output={out_pattern}", "--open-mode=append"]
    for name, value in (("partition", options.partition), ("gres", options.gres),
                        ("gpus", options.gpus), ("cpus-per-task", options.cpus),
                        ("mem", options.mem), ("time", options.time),
                        ("account", options.account), ("qos", options.qos)):
        if value is not None:
            lines.append(f"--{name}={value}")
    if options.requeue:
        lines.append("--requeue")
    out = [f"#SBATCH {line}" for line in lines]
    for line in options.extra:
        out.append(line if line.startswith("#SBATCH") else f"#SBATCH {line}")
    return out


def render_script(sweep, manifest, options, n_tasks):
    """The sbatch script for ``n_tasks`` manifest lines (a bash script)."""
    q, program = shlex.quote, sweep.program
    results, checkpoint, log = program.results, program.checkpoint, program.log
    job_name = "sweep-" + os.path.basename(sweep.root)
    out_pattern = os.path.join(sweep.root, SLURM_DIR, "%A_%a.out")
    # torch would otherwise start one thread per core of the node, not of the allocation.
    threads = ([f"export OMP_NUM_THREADS=${{OMP_NUM_THREADS:-{options.cpus}}}"]
               if options.cpus else [])
    setup = "".join(line + "\n" for line in threads + list(options.setup))
    body = f"""\
# Written by sweep.py for {sweep.root}: array task i runs line i+1 of the manifest.
cd {q(sweep.repo)} || exit 1
{setup}set -uo pipefail
manifest={q(manifest)}
IFS=$'\\t' read -r run fresh resume < <(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" "$manifest")
if [ -z "${{run:-}}" ]; then
    echo "sweep: no run for array task $SLURM_ARRAY_TASK_ID in $manifest" >&2
    exit 1
fi
if [ -f "$run/{results}" ]; then
    echo "sweep: $run is finished; nothing to do"
    exit 0
fi
mkdir -p "$run"
rm -f "$run/{EXIT_FILE}"
if [ -f "$run/{checkpoint}" ]; then eval "cmd=($resume)"; else eval "cmd=($fresh)"; fi
echo "=== sweep: $(date '+%Y-%m-%d %H:%M:%S') job ${{SLURM_ARRAY_JOB_ID}}_$SLURM_ARRAY_TASK_ID" \\
     "(restart ${{SLURM_RESTART_COUNT:-0}}) on $(hostname): ${{cmd[*]}}" >> "$run/{log}"
# Slurm signals every process of the job: {program.script} stops at its next step; this
# shell waits for it (the trap runs afterwards) to record its exit status.
trap 'echo "sweep: SIGTERM; {program.script} stops at its next step" >&2' TERM
rc=0
"${{cmd[@]}}" >> "$run/{log}" 2>&1 || rc=$?
printf '{{"returncode": %d, "executor": "slurm", "job": "%s"}}\\n' "$rc" \\
    "${{SLURM_ARRAY_JOB_ID}}_$SLURM_ARRAY_TASK_ID" > "$run/.tmp-{EXIT_FILE}"
mv -f "$run/.tmp-{EXIT_FILE}" "$run/{EXIT_FILE}"
exit "$rc"
"""
    header = ["#!/bin/bash"] + _directives(options, n_tasks, job_name, out_pattern)
    return "\n".join(header) + "\n" + body


def manifest_text(sweep, runs):
    """One line per task: run folder, fresh command, resume command (tab-separated)."""
    lines = []
    for run in runs:
        fields = [sweep.shown_dir(run), sweep.quoted(sweep.fresh_command(run)),
                  sweep.quoted(sweep.resume_command(run))]
        if any("\t" in f or "\n" in f for f in fields):
            raise ValueError(f"{run.label}: a tab or newline in its command cannot go into "
                             "the manifest")
        lines.append("\t".join(fields))
    return "\n".join(lines) + "\n"


def write_submission(sweep, runs, options):
    """Write the manifest and the script; return the script's path."""
    folder = os.path.join(sweep.root, SLURM_DIR)
    os.makedirs(folder, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base, n = os.path.join(folder, stamp), 1
    while os.path.exists(base + ".runs"):
        n += 1
        base = os.path.join(folder, f"{stamp}-{n}")
    script = base + ".sbatch"
    for path, text in ((base + ".runs", manifest_text(sweep, runs)),
                       (script, render_script(sweep, base + ".runs", options, len(runs)))):
        atomic_write(path, lambda f, text=text: f.write(text), mode="w")
    return script


def submit(sweep, script, sbatch="sbatch"):
    """Submit with ``sbatch --parsable``; record and return the job id."""
    if shutil.which(sbatch) is None:
        raise RuntimeError(f"{sbatch} not found: run this on a Slurm login node, or use "
                           "--dry-run to write the script only")
    out = subprocess.run([sbatch, "--parsable", script], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"sbatch failed ({out.returncode}): {out.stderr.strip()}")
    job_id = out.stdout.strip().split(";")[0]
    record = {"job_id": job_id, "script": script,
              "manifest": os.path.splitext(script)[0] + ".runs",
              "submitted": datetime.datetime.now().isoformat(timespec="seconds")}
    with open(os.path.join(sweep.root, SLURM_DIR, JOBS_FILE), "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    return job_id


def _submissions(root):
    try:
        with open(os.path.join(root, SLURM_DIR, JOBS_FILE), encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        return []


def queue_states(sweep):
    """{absolute run folder: squeue state code (PD, R, ...)} of this sweep's array tasks
    still known to Slurm ({} without squeue or submissions)."""
    jobs = {str(j["job_id"]): j["manifest"] for j in _submissions(sweep.root)}
    if not jobs or shutil.which("squeue") is None:
        return {}
    out = subprocess.run(["squeue", "-h", "--array", "-u", getpass.getuser(),
                          "-o", "%F %K %t"], capture_output=True, text=True)
    states = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) != 3 or parts[0] not in jobs or not parts[1].isdigit():
            continue
        try:
            with open(jobs[parts[0]], encoding="utf-8") as f:
                run = f.read().splitlines()[int(parts[1])].split("\t")[0]
        except (OSError, IndexError):
            continue
        states[os.path.normpath(os.path.join(sweep.repo, run))] = parts[2]
    return states
