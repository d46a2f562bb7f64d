#!/usr/bin/env bash
# Run the continual-learning configs configs/continual/<benchmark>_<method>.json over seeds.
#
#   bash run_continual.sh [options] [CONFIG ...] [-- CONTINUAL.PY FLAGS ...]
#
#   CONFIG ...    config names or shell patterns (default: all; see --list), e.g.
#                 digits-rotations_la-maml 'digits-*' '*_sparse-*'
#   --seeds N     seeds 0..N-1 per config, passed as --seed (default 5)
#   --out ROOT    output root; each run goes to ROOT/<config>/seed<i> (default runs/continual)
#   --jobs J      local: runs at a time (default 1); slurm: array tasks at once (default:
#                 no limit); --slots K is the same
#   --dry-run     print the continual.py command line of every run still to do, run nothing
#                 (with --executor slurm: write and print the sbatch script, submit nothing)
#   --list        print the config names and exit
#   --status      print the configs x seeds table of run states and the summary, run nothing
#   --executor E  local (default): runs on this machine, --jobs at a time;
#                 slurm: one sbatch job array over the runs still to do
#   --partition P, --gres G, --gpus G, --cpus N, --mem M, --time T, --account A, --qos Q,
#   --sbatch_extra LINE, --setup SHELL, --requeue
#                 Slurm options, passed to sweep.py (see python sweep.py --help)
#   -- FLAGS      forwarded to every continual.py call (they override the config file;
#                 runs start in the repo folder, --out is relative to the caller's)
#
# The runs go through sweep.py (the configs are a grid over their files, "program":
# "continual"): a run whose folder holds results.json is skipped, one with a checkpoint
# but no results continues with --resume, so rerunning a command finishes what a stop or
# crash left. Each run's output goes to ROOT/<config>/seed<i>/continual.log; ROOT holds
# results.csv and summary.md. PYTHON selects the interpreter of sweep.py and continual.py
# (default: python). A failed run does not stop the others; the script exits 1 if any
# failed. Ctrl-C stops the runs after they checkpoint; rerun the same command to continue.
# Summarise with: python -m utils.report_continual ROOT
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=${PYTHON:-python}

SCRIPT=run_continual.sh
# shellcheck source=utils/sweep/launch.sh
source "$REPO/utils/sweep/launch.sh"

seeds=5 out=runs/continual slots="" executor=local dry_run=0 list=0
patterns=() extra=() sweep_opts=()
while (($#)); do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --) shift; extra=("$@"); break ;;
        -*) launch_option "$@"; ((taken)) || die "unknown option '$1' (continual.py flags go after --; see --help)"
            shift "$taken" ;;
        *) patterns+=("$1"); shift ;;
    esac
done
check_executor

available=()
for f in "$REPO"/configs/continual/*.json; do
    [ -e "$f" ] || die "no config files in $REPO/configs/continual"
    available+=("$(basename "$f" .json)")
done
if ((list)); then
    printf '%s\n' "${available[@]}"
    exit 0
fi
((${#patterns[@]})) || patterns=("*")
selected=()
for p in "${patterns[@]}"; do
    matched=0
    for name in "${available[@]}"; do
        # shellcheck disable=SC2053  # $p is a pattern on purpose
        if [[ $name == $p ]]; then
            matched=1
            case " ${selected[*]-} " in *" $name "*) ;; *) selected+=("$name") ;; esac
        fi
    done
    ((matched)) || die "no config matches '$p'; --list shows the names"
done

# Run from the repo (configs, continual.py and the default data folder are relative to
# it); an --out relative to the caller's folder keeps pointing there.
case "$out" in /*) ;; *) [ "$PWD" = "$REPO" ] || out="$PWD/$out" ;; esac
cd "$REPO"

# The configs as one grid over their files: sweep.py names each point after its config.
values=()
for c in "${selected[@]}"; do values+=("$(json_str "configs/continual/$c.json")"); done
grid="{\"program\": \"continual\", \"grid\": {\"config\": [$(IFS=,; echo "${values[*]}")]}}"

run_sweep "$grid" "their last checkpoints"
