#!/usr/bin/env bash
# The prepared GPU check (issue 3), for the device tool's machine (python3 there has torch,
# h5py, tensorboard, pytest; torchmeta and ordered-set travel as wheels in .whl/):
#
#   here, once:  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
#                  --implementation cp --platform manylinux2014_x86_64 -d .whl torchmeta==1.8.0 ordered-set
#   device run:  bash bench/gpu_check.sh PART      (carry: [".whl"]; one PART per call)
#
# PART: tests     the CUDA tests (graph capture, task streams, compile, bf16), ~3 min
#       convnet   bench/meta_step.py, ConvNet 5-way 5-shot, all variants, ~4 min
#       resnet12  the same for ResNet-12, ~4 min
#       train     2 short Strokes trainings on the GPU (eager vs all options, device sampler)
# Everything lands in $OUT (the device tool's folder that comes back), else bench/results.
set -uo pipefail
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site:${PYTHONPATH:-} || exit 1
fi
export PYTHONPATH=.:${PYTHONPATH:-}
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
day=$(date +%F)
case "${1:-tests}" in
  tests)
    timeout 400 python3 -m pytest -q -p no:cacheprovider tests/maml/test_cuda.py 2>&1 \
        | tee "$OUT/${day}_cuda_tests.log" ;;
  convnet|resnet12)
    timeout 500 python3 bench/meta_step.py --device cuda --backbones "$1" --shots 5 \
        --rounds 2 --repeats 5 --out "$OUT/${day}_h200_$1.jsonl" ;;
  train)
    for opts in "--no-cuda_graphs --num_workers 4" \
                "--amp bf16 --channels_last --compile --task_streams 4 --sampler device"; do
        rm -rf /tmp/gpu_train
        # shellcheck disable=SC2086
        timeout 240 python3 train.py --config configs/demo_strokes.json --epochs 3 \
            --batches_train 50 --batches_val 25 --batches_test 25 --test_batch_size 4 \
            --out_dir /tmp/gpu_train $opts 2>&1 | tail -4 | tee -a "$OUT/${day}_gpu_train.log"
        cp /tmp/gpu_train/results.json "$OUT/${day}_gpu_train_$(echo $opts | tr -dc 'a-z0-9_').json"
    done ;;
  *) echo "unknown part $1"; exit 2 ;;
esac
