"""The collision node's step with one set of weights against another, side by side.

For each ``--model NAME=FILE`` (the first is the reference: e.g. the model a retrained one
replaces) and each backend, the whole per-message work of the node
(``CollisionRuntime.process`` on a 64x64 rgb8 ``Image``, built as the node builds it), one
thread, state carried from frame to frame. The models take turns by blocks of frames, so all
see the same machine load; the ratios are each model's p50 and p99 over the reference's on the
same backend.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_collision_models.py \
        --model previous=OLD.safetensors --model new=NEW.safetensors [--steps N] [--json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch

from arguments import named_paths  # this script's folder is on sys.path
from bench_collision_node import camera_messages
from rnn_perception.runtime.collision import CollisionRuntime, load_predictor
from rnn_perception.runtime.collision_parameters import CollisionSettings
from rnn_perception.runtime.parameters import engine_options
from timing import alternate_blocks

BLOCK = 50          # frames per model before switching to the next
BACKENDS = ('torch', 'onnxruntime')


def named_models(values: List[str], parser: argparse.ArgumentParser) -> List[Tuple[str, Path]]:
    """The ``--model NAME=FILE`` values: at least two, with different names."""
    models = named_paths(values, '--model', parser)
    if len(models) < 2 or len({name for name, _ in models}) < len(models):
        parser.error('give at least two --model NAME=FILE, with different names')
    return models


def node_steps(models: List[Tuple[str, Path]], backend: str, steps: int
               ) -> Dict[str, Callable[[int], float]]:
    """Each model's node step on ``backend``, frame ``i`` of the same camera stream."""
    messages = list(camera_messages(steps, 64))
    paths = {}
    for name, path in models:
        weights = str(path)
        settings = CollisionSettings(weights=weights, backend=backend, device='cpu',
                                     max_frame_age_s=0.0)
        runtime = CollisionRuntime(load_predictor(weights, engine_options(settings).model_device),
                                   settings)
        paths[name] = lambda i, runtime=runtime: runtime.process(messages[i], 0.0).probability
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', action='append', default=[], metavar='NAME=FILE',
                        help='collision weights to time (repeatable; the first is the reference)')
    parser.add_argument('--steps', type=int, default=3000, help='frames per model and backend')
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args()
    models = named_models(args.model, parser)
    if args.steps < BLOCK:
        parser.error(f'--steps must be at least {BLOCK}')
    torch.set_num_threads(1)
    reference = models[0][0]
    figures, ratios, lines = {}, {}, []
    for backend in BACKENDS:
        times, _ = alternate_blocks(node_steps(models, backend, args.steps), range(args.steps),
                                    BLOCK)
        lines.append(f'collision node step on {backend} ({args.steps} frames, 1 thread):')
        for name, _ in models:
            p50, p99 = (float(np.percentile(times[name], q)) for q in (50, 99))
            figures[f'{backend}_{name}_p50_ms'], figures[f'{backend}_{name}_p99_ms'] = p50, p99
            line = f'  {name:<12} p50 {p50:.3f} ms  p99 {p99:.3f} ms'
            if name != reference:
                for quantile, value in (('p50', p50), ('p99', p99)):
                    ratio = value / figures[f'{backend}_{reference}_{quantile}_ms']
                    ratios[f'{backend}_{name}_over_{reference}_{quantile}'] = ratio
                line += (f"  {ratios[f'{backend}_{name}_over_{reference}_p50']:.2f}x / "
                         f"{ratios[f'{backend}_{name}_over_{reference}_p99']:.2f}x "
                         f'{reference} at p50 / p99')
            lines.append(line)
    report = {'benchmark': 'collision_models', 'steps': args.steps, 'threads': 1,
              'models': {name: str(path) for name, path in models}, 'figures': figures,
              'ratios': ratios}
    print(json.dumps(report) if args.json else '\n'.join(lines))


if __name__ == '__main__':
    main()
