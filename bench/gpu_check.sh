#!/usr/bin/env bash
# The prepared GPU check (issue 3), for the device tool's machine (python3 there has torch,
# h5py, tensorboard, pytest; torchmeta and ordered-set travel as wheels in .whl/):
#
#   here, once:  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
#                  --implementation cp --platform manylinux2014_x86_64 -d .whl torchmeta==1.8.0 ordered-set
#   device run:  bash bench/gpu_check.sh PART      (carry: [".whl"]; one PART per call)
#
# PART, in order of priority (a 15-minute device budget holds about the first three):
#       tests     the CUDA tests (graph capture, task streams, compile, bf16), ~3 min
#       convnet   bench/meta_step.py, ConvNet 5-way 5-shot, all variants (fast-auto: what
#                 --amp auto picks on this GPU), ~4 min
#       resnet12  the same for ResNet-12, ~4 min
#       train     3 short Strokes trainings on the GPU (fp32 eager; --amp auto; all options
#                 with the device sampler)
#       continual bench/continual_step.py: per-step cost of the continual learners (La-MAML
#                 on MNIST shapes, OSAKA's Continual-MAML), for the README's cost estimate,
#                 ~2 min
# Everything lands in $OUT (the device tool's folder that comes back), else bench/results.
# Exit status: non-zero when a part failed, or when a CUDA-graph capture fell back to eager.
set -uo pipefail
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site:${PYTHONPATH:-} || exit 1
fi
export PYTHONPATH=.:${PYTHONPATH:-}
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" || exit 1
day=$(date +%F)
log="$OUT/${day}_gpu_${1:-tests}.log"
status=0
case "${1:-tests}" in
  tests)
    timeout 400 python3 -m pytest -q -p no:cacheprovider -W always tests/maml/test_cuda.py 2>&1 \
        | tee "$log"
    status=${PIPESTATUS[0]} ;;
  convnet|resnet12)
    timeout 500 python3 bench/meta_step.py --device cuda --backbones "$1" --shots 5 \
        --rounds 2 --repeats 5 --out "$OUT/${day}_h200_$1.jsonl" 2>&1 | tee "$log"
    status=${PIPESTATUS[0]} ;;
  train)
    i=0
    # the demo config asks for --amp auto: the eager baseline says --amp none
    for opts in "--amp none --no-cuda_graphs --num_workers 4" "--amp auto" \
                "--amp bf16 --channels_last --compile --task_streams 4 --sampler device"; do
        i=$((i + 1))
        rm -rf /tmp/gpu_train
        echo "== train.py $opts" | tee -a "$log"
        # shellcheck disable=SC2086
        timeout 240 python3 train.py --config configs/demo_strokes.json --epochs 3 \
            --batches_train 50 --batches_val 25 --batches_test 25 --test_batch_size 4 \
            --out_dir /tmp/gpu_train $opts 2>&1 | tee -a "$log" | tail -3
        code=${PIPESTATUS[0]}
        [ "$code" -eq 0 ] || status=$code
        cp /tmp/gpu_train/results.json "$OUT/${day}_gpu_train_$i.json" 2>/dev/null || status=1
    done ;;
  continual)
    timeout 300 python3 bench/continual_step.py --device cuda --repeats 5 2>&1 \
        | tee "$log" | grep '^{' > "$OUT/${day}_h200_continual_step.jsonl"
    status=${PIPESTATUS[0]} ;;
  *) echo "unknown part $1"; exit 2 ;;
esac
if grep -q "CUDA-graph capture failed" "$log"; then
    echo "a CUDA-graph capture fell back to eager steps (see $log)"; status=1
fi
exit "$status"
