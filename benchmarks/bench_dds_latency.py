"""End-to-end latency through DDS: camera frame published -> collision node -> answer received.

The collision node runs in its own process (``python -m rnn_perception bringup dodgeball``, the
shipped model); this process is the camera and the consumer. It publishes one reliable
``sensor_msgs/Image``, as a camera driver does, and times the node's answer carrying that
frame's stamp, one frame in flight (:mod:`dds_camera`). Stamps advance at 30 Hz, the model's
rate, so the node's subsampler keeps every frame.

Side by side, the same frames go through the node's processing in this process
(``CollisionRuntime.process``): the ratio says what DDS and the second process add.
Sizes: 64x64 (the model's input) and 640x480 (a VGA camera; the node resizes it).

    .venv/bin/python benchmarks/bench_dds_latency.py [--frames 500] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Dict, List

import numpy as np

from dds_camera import BenchmarkError, DdsCamera

FPS = 30.0
SIZES = ((64, 64), (640, 480))          # (width, height)
ANSWER_TIMEOUT_S = 5.0
MAX_LOST = 10


def camera_frame(width: int, height: int, index: int, stamp_ns: int):
    """An rgb8 frame with a bright square that moves, stamped ``stamp_ns``."""
    from sensor_msgs.msg import Image
    pixels = np.full((height, width, 3), 60, np.uint8)
    side = max(2, width // 16)
    x = (index * 3) % (width - side)
    pixels[height // 2:height // 2 + side, x:x + side] = 230
    message = Image(
        height=height, width=width, encoding='rgb8', step=width * 3, data=pixels.tobytes()
    )
    message.header.stamp.sec, message.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    message.header.frame_id = 'camera_optical_frame'
    return message


def percentiles_ms(seconds: List[float]) -> Dict[str, float]:
    values = np.asarray(seconds) * 1e3
    return {'p50': float(np.percentile(values, 50)), 'p99': float(np.percentile(values, 99))}


def round_trips(frames: int, warmup: int) -> Dict[str, Dict]:
    """Every size through the node in another process, one frame in flight; seconds per frame."""
    results = {}
    with DdsCamera() as dds:
        stamp_ns = time.time_ns()

        def next_frame(width: int, height: int, index: int):
            nonlocal stamp_ns
            stamp_ns += round(1e9 / FPS)
            return camera_frame(width, height, index, stamp_ns)

        dds.wait_for_node(lambda n: next_frame(*SIZES[0], n))
        for width, height in SIZES:
            latencies, lost = [], 0
            stamp_ns += 10**9  # a gap: each size starts a fresh state, as a new camera
            for index in range(warmup + frames):
                latency = dds.exchange(next_frame(width, height, index), ANSWER_TIMEOUT_S)
                if latency is None:
                    lost += 1
                    if lost > MAX_LOST:  # something else shares the domain, or the node hangs
                        raise BenchmarkError(
                            f'{lost} frames of {width}x{height} got no answer within '
                            f'{ANSWER_TIMEOUT_S:g} s'
                        )
                elif index >= warmup:
                    latencies.append(latency)
            results[f'{width}x{height}'] = {'latencies': latencies, 'lost': lost}
    return results


def in_process(frames: int, warmup: int) -> Dict[str, List[float]]:
    """The node's processing of the same frames in this process; seconds per frame."""
    import torch

    from rnn_perception.runtime.collision import CollisionRuntime, load_predictor
    from rnn_perception.runtime.collision_parameters import CollisionSettings

    settings = CollisionSettings(max_frame_age_s=0.0)
    torch.set_num_threads(settings.cpu_threads)
    loaded = load_predictor(settings.weights, settings.device)
    results = {}
    for width, height in SIZES:
        runtime = CollisionRuntime(loaded, settings)
        latencies = []
        for index in range(warmup + frames):
            message = camera_frame(width, height, index, 10**9 + round(index * 1e9 / FPS))
            started = time.perf_counter()
            runtime.process(message, 0.0)
            if index >= warmup:
                latencies.append(time.perf_counter() - started)
        results[f'{width}x{height}'] = latencies
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('--frames', type=int, default=500, help='timed frames per image size')
    parser.add_argument(
        '--warmup', type=int, default=20, help='untimed frames per image size first'
    )
    parser.add_argument(
        '--json', action='store_true', help='print one JSON object instead of a table'
    )
    args = parser.parse_args()
    try:
        dds = round_trips(args.frames, args.warmup)
    except BenchmarkError as error:
        print(f'bench_dds_latency: error: {error}', file=sys.stderr)
        return 1
    local = in_process(args.frames, args.warmup)
    figures, ratios, sizes = {}, {}, {}
    for size, result in dds.items():
        round_trip, processing = percentiles_ms(result['latencies']), percentiles_ms(local[size])
        sizes[size] = {
            'round_trip_ms': round_trip,
            'in_process_ms': processing,
            'lost': result['lost'],
            'answered': len(result['latencies']),
        }
        figures.update(
            {
                f'{size}_round_trip_p50_ms': round_trip['p50'],
                f'{size}_round_trip_p99_ms': round_trip['p99'],
                f'{size}_lost_frames': result['lost'],
            }
        )
        ratios[f'{size}_round_trip_over_in_process_p50'] = round_trip['p50'] / processing['p50']
    report = {'benchmark': 'dds_latency', 'frames': args.frames, 'sizes': sizes,
              'figures': figures, 'ratios': ratios}
    if args.json:
        print(json.dumps(report))
        return 0
    print(
        f'camera -> collision node (another process) -> answer, over DDS '
        f'(a domain of its own, localhost), '
        f'{args.frames} frames per size, one in flight'
    )
    for size, row in sizes.items():
        print(
            f"  {size:>8}: round trip p50 {row['round_trip_ms']['p50']:6.2f} ms  "
            f"p99 {row['round_trip_ms']['p99']:6.2f} ms"
            f"   in process p50 {row['in_process_ms']['p50']:5.2f} ms   lost {row['lost']}"
        )
    return 0


if __name__ == '__main__':
    sys.exit(main())
