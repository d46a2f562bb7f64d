#!/usr/bin/env bash
# Run the continual-learning configs configs/continual/<benchmark>_<method>.json over seeds.
#
#   bash run_continual.sh [options] [CONFIG ...] [-- CONTINUAL.PY FLAGS ...]
#
#   CONFIG ...    config names or shell patterns (default: all; see --list), e.g.
#                 digits-rotations_la-maml 'digits-*' '*_sparse-*'
#   --seeds N     seeds 0..N-1 per config, passed as --seed (default 5)
#   --out ROOT    output root; each run goes to ROOT/<config>/seed<i> (default runs/continual)
#   --jobs J      runs at a time (default 1)
#   --dry-run     print every continual.py command line, run nothing
#   --list        print the config names and exit
#   -- FLAGS      forwarded to every continual.py call (they override the config file;
#                 runs start in the repo folder, --out is relative to the caller's)
#
# A run whose folder already holds results.json is skipped; one with a checkpoint but
# no results is continued with --resume, so rerunning the script finishes what a stop
# or crash left. PYTHON selects the interpreter (default: python). A failed run does not
# stop the others; the script exits 1 if any failed. Summarise with:
# python -m utils.report_continual ROOT
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=${PYTHON:-python}

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
die() { echo "run_continual.sh: $*" >&2; exit 2; }
positive() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer, got '$2'"; }

seeds=5 out=runs/continual jobs=1 dry_run=0 list=0
patterns=() extra=()
while (($#)); do
    case "$1" in
        --seeds) (($# >= 2)) || die "--seeds needs a number"; positive --seeds "$2"; seeds=$2; shift 2 ;;
        --out) (($# >= 2)) || die "--out needs a folder"; out=$2; shift 2 ;;
        --jobs) (($# >= 2)) || die "--jobs needs a number"; positive --jobs "$2"; jobs=$2; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        --list) list=1; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; extra=("$@"); break ;;
        -*) die "unknown option '$1' (continual.py flags go after --; see --help)" ;;
        *) patterns+=("$1"); shift ;;
    esac
done

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

case "$out" in /*) ;; *) [ "$PWD" = "$REPO" ] || out="$PWD/$out" ;; esac
cd "$REPO"

failed=() running=0
finish_one() {      # wait for one background run; remember it if it failed
    local rc=0
    wait -n || rc=$?
    running=$((running - 1))
    if ((rc == 130 || rc == 143)); then
        echo "run_continual.sh: a run was stopped; rerun this script to continue it" >&2
        exit "$rc"
    fi
    ((rc == 0)) || failed+=("exit $rc")
}
for c in "${selected[@]}"; do
    for ((seed = 0; seed < seeds; seed++)); do
        dir="$out/$c/seed$seed"
        if [ -f "$dir/results.json" ]; then
            echo "# $c/seed$seed: done ($dir/results.json), skipped"
            continue
        fi
        if [ -f "$dir/checkpoint.pt" ]; then
            cmd=("$PY" continual.py --resume --out_dir "$dir")
        else
            cmd=("$PY" continual.py --config "configs/continual/$c.json" --seed "$seed"
                 --out_dir "$dir" ${extra[@]+"${extra[@]}"})
        fi
        if ((dry_run)); then
            printf '%q ' "${cmd[@]}" | sed 's/ $//'
            echo
            continue
        fi
        printf '$ %s\n' "${cmd[*]}"
        mkdir -p "$(dirname "$dir")"
        "${cmd[@]}" > "$dir.log" 2>&1 &
        running=$((running + 1))
        ((running < jobs)) || finish_one
    done
done
while ((running > 0)); do finish_one; done

((dry_run)) && exit 0
if ((${#failed[@]})); then
    echo "run_continual.sh: ${#failed[@]} run(s) failed (see ROOT/<config>/seed<i>.log)" >&2
fi
echo "Summarise the runs with: $PY -m utils.report_continual $(printf '%q' "$out")"
((${#failed[@]} == 0)) || exit 1
