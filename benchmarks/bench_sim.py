"""Dodgeball simulator throughput: labelled frames per second per core.

Generates the same episodes with 1 and with 2 worker processes, end to end (physics,
rendering, labels, compressed shards, manifest; plus the bag with --bag) and prints the
wall-clock frames/s, the frames per CPU-second of all processes together (frames/s per core,
which holds even on a busy machine) and the hit ratio.

    .venv/bin/python benchmarks/bench_sim.py [--episodes 100] [--image-size 64] [--bag] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `sim` lives at the repo root

from sim.dodgeball.config import load_dodgeball_config  # noqa: E402
from sim.dodgeball.generate import generate  # noqa: E402
from timing import cpu_seconds  # noqa: E402  (this script's folder is on sys.path)


def measure(episodes: int, image_size: int, workers: int, with_bag: bool) -> dict:
    """Generate into a temporary directory; return frames, wall and CPU seconds, hit ratio."""
    with tempfile.TemporaryDirectory() as tmp:
        output = {'out': f'{tmp}/data', 'bag': f'{tmp}/bag' if with_bag else None}
        config = load_dodgeball_config(overrides={
            'episodes': episodes, 'seed': 0, 'workers': workers,
            'camera': {'image_size': image_size}, 'output': output})
        start_wall, start_cpu = time.perf_counter(), cpu_seconds()
        manifest = generate(config, progress=False)
        wall, cpu = time.perf_counter() - start_wall, cpu_seconds() - start_cpu
    return {'frames': manifest['num_frames'], 'wall_s': wall, 'cpu_s': cpu,
            'hit_ratio': manifest['hit_ratio']}


def main() -> None:
    """Measure with 1 and 2 workers and print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--episodes', type=int, default=100)
    parser.add_argument('--image-size', type=int, default=64)
    parser.add_argument('--bag', action='store_true', help='also write an mcap bag')
    parser.add_argument(
        '--json', action='store_true', help='print one JSON object instead of lines'
    )
    args = parser.parse_args()
    results = {
        workers: measure(args.episodes, args.image_size, workers, args.bag) for workers in (1, 2)
    }
    if args.json:
        one, two = results[1], results[2]
        print(
            json.dumps(
                {
                    'benchmark': 'dodgeball_sim',
                    'image_size': args.image_size,
                    'episodes': args.episodes,
                    'runs': results,
                    'figures': {
                        'frames_per_s_per_core': one['frames'] / one['cpu_s'],
                        'frames_per_s_1_worker': one['frames'] / one['wall_s'],
                        'frames_per_s_2_workers': two['frames'] / two['wall_s'],
                    },
                    'ratios': {'2_workers_over_1_wall': one['wall_s'] / two['wall_s']},
                }
            )
        )
        return
    for workers, result in results.items():
        print(f'{args.image_size}x{args.image_size}, workers={workers}: {result["frames"]} '
              f'labelled frames, {result["frames"] / result["wall_s"]:.0f} frames/s wall-clock, '
              f'{result["frames"] / result["cpu_s"]:.0f} frames/s per core '
              f'({result["cpu_s"]:.1f} CPU-s); hit ratio {result["hit_ratio"]:.2f}')


if __name__ == '__main__':
    main()
