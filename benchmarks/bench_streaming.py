"""Training on datasets larger than memory: a collision training epoch streaming its shards
against the in-memory trainer, at 1x and 4x the data (issue 16, part 4).

Simulates two dodgeball datasets of the same seed, ``--episodes`` (1x) and ``--scale`` times
as many (4x), then runs two training epochs of the default architecture, each run in a process
of its own (``train collision --epochs 2``, otherwise the trainer's defaults, on the CPU; the
plots and the summary file at the end are skipped), and times the second, what every epoch of
a long run costs (the first also computes each episode's ball masks, kept for the later ones):

* **in memory, 1x**: ``--shards-in-memory all``, the whole dataset read once and held;
* **streaming, 1x** and **streaming, 4x**: ``--shards-in-memory K`` (default 4).

Per run: the process's peak resident memory (``ru_maxrss``: the index, the split, the
statistics pass, the epoch and validation, the whole run; the same before the first epoch and
after each, which shows whether it still grows in the second), the
training pass's episodes per second (its own wall time: reading the shards is inside it when
streaming, and before it in memory; and per CPU second of the process, all threads, which holds
on a machine that other work shares, where wall time does not) and the most shards the stream
held at once (its own counter). Ratios,
measured side by side in one run: streaming 4x peak RSS over streaming 1x (the issue's bound:
within 10 %), streaming throughput over in-memory throughput (at most 10 % slower).

    .venv/bin/python benchmarks/bench_streaming.py [--episodes 4000] [--scale 4]
        [--shards-in-memory 4] [--work DIR] [--json] [-- TRAIN_COLLISION_OPTION ...]

The README's figures use ``--episodes 4000`` (4x: 16000, the default recipe's dataset size and
four times it); ``run_all.py`` runs 400, ``--quick`` 16 episodes in shards of 4. ``--work``
keeps the datasets (and reuses them: the same seed gives the same bytes); without it they go in
a temporary directory, removed at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parent.parent
EPOCHS = 2      # the second is timed: what every epoch of a long run costs


def simulate(out: Path, episodes: int, seed: int, per_shard: int) -> None:
    """``python -m sim dodgeball`` into ``out`` unless a complete dataset is there."""
    if (out / 'manifest.json').is_file():
        return
    command = [sys.executable, '-m', 'sim', 'dodgeball', '--episodes', str(episodes), '--seed',
               str(seed), '--out', str(out), '--workers', '1', '--episodes-per-shard',
               str(per_shard)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f'bench_streaming: simulation failed: {done.stderr.strip()[-2000:]}')


def peak_rss_mb() -> float:
    """This process's peak resident memory so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(argv: List[str]) -> None:
    """One training run in this process, its last epoch timed; prints one JSON line."""
    sys.path.insert(0, str(REPO))   # this checkout's package, whichever one is installed
    from rnn_perception.training import collision

    epochs, streams, before, after = [], [], [], []
    train_epoch, stream_class = collision.train_epoch, collision.ShardStream

    class CountedSteps:
        def __init__(self, steps):
            self.steps, self.episodes, self.frames = steps, 0, 0

        def __len__(self):
            return len(self.steps)

        def __iter__(self):
            for step in self.steps:
                self.episodes += len(step.episodes)
                self.frames += sum(len(collision.trained_part(e).frames) for e in step.episodes)
                yield step

    def timed_epoch(model, auxiliary, steps, *args, **kwargs):
        counted = CountedSteps(steps)
        before.append(peak_rss_mb())
        started, cpu_started = time.perf_counter(), time.process_time()
        result = train_epoch(model, auxiliary, counted, *args, **kwargs)
        epochs.append((time.perf_counter() - started, time.process_time() - cpu_started,
                       counted.episodes, counted.frames))
        after.append(peak_rss_mb())
        return result

    def recorded_stream(*args, **kwargs):
        streams.append(stream_class(*args, **kwargs))
        return streams[-1]

    collision.train_epoch, collision.ShardStream = timed_epoch, recorded_stream
    collision.write_reports = lambda *args, **kwargs: None    # plots: not what is measured
    if collision.main(argv) != 0:
        raise SystemExit(1)
    # the last epoch: the first also computes every episode's ball masks, which later reuse
    seconds, cpu_seconds, episodes, frames = epochs[-1]
    print(json.dumps({
        'peak_rss_mb': peak_rss_mb(), 'peak_rss_before_epoch_mb': before[0],
        'peak_rss_after_epoch_mb': after,
        'epoch_seconds': seconds, 'episodes': episodes, 'frames': frames,
        'episodes_per_s': episodes / seconds, 'frames_per_s': frames / seconds,
        'epoch_cpu_seconds': cpu_seconds, 'episodes_per_cpu_s': episodes / cpu_seconds,
        'peak_resident_shards': streams[0].peak_resident, 'shards': len(
            streams[0].dataset.shard_files)}))


def run_training(data: Path, out: Path, shards_in_memory: str, options: List[str]) -> Dict:
    argv = ['--data', str(data), '--out', str(out / 'model.safetensors'), '--epochs',
            str(EPOCHS), '--device', 'cpu', '--quiet', '--shards-in-memory', shards_in_memory,
            *options]
    done = subprocess.run([sys.executable, __file__, '--child', *argv], cwd=REPO,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f'bench_streaming: training failed: {done.stderr.strip()[-2000:]}')
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == '--child':
        child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--episodes', type=int, default=4000, help='the 1x dataset')
    parser.add_argument('--scale', type=int, default=4, help='the larger dataset, times 1x')
    parser.add_argument('--episodes-per-shard', type=int, default=64,
                        help="the simulator's shard size (default: its default, 64)")
    parser.add_argument('--shards-in-memory', type=int, default=4)
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--work', type=Path, help='keep (and reuse) the datasets here')
    parser.add_argument('--json', action='store_true')
    parser.add_argument('trainer_options', nargs='*', metavar='OPTION',
                        help='more train collision options for every run, after -- (e.g. a '
                             'smaller architecture)')
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix='bench_streaming_') as scratch:
        work = args.work or Path(scratch)
        data = {}
        for scale in (1, args.scale):
            episodes = args.episodes * scale
            data[scale] = work / f'dodgeball_{episodes}_seed{args.seed}_{args.episodes_per_shard}'
            simulate(data[scale], episodes, args.seed, args.episodes_per_shard)
        larger = f'streaming_{args.scale}x'
        runs = {}
        for name, shards, scale in (('in_memory_1x', 'all', 1),
                                    ('streaming_1x', str(args.shards_in_memory), 1),
                                    (larger, str(args.shards_in_memory), args.scale)):
            out = Path(scratch) / name
            out.mkdir()
            runs[name] = run_training(data[scale], out, shards, args.trainer_options)
    figures = {f'{name}_{key}': value for name, run in runs.items()
               for key, value in run.items() if key in (
                   'peak_rss_mb', 'peak_rss_before_epoch_mb', 'peak_rss_after_epoch_mb',
                   'episodes_per_s', 'frames_per_s',
                   'epoch_seconds', 'episodes_per_cpu_s',
                   'peak_resident_shards', 'shards')}
    ratios = {
        f'{larger}_over_streaming_1x_peak_rss':
            runs[larger]['peak_rss_mb'] / runs['streaming_1x']['peak_rss_mb'],
        f'{larger}_over_in_memory_1x_peak_rss':      # against today's loader at 1x
            runs[larger]['peak_rss_mb'] / runs['in_memory_1x']['peak_rss_mb'],
        'streaming_over_in_memory_episodes_per_s_1x':
            runs['streaming_1x']['episodes_per_s'] / runs['in_memory_1x']['episodes_per_s'],
        'streaming_over_in_memory_episodes_per_cpu_s_1x':
            runs['streaming_1x']['episodes_per_cpu_s']
            / runs['in_memory_1x']['episodes_per_cpu_s'],
        f'{larger}_over_in_memory_1x_episodes_per_s':
            runs[larger]['episodes_per_s'] / runs['in_memory_1x']['episodes_per_s'],
        'in_memory_over_streaming_peak_rss_1x':
            runs['in_memory_1x']['peak_rss_mb'] / runs['streaming_1x']['peak_rss_mb'],
    }
    report = {'benchmark': 'streaming', 'episodes_1x': args.episodes, 'scale': args.scale,
              'episodes_per_shard': args.episodes_per_shard,
              'shards_in_memory': args.shards_in_memory, 'cores': os.cpu_count(),
              'figures': figures, 'ratios': ratios}
    if args.json:
        print(json.dumps(report))
        return
    print(f'{"run":<16} {"peak RSS MB":>12} {"episodes/s":>11} {"epoch s":>8} {"shards held":>12}')
    for name, run in runs.items():
        print(f'{name:<16} {run["peak_rss_mb"]:>12.0f} {run["episodes_per_s"]:>11.1f} '
              f'{run["epoch_seconds"]:>8.1f} {run["peak_resident_shards"]:>5}/{run["shards"]:<6}')
    for name, value in ratios.items():
        print(f'{name}: {value:.3f}')


if __name__ == '__main__':
    main()
