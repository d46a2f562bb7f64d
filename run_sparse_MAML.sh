#!/usr/bin/env bash
# Reproduce the MiniImageNet table of von Oswald et al. (2021): one train.py run per table
# cell and seed, each from its config file configs/miniimagenet/<cell>.json.
#
#   bash run_sparse_MAML.sh [options] [CELL ...] [-- TRAIN.PY FLAGS ...]
#
#   CELL ...      cell ids to run (default: all; see --list), e.g. convnet_5shot_sparse-maml
#   --seeds N     seeds 0..N-1 per cell, passed as --seed (default 1)
#   --out ROOT    output root; each run goes to ROOT/<cell>/seed<i>
#                 (default runs/paper, runs/original with --original, runs/quick with --quick)
#   --dry-run     print the train.py command line of every run still to do, run nothing
#                 (with --executor slurm: write and print the sbatch script, submit nothing)
#   --list        print the cell ids and exit
#   --status      print the cells x seeds table of run states and the summary, run nothing
#   --original    the eight commands of the authors' run_sparse_MAML.sh, flags unchanged
#                 (their 1-shot ConvNet bug included), plus --seed and --out_dir
#   --quick       the CPU smoke configs of configs/quick/ (Strokes, seconds each)
#   --executor E  local (default): runs on this machine, --slots at a time;
#                 slurm: one sbatch job array over the runs still to do
#   --slots K     local: runs at once, one per GPU (default 1: one run after the other);
#                 slurm: array tasks at once (default: no limit)
#   --partition P, --gres G, --gpus G, --cpus N, --mem M, --time T, --account A, --qos Q,
#   --sbatch_extra LINE, --setup SHELL, --requeue
#                 Slurm options, passed to sweep.py (see python sweep.py --help)
#   -- FLAGS      forwarded to every train.py call (they override the config file)
#                 (runs start in the repo folder: relative paths in FLAGS, such as
#                 --data_folder, are relative to it; --out is relative to the caller's)
#
# The runs go through sweep.py (the cells are a grid over their config files): rerunning
# a command skips finished runs and resumes unfinished ones. PYTHON selects the
# interpreter of sweep.py and train.py (default: python). A failed run does not stop the others; the
# script exits 1 if any failed. Ctrl-C stops the runs after they checkpoint; rerun the
# same command to continue. Summarise with: python -m utils.report ROOT
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=${PYTHON:-python}

# The authors' eight commands (Johswald/learning_where_to_learn, run_sparse_MAML.sh),
# keyed by the cell id they were meant for. Flags verbatim, including the bug: their
# "1-SHOT" ConvNet commands pass --num_shots_train=5, i.e. they train and test 5-shot.
ORIGINAL_IDS=(
    convnet_5shot_sparse-maml
    convnet_5shot_sparse-maml-plus
    convnet_1shot_sparse-maml
    convnet_1shot_sparse-maml-plus
    resnet12_5shot_sparse-relu-maml
    resnet12_5shot_sparse-maml
    resnet12_1shot_sparse-relu-maml
    resnet12_1shot_sparse-maml
)
CONV="--batches_train=100 --batches_test=500 --batches_val=500 --batch_size=2  --num_shots_train=5 --gradient_mask"
CONV_TAIL="--mask_lr=0.0075 --checkpoint_models --gradient_steps=35 --val_start=100 --test_start=100 --kaiming_init --tensorboard --val_after 5"
PLUS="--gradient_mask_plus --optimizer_mask=SGD --optimizer_theta=SGD"
RES="--epochs=40 --batches_train=1000 --batches_test=500 --batches_val=500 --batch_size=1"
RES_TAIL="--mask_lr=0.01 --checkpoint_models --gradient_steps=35 --val_start=10 --test_start=10 --tensorboard --val_after 1 --resnet --no_bn_in_inner_loop"
ORIGINAL_FLAGS=(
    "--epochs=400 $CONV --step_size=0.25 $CONV_TAIL"
    "--epochs=600 $CONV --step_size=0.1 $CONV_TAIL $PLUS"
    "--epochs=400 $CONV --step_size=0.1 $CONV_TAIL"          # bug: "1-SHOT", 5 shots
    "--epochs=600 $CONV --step_size=0.1 $CONV_TAIL $PLUS"    # bug: "1-SHOT", 5 shots
    "$RES  --num_shots_train=5 --gradient_mask --step_size=0.05 $RES_TAIL --meta_relu_through --meta_constant_init --clamp_outer_gradients"
    "$RES  --num_shots_train=5 --gradient_mask --step_size=0.05 $RES_TAIL --clamp_outer_gradients"
    "$RES  --num_shots_train=1 --gradient_mask --step_size=0.01 $RES_TAIL --meta_relu_through --meta_constant_init --clamp_outer_gradients"
    "$RES  --num_shots_train=1 --gradient_mask --step_size=0.05 $RES_TAIL --clamp_outer_gradients"
)

SCRIPT=run_sparse_MAML.sh
# shellcheck source=utils/sweep/launch.sh
source "$REPO/utils/sweep/launch.sh"

seeds=1 out="" dry_run=0 list=0 original=0 quick=0 executor=local slots=""
cells=() extra=() sweep_opts=()
while (($#)); do
    case "$1" in
        --original) original=1; shift ;;
        --quick) quick=1; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; extra=("$@"); break ;;
        -*) launch_option "$@"; ((taken)) || die "unknown option '$1' (train.py flags go after --; see --help)"
            shift "$taken" ;;
        *) cells+=("$1"); shift ;;
    esac
done
check_executor
((original && quick)) && die "--original and --quick exclude each other"

# Table order (rows: 5-shot/1-shot ConvNet, 5-shot/1-shot ResNet-12; columns: MAML, ANIL,
# BOIL, sparse-MAML, sparse-ReLU-MAML), then the PLUS runs; config files not named here
# (new ones) follow in name order.
TABLE_ORDER=()
for row in convnet_5shot convnet_1shot resnet12_5shot resnet12_1shot; do
    for method in maml anil boil sparse-maml sparse-relu-maml; do
        TABLE_ORDER+=("${row}_$method")
    done
done
TABLE_ORDER+=(convnet_5shot_sparse-maml-plus convnet_1shot_sparse-maml-plus)

available=()
if ((original)); then
    available=("${ORIGINAL_IDS[@]}")
else
    config_dir=$( ((quick)) && echo configs/quick || echo configs/miniimagenet)
    ids=()
    for f in "$REPO/$config_dir"/*.json; do
        [ -e "$f" ] || die "no config files in $REPO/$config_dir"
        ids+=("$(basename "$f" .json)")
    done
    for name in "${TABLE_ORDER[@]}" "${ids[@]}"; do
        [ -f "$REPO/$config_dir/$name.json" ] || continue
        case " ${available[*]-} " in *" $name "*) ;; *) available+=("$name") ;; esac
    done
fi
if ((list)); then
    printf '%s\n' "${available[@]}"
    exit 0
fi

index_of() {    # position of $1 in available, or nothing
    local i
    for i in "${!available[@]}"; do
        if [ "${available[$i]}" = "$1" ]; then echo "$i"; return; fi
    done
}
if ((${#cells[@]} == 0)); then
    cells=("${available[@]}")
fi
for c in "${cells[@]}"; do
    [ -n "$(index_of "$c")" ] || die "unknown cell '$c'; --list shows the cell ids$([ "$original" = 1 ] && echo " of --original")"
done

if [ -z "$out" ]; then
    out=runs/$( ((original)) && echo original || { ((quick)) && echo quick || echo paper; } )
fi
# Run from the repo (configs, train.py and the default data folder are relative to it);
# an --out relative to the caller's folder keeps pointing there.
case "$out" in /*) ;; *) [ "$PWD" = "$REPO" ] || out="$PWD/$out" ;; esac
cd "$REPO"

# The cells as one grid over their config files (or, with --original, over the authors'
# argument lists named by cell): sweep.py names each point after its cell.
values=()
for c in "${cells[@]}"; do
    if ((original)); then
        read -r -a words <<< "${ORIGINAL_FLAGS[$(index_of "$c")]}"
        args=()
        for w in "${words[@]}"; do args+=("$(json_str "$w")"); done
        values+=("$(json_str "$c"): [$(IFS=,; echo "${args[*]}")]")
        case "$c" in convnet_1shot_*)
            echo "# $c: the original command passes --num_shots_train=5 (its 1-shot bug): this run is 5-shot" ;;
        esac
    else
        values+=("$(json_str "$config_dir/$c.json")")
    fi
done
if ((original)); then
    grid="{\"grid\": {\"argv\": {$(IFS=,; echo "${values[*]}")}}}"
else
    grid="{\"grid\": {\"config\": [$(IFS=,; echo "${values[*]}")]}}"
fi

run_sweep "$grid" "their finished epochs"
