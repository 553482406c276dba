"""Training throughput of the cell library's LSTM/GRU/RNN vs torch.nn, measured side by side.

Each round times one forward+backward pass of ours and of torch's on the same batch, alternating,
so machine noise hits both alike; the reported ratio is median(torch time) / median(our time)
(1.0 = as fast as torch.nn, higher = faster).

    .venv/bin/python benchmarks/bench_cells.py [--batch 64] [--hidden 128] [--steps 64]
        [--threads N] [--json]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from rnn_perception.cells import load_torch_weights


def time_train_step(module, x) -> float:
    start = time.perf_counter()
    output, _ = module(x)
    output.sum().backward()
    return time.perf_counter() - start


def compare(kind: str, batch: int, hidden: int, steps: int, inputs: int, rounds: int) -> dict:
    torch.manual_seed(0)
    reference = getattr(torch.nn, kind)(inputs, hidden)
    ours = load_torch_weights(reference)
    x = torch.randn(steps, batch, inputs)
    for _ in range(3):                                     # warm-up: allocator, thread pool
        time_train_step(reference, x), time_train_step(ours, x)
    torch_times, our_times = [], []
    for _ in range(rounds):
        torch_times.append(time_train_step(reference, x))
        our_times.append(time_train_step(ours, x))
    t_torch, t_ours = statistics.median(torch_times), statistics.median(our_times)
    return {'cell': kind, 'torch_ms': 1e3 * t_torch, 'ours_ms': 1e3 * t_ours,
            'throughput_ratio': t_torch / t_ours}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--hidden', type=int, default=128)
    parser.add_argument('--steps', type=int, default=64)
    parser.add_argument('--inputs', type=int, default=32, help='input features per step')
    parser.add_argument('--rounds', type=int, default=20)
    parser.add_argument('--threads', type=int, default=0, help='torch threads (0: torch default)')
    parser.add_argument(
        '--json', action='store_true', help='print one JSON object instead of a table'
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = [compare(kind, args.batch, args.hidden, args.steps, args.inputs, args.rounds)
               for kind in ('LSTM', 'GRU', 'RNN')]
    report = {
        'benchmark': 'cells',
        'machine': platform.processor() or platform.machine(),
        'threads': torch.get_num_threads(),
        'torch': torch.__version__,
        'batch': args.batch,
        'hidden': args.hidden,
        'steps': args.steps,
        'inputs': args.inputs,
        'results': results,
        'figures': {
            f"{row['cell'].lower()}_{who}_ms": row[f'{who}_ms']
            for row in results
            for who in ('ours', 'torch')
        },
        'ratios': {
            f"{row['cell'].lower()}_ours_over_torch_throughput": row['throughput_ratio']
            for row in results
        },
    }
    if args.json:
        print(json.dumps(report))
        return
    print(f"forward+backward, batch {args.batch}, hidden {args.hidden}, {args.steps} steps, "
          f"{args.inputs} inputs, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'cell':6} {'torch.nn ms':>12} {'ours ms':>9} {'ours/torch throughput':>22}")
    for row in results:
        print(
            f"{row['cell']:6} {row['torch_ms']:12.2f} {row['ours_ms']:9.2f} "
            f"{row['throughput_ratio']:22.2f}"
        )


if __name__ == '__main__':
    main()
