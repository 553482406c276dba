#!/usr/bin/env bash
# Reproduce the shipped default collision model (rnn_perception/models/default/collision.*) with the
# trainer's default recipe:
#   1. simulate the training set (seed 1),
#   2. train on it (CPU is enough: the recipe is sized for <= 15 min on 2 cores),
#   3. simulate a test set with a seed never used in training (seed 2),
#   4. evaluate on it, then install the weights and the metrics file in the package
#      (rnn_perception/models/default/) and the plots in docs/default_collision_model/.
#
#   benchmarks/train_default_collision.sh            # scratch data under a new /tmp directory
#   WORK=/tmp/collision benchmarks/train_default_collision.sh
#
# Environment: PYTHON (default .venv/bin/python), WORK (scratch directory; datasets already
# simulated there, WORK/train and WORK/test, are reused: the simulator writes a dataset under a
# temporary name and renames it when complete, and the same seed gives the same bytes),
# WORKERS (simulation processes, default 2). Timings depend on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
WORK=${WORK:-$(mktemp -d /tmp/collision_default.XXXXXX)}
WORKERS=${WORKERS:-2}
DEST=rnn_perception/models/default
PLOTS=docs/default_collision_model
TRAIN_SEED=1
TEST_SEED=2
mkdir -p "$WORK/run" "$DEST" "$PLOTS"

GENERATE_TRAIN="python -m sim dodgeball --episodes 4000 --seed $TRAIN_SEED --workers $WORKERS --out $WORK/train"
# --shards-in-memory all: the whole set in memory, as when this model was trained (the trainer
# now streams 4 shards at a time by default, in other batches).
# --camera-effects none: this model was trained before the trainer added camera effects (now its
# default; benchmarks/train_randomised_collision.sh trains the randomised model with them)
TRAIN="python -m rnn_perception train collision --data $WORK/train --camera-effects none --shards-in-memory all --out $WORK/run/collision.safetensors --quiet"
GENERATE_TEST="python -m sim dodgeball --episodes 400 --seed $TEST_SEED --workers $WORKERS --out $WORK/test"
EVALUATE="python -m rnn_perception eval collision --weights $WORK/run/collision.safetensors --data $WORK/test --json"

run() { echo "+ $*" >&2; "$PYTHON" "${@:2}"; }    # "$1" is the literal "python" of the recorded command

GENERATE_SECONDS=reused
if [ ! -d "$WORK/train" ]; then
    started=$SECONDS
    run $GENERATE_TRAIN
    GENERATE_SECONDS=$((SECONDS - started))
fi
run $TRAIN
[ -d "$WORK/test" ] || run $GENERATE_TEST
run $EVALUATE > "$WORK/test_metrics.json"

cp "$WORK/run/collision.safetensors" "$DEST/collision.safetensors"
# the step graph the onnxruntime backend loads beside the weights, made from these weights
"$PYTHON" -m rnn_perception export collision --weights "$DEST/collision.safetensors" --out "$DEST/collision.onnx"
for plot in curves roc traces; do cp "$WORK/run/collision_$plot.png" "$PLOTS/validation_$plot.png"; done
"$PYTHON" -m rnn_perception eval collision --weights "$DEST/collision.safetensors" --data "$WORK/test" \
    --traces "$PLOTS/test_traces.png" --roc "$PLOTS/test_roc.png" > "$PLOTS/test_table.txt"
"$PYTHON" - "$WORK" "$DEST/collision_metrics.json" "$GENERATE_SECONDS" "$GENERATE_TRAIN" "$TRAIN" "$GENERATE_TEST" "$EVALUATE" <<'EOF'
"""Merge the training summary and the fresh-seed test metrics into the shipped metrics file."""
import json
import sys
from pathlib import Path

work, destination, generate_seconds, *commands = sys.argv[1:]
summary = json.loads((Path(work) / 'run' / 'collision_metrics.json').read_text())
test = json.loads((Path(work) / 'test_metrics.json').read_text())
test.pop('per_episode')
summary.update(test_seed=2, test=test, generate_train_seconds=int(generate_seconds) if generate_seconds.isdigit() else None, commands=dict(zip(
    ('generate_train', 'train', 'generate_test', 'evaluate'), commands)))
Path(destination).write_text(json.dumps(summary, indent=1) + '\n')
print(f"test (seed 2): AUROC {test['auroc']:.4f}, accuracy {test['accuracy']:.2%}, lead time median "
      f"{test['lead_time_median_s']:.3f} s (p10 {test['lead_time_p10_s']:.3f} s), false alarms "
      f"{test['false_alarm_rate']:.2%}; simulating the training set: {generate_seconds} s, training "
      f"{summary['train_seconds']:.0f} s")
EOF
