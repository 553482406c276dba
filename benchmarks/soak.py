"""Soak: does the collision node stay flat over a long run? Resident memory and latency, early
against late, accelerated (no sleeping: the next frame goes as soon as the last is answered).

* **In process**: ``--frames`` frames (default 100 000) through ``CollisionRuntime`` built as
  the node builds it (the shipped default model, ``cpu_threads`` 1). The frames are cheap
  synthetic 64x64 scenes, a ball crossing a grey view, stamped at 30 Hz in episodes of
  :data:`EPISODE_FRAMES` with a :data:`EPISODE_GAP_S` gap (one state reset each, as in a bag
  replay). This process's resident memory is sampled along the way.
* **Over DDS**: ``--dds-frames`` frames (default 20 000) from a publisher here to the node of
  ``python -m rnn_perception bringup dodgeball`` in a subprocess (a DDS domain of its own,
  localhost only); each frame is published once the node's answer to the previous one has come
  back (keep-last 1 never drops one); latency = publish -> answer received. The node process's
  ``VmRSS`` (``/proc/PID/status``) is sampled along the way.

Memory growth is counted after warm-up: from the 10 % mark to the end. Latency p50/p99 of the
first 10 % of frames against the last 10 %.

    .venv/bin/python benchmarks/soak.py [--frames 100000] [--dds-frames 20000] [--json PATH]

``--json`` writes ``{"benchmark": "soak", "figures": {...}, "ratios": {...}}``. Exit status 1
with one line on stderr when the node cannot be started or stops answering.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np

from bench_collision_node import build_runtime, resident_mib

FPS = 30.0
EPISODE_FRAMES = 60
EPISODE_GAP_S = 1.0
SCENES = 16                    # distinct episodes, cycled: the frames cost nothing to make
FRAME_SIZE = 64
RSS_SAMPLES = 100
WARMUP_FRAMES = 200            # first calls (allocator, lazy init), not measured
ANSWER_TIMEOUT_S = 10.0
NODE_START_TIMEOUT_S = 120.0
NAMESPACE = 'soak'
IMAGE_TOPIC = f'/{NAMESPACE}/camera/image_raw'
ANSWER_TOPIC = f'/{NAMESPACE}/collision_node/collision_probability_stamped'
REPO = Path(__file__).resolve().parent.parent


class SoakError(RuntimeError):
    """The soak cannot go on; the message says why."""


# -------------------------------------------------------------------------------------- frames
def ball_scenes(count: int, size: int, frames: int, seed: int = 0) -> np.ndarray:
    """``count`` episodes of a ball crossing a grey view on a straight line: ``(E, T, H, W, 3)`` uint8."""
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

        from rnn_perception.ros.image_conversion import array_to_image_fields

        self._messages = [[Image(**array_to_image_fields(frame)) for frame in scene]
                          for scene in ball_scenes(SCENES, FRAME_SIZE, EPISODE_FRAMES)]

    def __call__(self, n: int, start_s: float = 1000.0):
        episode, frame = divmod(n, EPISODE_FRAMES)
        stamp_ns = round((start_s + episode * (EPISODE_FRAMES / FPS + EPISODE_GAP_S) + frame / FPS) * 1e9)
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
    from rnn_perception.runtime.collision import CollisionSettings, Outcome

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
        unanswered += result.outcome is not Outcome.PROCESSED or not np.isfinite(result.probability)
        if is_sampled(n):
            rss.append((n, resident_mib()))
    elapsed = time.perf_counter() - started
    return {'inprocess_frames': frames, 'inprocess_unanswered': unanswered,
            'inprocess_resets': runtime.counters.resets - resets, 'inprocess_frames_per_s': frames / elapsed,
            **summary('inprocess', latency_s, rss, frames)}


# ---------------------------------------------------------------------------------------- DDS
def node_rss_mib(pid: int) -> float:
    """``VmRSS`` of process ``pid`` (Linux ``/proc/PID/status``), MiB."""
    with open(f'/proc/{pid}/status') as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith('VmRSS:'))
    return kib / 1024


class NodeProcess:
    """``bringup dodgeball`` in a subprocess, its log in a temp file (shown when it fails)."""

    def __init__(self):
        self._log = tempfile.TemporaryFile(mode='w+')
        command = [sys.executable, '-m', 'rnn_perception', 'bringup', 'dodgeball', '--device', 'cpu',
                   '--namespace', NAMESPACE, '--image-topic', IMAGE_TOPIC,
                   '--ros-args', '-p', 'image_qos:=reliable', '--log-level', 'warn']
        self.process = subprocess.Popen(command, cwd=REPO, stdin=subprocess.DEVNULL, stdout=self._log,
                                        stderr=subprocess.STDOUT)

    def check_running(self) -> None:
        if self.process.poll() is not None:
            self._log.seek(0)
            last = (self._log.read().strip().splitlines() or ['(no output)'])[-1]
            raise SoakError(f'the collision node exited with {self.process.returncode}: {last}')

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def soak_over_dds(frames: int) -> Dict[str, float]:
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from geometry_msgs.msg import PointStamped
    from sensor_msgs.msg import Image

    from rnn_perception.demo import isolate_dds

    isolate_dds()                          # before rclpy starts: the node process inherits it
    node = NodeProcess()
    context = Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    try:
        probe = rclpy.create_node('soak_camera', context=context)
        executor.add_node(probe)
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        camera_pub = probe.create_publisher(Image, IMAGE_TOPIC, qos)
        arrivals: Dict[int, float] = {}
        probe.create_subscription(PointStamped, ANSWER_TOPIC, lambda m: arrivals.__setitem__(
            m.header.stamp.sec * 10**9 + m.header.stamp.nanosec, time.perf_counter()), QoSProfile(depth=10))
        camera = CameraFrames()

        def spin_until(predicate, timeout_s: float) -> bool:
            deadline = time.monotonic() + timeout_s
            while not predicate():
                if time.monotonic() > deadline:
                    return False
                node.check_running()
                executor.spin_once(timeout_sec=0.05)
            return True

        if not spin_until(lambda: camera_pub.get_subscription_count() > 0
                          and probe.count_publishers(ANSWER_TOPIC) > 0, NODE_START_TIMEOUT_S):
            raise SoakError(f'the collision node did not subscribe to {IMAGE_TOPIC} within '
                            f'{NODE_START_TIMEOUT_S:.0f} s')
        def exchange(n: int, start_s: float, timeout_s: float):
            """Publish frame ``n``; the time until its answer came back (s), or None."""
            message, stamp_ns = camera(n, start_s)
            sent = time.perf_counter()
            camera_pub.publish(message)
            answered = spin_until(lambda: stamp_ns in arrivals, timeout_s)
            return arrivals.pop(stamp_ns) - sent if answered else None

        # warm-up on earlier stamps: until the node answers (its side of the match may lag ours)
        attempts = int(NODE_START_TIMEOUT_S / 0.5)
        if not any(exchange(n, 100.0, 0.5) is not None for n in range(attempts)):
            raise SoakError('the collision node never answered a frame')
        for n in range(attempts, attempts + WARMUP_FRAMES):
            exchange(n, 100.0, ANSWER_TIMEOUT_S)
        arrivals.clear()

        latency_s, rss = np.full(frames, np.nan), []
        is_sampled = sampled(frames)
        started = time.perf_counter()
        for n in range(frames):
            latency = exchange(n, 1000.0, ANSWER_TIMEOUT_S)
            if latency is not None:
                latency_s[n] = latency
            if is_sampled(n):
                rss.append((n, node_rss_mib(node.process.pid)))
        elapsed = time.perf_counter() - started
        node.check_running()
    finally:
        executor.shutdown()
        rclpy.try_shutdown(context=context)
        node.stop()
    answered = latency_s[np.isfinite(latency_s)]
    return {'dds_frames': frames, 'dds_unanswered': frames - len(answered), 'dds_frames_per_s': frames / elapsed,
            **summary('dds', answered, rss, frames)}


# ------------------------------------------------------------------------------------------ main
def ratios(figures: Dict[str, float]) -> Dict[str, float]:
    """Late over early latency for each part that ran."""
    return {f'{part}_{q}_last_over_first': figures[f'{part}_{q}_last10_ms'] / figures[f'{part}_{q}_first10_ms']
            for part in ('inprocess', 'dds') if f'{part}_p50_first10_ms' in figures for q in ('p50', 'p99')}


def print_table(figures: Dict[str, float], ratio: Dict[str, float]) -> None:
    for part, label in (('inprocess', 'in process'), ('dds', 'over DDS')):
        if f'{part}_frames' not in figures:
            continue
        f = lambda name: figures[f'{part}_{name}']   # noqa: E731
        print(f"{label}: {f('frames'):.0f} frames at {f('frames_per_s'):.0f}/s, {f('unanswered'):.0f} unanswered; "
              f"RSS {f('rss_at_10pct_mib'):.1f} MiB at 10 % -> {f('rss_end_mib'):.1f} MiB at the end "
              f"({f('rss_growth_mib'):+.1f} MiB, peak {f('rss_peak_mib'):.1f})")
        print(f"  latency p50 {f('p50_first10_ms'):.2f} -> {f('p50_last10_ms'):.2f} ms "
              f"(x{ratio[f'{part}_p50_last_over_first']:.2f}), p99 {f('p99_first10_ms'):.2f} -> "
              f"{f('p99_last10_ms'):.2f} ms (x{ratio[f'{part}_p99_last_over_first']:.2f}), first -> last 10 %")


def positive_or_zero(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f'must be >= 0, got {value}')
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--frames', type=positive_or_zero, default=100_000, help='frames in process (0: skip)')
    parser.add_argument('--dds-frames', type=positive_or_zero, default=20_000, help='frames over DDS (0: skip)')
    parser.add_argument('--json', type=Path, help='also write the figures to this JSON file')
    args = parser.parse_args(argv)
    figures: Dict[str, float] = {}
    try:
        if args.frames:
            figures.update(soak_in_process(args.frames))
        if args.dds_frames:
            figures.update(soak_over_dds(args.dds_frames))
    except SoakError as error:
        print(f'soak: error: {error}', file=sys.stderr)
        return 1
    ratio = ratios(figures)
    print_table(figures, ratio)
    if args.json:
        temporary = args.json.with_name(args.json.name + '.tmp')
        temporary.write_text(json.dumps({'benchmark': 'soak', 'figures': figures, 'ratios': ratio}, indent=1))
        os.replace(temporary, args.json)
    return 0


if __name__ == '__main__':
    sys.exit(main())
