#!/usr/bin/env bash
# Reproduce the shipped randomised collision model
# (rnn_perception/models/default/collision_randomised.*), the one for real cameras and rooms:
#   1. simulate the training set (seed 1) with the scene randomised (--randomise train: textures,
#      tinted light, clutter, camera jitter); the trainer adds random camera effects per epoch,
#   2. train on it from scratch with frame differences (the encoder also reads the change since
#      the previous frame, where a still camera's background cancels), 14 epochs,
#   3. fine-tune that for earlier warnings, 6 epochs at a peak learning rate of 1e-3: the
#      per-frame loss at full weight from 0.1 s after the throw, and the episode loss scoring
#      hits on their frames at least 0.5 s before contact, weighted 2,
#   4. simulate test sets with seeds never used in training: the plain scene (seed 2), the
#      held-out randomisation preset (seed 3, textures and light never used in training), and a
#      640x480 JPEG-30 and a 1280x720 JPEG-90 camera recorded as bags (seeds 4 and 5),
#   5. evaluate on each, measure the robustness table of this model and of the default
#      (benchmarks/robustness_collision.py), then install the weights, their ONNX step graph and
#      the metrics file in the package (rnn_perception/models/default/) and the plots in
#      docs/randomised_collision_model/.
#
#   benchmarks/train_randomised_collision.sh            # scratch data under a new /tmp directory
#   WORK=/tmp/collision benchmarks/train_randomised_collision.sh
#
# Environment: PYTHON (default .venv/bin/python), WORK (scratch directory; datasets, bags and a
# first training stage already there are reused: the simulator writes under a temporary name and
# renames when complete, and the same seed gives the same bytes), WORKERS (simulation processes,
# default 2). Timings depend on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
WORK=${WORK:-$(mktemp -d /tmp/collision_randomised.XXXXXX)}
WORKERS=${WORKERS:-2}
DEST=rnn_perception/models/default
PLOTS=docs/randomised_collision_model
TRAIN_SEED=1
TEST_SEED=2
mkdir -p "$WORK/base" "$WORK/run" "$DEST" "$PLOTS"

GENERATE_TRAIN="python -m sim dodgeball --episodes 4000 --seed $TRAIN_SEED --randomise train --workers $WORKERS --out $WORK/train"
TRAIN="python -m rnn_perception train collision --data $WORK/train --frame-difference --shards-in-memory all --out $WORK/base/collision.safetensors --quiet"
FINE_TUNE="python -m rnn_perception train collision --data $WORK/train --init $WORK/base/collision.safetensors --epochs 6 --lr 1e-3 --ramp-s 0.1 --warning-s 0.5 --episode-weight 2 --shards-in-memory all --out $WORK/run/collision.safetensors --quiet"
GENERATE_TEST="python -m sim dodgeball --episodes 400 --seed $TEST_SEED --workers $WORKERS --out $WORK/test"
GENERATE_HELD_OUT="python -m sim dodgeball --episodes 400 --seed 3 --randomise held_out --workers $WORKERS --out $WORK/held_out"
GENERATE_VGA="python -m sim dodgeball --episodes 200 --seed 4 --workers $WORKERS --out $WORK/vga --bag $WORK/vga.bag --bag-image jpeg --bag-jpeg-quality 30 --bag-resolution 640x480"
GENERATE_HD="python -m sim dodgeball --episodes 100 --seed 5 --workers $WORKERS --out $WORK/hd --bag $WORK/hd.bag --bag-image jpeg --bag-jpeg-quality 90 --bag-resolution 1280x720"
EVALUATE="python -m rnn_perception eval collision --weights $WORK/run/collision.safetensors --data $WORK/test --json"
EVALUATE_HELD_OUT="python -m rnn_perception eval collision --weights $WORK/run/collision.safetensors --data $WORK/held_out --json"
EVALUATE_VGA="python -m rnn_perception eval collision --weights $WORK/run/collision.safetensors --bag $WORK/vga.bag --json"

run() { echo "+ $*" >&2; "$PYTHON" "${@:2}"; }    # "$1" is the literal "python" of the recorded command

[ -f "$WORK/default.safetensors" ] || cp "$DEST/collision.safetensors" "$WORK/default.safetensors"
GENERATE_SECONDS=reused
if [ ! -d "$WORK/train" ]; then
    started=$SECONDS
    run $GENERATE_TRAIN
    GENERATE_SECONDS=$((SECONDS - started))
fi
[ -f "$WORK/base/collision.safetensors" ] || run $TRAIN
run $FINE_TUNE
[ -d "$WORK/test" ] || run $GENERATE_TEST
[ -d "$WORK/held_out" ] || run $GENERATE_HELD_OUT
[ -d "$WORK/vga.bag" ] || run $GENERATE_VGA
[ -d "$WORK/hd.bag" ] || run $GENERATE_HD
run $EVALUATE > "$WORK/test_metrics.json"
run $EVALUATE_HELD_OUT > "$WORK/held_out_metrics.json"
run $EVALUATE_VGA > "$WORK/vga_metrics.json"
for model in run/collision default; do
    "$PYTHON" benchmarks/robustness_collision.py --weights "$WORK/$model.safetensors" --data "$WORK/test" \
        --dataset "held-out randomisation (seed 3)=$WORK/held_out" \
        --bag "640x480 camera, JPEG 30 (seed 4)=$WORK/vga.bag" --bag "1280x720 camera, JPEG 90 (seed 5)=$WORK/hd.bag" \
        --out "$WORK/robustness_$(basename $model)"
done
mkdir -p "$PLOTS"
for file in robustness.json robustness.md robustness.png; do
    cp "$WORK/robustness_collision/$file" "$PLOTS/$file"
    cp "$WORK/robustness_default/$file" "$PLOTS/default_${file}"
done

cp "$WORK/run/collision.safetensors" "$DEST/collision_randomised.safetensors"
# the step graph the onnxruntime backend loads beside the weights, made from these weights
"$PYTHON" -m rnn_perception export collision --weights "$DEST/collision_randomised.safetensors" \
    --out "$DEST/collision_randomised.onnx"
for plot in curves roc traces; do cp "$WORK/run/collision_$plot.png" "$PLOTS/validation_$plot.png"; done
"$PYTHON" -m rnn_perception eval collision --weights "$DEST/collision_randomised.safetensors" --data "$WORK/test" \
    --traces "$PLOTS/test_traces.png" --roc "$PLOTS/test_roc.png" > "$PLOTS/test_table.txt"
"$PYTHON" - "$WORK" "$DEST/collision_randomised_metrics.json" "$GENERATE_SECONDS" "$GENERATE_TRAIN" "$TRAIN" "$FINE_TUNE" \
    "$GENERATE_TEST" "$EVALUATE" "$GENERATE_HELD_OUT" "$EVALUATE_HELD_OUT" "$GENERATE_VGA" "$EVALUATE_VGA" <<'EOF'
"""Merge the training summary and the fresh-seed test metrics into the shipped metrics file."""
import json
import sys
from pathlib import Path

work, destination, generate_seconds, *commands = sys.argv[1:]
summary = json.loads((Path(work) / 'run' / 'collision_metrics.json').read_text())
tests = {}
for name in ('test', 'held_out', 'vga'):
    tests[name] = json.loads((Path(work) / f'{name}_metrics.json').read_text())
    tests[name].pop('per_episode')
base = Path(work) / 'base' / 'collision_epochs.json'      # the first stage, epoch by epoch
summary.update(base_epochs=json.loads(base.read_text()),
               test_seed=2, test=tests['test'], held_out_seed=3, held_out=tests['held_out'],
               camera_640x480_jpeg30_seed=4, camera_640x480_jpeg30=tests['vga'],
               generate_train_seconds=int(generate_seconds) if generate_seconds.isdigit() else None,
               commands=dict(zip(('generate_train', 'train', 'fine_tune', 'generate_test',
                                  'evaluate', 'generate_held_out', 'evaluate_held_out',
                                  'generate_640x480', 'evaluate_640x480'), commands)))
Path(destination).write_text(json.dumps(summary, indent=1) + '\n')
for name, label in (('test', 'plain (seed 2)'), ('held_out', 'held-out randomisation (seed 3)'),
                    ('vga', '640x480 JPEG 30 bag (seed 4)')):
    test = tests[name]
    print(f"{label}: AUROC {test['auroc']:.4f}, accuracy {test['accuracy']:.2%}, lead time median "
          f"{test['lead_time_median_s']:.3f} s (p10 {test['lead_time_p10_s']:.3f} s), false alarms "
          f"{test['false_alarm_rate']:.2%}")
print(f"simulating the training set: {generate_seconds} s, fine-tuning {summary['train_seconds']:.0f} s "
      f"after the first stage's {sum(row['seconds'] for row in summary['base_epochs']):.0f} s")
EOF
