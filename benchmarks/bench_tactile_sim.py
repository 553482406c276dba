"""Tactile slip simulator throughput: sensor samples per second per core.

Generates the same episodes with 1 and with 2 worker processes, end to end (grip schedules,
physics, sensor model, compressed shards, manifest; plus the bag with --bag) and prints the
wall-clock samples/s, the samples per CPU-second of all processes together (samples/s per
core, which holds even on a busy machine) and the slip ratio.

    .venv/bin/python benchmarks/bench_tactile_sim.py [--episodes 100] [--bag] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `sim` lives at the repo root

from sim.tactile.config import load_tactile_config  # noqa: E402
from sim.tactile.generate import generate  # noqa: E402
from timing import cpu_seconds  # noqa: E402  (this script's folder is on sys.path)


def measure(episodes: int, workers: int, with_bag: bool) -> dict:
    """Generate into a temporary directory; return samples, wall and CPU seconds, slip ratio."""
    with tempfile.TemporaryDirectory() as tmp:
        output = {'out': f'{tmp}/data', 'bag': f'{tmp}/bag' if with_bag else None}
        config = load_tactile_config(overrides={
            'episodes': episodes, 'seed': 0, 'workers': workers, 'output': output})
        start_wall, start_cpu = time.perf_counter(), cpu_seconds()
        manifest = generate(config, progress=False)
        wall, cpu = time.perf_counter() - start_wall, cpu_seconds() - start_cpu
    return {'samples': manifest['num_frames'], 'wall_s': wall, 'cpu_s': cpu,
            'slip_ratio': manifest['slip_ratio'], 'rate_hz': config.episode.rate_hz}


def main() -> None:
    """Measure with 1 and 2 workers and print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--episodes', type=int, default=100)
    parser.add_argument('--bag', action='store_true', help='also write an mcap bag')
    parser.add_argument(
        '--json', action='store_true', help='print one JSON object instead of lines'
    )
    args = parser.parse_args()
    results = {workers: measure(args.episodes, workers, args.bag) for workers in (1, 2)}
    if args.json:
        one, two = results[1], results[2]
        print(json.dumps({
            'benchmark': 'tactile_sim', 'episodes': args.episodes, 'runs': results,
            'figures': {'samples_per_s_per_core': one['samples'] / one['cpu_s'],
                        'samples_per_s_1_worker': one['samples'] / one['wall_s'],
                        'samples_per_s_2_workers': two['samples'] / two['wall_s']},
            'ratios': {'real_time_factor_per_core': one['samples'] / one['cpu_s'] / one['rate_hz'],
                       '2_workers_over_1_wall': one['wall_s'] / two['wall_s']}}))
        return
    for workers, result in results.items():
        per_core = result['samples'] / result['cpu_s']
        print(f'workers={workers}: {result["samples"]} samples, '
              f'{result["samples"] / result["wall_s"]:.0f} samples/s wall-clock, '
              f'{per_core:.0f} samples/s per core ({result["cpu_s"]:.1f} CPU-s, '
              f'{per_core / result["rate_hz"]:.0f}x real time at {result["rate_hz"]:.0f} Hz); '
              f'slip ratio {result["slip_ratio"]:.2f}')


if __name__ == '__main__':
    main()
