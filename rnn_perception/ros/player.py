"""``python -m rnn_perception play --bag PATH [--rate R] [--loop] [--clock]
[--wait-for-subscriber TOPIC[=N]] [--start-delay S] [--queue-depth N]``.

Publishes a rosbag2 (sqlite3 or mcap, read with the pure-Python ``rosbags``) over DDS with its
recorded timing: ``ros2 bag play`` for machines without the ROS 2 CLI.

* Every topic is published with its recorded type, as the recorded CDR bytes (no
  re-serialisation, so what arrives is exactly what was recorded), header stamps included.
  Each message is checked to deserialise first, so a corrupt bag stops the player instead of
  reaching subscribers. Topics whose message package is not installed are skipped with a warning.
* Pacing follows the bag's receive times, divided by ``--rate``; ``--loop`` plays it again and
  again (the stamps then jump back, which a subscriber may take as a restart).
* QoS: reliable, volatile, keep-last as deep as the topic's messages in the bag (at most
  ``--queue-depth``, default :data:`MAX_QUEUE_DEPTH`). Reliable because Fast DDS loses large
  frames (e.g. 640x480 images) on best-effort links; a best-effort subscriber still matches it.
  The depth is what makes reliable mean lossless: a reader that falls behind (a loaded machine,
  a frame in hundreds of fragments) is sent the frames it missed instead of having them
  overwritten by newer ones; publishing never blocks on it. A volatile writer frees each sample
  once every reader acknowledged it, so the depth costs memory only for frames still in flight.
* At the end the player waits (at most :data:`ACK_WAIT_S`) until every subscriber acknowledged
  every message before it exits, since DDS sends asynchronously and a process that exits right
  after its last ``publish`` takes unsent fragments with it; it warns if some never were.
* ``--clock`` also publishes ``/clock`` (bag time) for nodes run with ``use_sim_time``.
* ``--wait-for-subscriber TOPIC[=N]`` (repeatable) holds playback until ``TOPIC`` has ``N``
  (default 1) matched subscribers (at most :data:`SUBSCRIBER_WAIT_S`), so a replay that must
  reach a node from its first message does not depend on how long discovery takes: name the
  count when several processes subscribe (the demo's listener and the node), or the first to
  match releases the player; ``--start-delay`` (default 1 s) then gives the subscribers' side
  of the match (DDS discovery is not symmetric) and every other subscriber time to complete.

Errors (bag not found, not a rosbag2, corrupt, a topic recorded with two types, nothing
playable) print one line ``play: error: ...`` and exit with 1 (2 for a bad command line);
Ctrl-C exits with 130. The player plays any type on any topic, as ``ros2 bag play`` does: a
subscriber of another type on that topic is simply never matched by DDS.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import rclpy
from rclpy.duration import Duration
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rosbags.rosbag2 import Reader
from rosgraph_msgs.msg import Clock
from tqdm import tqdm

from ..cli import OneLineParser, UsageError, report_error
from ..data.bags import BagError, bag_records, one_line, open_bag, topic_types

MAX_QUEUE_DEPTH = 1000
SUBSCRIBER_WAIT_S = 60.0
ACK_WAIT_S = 30.0


class PlayerError(Exception):
    """The bag cannot be played; the message says why."""


def message_class(msgtype: str):
    """The rclpy message class of ``'pkg/msg/Name'`` (``rosidl_runtime_py`` when installed)."""
    try:
        from rosidl_runtime_py.utilities import get_message
    except ImportError:
        package, _, name = msgtype.split('/')
        return getattr(importlib.import_module(f'{package}.msg'), name)
    return get_message(msgtype)


def open_playable_bag(path: Path) -> Reader:
    """An open rosbags ``Reader`` of a bag with messages, each topic of one type; :class:`BagError`
    or :class:`PlayerError` saying what is wrong with ``path`` otherwise."""
    reader = open_bag(path)
    mixed = {topic: sorted(msgtypes) for topic, msgtypes in topic_types(reader).items()
             if len(msgtypes) > 1}
    problem = None
    if reader.message_count == 0:
        problem = f'{path}: the bag holds no messages'
    elif mixed:
        topic, msgtypes = next(iter(mixed.items()))
        problem = (f'{path}: {topic} is recorded with {len(msgtypes)} message types '
                   f'({", ".join(msgtypes)})')
    if problem:
        reader.close()
        raise PlayerError(problem)
    return reader


class BagPlayer:
    """Publishes the messages of an open bag from ``node`` with their recorded timing."""

    def __init__(self, node, reader: Reader, rate: float, publish_clock: bool,
                 max_queue_depth: int = MAX_QUEUE_DEPTH):
        self._reader = reader
        self._rate = rate
        counts: Dict[str, int] = {}
        for connection in reader.connections:
            counts[connection.topic] = counts.get(connection.topic, 0) + connection.msgcount
        self._publishers: Dict[str, object] = {}
        self._classes: Dict[str, type] = {}
        for connection in reader.connections:
            if connection.topic in self._publishers:
                continue
            try:
                msg_class = message_class(connection.msgtype)
            except (ImportError, AttributeError, ValueError):
                node.get_logger().warning(f'skipping {connection.topic}: message type '
                                          f'{connection.msgtype} is not installed here')
                continue
            self._classes[connection.topic] = msg_class
            depth = min(max(counts[connection.topic], 1), max_queue_depth)
            self._publishers[connection.topic] = node.create_publisher(
                msg_class, connection.topic, lossless_qos(depth))
        if not self._publishers:
            raise PlayerError('no topic of the bag has a message type installed here')
        clock_depth = min(max(self.message_count, 1), max_queue_depth)
        self._clock_publisher = (node.create_publisher(Clock, '/clock', lossless_qos(clock_depth))
                                 if publish_clock else None)
        self.published = 0

    @property
    def topics(self) -> List[str]:
        return sorted(self._publishers)

    @property
    def message_count(self) -> int:
        """Messages per pass over the bag (those of the played topics)."""
        return sum(c.msgcount for c in self._reader.connections if c.topic in self._publishers)

    def wait_for_subscribers(self, topics: Dict[str, int], timeout_s: float) -> None:
        """Return once every topic of ``topics`` has (at least) its number of matched
        subscribers."""
        unknown = sorted(set(topics) - set(self._publishers))
        if unknown:
            raise PlayerError(
                f'cannot wait for a subscriber of {", ".join(unknown)}: the bag has no such '
                f'topic (it plays {", ".join(self.topics)})'
            )
        deadline = time.monotonic() + timeout_s
        while True:
            matched = {topic: self._publishers[topic].get_subscription_count() for topic in topics}
            waiting = [f'{topic} ({matched[topic]} of {count})' for topic, count in topics.items()
                       if matched[topic] < count]
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise PlayerError(
                    f'too few subscribers matched within {timeout_s:.0f} s: {", ".join(waiting)}'
                )
            time.sleep(0.05)

    def play_once(self, progress: tqdm) -> None:
        """Publish the whole bag once, paced by its receive times."""
        connections = [c for c in self._reader.connections if c.topic in self._publishers]
        start_wall, start_bag = time.monotonic(), None
        for connection, stamp_ns, data in bag_records(self._reader, connections):
            start_bag = stamp_ns if start_bag is None else start_bag
            delay = start_wall + (stamp_ns - start_bag) * 1e-9 / self._rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            data = bytes(data)
            self._check_message(connection.topic, stamp_ns, data)
            if self._clock_publisher is not None:
                self._publish_clock(stamp_ns)
            self._publishers[connection.topic].publish(data)
            self.published += 1
            progress.update()

    def wait_until_delivered(self, timeout_s: float) -> List[str]:
        """Wait until every matched subscriber acknowledged every message published so far (at
        most ``timeout_s`` in all); the topics that still have unacknowledged messages."""
        deadline = time.monotonic() + timeout_s
        publishers = dict(self._publishers)
        if self._clock_publisher is not None:
            publishers['/clock'] = self._clock_publisher
        pending = []
        for topic, publisher in publishers.items():
            left_s = max(deadline - time.monotonic(), 0.0)
            if not publisher.wait_for_all_acked(Duration(nanoseconds=round(left_s * 1e9))):
                pending.append(topic)
        return pending

    def _check_message(self, topic: str, stamp_ns: int, data: bytes) -> None:
        try:
            deserialize_message(data, self._classes[topic])
        except Exception as error:  # noqa: BLE001 - rclpy raises its non-public RMWError here
            raise PlayerError(f'{self._reader.path}: corrupt {topic} message at bag time '
                              f'{stamp_ns / 1e9:.3f} s ({one_line(error)})') from None

    def _publish_clock(self, stamp_ns: int) -> None:
        clock = Clock()
        clock.clock.sec, clock.clock.nanosec = divmod(stamp_ns, 1_000_000_000)
        self._clock_publisher.publish(clock)


def lossless_qos(depth: int) -> QoSProfile:
    """Reliable, volatile, keep-last ``depth``: see the module docstring for why."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


def subscriber_wait(text: str) -> Tuple[str, int]:
    """``TOPIC`` or ``TOPIC=N`` -> ``(TOPIC, N)`` (an argparse type)."""
    topic, _, count = text.partition('=')
    if not count:
        return topic, 1
    if not count.isdigit() or int(count) < 1:
        raise argparse.ArgumentTypeError(f'expected TOPIC or TOPIC=N with N >= 1, got {text!r}')
    return topic, int(count)


def _parse(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = OneLineParser(
        prog='python -m rnn_perception play',
        description='Publish a rosbag2 (sqlite3 or mcap) over DDS with its recorded timing.')
    parser.add_argument('--bag', required=True, type=Path, help='rosbag2 directory')
    parser.add_argument(
        '--rate', type=float, default=1.0, help='playback speed factor (default 1)'
    )
    parser.add_argument('--loop', action='store_true', help='play again and again until Ctrl-C')
    parser.add_argument(
        '--clock', action='store_true', help='also publish /clock with the bag time'
    )
    parser.add_argument(
        '--wait-for-subscriber',
        action='append',
        default=[],
        metavar='TOPIC[=N]',
        type=subscriber_wait,
        help=f'play only once TOPIC has N (default 1) matched subscribers (waits up to '
        f'{SUBSCRIBER_WAIT_S:.0f} s; repeatable)',
    )
    parser.add_argument(
        '--start-delay',
        type=float,
        default=1.0,
        metavar='SECONDS',
        help='wait before the first message, for subscribers to discover us (default 1)',
    )
    parser.add_argument(
        '--queue-depth',
        type=int,
        default=MAX_QUEUE_DEPTH,
        metavar='N',
        help=f'most messages per topic kept for a subscriber that falls behind (default '
        f'{MAX_QUEUE_DEPTH}; a topic with fewer messages in the bag keeps them all, so '
        f'none is lost); frames in flight cost memory until acknowledged',
    )
    args = parser.parse_args(argv)
    if not 0 < args.rate < float('inf'):
        parser.error(f'--rate must be a positive number, got {args.rate}')
    if not 0 <= args.start_delay < float('inf'):
        parser.error(f'--start-delay must be >= 0, got {args.start_delay}')
    if args.queue_depth < 1:
        parser.error(f'--queue-depth must be >= 1, got {args.queue_depth}')
    return args


def main(argv: Optional[List[str]] = None) -> int:
    try:
        args = _parse(argv)
        reader = open_playable_bag(args.bag)
    except (UsageError, BagError, PlayerError) as error:
        return report_error('play', error)
    rclpy.init()
    node = rclpy.create_node('rosbag2_player')
    try:
        player = BagPlayer(node, reader, args.rate, args.clock, args.queue_depth)
        node.get_logger().info(f'playing {args.bag} ({player.message_count} messages on '
                               f'{", ".join(player.topics)}) at rate {args.rate:g}'
                               f'{", looping" if args.loop else ""}')
        player.wait_for_subscribers(dict(args.wait_for_subscriber), SUBSCRIBER_WAIT_S)
        time.sleep(args.start_delay)
        started = time.monotonic()
        while True:
            with tqdm(
                total=player.message_count, unit='msg', disable=None, file=sys.stderr
            ) as progress:
                player.play_once(progress)
            if not args.loop:
                break
        pending = player.wait_until_delivered(ACK_WAIT_S)
        if pending:
            node.get_logger().warning(f'a subscriber did not acknowledge every message of '
                                      f'{", ".join(pending)} within {ACK_WAIT_S:.0f} s')
        node.get_logger().info(
            f'published {player.published} messages in {time.monotonic() - started:.1f} s'
        )
        return 0
    except (BagError, PlayerError) as error:
        return report_error('play', error)
    except KeyboardInterrupt:
        return 130
    finally:
        reader.close()
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    sys.exit(main())
