"""Per-sample latency of the tactile node's processing path, in process (no DDS).

What the node does per sample: a ``std_msgs/Float32MultiArray`` (21 values) and a
``geometry_msgs/PoseStamped`` -> checks -> pairing -> one LSTM ``step`` with carried state ->
the next 20 poses, i.e. ``TactileRuntime.on_tactile`` + ``on_pose``, built exactly as the node
builds it (``load_predictor``, the node's ``cpu_threads``), on CPU. Samples come from a bag's
worth of simulated-looking data at 100 Hz, in episodes of 400 samples separated by stamp gaps,
so state resets happen as in a bag replay. Latency = from the tactile message's arrival to the
prediction, per sample.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_tactile_node.py [--samples 10000]
        [--weights FILE] [--json]

Target (from the issue): per-step p99 <= 2 ms on CPU.
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch
from geometry_msgs.msg import PoseStamped
from std_msgs.msg import Float32MultiArray

from rnn_perception.models.tactile import default_weights_path
from rnn_perception.runtime.tactile import load_predictor, Outcome, TactileRuntime
from rnn_perception.runtime.tactile_input import pose_fields
from rnn_perception.runtime.tactile_parameters import TactileSettings

RATE_HZ = 100.0
EPISODE_SAMPLES = 400
EPISODE_GAP_S = 1.0
P99_TARGET_MS = 2.0


def messages(count: int, seed: int = 0):
    """``count`` (tactile, pose) message pairs at 100 Hz, a stamp gap after every episode."""
    rng = np.random.default_rng(seed)
    for index in range(count):
        episode, sample = divmod(index, EPISODE_SAMPLES)
        stamp = 1.0 + episode * (EPISODE_SAMPLES / RATE_HZ + EPISODE_GAP_S) + sample / RATE_HZ
        tactile = Float32MultiArray(
            data=(2500 + 50 * rng.standard_normal(21)).astype(np.float32).tolist()
        )
        pose = PoseStamped()
        pose.header.stamp.sec, pose.header.stamp.nanosec = divmod(round(stamp * 1e9), 10**9)
        (pose.pose.position.x, pose.pose.position.y, pose.pose.position.z), quaternion = (
            pose_fields([0.05, 0.0, 0.0, 0.1 * np.sin(sample / 50)])
        )
        o = pose.pose.orientation
        o.x, o.y, o.z, o.w = quaternion
        yield tactile, pose


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('--samples', type=int, default=10000)
    parser.add_argument('--warmup', type=int, default=200)
    parser.add_argument(
        '--weights', default='', help=f'tactile weights (default: {default_weights_path()})'
    )
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args()
    settings = TactileSettings(weights=args.weights, device='cpu')
    torch.set_num_threads(settings.cpu_threads)
    loaded = load_predictor(settings.weights, settings.device)
    runtime = TactileRuntime(loaded, settings)
    latencies = []
    for index, (tactile, pose) in enumerate(messages(args.warmup + args.samples)):
        started = time.perf_counter()
        runtime.on_tactile(tactile, 0.0)
        result = runtime.on_pose(pose, 0.0)
        elapsed = time.perf_counter() - started
        assert result.outcome is Outcome.PROCESSED
        if index >= args.warmup:
            latencies.append(elapsed * 1e3)
    p50, p99 = np.percentile(latencies, [50, 99])
    report = {
        'benchmark': 'tactile_node',
        'weights': str(loaded.path),
        'samples': args.samples,
        'p50_ms': round(float(p50), 4),
        'p99_ms': round(float(p99), 4),
        'max_ms': round(float(max(latencies)), 4),
        'p99_target_ms': P99_TARGET_MS,
        'resets': runtime.counters.resets,
        'torch': torch.__version__,
        'threads': torch.get_num_threads(),
        'cpu': platform.processor() or platform.machine(),
        'figures': {'step_p50_ms': float(p50), 'step_p99_ms': float(p99)},
        'ratios': {},
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"tactile node step on CPU ({report['threads']} thread, {args.samples} samples, "
            f"{loaded.path.name}): p50 {p50:.3f} ms, p99 {p99:.3f} ms "
            f"(target <= {P99_TARGET_MS} ms), "
            f"max {max(latencies):.2f} ms"
        )


if __name__ == '__main__':
    main()
