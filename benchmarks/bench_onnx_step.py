"""One model step in ONNX Runtime against the step the nodes run in torch today, side by side.

For the shipped collision model (the frozen torch step, ``FrozenCollisionPredictor``, on 64x64
frames) and the shipped tactile model (``TactilePredictor.step``): the step exported by
``python -m rnn_perception export`` runs in ONNX Runtime (CPU execution provider), one thread
each, state carried from step to step. The two paths alternate in blocks, so both see the same
machine load; the outputs are compared too.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_onnx_step.py [--steps 2000] [--json]
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from rnn_perception.models import collision, tactile
from rnn_perception.models.onnx_export import export_step, initial_state
from timing import alternate_blocks  # this script's folder is on sys.path

BLOCK = 50          # steps per path before switching to the other


def session(path: Path) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])


def collision_paths(root: Path, steps: int):
    weights = collision.default_weights_path()
    model, metadata = collision.load_collision_model(weights)
    export_step('collision', model, metadata, weights, root / 'collision.onnx')
    graph, frozen = session(root / 'collision.onnx'), model.frozen()
    frames = np.random.default_rng(0).integers(0, 256, (steps, 64, 64, 3), dtype=np.uint8)
    state = {'torch': None, 'onnx': [t.numpy() for t in initial_state(model)]}

    def torch_step(index: int) -> float:
        with torch.inference_mode():
            tensor = collision.frames_to_tensor(frames[index][None])
            logits, state['torch'] = frozen.step(tensor, state['torch'])
            return float(torch.sigmoid(logits[0]))

    def onnx_step(index: int) -> float:
        probability, *state['onnx'] = graph.run(None, {
            'frame': frames[index][None],
            **{f'state_{i}': value for i, value in enumerate(state['onnx'])}})
        return float(probability[0])

    return {'torch': torch_step, 'onnx': onnx_step}


def tactile_paths(root: Path, steps: int):
    weights = tactile.default_weights_path()
    model, metadata = tactile.load_tactile_model(weights)
    export_step('tactile', model, metadata, weights, root / 'tactile.onnx')
    graph = session(root / 'tactile.onnx')
    # inputs on the scale the model was trained on: its own normalisation statistics
    scale = {key: np.asarray(value, np.float32) for key, value in model.normalisation().items()}
    rng = np.random.default_rng(1)
    samples = (scale['tactile_mean'] + scale['tactile_std'] * rng.standard_normal(
        (steps, 1, 21))).astype(np.float32)
    poses = (scale['pose_mean'] + np.cumsum(scale['velocity_std'] * rng.standard_normal(
        (steps, 1, 4)), 0)).astype(np.float32)
    state = {'torch': None, 'onnx': [t.numpy() for t in initial_state(model)]}

    def torch_step(index: int) -> np.ndarray:
        with torch.inference_mode():
            predicted, state['torch'] = model.step(torch.from_numpy(samples[index]),
                                                   torch.from_numpy(poses[index]), state['torch'])
            return predicted.numpy()

    def onnx_step(index: int) -> np.ndarray:
        predicted, *state['onnx'] = graph.run(None, {
            'tactile': samples[index], 'pose': poses[index],
            **{f'state_{i}': value for i, value in enumerate(state['onnx'])}})
        return predicted

    return {'torch': torch_step, 'onnx': onnx_step}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--steps', type=int, default=2000, help='steps per path and model')
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args()
    torch.set_num_threads(1)
    figures, ratios, lines = {}, {}, []
    with tempfile.TemporaryDirectory() as root:
        for name, make in (('collision', collision_paths), ('tactile', tactile_paths)):
            times, outputs = alternate_blocks(make(Path(root), args.steps), range(args.steps),
                                              BLOCK)
            p50 = {path: float(np.percentile(t, 50)) for path, t in times.items()}
            p99 = {path: float(np.percentile(t, 99)) for path, t in times.items()}
            # relative to the output's size: a tactile pose far from the origin is large
            difference = max(float(np.max(np.abs(np.asarray(outputs['onnx'][i])
                                                 - np.asarray(outputs['torch'][i]))
                                          / np.maximum(1.0, np.abs(outputs['torch'][i]))))
                             for i in range(args.steps))
            figures.update({f'{name}_torch_p50_ms': p50['torch'],
                            f'{name}_onnx_p50_ms': p50['onnx'],
                            f'{name}_torch_p99_ms': p99['torch'],
                            f'{name}_onnx_p99_ms': p99['onnx'],
                            f'{name}_max_relative_difference': difference})
            ratios[f'{name}_torch_over_onnx_p50'] = p50['torch'] / p50['onnx']
            lines.append(f"{name}: torch p50 {p50['torch']:.3f} ms (p99 {p99['torch']:.3f}), "
                         f"onnxruntime p50 {p50['onnx']:.3f} ms (p99 {p99['onnx']:.3f}): "
                         f"{p50['torch'] / p50['onnx']:.2f}x at p50; outputs differ by at most "
                         f'{difference:.1e}')
    report = {'benchmark': 'onnx_step', 'steps': args.steps, 'figures': figures,
              'ratios': ratios}
    print(json.dumps(report) if args.json else '\n'.join(lines))


if __name__ == '__main__':
    main()
