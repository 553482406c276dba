"""rosbag2 replay over real DDS: the player on its own, then the whole loop

    sim -> bag -> ``play`` -> ``bringup dodgeball`` (collision node) -> subscriber -> metrics

compared with the offline ``eval --bag`` of the same bag and weights, on a bag as a real camera
leaves it: 4:3 JPEG ``CompressedImage`` frames on ``/camera/image_raw/compressed``, the node on
``image_transport`` ``compressed`` (the raw path is ``test_demo.py``'s).
"""
from __future__ import annotations

import subprocess
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

import test_collision_node
from ros_helpers import PYTHON, process_output, python_subprocess, spin_until, wait_until

pytestmark = pytest.mark.dds

REPO = Path(__file__).resolve().parent.parent
TIMEOUT_SEC = 60.0
IMAGE_TOPIC = '/camera/image_raw'
COMPRESSED_TOPIC = f'{IMAGE_TOPIC}/compressed'


def make_bag(root: Path, episodes: int, storage: str, *sim_options: str) -> Path:
    """A dodgeball bag from the simulator (``python -m sim`` runs from the repository root)."""
    bag = root / f'bag_{storage}'
    subprocess.run(
        [
            PYTHON,
            '-m',
            'sim',
            'dodgeball',
            '--episodes',
            str(episodes),
            '--seed',
            '1',
            '--out',
            str(root / f'data_{storage}'),
            '--bag',
            str(bag),
            '--storage',
            storage,
            *sim_options,
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return bag


def run_cli(*argv: str) -> str:
    """Python code for :func:`python_subprocess` that runs ``python -m rnn_perception argv``."""
    return (
        f'import sys\nfrom rnn_perception.commands import main\nsys.exit(main({list(argv)!r}))\n'
    )


def reliable_qos(depth: int):
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)


# untrained collision weights: a fixture of another test module, assigned, not imported by name
weights = test_collision_node.weights


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
        assert spin_until(
            ros_executor, lambda: one_whole_pass() or player.poll() is not None, TIMEOUT_SEC
        )
        assert player.poll() is None, process_output(player)
    assert one_whole_pass()
    assert clocks and set(clocks) <= bag_times


def make_large_frame_bag(root: Path, frames: int) -> Path:
    """A bag of ``frames`` 640x480 rgb8 frames at 30 Hz: each is ~0.9 MB, sent as hundreds of UDP
    fragments, so a reader that falls behind or a player that exits early shows up as lost
    frames."""
    from rnn_perception.data.bags import BAG_CLOCK_START_NS, open_bag_writer, rgb_image_message

    bag = root / 'large_frames'
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    with open_bag_writer(bag, 'mcap') as writer:
        writer.add_topic(IMAGE_TOPIC, 'sensor_msgs/msg/Image')
        for frame in range(frames):
            stamp_ns = BAG_CLOCK_START_NS + round(frame * 1e9 / 30)
            writer.write(
                IMAGE_TOPIC,
                stamp_ns,
                rgb_image_message(np.roll(noise, frame, axis=1), stamp_ns, 'camera'),
            )
    return bag


def stamp_listener(topic: str, depth: int) -> str:
    """Python code for :func:`python_subprocess`: a node that subscribes to ``topic`` (images,
    reliable, keep-last ``depth``), prints ``subscribed``, then the stamp (ns) of every frame."""
    return f"""
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
rclpy.init()
node = rclpy.create_node('stamp_listener')
node.create_subscription(
    Image, {topic!r},
    lambda m: print(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec, flush=True),
    QoSProfile(depth={depth}, reliability=ReliabilityPolicy.RELIABLE))
print('subscribed', flush=True)
rclpy.spin(node)
"""


def printed_stamps(process) -> list:
    return [int(line) for line in process_output(process, limit=100_000).split() if line.isdigit()]


@pytest.mark.parametrize('subscribers', [1, 3])
def test_player_waits_for_late_subscribers_and_loses_nothing(tmp_path, subscribers):
    """``--wait-for-subscriber TOPIC=N``: the player holds back until N subscribers matched, and
    each of them, in a process of its own, gets every frame: 640x480 frames at 8x their rate,
    faster than a reader keeps up with, and the player exits only once all are delivered. On a
    DDS domain of its own: in the run's domain, readers of processes killed by earlier tests
    linger in discovery until their lease expires and would count as subscribers."""
    import contextlib
    import os

    from rnn_perception.data.bags import read_bag, stamp_to_ns

    bag = make_large_frame_bag(tmp_path, frames=40)
    recorded = [stamp_to_ns(r.message.header.stamp) for r in read_bag(bag, [IMAGE_TOPIC])]
    env = {'ROS_DOMAIN_ID': str(1 + (int(os.environ['ROS_DOMAIN_ID']) + 50 + subscribers) % 101)}
    with contextlib.ExitStack() as stack:
        player = stack.enter_context(python_subprocess(
            run_cli('play', '--bag', str(bag), '--rate', '8', '--start-delay', '0',
                    '--wait-for-subscriber', f'{IMAGE_TOPIC}={subscribers}'), env=env))
        listeners = []
        for _ in range(subscribers):
            listeners.append(
                stack.enter_context(
                    python_subprocess(stamp_listener(IMAGE_TOPIC, len(recorded)), env=env)
                )
            )
            assert wait_until(
                lambda: 'subscribed' in process_output(listeners[-1]), TIMEOUT_SEC
            ), process_output(listeners[-1])
            if len(listeners) < subscribers:  # the player is up and waiting: it must not start yet
                time.sleep(2.0)
                assert player.poll() is None, process_output(player)
                assert not any(printed_stamps(listener) for listener in listeners), \
                    'the player started before all its subscribers matched'
        assert wait_until(lambda: player.poll() is not None, TIMEOUT_SEC), process_output(player)
        assert player.returncode == 0, process_output(player)
        # the player has exited: what it published was acknowledged, so it is here or on its way
        wait_until(
            lambda: all(len(printed_stamps(listener)) >= len(recorded) for listener in listeners),
            TIMEOUT_SEC,
        )
        assert [printed_stamps(listener) for listener in listeners] == [recorded] * subscribers


@pytest.mark.parametrize('value', ['/camera/image_raw=0', '/camera/image_raw=two'])
def test_player_refuses_a_bad_subscriber_count_in_one_line(tmp_path, capsys, value):
    from rnn_perception.ros.player import main

    assert main(['--bag', str(tmp_path), '--wait-for-subscriber', value]) == 2
    error = capsys.readouterr().err
    assert error.startswith(
        "play: error: argument --wait-for-subscriber: expected TOPIC or TOPIC=N with N >= 1"
    )
    assert error.count('\n') == 1, error


def test_player_refuses_a_queue_depth_below_one_in_one_line(tmp_path, capsys):
    from rnn_perception.ros.player import main

    assert main(['--bag', str(tmp_path), '--queue-depth', '0']) == 2
    error = capsys.readouterr().err
    assert (
        error.startswith('play: error: --queue-depth must be >= 1, got 0')
        and error.count('\n') == 1
    ), error


def test_player_refuses_to_wait_for_a_topic_it_does_not_play(tmp_path, capsys):
    from rnn_perception.ros.player import main

    bag = make_bag(tmp_path, episodes=1, storage='mcap')
    assert (
        main(['--bag', str(bag), '--start-delay', '0', '--wait-for-subscriber', '/nowhere']) == 1
    )
    error = capsys.readouterr().err
    assert error.startswith(
        'play: error: cannot wait for a subscriber of /nowhere: the bag has no such topic'
    )
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
        connection = writer.add_connection(
            '/chatter', 'std_msgs/msg/String', typestore=typestore()
        )
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
    from sensor_msgs.msg import CompressedImage

    from rnn_perception.data.bags import stamp_to_ns
    from rnn_perception.data.dodgeball_bag import episodes_from_bag
    from rnn_perception.evaluation.collision import evaluate_bag, METRIC_KEYS
    from rnn_perception.evaluation.collision_metrics import collision_metrics, EpisodeTrace

    bag = make_bag(tmp_path, 4, 'mcap', '--bag-image', 'jpeg', '--bag-resolution', '96x72')
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

    probe.create_subscription(CompressedImage, COMPRESSED_TOPIC, on_image, reliable_qos(10))
    probe.create_subscription(
        PointStamped, '/collision_node/collision_probability_stamped', on_answer, reliable_qos(10)
    )

    def answered_pass():
        """The answers to the first pass over the bag seen from its start to its end. The player
        loops, so frames lost while discovery completes (a busy machine) only cost a pass."""
        passes = bag_passes(answers)
        for index, run in enumerate(passes):
            seen = {record[0] for record in run}
            if stamps[0] in seen and (stamps[-1] in seen or index + 1 < len(passes)):
                return {stamp: (probability, arrival) for stamp, probability, arrival in run}
        return None

    with python_subprocess(run_cli('bringup', 'dodgeball', '--device', 'cpu',
                                   '--image-transport', 'compressed', '--ros-args',
                                   '-p', f'weights:={weights}')) as node:
        def node_subscribed():
            subscribers = probe.get_subscriptions_info_by_topic(COMPRESSED_TOPIC)
            return 'collision_node' in [info.node_name for info in subscribers]

        assert spin_until(
            ros_executor, lambda: node_subscribed() or node.poll() is not None, TIMEOUT_SEC
        )
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
        complete = len(mask) if mask.all() else int(np.argmin(mask))  # frames before any skip
        np.testing.assert_allclose(
            probabilities[:complete], offline.probabilities[:complete], atol=1e-4
        )
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
        print(
            f'\nbag replay over DDS: {len(answered)}/{len(stamps)} frames answered; frame -> '
            f'probability latency p50 {p50:.1f} ms, p99 {p99:.1f} ms, '
            f'max {latency_ms.max():.1f} ms'
        )
