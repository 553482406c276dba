"""Soak: does the collision node stay flat over a long run? Resident memory and latency, early
against late, accelerated (no sleeping: the next frame goes as soon as the last is answered).

* **In process**: ``--frames`` frames (default 100 000) through ``CollisionRuntime`` built as
  the node builds it (the shipped default model, ``cpu_threads`` 1). The frames are cheap
  synthetic 64x64 scenes, a ball crossing a grey view, stamped at 30 Hz in episodes of
  :data:`EPISODE_FRAMES` with a :data:`EPISODE_GAP_S` gap (one state reset each, as in a bag
  replay). This process's resident memory is sampled along the way.
* **Over DDS**: ``--dds-frames`` frames (default 20 000) from a camera here to the node of
  ``python -m rnn_perception bringup dodgeball`` in a subprocess, one frame in flight
  (:mod:`dds_camera`); latency = publish -> answer received. The node process's ``VmRSS``
  (``/proc/PID/status``) is sampled along the way.

Memory growth is counted after warm-up: from the 10 % mark to the end. Latency p50/p99 of the
first 10 % of frames against the last 10 %.

    .venv/bin/python benchmarks/soak.py [--frames 100000] [--dds-frames 20000] [--json]

``--json`` prints ``{"benchmark": "soak", "figures": {...}, "ratios": {...}}`` instead of the
table. Exit status 1 with one line on stderr when the node cannot be started or stops answering.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Callable, Dict, List

import numpy as np

from bench_collision_node import build_runtime, resident_mib
from dds_camera import BenchmarkError, DdsCamera, node_rss_mib

FPS = 30.0
EPISODE_FRAMES = 60
EPISODE_GAP_S = 1.0
SCENES = 16                    # distinct episodes, cycled: the frames cost nothing to make
FRAME_SIZE = 64
RSS_SAMPLES = 100
WARMUP_FRAMES = 200            # first calls (allocator, lazy init), not measured
ANSWER_TIMEOUT_S = 10.0


# -------------------------------------------------------------------------------------- frames
def ball_scenes(count: int, size: int, frames: int, seed: int = 0) -> np.ndarray:
    """``count`` episodes of a ball crossing a grey view on a straight line:
    ``(E, T, H, W, 3)`` uint8."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[:size, :size]
    scenes = np.full((count, frames, size, size, 3), 90, np.uint8)
    for scene in scenes:
        start, end = rng.uniform(0, size, (2, 2))
        radius, colour = rng.uniform(3, 8), rng.integers(150, 256, 3, dtype=np.uint8)
        for t, frame in enumerate(scene):
            row, column = start + (end - start) * t / (frames - 1)
            frame[(rows - row) ** 2 + (columns - column) ** 2 <= radius ** 2] = colour
    return scenes


class CameraFrames:
    """Frame ``n`` of the soak as a ``sensor_msgs/Image``: the scenes' messages are made once
    and only their stamps change (30 Hz, episodes separated by a gap)."""

    def __init__(self):
        from sensor_msgs.msg import Image

        from rnn_perception.data.image_conversion import array_to_image_fields

        self._messages = [[Image(**array_to_image_fields(frame)) for frame in scene]
                          for scene in ball_scenes(SCENES, FRAME_SIZE, EPISODE_FRAMES)]

    def __call__(self, n: int, start_s: float = 1000.0):
        episode, frame = divmod(n, EPISODE_FRAMES)
        stamp_ns = round(
            (start_s + episode * (EPISODE_FRAMES / FPS + EPISODE_GAP_S) + frame / FPS) * 1e9
        )
        message = self._messages[episode % SCENES][frame]
        message.header.stamp.sec, message.header.stamp.nanosec = divmod(stamp_ns, 10**9)
        return message, stamp_ns


# ------------------------------------------------------------------------------------ statistics
def summary(prefix: str, latency_s: np.ndarray, rss: List[tuple], frames: int) -> Dict[str, float]:
    """Latency p50/p99 of the first and last 10 % of frames; resident memory at the 10 % mark,
    at the end and at its peak after the mark (MiB)."""
    tenth = max(1, len(latency_s) // 10)
    figures = {}
    for part, values in (('first10', latency_s[:tenth]), ('last10', latency_s[-tenth:])):
        figures[f'{prefix}_p50_{part}_ms'] = float(np.percentile(values, 50) * 1e3)
        figures[f'{prefix}_p99_{part}_ms'] = float(np.percentile(values, 99) * 1e3)
    after_warmup = [mib for n, mib in rss if n >= frames // 10]
    figures[f'{prefix}_rss_at_10pct_mib'] = after_warmup[0]
    figures[f'{prefix}_rss_end_mib'] = after_warmup[-1]
    figures[f'{prefix}_rss_peak_mib'] = max(after_warmup)
    figures[f'{prefix}_rss_growth_mib'] = after_warmup[-1] - after_warmup[0]
    return figures


def sampled(frames: int) -> Callable[[int], bool]:
    """Whether frame ``n`` is one where memory is sampled (:data:`RSS_SAMPLES` over the run,
    the 10 % mark and the last frame included)."""
    every = max(1, frames // RSS_SAMPLES)
    return lambda n: n % every == 0 or n == frames // 10 or n == frames - 1


# ------------------------------------------------------------------------------------ in process
def soak_in_process(frames: int) -> Dict[str, float]:
    from rnn_perception.runtime.collision import Outcome
    from rnn_perception.runtime.collision_parameters import CollisionSettings

    runtime, _ = build_runtime('', CollisionSettings(device='cpu'))
    camera = CameraFrames()
    for n in range(WARMUP_FRAMES):
        runtime.process(camera(n, start_s=100.0)[0], 0.0)
    latency_s, rss, unanswered, resets = np.empty(frames), [], 0, runtime.counters.resets
    is_sampled = sampled(frames)
    started = time.perf_counter()
    for n in range(frames):
        message, _ = camera(n)
        step_started = time.perf_counter()
        result = runtime.process(message, 0.0)
        latency_s[n] = time.perf_counter() - step_started
        unanswered += result.outcome is not Outcome.PROCESSED or not np.isfinite(
            result.probability
        )
        if is_sampled(n):
            rss.append((n, resident_mib()))
    elapsed = time.perf_counter() - started
    return {
        'inprocess_frames': frames,
        'inprocess_unanswered': unanswered,
        'inprocess_resets': runtime.counters.resets - resets,
        'inprocess_frames_per_s': frames / elapsed,
        **summary('inprocess', latency_s, rss, frames),
    }


# ---------------------------------------------------------------------------------------- DDS
def soak_over_dds(frames: int) -> Dict[str, float]:
    camera = CameraFrames()
    with DdsCamera() as dds:
        first = dds.wait_for_node(lambda n: camera(n, start_s=100.0)[0])
        for n in range(first, first + WARMUP_FRAMES):         # warm-up on earlier stamps
            dds.exchange(camera(n, start_s=100.0)[0], ANSWER_TIMEOUT_S)
        latency_s, rss = np.full(frames, np.nan), []
        is_sampled = sampled(frames)
        started = time.perf_counter()
        for n in range(frames):
            latency = dds.exchange(camera(n)[0], ANSWER_TIMEOUT_S)
            if latency is not None:
                latency_s[n] = latency
            if is_sampled(n):
                rss.append((n, node_rss_mib(dds.node.pid)))
        elapsed = time.perf_counter() - started
        dds.node.check_running()
    answered = latency_s[np.isfinite(latency_s)]
    return {
        'dds_frames': frames,
        'dds_unanswered': frames - len(answered),
        'dds_frames_per_s': frames / elapsed,
        **summary('dds', answered, rss, frames),
    }


# ------------------------------------------------------------------------------------------ main
def ratios(figures: Dict[str, float]) -> Dict[str, float]:
    """Late over early latency for each part that ran."""
    return {
        f'{part}_{q}_last_over_first': figures[f'{part}_{q}_last10_ms']
        / figures[f'{part}_{q}_first10_ms']
        for part in ('inprocess', 'dds')
        if f'{part}_p50_first10_ms' in figures
        for q in ('p50', 'p99')
    }


def print_table(figures: Dict[str, float], ratio: Dict[str, float]) -> None:
    for part, label in (('inprocess', 'in process'), ('dds', 'over DDS')):
        if f'{part}_frames' not in figures:
            continue
        f = lambda name: figures[f'{part}_{name}']  # noqa: E731
        print(
            f"{label}: {f('frames'):.0f} frames at {f('frames_per_s'):.0f}/s, "
            f"{f('unanswered'):.0f} unanswered; "
            f"RSS {f('rss_at_10pct_mib'):.1f} MiB at 10 % -> {f('rss_end_mib'):.1f} MiB "
            f"at the end ({f('rss_growth_mib'):+.1f} MiB, peak {f('rss_peak_mib'):.1f})"
        )
        print(
            f"  latency p50 {f('p50_first10_ms'):.2f} -> {f('p50_last10_ms'):.2f} ms "
            f"(x{ratio[f'{part}_p50_last_over_first']:.2f}), p99 {f('p99_first10_ms'):.2f} -> "
            f"{f('p99_last10_ms'):.2f} ms (x{ratio[f'{part}_p99_last_over_first']:.2f}), "
            f"first -> last 10 %"
        )


def positive_or_zero(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f'must be >= 0, got {value}')
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        '--frames', type=positive_or_zero, default=100_000, help='frames in process (0: skip)'
    )
    parser.add_argument(
        '--dds-frames', type=positive_or_zero, default=20_000, help='frames over DDS (0: skip)'
    )
    parser.add_argument(
        '--json', action='store_true', help='print one JSON object instead of the table'
    )
    args = parser.parse_args(argv)
    figures: Dict[str, float] = {}
    try:
        if args.frames:
            figures.update(soak_in_process(args.frames))
        if args.dds_frames:
            figures.update(soak_over_dds(args.dds_frames))
    except BenchmarkError as error:
        print(f'soak: error: {error}', file=sys.stderr)
        return 1
    ratio = ratios(figures)
    if args.json:
        print(json.dumps({'benchmark': 'soak', 'figures': figures, 'ratios': ratio}))
    else:
        print_table(figures, ratio)
    return 0


if __name__ == '__main__':
    sys.exit(main())
