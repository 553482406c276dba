"""Every benchmark of the project in one run: one JSON and one markdown table (``make bench``).

Runs each benchmark script in its own process (so one's threads, caches and memory do not
colour the next), each with ``--json``, and collects what they print: the machine, torch
version and device once, then every benchmark's ``figures`` (absolute numbers, units in their
names) and ``ratios`` (measured side by side in one run, which is what holds on a shared,
noisy machine). A benchmark that fails is reported with its error and the run exits 1 at the
end, after the others ran. With CUDA present the node benchmark also runs on the GPU, with the
half-precision and channels-last variants.

    .venv/bin/python benchmarks/run_all.py [--out benchmarks/results] [--readme README.md]
        [--quick]

Writes ``OUT/latest.json`` and ``OUT/latest.md`` (temp name, then renamed); with ``--readme``
the table between the README's ``<!-- bench:start -->`` and ``<!-- bench:end -->`` markers is
replaced by the new one. ``--quick`` runs every benchmark with small counts (a smoke test of
this script, not figures to quote).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import torch
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
README_START, README_END = '<!-- bench:start -->', '<!-- bench:end -->'


@dataclass(frozen=True)
class Benchmark:
    """One script run: its arguments for the full run and for ``--quick``."""

    name: str
    what: str
    script: str
    arguments: Tuple[str, ...]
    quick_arguments: Tuple[str, ...]
    single_thread: bool = False      # OMP_NUM_THREADS=1, as the nodes run (cpu_threads 1)


def benchmarks(cuda: bool) -> List[Benchmark]:
    """The project's benchmarks; the GPU runs only where CUDA is present."""
    chosen = [
        Benchmark(
            'cells',
            'cell library vs torch.nn, forward+backward (1 and 2 threads)',
            'bench_cells.py',
            ('--threads', '1,2'),
            ('--threads', '1', '--rounds', '3', '--steps', '16'),
        ),
        Benchmark(
            'dodgeball_sim',
            'dodgeball simulator, 64x64 labelled frames',
            'bench_sim.py',
            ('--episodes', '60'),
            ('--episodes', '4'),
        ),
        Benchmark(
            'tactile_sim',
            'tactile slip simulator, 100 Hz samples',
            'bench_tactile_sim.py',
            ('--episodes', '40'),
            ('--episodes', '2'),
        ),
        Benchmark(
            'collision_node',
            'collision node step vs 20-frame window re-run, CPU',
            'bench_collision_node.py',
            ('--device', 'cpu', '--variants'),
            ('--device', 'cpu', '--frames', '1000', '--latency-frames', '200'),
            single_thread=True,
        ),
        Benchmark(
            'compressed_decode',
            'JPEG camera frame -> 64x64 model input, reduced vs full decode',
            'bench_compressed_decode.py',
            (),
            ('--frames', '20'),
            single_thread=True,
        ),
        Benchmark(
            'onnx_step',
            'node and model step, onnxruntime backend vs torch backend, CPU',
            'bench_onnx_step.py',
            (),
            ('--steps', '100'),
            single_thread=True,
        ),
        Benchmark(
            'tactile_node',
            'tactile node step, CPU',
            'bench_tactile_node.py',
            (),
            ('--samples', '300'),
            single_thread=True,
        ),
        Benchmark(
            'dds_latency',
            'camera -> collision node -> subscriber over DDS',
            'bench_dds_latency.py',
            (),
            ('--frames', '60'),
        ),
        Benchmark(
            'lead_time_limits',
            'collision model vs trajectory oracle and classical baseline, same fresh throws',
            'lead_time_limits.py',
            ('--episodes', '100'),
            ('--episodes', '3'),
        ),
        Benchmark(
            'streaming',
            'collision training epoch streaming 4 shards vs in memory: peak RSS at 1x and 4x '
            'data, episodes/s',
            'bench_streaming.py',
            ('--episodes', '400'),
            ('--episodes', '8', '--episodes-per-shard', '2', '--shards-in-memory', '2'),
        ),
        Benchmark(
            'soak',
            'collision node soak: memory and latency drift',
            'soak.py',
            (),
            ('--frames', '3000', '--dds-frames', '300'),
        ),
    ]
    if cuda:
        chosen.append(
            Benchmark(
                'collision_node_cuda',
                'collision node step, CUDA, with speed-up variants',
                'bench_collision_node.py',
                ('--device', 'cuda', '--variants', '--compile'),
                ('--device', 'cuda', '--frames', '1000', '--latency-frames', '200'),
            )
        )
    return chosen


def run(benchmark: Benchmark, quick: bool, timeout_s: float) -> Dict:
    """Run one script; its JSON (the last line it printed), or ``{'error': ...}``."""
    command = [sys.executable, str(HERE / benchmark.script),
               *(benchmark.quick_arguments if quick else benchmark.arguments), '--json']
    environment = dict(os.environ, **({'OMP_NUM_THREADS': '1'} if benchmark.single_thread else {}))
    started = time.perf_counter()
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=environment,
            timeout=timeout_s,
            cwd=HERE.parent,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {'error': f'timed out after {timeout_s:.0f} s'}
    seconds = time.perf_counter() - started
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ['no output'])[-1]
        return {'error': f'exit {done.returncode}: {last}', 'seconds': seconds}
    try:
        result = json.loads(lines[-1])
    except json.JSONDecodeError:
        return {'error': f'no JSON on the last line: {lines[-1][:200]}', 'seconds': seconds}
    result['seconds'] = seconds
    return result


def machine() -> Dict[str, str]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as cpuinfo:
            cpu = next(
                line.split(':', 1)[1].strip() for line in cpuinfo if line.startswith('model name')
            )
    except (OSError, StopIteration):
        pass
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none (CPU only)'
    return {'cpu': cpu, 'cores': str(os.cpu_count()), 'system': platform.platform(terse=True),
            'python': platform.python_version(), 'torch': torch.__version__, 'gpu': device,
            'load_average_at_start': f'{os.getloadavg()[0]:.2f}'}


def format_number(value) -> str:
    if not isinstance(value, (int, float)):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 100:
        return f'{value:,.0f}'
    return f'{value:.3g}' if magnitude >= 0.01 or value == 0 else f'{value:.2e}'


def markdown(report: Dict, catalogue: Sequence[Benchmark]) -> str:
    """The report as markdown: the machine, then one table row per figure and per ratio."""
    info = report['machine']
    lines = [f"Measured {report['date']} with `make bench` ({report['total_seconds']:.0f} s): "
             f"{info['cpu']}, {info['cores']} cores, GPU {info['gpu']}; Python {info['python']}, "
             f"torch {info['torch']}; load average {info['load_average_at_start']} at the start.",
             '', '| benchmark | figure | value |', '| --- | --- | --- |']
    for benchmark in catalogue:
        result = report['benchmarks'][benchmark.name]
        label = f'{benchmark.name}: {benchmark.what}'
        if 'error' in result:
            lines.append(f"| {label} | **failed** | {result['error']} |")
            continue
        rows = [*result.get('figures', {}).items(), *(
            (f'ratio {name}', value) for name, value in result.get('ratios', {}).items())]
        for index, (name, value) in enumerate(rows):
            lines.append(f"| {label if index == 0 else ''} | {name} | {format_number(value)} |")
    return '\n'.join(lines) + '\n'


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f'.{path.name}.tmp')
    temporary.write_text(text)
    temporary.replace(path)


class ReadmeError(Exception):
    """The README given cannot take the table."""


def readme_block(readme: Path) -> Tuple[str, int, int]:
    """The README's text and the span between its bench markers; :class:`ReadmeError` saying
    what is wrong when it has none."""
    try:
        text = readme.read_text()
    except OSError as error:
        raise ReadmeError(f'{readme}: {error.strerror}') from None
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise ReadmeError(f'{readme}: no {README_START} ... {README_END} block to replace')
    return text, start + len(README_START), end


def update_readme(readme: Path, table: str) -> None:
    """Replace the README's table between the bench markers."""
    text, start, end = readme_block(readme)
    write_atomically(readme, text[:start] + '\n' + table + text[end:])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        '--out', type=Path, default=HERE / 'results', help='folder for latest.json and latest.md'
    )
    parser.add_argument('--readme', type=Path, help='also replace the table in this README')
    parser.add_argument(
        '--quick', action='store_true', help='small counts: checks the scripts run, not figures'
    )
    parser.add_argument('--only', nargs='+', metavar='NAME', help='run only these benchmarks')
    parser.add_argument(
        '--timeout', type=float, default=1200.0, help='seconds allowed per benchmark'
    )
    args = parser.parse_args()
    catalogue = benchmarks(torch.cuda.is_available())
    if args.only:
        unknown = sorted(set(args.only) - {benchmark.name for benchmark in catalogue})
        if unknown:
            parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: "
                         f"{', '.join(benchmark.name for benchmark in catalogue)}")
        catalogue = [benchmark for benchmark in catalogue if benchmark.name in args.only]
    if args.readme:
        try:  # a README that cannot take the table is refused before an hour of benchmarks
            readme_block(args.readme)
        except ReadmeError as error:
            print(f'run_all: error: {error}', file=sys.stderr)
            return 1
    started = time.perf_counter()
    report = {'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
              'quick': args.quick, 'machine': machine(), 'benchmarks': {}}
    for benchmark in tqdm(catalogue, desc='benchmarks', unit='benchmark'):
        tqdm.write(f'{benchmark.name}: {benchmark.what}')
        report['benchmarks'][benchmark.name] = run(benchmark, args.quick, args.timeout)
    report['total_seconds'] = time.perf_counter() - started
    table = markdown(report, catalogue)
    write_atomically(args.out / 'latest.json', json.dumps(report, indent=1) + '\n')
    write_atomically(args.out / 'latest.md', table)
    print(table)
    print(f'wrote {args.out / "latest.json"} and {args.out / "latest.md"}')
    failed = [name for name, result in report['benchmarks'].items() if 'error' in result]
    if args.readme:
        update_readme(args.readme, table)
    if failed:
        print(f"run_all: error: benchmark(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
