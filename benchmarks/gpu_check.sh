#!/usr/bin/env bash
# The GPU check of the node steps, for a fresh machine with an NVIDIA GPU (and network, to set up):
#   1. a virtual environment (.venv-gpu) with the pinned requirements; PyPI's torch wheel for
#      Linux is the CUDA build, and onnxruntime is swapped for onnxruntime-gpu of the same version;
#   2. the tests marked cuda (test/test_cuda.py): both models on CUDA equal the CPU within 1e-4
#      over 300 steps, on torch and on onnxruntime's CUDA provider; a torch step synchronises only
#      to read its output; uploads come from pinned memory;
#   3. node step and model step p50/p99 of torch and onnxruntime, each on the CPU and on CUDA,
#      side by side in one run (benchmarks/bench_onnx_step.py --gpu).
# Under 5 minutes once the wheels are downloaded. With SKIP_SETUP=1 it uses $PYTHON as it is (it
# must have the requirements, torch with CUDA and onnxruntime-gpu).
#
#   benchmarks/gpu_check.sh                       # set up .venv-gpu, test, benchmark
#   SKIP_SETUP=1 PYTHON=.venv/bin/python benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv-gpu}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
    || { echo 'gpu_check: nvidia-smi found no NVIDIA GPU' >&2; exit 1; }

if [ "${SKIP_SETUP:-0}" != 1 ]; then
    ORT_VERSION=$(sed -n 's/^onnxruntime==//p' requirements.txt)
    [ -x "$VENV/bin/python" ] || "${PYTHON_SETUP:-python3.11}" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r requirements-dev.txt
    "$VENV/bin/pip" uninstall --quiet --yes onnxruntime
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "onnxruntime-gpu==$ORT_VERSION"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
    PYTHON=$VENV/bin/python
fi
PYTHON=${PYTHON:-$VENV/bin/python}

"$PYTHON" - <<'PY'
import onnxruntime
import torch

assert torch.cuda.is_available(), f'torch {torch.__version__} sees no CUDA GPU'
print(f'torch {torch.__version__} on {torch.cuda.get_device_name()}; onnxruntime '
      f'{onnxruntime.__version__} with {", ".join(onnxruntime.get_available_providers())}')
PY
"$PYTHON" -m pytest -q -m cuda -rs test/test_cuda.py
OMP_NUM_THREADS=1 "$PYTHON" benchmarks/bench_onnx_step.py --gpu --steps 1000
