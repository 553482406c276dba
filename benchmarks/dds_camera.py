"""What the DDS benchmarks share: the collision node in a subprocess and a camera here that sends
one frame at a time and times the node's answer (``soak.py``, ``bench_dds_latency.py``).

One frame in flight at a time: the next is published once the answer to the last one came back,
so the node's keep-last-1 image subscription never drops one and each latency is a whole round
trip (serialisation, loopback transport both ways, decode, resize, one model step, publish).
Everything runs on a DDS domain of its own with discovery on localhost (``isolate_dds``, as the
demo), set before rclpy starts so the node process inherits it.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Optional

from rnn_perception.demo import isolate_dds

REPO = Path(__file__).resolve().parent.parent
NAMESPACE = 'bench'
IMAGE_TOPIC = f'/{NAMESPACE}/camera/image_raw'
ANSWER_TOPIC = f'/{NAMESPACE}/collision_node/collision_probability_stamped'
NODE_START_TIMEOUT_S = 120.0
FIRST_ANSWER_TRY_S = 0.5       # frames are re-sent this often until the node's first answer


class BenchmarkError(RuntimeError):
    """The benchmark cannot go on; the message says why."""


def node_rss_mib(pid: int) -> float:
    """``VmRSS`` of process ``pid`` (Linux ``/proc/PID/status``), MiB."""
    with open(f'/proc/{pid}/status') as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith('VmRSS:'))
    return kib / 1024


class NodeProcess:
    """``bringup dodgeball`` (CPU, reliable images) in a subprocess, its log in a temp file,
    shown when it fails."""

    def __init__(self):
        self._log = tempfile.TemporaryFile(mode='w+')
        command = [
            sys.executable,
            '-m',
            'rnn_perception',
            'bringup',
            'dodgeball',
            '--device',
            'cpu',
            '--namespace',
            NAMESPACE,
            '--image-topic',
            IMAGE_TOPIC,
            '--ros-args',
            '-p',
            'image_qos:=reliable',
            '--log-level',
            'warn',
        ]
        self.process = subprocess.Popen(
            command, cwd=REPO, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_running(self) -> None:
        if self.process.poll() is not None:
            self._log.seek(0)
            last = (self._log.read().strip().splitlines() or ['(no output)'])[-1]
            raise BenchmarkError(
                f'the collision node exited with {self.process.returncode}: {last}'
            )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


class DdsCamera:
    """A camera publisher and answer subscriber here, the node in a subprocess (``with`` block).

    :meth:`exchange` publishes one frame and waits for its answer; :meth:`wait_for_node` first
    re-sends a frame until the node answers (its side of the match may lag ours).
    """

    def __init__(self):
        self.domain = isolate_dds()

    def __enter__(self) -> 'DdsCamera':
        import rclpy
        from geometry_msgs.msg import PointStamped
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        self.node = NodeProcess()
        self._context = Context()
        rclpy.init(context=self._context)
        self._executor = SingleThreadedExecutor(context=self._context)
        probe = rclpy.create_node('bench_camera', context=self._context)
        self._executor.add_node(probe)
        self._publisher = probe.create_publisher(
            Image, IMAGE_TOPIC, QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        )
        self._arrivals: Dict[int, float] = {}
        probe.create_subscription(
            PointStamped,
            ANSWER_TOPIC,
            lambda m: self._arrivals.__setitem__(
                m.header.stamp.sec * 10**9 + m.header.stamp.nanosec, time.perf_counter()
            ),
            QoSProfile(depth=10),
        )
        if not self._spin_until(
            lambda: (
                self._publisher.get_subscription_count() > 0
                and probe.count_publishers(ANSWER_TOPIC) > 0
            ),
            NODE_START_TIMEOUT_S,
        ):
            self.__exit__(None, None, None)
            raise BenchmarkError(f'the collision node did not subscribe to {IMAGE_TOPIC} within '
                                 f'{NODE_START_TIMEOUT_S:.0f} s')
        return self

    def __exit__(self, *exc) -> None:
        import rclpy
        self._executor.shutdown()
        rclpy.try_shutdown(context=self._context)
        self.node.stop()

    def _spin_until(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                return False
            self.node.check_running()
            self._executor.spin_once(timeout_sec=0.05)
        return True

    def exchange(self, message, timeout_s: float) -> Optional[float]:
        """Publish ``message`` (an Image with a unique stamp); the seconds until the node's answer
        carrying that stamp came back, or ``None`` when none came within ``timeout_s``."""
        stamp = message.header.stamp
        stamp_ns = stamp.sec * 10**9 + stamp.nanosec
        sent = time.perf_counter()
        self._publisher.publish(message)
        answered = self._spin_until(lambda: stamp_ns in self._arrivals, timeout_s)
        return self._arrivals.pop(stamp_ns) - sent if answered else None

    def wait_for_node(self, frame: Callable[[int], object]) -> int:
        """Send ``frame(n)`` for n = 0, 1, ... until one is answered; the next unused n."""
        for n in range(int(NODE_START_TIMEOUT_S / FIRST_ANSWER_TRY_S)):
            if self.exchange(frame(n), FIRST_ANSWER_TRY_S) is not None:
                self._arrivals.clear()           # late answers to the re-sent frames
                return n + 1
        raise BenchmarkError('the collision node never answered a frame')
