"""Training throughput of the cell library's LSTM/GRU/RNN vs torch.nn, measured side by side.

Four paths on the same batch and weights, one forward+backward pass each per round, taking
turns, so machine noise hits them alike: ``torch.nn``; **ours** (a ``SequenceRunner``, which runs
torch's own kernel on the cells' parameters); **our loop** (the same runner with
``torch_kernel = None``: the library's own per-step loop, the reference it is tested against);
**ours bf16** (ours under ``torch.autocast`` bf16, as ``--precision bf16`` trains).
Ratios are median(torch time) / median(our time): 1.0 = as fast as torch.nn, higher = faster;
``bf16_over_fp32`` is median(ours) / median(ours bf16).

    .venv/bin/python benchmarks/bench_cells.py [--batch 64] [--hidden 128] [--steps 64]
        [--threads 1,2] [--json]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from rnn_perception.cells import load_torch_weights


class Autocast(torch.nn.Module):
    """``module`` run under CPU autocast in bf16."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        with torch.autocast('cpu', dtype=torch.bfloat16):
            output, state = self.module(x)
        return output.float(), state


def time_train_step(module, x) -> float:
    start = time.perf_counter()
    output, _ = module(x)
    output.sum().backward()
    return time.perf_counter() - start


def compare(kind: str, batch: int, hidden: int, steps: int, inputs: int, rounds: int) -> dict:
    torch.manual_seed(0)
    reference = getattr(torch.nn, kind)(inputs, hidden)
    ours, loop = load_torch_weights(reference), load_torch_weights(reference)
    loop.torch_kernel = None
    paths = {'torch': reference, 'ours': ours, 'loop': loop,
             'bf16': Autocast(load_torch_weights(reference))}
    x = torch.randn(steps, batch, inputs)
    for _ in range(3):                                     # warm-up: allocator, thread pool
        for module in paths.values():
            time_train_step(module, x)
    times = {name: [] for name in paths}
    for _ in range(rounds):
        for name, module in paths.items():
            times[name].append(time_train_step(module, x))
    median = {name: statistics.median(values) for name, values in times.items()}
    return {'cell': kind, **{f'{name}_ms': 1e3 * value for name, value in median.items()},
            'throughput_ratio': median['torch'] / median['ours'],
            'loop_throughput_ratio': median['torch'] / median['loop'],
            'bf16_over_fp32': median['ours'] / median['bf16']}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--hidden', type=int, default=128)
    parser.add_argument('--steps', type=int, default=64)
    parser.add_argument('--inputs', type=int, default=32, help='input features per step')
    parser.add_argument('--rounds', type=int, default=20)
    parser.add_argument('--threads', default='1,2',
                        help='torch thread counts to measure at, comma-separated (default 1,2)')
    parser.add_argument(
        '--json', action='store_true', help='print one JSON object instead of a table'
    )
    args = parser.parse_args()
    results = []
    for threads in (int(count) for count in args.threads.split(',')):
        torch.set_num_threads(threads)
        results += [dict(compare(kind, args.batch, args.hidden, args.steps, args.inputs,
                                 args.rounds), threads=threads)
                    for kind in ('LSTM', 'GRU', 'RNN')]
    report = {
        'benchmark': 'cells',
        'machine': platform.processor() or platform.machine(),
        'torch': torch.__version__,
        'batch': args.batch,
        'hidden': args.hidden,
        'steps': args.steps,
        'inputs': args.inputs,
        'results': results,
        'figures': {
            f"{row['cell'].lower()}_{who}_ms_{row['threads']}t": row[f'{who}_ms']
            for row in results
            for who in ('ours', 'torch', 'loop', 'bf16')
        },
        'ratios': {
            **{f"{row['cell'].lower()}_{who}_over_torch_throughput_{row['threads']}t": row[key]
               for row in results
               for who, key in (('ours', 'throughput_ratio'), ('loop', 'loop_throughput_ratio'))},
            **{f"{row['cell'].lower()}_bf16_over_fp32_throughput_{row['threads']}t":
               row['bf16_over_fp32'] for row in results},
        },
    }
    if args.json:
        print(json.dumps(report))
        return
    print(f"forward+backward, batch {args.batch}, hidden {args.hidden}, {args.steps} steps, "
          f"{args.inputs} inputs, torch {torch.__version__}")
    print(f"{'cell':6} {'threads':>7} {'torch.nn ms':>12} {'ours ms':>9} {'loop ms':>9} "
          f"{'bf16 ms':>9} {'ours/torch':>11} {'loop/torch':>11} {'bf16/fp32':>10}")
    for row in results:
        print(f"{row['cell']:6} {row['threads']:7d} {row['torch_ms']:12.2f} {row['ours_ms']:9.2f} "
              f"{row['loop_ms']:9.2f} {row['bf16_ms']:9.2f} {row['throughput_ratio']:11.2f} "
              f"{row['loop_throughput_ratio']:11.2f} {row['bf16_over_fp32']:10.2f}")


if __name__ == '__main__':
    main()
