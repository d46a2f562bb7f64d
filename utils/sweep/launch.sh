# shellcheck shell=bash
# What run_sparse_MAML.sh and run_continual.sh share (sourced, not run): messages, the
# options they pass through to sweep.py, and the sweep.py call itself. The caller sets
# SCRIPT (its name in messages), PY (the interpreter) and the arrays sweep_opts and extra.

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

# sweep_option ARGS: when $1 is an option passed through to sweep.py as it is (the
# Slurm settings, --status, --requeue), append it to sweep_opts and set `taken` to the
# number of words it used; otherwise taken=0.
sweep_option() {
    taken=0
    case "$1" in
        --status|--requeue) sweep_opts+=("$1"); taken=1 ;;
        --partition|--gres|--gpus|--cpus|--mem|--time|--account|--qos|--sbatch_extra|--setup)
            (($# >= 2)) || die "$1 needs a value"; sweep_opts+=("$1=$2"); taken=2 ;;
        --partition=*|--gres=*|--gpus=*|--cpus=*|--mem=*|--time=*|--account=*|--qos=*|--sbatch_extra=*|--setup=*)
            sweep_opts+=("$1"); taken=1 ;;
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
