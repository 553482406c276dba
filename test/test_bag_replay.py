"""rosbag2 replay over real DDS: the player on its own, then the whole loop

    sim -> bag -> ``play`` -> ``bringup dodgeball`` (collision node) -> subscriber -> metrics

compared with the offline ``eval --bag`` of the same bag and weights.
"""
from __future__ import annotations

import subprocess
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from ros_helpers import PYTHON, process_output, python_subprocess, spin_until

REPO = Path(__file__).resolve().parent.parent
TIMEOUT_SEC = 60.0
IMAGE_TOPIC = '/camera/image_raw'


def make_bag(root: Path, episodes: int, storage: str) -> Path:
    """A dodgeball bag from the simulator (``python -m sim`` runs from the repository root)."""
    bag = root / f'bag_{storage}'
    subprocess.run([PYTHON, '-m', 'sim', 'dodgeball', '--episodes', str(episodes), '--seed', '1',
                    '--out', str(root / f'data_{storage}'), '--bag', str(bag), '--storage', storage],
                   cwd=REPO, check=True, capture_output=True, timeout=120)
    return bag


def run_cli(*argv: str) -> str:
    """Python code for :func:`python_subprocess` that runs ``python -m rnn_perception argv``."""
    return f'import sys\nfrom rnn_perception.cli import main\nsys.exit(main({list(argv)!r}))\n'


def wait_for_exit(executor, process, timeout_sec=TIMEOUT_SEC) -> int:
    assert spin_until(executor, lambda: process.poll() is not None, timeout_sec), process_output(process)
    return process.returncode


def reliable_qos(depth: int):
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    from rnn_perception.models.collision import CollisionPredictor, save_collision_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('weights') / 'collision.safetensors'
    save_collision_model(path, CollisionPredictor(), {'fps': 30.0, 'threshold': 0.5})
    return path


# ---------------------------------------------------------------------------------------- player
def test_player_publishes_a_sqlite3_bag_as_recorded(tmp_path, make_node, ros_executor):
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image

    from rnn_perception.data.bags import read_bag, stamp_to_ns

    bag = make_bag(tmp_path, episodes=1, storage='sqlite3')
    bag_times = {record.stamp_ns for record in read_bag(bag)}
    recorded = [(stamp_to_ns(r.message.header.stamp), np.asarray(r.message.data).tobytes())
                for r in read_bag(bag, [IMAGE_TOPIC])]
    listener = make_node('player_listener')
    images, clocks = [], []
    listener.create_subscription(Image, IMAGE_TOPIC, lambda m: images.append(
        (stamp_to_ns(m.header.stamp), bytes(m.data))), reliable_qos(len(recorded)))
    listener.create_subscription(Clock, '/clock', lambda m: clocks.append(stamp_to_ns(m.clock)),
                                 reliable_qos(len(recorded)))

    def one_whole_pass() -> bool:
        """Some pass over the bag arrived complete and in order (--loop repeats it, so the
        test does not depend on how long discovery takes)."""
        starts = [i for i, (stamp, _) in enumerate(images) if stamp == recorded[0][0]]
        return any(images[start:start + len(recorded)] == recorded for start in starts)

    with python_subprocess(run_cli('play', '--bag', str(bag), '--rate', '4', '--clock', '--loop',
                                   '--start-delay', '0')) as player:
        assert spin_until(ros_executor, lambda: one_whole_pass() or player.poll() is not None, TIMEOUT_SEC)
        assert player.poll() is None, process_output(player)
    assert one_whole_pass()
    assert clocks and set(clocks) <= bag_times


@pytest.mark.parametrize('subscribers', [1, 2])
def test_player_waits_for_late_subscribers_and_loses_nothing(tmp_path, subscribers):
    """``--wait-for-subscriber TOPIC=N``: the player holds back until N subscribers matched, and
    each of them gets every frame. On a DDS domain of its own: in the run's domain, readers of
    processes killed by earlier tests linger in discovery until their lease expires and would
    count as subscribers."""
    import os

    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    from rnn_perception.data.bags import read_bag, stamp_to_ns

    bag = make_bag(tmp_path, episodes=1, storage='mcap')
    recorded = [stamp_to_ns(r.message.header.stamp) for r in read_bag(bag, [IMAGE_TOPIC])]
    domain = 1 + (int(os.environ['ROS_DOMAIN_ID']) + 50 + subscribers) % 101
    context = Context()
    rclpy.init(context=context, domain_id=domain)
    executor = SingleThreadedExecutor(context=context)
    images = [[] for _ in range(subscribers)]
    try:
        # the wait sees the player's side of the match; --start-delay then gives the listener's
        # side time to match too, or the first frames could outrun the player's keep-last history
        with python_subprocess(run_cli('play', '--bag', str(bag), '--rate', '4', '--start-delay', '1',
                                       '--wait-for-subscriber', f'{IMAGE_TOPIC}={subscribers}'),
                               env={'ROS_DOMAIN_ID': str(domain)}) as player:
            for index, received in enumerate(images):
                time.sleep(3.0)          # the player is up and waiting: nothing may be lost meanwhile
                assert player.poll() is None, process_output(player)
                assert not any(images), 'the player started before all its subscribers matched'
                listener = rclpy.create_node(f'late_listener_{index}', context=context)
                executor.add_node(listener)
                listener.create_subscription(Image, IMAGE_TOPIC, lambda m, received=received: received.append(
                    stamp_to_ns(m.header.stamp)), reliable_qos(len(recorded)))
                spin_until(executor, lambda: False, 0.5)
            assert wait_for_exit(executor, player) == 0, process_output(player)
            spin_until(executor, lambda: all(len(received) == len(recorded) for received in images), 5.0)
    finally:
        executor.shutdown()
        rclpy.try_shutdown(context=context)
    assert images == [recorded] * subscribers


@pytest.mark.parametrize('value', ['/camera/image_raw=0', '/camera/image_raw=two'])
def test_player_refuses_a_bad_subscriber_count_in_one_line(tmp_path, capsys, value):
    from rnn_perception.ros.player import main

    assert main(['--bag', str(tmp_path), '--wait-for-subscriber', value]) == 2
    error = capsys.readouterr().err
    assert error.startswith("play: error: argument --wait-for-subscriber: expected TOPIC or TOPIC=N with N >= 1")
    assert error.count('\n') == 1, error


def test_player_refuses_to_wait_for_a_topic_it_does_not_play(tmp_path, capsys):
    from rnn_perception.ros.player import main

    bag = make_bag(tmp_path, episodes=1, storage='mcap')
    assert main(['--bag', str(bag), '--start-delay', '0', '--wait-for-subscriber', '/nowhere']) == 1
    error = capsys.readouterr().err
    assert error.startswith('play: error: cannot wait for a subscriber of /nowhere: the bag has no such topic')
    assert error.count('\n') == 1, error


def _missing(tmp: Path) -> Path:
    return tmp / 'missing'


def _not_a_bag(tmp: Path) -> Path:
    return tmp


def _unreadable_metadata(tmp: Path) -> Path:
    (tmp / 'metadata.yaml').write_text('rosbag2_bagfile_information: [')
    return tmp


def _corrupt_message(tmp: Path) -> Path:
    """A bag whose one std_msgs/String claims a 4 GB string: it is no valid CDR."""
    from rosbags.rosbag2 import Writer

    from rnn_perception.data.bags import typestore

    path = tmp / 'corrupt'
    with Writer(path, version=Writer.VERSION_LATEST) as writer:
        connection = writer.add_connection('/chatter', 'std_msgs/msg/String', typestore=typestore())
        writer.write(connection, 1_000_000_000, b'\x00\x01\x00\x00\xff\xff\xff\xff')
    return path


@pytest.mark.parametrize('make,message', [
    (_missing, 'play: error: bag {path} not found'),
    (_not_a_bag, 'play: error: {path} is not a rosbag2 directory (no metadata.yaml)'),
    (_unreadable_metadata, 'play: error: {path}: cannot read the bag (Could not load YAML'),
    (_corrupt_message,
     'play: error: {path}: corrupt /chatter message at bag time 1.000 s (failed to deserialize'),
])
def test_player_errors_are_one_clear_line(tmp_path, capsys, make, message):
    from rnn_perception.ros.player import main

    path = make(tmp_path)
    assert main(['--bag', str(path), '--start-delay', '0']) == 1
    error = capsys.readouterr().err
    assert error.startswith(message.format(path=path)) and error.count('\n') == 1, error


# ------------------------------------------------------------------------------ the whole loop
def bag_passes(stream):
    """Split ``(stamp_ns, ...)`` records from a looping player into passes over the bag: a new
    pass begins where the stamps go backwards."""
    passes = [[]]
    for record in stream:
        if passes[-1] and record[0] < passes[-1][-1][0]:
            passes.append([])
        passes[-1].append(record)
    return passes


def test_replay_through_dds_matches_offline_evaluation(tmp_path, weights, make_node, ros_executor,
                                                       record_property, capsys):
    from geometry_msgs.msg import PointStamped
    from sensor_msgs.msg import Image

    from rnn_perception.data.bags import stamp_to_ns
    from rnn_perception.evaluation.collision import (METRIC_KEYS, EpisodeTrace, collision_metrics,
                                                     episodes_from_bag, evaluate_bag)

    bag = make_bag(tmp_path, episodes=4, storage='mcap')
    offline_traces, offline_metrics = evaluate_bag(weights, bag)
    episodes = list(episodes_from_bag(bag))
    stamps = np.concatenate([episode.header_stamps_ns for episode in episodes])
    assert 0 < offline_metrics['hits'] < len(episodes), 'the bag needs hits and misses'

    # (stamp, arrival time) of every frame; (stamp, probability, arrival time) of every answer.
    probe = make_node('replay_probe')
    images, answers = [], []
    def on_image(message):
        images.append((stamp_to_ns(message.header.stamp), time.monotonic()))

    def on_answer(message):
        answers.append((stamp_to_ns(message.header.stamp), message.point.x, time.monotonic()))

    probe.create_subscription(Image, IMAGE_TOPIC, on_image, reliable_qos(10))
    probe.create_subscription(PointStamped, '/collision_node/collision_probability_stamped', on_answer,
                              reliable_qos(10))

    def answered_pass():
        """The answers to the first pass over the bag seen from its start to its end. The player
        loops, so frames lost while discovery completes (a busy machine) only cost a pass."""
        passes = bag_passes(answers)
        for index, run in enumerate(passes):
            seen = {record[0] for record in run}
            if stamps[0] in seen and (stamps[-1] in seen or index + 1 < len(passes)):
                return {stamp: (probability, arrival) for stamp, probability, arrival in run}
        return None

    with python_subprocess(run_cli('bringup', 'dodgeball', '--device', 'cpu', '--ros-args',
                                   '-p', f'weights:={weights}')) as node:
        def node_subscribed():
            subscribers = probe.get_subscriptions_info_by_topic(IMAGE_TOPIC)
            return 'collision_node' in [info.node_name for info in subscribers]

        assert spin_until(ros_executor, lambda: node_subscribed() or node.poll() is not None, TIMEOUT_SEC)
        assert node.poll() is None, process_output(node)
        play = run_cli('play', '--bag', str(bag), '--loop', '--start-delay', '2')
        with python_subprocess(play) as player:
            assert spin_until(ros_executor, lambda: answered_pass() or player.poll() is not None,
                              TIMEOUT_SEC)
            assert player.poll() is None, process_output(player)
        assert node.poll() is None, process_output(node)

    # Keep-last 1 lets a starved node skip to the newest frame; on a quiet machine none is skipped.
    answered = answered_pass()
    assert len(answered) >= 0.95 * len(stamps), f'{len(answered)} of {len(stamps)} frames answered'
    node_traces = []
    for episode, offline in zip(episodes, offline_traces):
        mask = np.array([stamp in answered for stamp in episode.header_stamps_ns])
        probabilities = [answered[stamp][0] for stamp in episode.header_stamps_ns[mask]]
        node_traces.append(EpisodeTrace(episode.episode, episode.stamps_s[mask], probabilities,
                                        episode.hit, episode.contact_time_s))
        complete = len(mask) if mask.all() else int(np.argmin(mask))   # frames before any skip
        np.testing.assert_allclose(probabilities[:complete], offline.probabilities[:complete], atol=1e-4)
    node_metrics = collision_metrics(node_traces, offline_metrics['threshold'])
    for key in METRIC_KEYS:
        assert node_metrics[key] == pytest.approx(offline_metrics[key], abs=1e-3), key

    # End-to-end latency: a frame's arrival at this process -> the node's answer's arrival (the
    # frame of the same pass: the last arrival of that stamp before the answer).
    arrivals = defaultdict(list)
    for stamp, arrival in images:
        arrivals[stamp].append(arrival)
    latency_ms = 1e3 * np.array([answer_at - max(t for t in arrivals[stamp] if t <= answer_at)
                                 for stamp, (_, answer_at) in answered.items()
                                 if any(t <= answer_at for t in arrivals[stamp])])
    p50, p99 = np.percentile(latency_ms, [50, 99])
    record_property('end_to_end_latency_ms_p50', round(float(p50), 2))
    record_property('end_to_end_latency_ms_p99', round(float(p99), 2))
    with capsys.disabled():
        print(f'\nbag replay over DDS: {len(answered)}/{len(stamps)} frames answered; frame -> '
              f'probability latency p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {latency_ms.max():.1f} ms')
