#!/usr/bin/env bash
# Reproduce the shipped default tactile model (rnn_perception/models/default/tactile.*):
#   1. simulate the training set (seed 1),
#   2. train on it (CPU is enough: minutes on one core),
#   3. simulate a test set with a seed never used in training (seed 2),
#   4. evaluate on it against the constant-velocity and zero-motion baselines, then install the
#      weights and the metrics file in the package (rnn_perception/models/default/) and the plots
#      in docs/default_tactile_model/.
#
#   benchmarks/train_default_tactile.sh            # scratch data under a new /tmp directory
#   WORK=/tmp/tactile benchmarks/train_default_tactile.sh
#
# Environment: PYTHON (default .venv/bin/python), WORK (scratch directory, must not hold the
# datasets yet), WORKERS (simulation processes, default 1). Timings depend on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
WORK=${WORK:-$(mktemp -d /tmp/tactile_default.XXXXXX)}
WORKERS=${WORKERS:-1}
DEST=rnn_perception/models/default
PLOTS=docs/default_tactile_model
TRAIN_SEED=1
TEST_SEED=2
mkdir -p "$WORK/run" "$DEST" "$PLOTS"

GENERATE_TRAIN="python -m sim tactile --episodes 2400 --seed $TRAIN_SEED --workers $WORKERS --out $WORK/train"
# --shards-in-memory all: the whole set in memory, as when this model was trained (the trainer
# now streams 4 shards at a time by default, in other batches)
TRAIN="python -m rnn_perception train tactile --data $WORK/train --out $WORK/run/tactile.safetensors --epochs 30 --shards-in-memory all --quiet"
GENERATE_TEST="python -m sim tactile --episodes 200 --seed $TEST_SEED --workers $WORKERS --out $WORK/test"
EVALUATE="python -m rnn_perception eval tactile --weights $WORK/run/tactile.safetensors --data $WORK/test --json"

run() { echo "+ $*" >&2; "$PYTHON" "${@:2}"; }    # "$1" is the literal "python" of the recorded command

started=$SECONDS
run $GENERATE_TRAIN
GENERATE_SECONDS=$((SECONDS - started))
run $TRAIN
run $GENERATE_TEST
run $EVALUATE > "$WORK/test_metrics.json"

cp "$WORK/run/tactile.safetensors" "$DEST/tactile.safetensors"
# the step graph the onnxruntime backend loads beside the weights, made from these weights
"$PYTHON" -m rnn_perception export tactile --weights "$DEST/tactile.safetensors" --out "$DEST/tactile.onnx"
for plot in curves trajectories; do cp "$WORK/run/tactile_$plot.png" "$PLOTS/validation_$plot.png"; done
"$PYTHON" -m rnn_perception eval tactile --weights "$DEST/tactile.safetensors" --data "$WORK/test" \
    --plot "$PLOTS/test_trajectories.png" > "$PLOTS/test_table.txt"
"$PYTHON" - "$WORK" "$DEST/tactile_metrics.json" "$GENERATE_SECONDS" "$TEST_SEED" "$GENERATE_TRAIN" "$TRAIN" "$GENERATE_TEST" "$EVALUATE" <<'PY'
"""Merge the training summary and the fresh-seed test metrics into the shipped metrics file."""
import json
import sys
from pathlib import Path

work, destination, generate_seconds, test_seed, *commands = sys.argv[1:]
summary = json.loads((Path(work) / 'run' / 'tactile_metrics.json').read_text())
test = json.loads((Path(work) / 'test_metrics.json').read_text())
summary.update(test_seed=int(test_seed), test=test, generate_train_seconds=int(generate_seconds), commands=dict(zip(
    ('generate_train', 'train', 'generate_test', 'evaluate'), commands)))
Path(destination).write_text(json.dumps(summary, indent=1) + '\n')
ratio = test['model_mae_deg'] / test['const_velocity_mae_deg']
worst = max(m / c for m, c in zip(test['per_step_model_mae_deg'], test['per_step_const_velocity_mae_deg']))
print(f"test (seed {test_seed}): angle error over the 20-step horizon {test['model_mae_deg']:.4f} deg vs constant "
      f"velocity {test['const_velocity_mae_deg']:.4f} (ratio {ratio:.3f}; worst step ratio {worst:.3f}) and zero "
      f"motion {test['zero_motion_mae_deg']:.4f}; position {test['model_position_mm']:.3f} mm vs "
      f"{test['const_velocity_position_mm']:.3f} mm; simulating the training set took {generate_seconds} s, "
      f"training {summary['train_seconds']:.0f} s")
PY
