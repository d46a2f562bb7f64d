# shellcheck shell=bash
# What run_sparse_MAML.sh and run_continual.sh share (sourced, not run): messages, the
# options both take (parsed into the caller's variables, or passed through to sweep.py)
# and the sweep.py call itself. The caller sets SCRIPT (its name in messages), PY (the
# interpreter), the defaults of seeds, out, slots, executor, dry_run and list, and the
# arrays sweep_opts and extra.

usage() {   # the comment block at the top of the calling script
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}
die() { echo "$SCRIPT: $*" >&2; exit 2; }
positive() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer, got '$2'"; }

json_str() {    # $1 as a JSON string
    local v=${1//\\/\\\\}
    v=${v//\"/\\\"}
    printf '"%s"' "$v"
}

# launch_option ARGS: when $1 is an option both scripts have, take it: --seeds, --out,
# --slots (or --jobs), --executor, --dry-run and --list set the variables of the same
# names (dry_run for --dry-run); the Slurm settings, --status and --requeue go to
# sweep_opts, passed through to sweep.py as they are. Set `taken` to the number of words
# used; 0 when $1 is none of them.
launch_option() {
    taken=0
    case "$1" in
        --seeds) (($# >= 2)) || die "--seeds needs a number"; positive --seeds "$2"; seeds=$2; taken=2 ;;
        --seeds=*) seeds=${1#*=}; positive --seeds "$seeds"; taken=1 ;;
        --out) (($# >= 2)) || die "--out needs a folder"; out=$2; taken=2 ;;
        --out=*) out=${1#*=}; taken=1 ;;
        --slots|--jobs) (($# >= 2)) || die "$1 needs a number"; positive "$1" "$2"; slots=$2; taken=2 ;;
        --slots=*|--jobs=*) slots=${1#*=}; positive "${1%%=*}" "$slots"; taken=1 ;;
        --executor) (($# >= 2)) || die "--executor needs local or slurm"; executor=$2; taken=2 ;;
        --executor=*) executor=${1#*=}; taken=1 ;;
        --dry-run) dry_run=1; taken=1 ;;
        --list) list=1; taken=1 ;;
        --status|--requeue) sweep_opts+=("$1"); taken=1 ;;
        --partition|--gres|--gpus|--cpus|--mem|--time|--account|--qos|--sbatch_extra|--setup)
            (($# >= 2)) || die "$1 needs a value"; sweep_opts+=("$1=$2"); taken=2 ;;
        --partition=*|--gres=*|--gpus=*|--cpus=*|--mem=*|--time=*|--account=*|--qos=*|--sbatch_extra=*|--setup=*)
            sweep_opts+=("$1"); taken=1 ;;
    esac
}

# check_executor: exit 2 unless the parsed --executor is local or slurm.
check_executor() {
    case "$executor" in
        local|slurm) ;;
        *) die "--executor must be local or slurm, got '$executor'" ;;
    esac
}

# run_sweep GRID KEPT: sweep.py over the grid JSON GRID with the parsed options (out,
# seeds, executor, slots, dry_run), then exit with its status; KEPT says what a stopped
# run keeps (for the message after Ctrl-C).
run_sweep() {
    # Locally one run after the other unless asked otherwise, as these scripts always did.
    if [ -z "$slots" ] && [ "$executor" = local ]; then slots=1; fi
    local cmd=("$PY" sweep.py - --out "$out" --seeds "$seeds" --python "$PY"
               --executor "$executor" ${slots:+--slots "$slots"} ${sweep_opts[@]+"${sweep_opts[@]}"})
    ((dry_run)) && cmd+=(--dry-run)
    ((${#extra[@]})) && cmd+=(-- "${extra[@]}")
    local rc=0
    "${cmd[@]}" <<< "$1" || rc=$?
    if ((rc == 130 || rc == 143)); then
        echo "$SCRIPT: stopped; the runs kept $2. Rerun the same command to continue" \
             "(finished runs are skipped, stopped ones resume)." >&2
    fi
    exit "$rc"
}
