"""The node step on the ``onnxruntime`` backend against the ``torch`` one, side by side.

For the shipped collision model (64x64 frames) and the shipped tactile model, each backend's
step engine exactly as the nodes start it (``backend`` parameter; torch steps the frozen
collision snapshot, onnxruntime the exported graph beside the weights, IO-bound), one thread
each, state carried from step to step:

* **engine**: the model step alone (``StepEngine.step``);
* **node**: the whole per-message work (``CollisionRuntime.process`` on an rgb8 ``Image``;
  ``TactileRuntime.on_tactile`` + ``on_pose``), what a node does between receiving and
  publishing.

The backends alternate in blocks, so all see the same machine load; their outputs are compared
with torch's on the CPU too. ``--gpu`` adds both backends on CUDA (torch on a CUDA GPU;
onnxruntime's CUDA execution provider, from ``onnxruntime-gpu``), timed beside the CPU ones:
``benchmarks/gpu_check.sh`` runs that.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_onnx_step.py [--steps N] [--gpu] [--json]
"""
from __future__ import annotations

import argparse
import json
from typing import Callable, Dict

import numpy as np
import torch

from bench_collision_node import camera_messages  # this script's folder is on sys.path
from bench_tactile_node import messages as tactile_messages
from rnn_perception.models.engines import start_engine
from rnn_perception.runtime.collision import CollisionRuntime
from rnn_perception.runtime.collision import load_predictor as load_collision
from rnn_perception.runtime.collision_parameters import CollisionSettings
from rnn_perception.runtime.parameters import engine_options
from rnn_perception.runtime.tactile import load_predictor as load_tactile, TactileRuntime
from rnn_perception.runtime.tactile_parameters import TactileSettings
from timing import alternate_blocks

BLOCK = 50          # steps per variant before switching to the next
CPU_VARIANTS = {'torch': ('torch', 'cpu'), 'onnxruntime': ('onnxruntime', 'cpu')}
GPU_VARIANTS = {'torch_cuda': ('torch', 'cuda'), 'onnxruntime_cuda': ('onnxruntime', 'cuda')}


def collision_paths(steps: int, variants) -> Dict[str, Dict[str, Callable]]:
    messages = list(camera_messages(steps, 64))
    frames = np.random.default_rng(0).integers(0, 256, (steps, 1, 64, 64, 3), dtype=np.uint8)
    paths = {'engine': {}, 'node': {}}
    for variant, (backend, device) in variants.items():
        settings = CollisionSettings(backend=backend, device=device, max_frame_age_s=0.0)
        options = engine_options(settings)
        loaded = load_collision('', options.model_device)    # each user steps its own state
        engine = start_engine('collision', loaded, options)
        runtime = CollisionRuntime(loaded, settings)
        paths['engine'][variant] = lambda i, engine=engine: float(engine.step(frames[i]))
        paths['node'][variant] = (
            lambda i, runtime=runtime: runtime.process(messages[i], 0.0).probability)
    return paths


def tactile_paths(steps: int, variants) -> Dict[str, Dict[str, Callable]]:
    pairs = list(tactile_messages(steps))
    samples = [(np.asarray(t.data, np.float32)[None],
                np.asarray([p.pose.position.x, p.pose.position.y, p.pose.position.z, 0.0],
                           np.float32)[None]) for t, p in pairs]
    paths = {'engine': {}, 'node': {}}
    for variant, (backend, device) in variants.items():
        settings = TactileSettings(backend=backend, device=device)
        options = engine_options(settings)
        loaded = load_tactile('', options.model_device)
        engine = start_engine('tactile', loaded, options)
        runtime = TactileRuntime(loaded, settings)

        def node_step(i, runtime=runtime):
            runtime.on_tactile(pairs[i][0], 0.0)
            return runtime.on_pose(pairs[i][1], 0.0).poses

        paths['engine'][variant] = lambda i, engine=engine: engine.step(*samples[i])
        paths['node'][variant] = node_step
    return paths


def max_relative_difference(ours: list, theirs: list) -> float:
    """Largest |ours - theirs| over every output, relative to the output's size (a tactile pose
    far from the origin is large)."""
    return max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)) / np.maximum(1.0, np.abs(b))))
               for a, b in zip(ours, theirs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--steps', type=int, default=2000, help='steps per backend and path')
    parser.add_argument('--gpu', action='store_true',
                        help='also both backends on CUDA (needs a GPU, and onnxruntime-gpu)')
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args()
    torch.set_num_threads(1)
    variants = {**CPU_VARIANTS, **(GPU_VARIANTS if args.gpu else {})}
    figures, ratios, lines = {}, {}, []
    for model, make in (('collision', collision_paths), ('tactile', tactile_paths)):
        for level, paths in make(args.steps, variants).items():
            times, outputs = alternate_blocks(paths, range(args.steps), BLOCK)
            name = f'{model}_{level}'
            lines.append(f'{model} {level} step ({args.steps} steps, 1 thread):')
            for variant in variants:
                p50, p99 = (float(np.percentile(times[variant], q)) for q in (50, 99))
                figures[f'{name}_{variant}_p50_ms'], figures[f'{name}_{variant}_p99_ms'] = p50, p99
                line = f'  {variant:<17} p50 {p50:.3f} ms  p99 {p99:.3f} ms'
                if variant != 'torch':
                    difference = max_relative_difference(outputs[variant], outputs['torch'])
                    figures[f'{name}_{variant}_max_relative_difference'] = difference
                    speedup = float(np.percentile(times['torch'], 50)) / p50
                    ratios[f'{name}_torch_over_{variant}_p50'] = speedup
                    line += f'  {speedup:.2f}x torch at p50, outputs within {difference:.1e}'
                lines.append(line)
    report = {'benchmark': 'onnx_step', 'steps': args.steps, 'threads': 1, 'figures': figures,
              'ratios': ratios}
    print(json.dumps(report) if args.json else '\n'.join(lines))


if __name__ == '__main__':
    main()
