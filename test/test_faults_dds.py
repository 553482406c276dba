"""Faults over real DDS: the camera's / tactile driver's publisher destroyed and created again
mid-stream (stamps carrying on, jumping forward, starting over), and ``use_sim_time`` with the
bag clock of ``play --clock``. The recurrent state must reset exactly where the stamps say so,
and every good input be answered with a finite output.
"""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from ros_helpers import process_output, python_subprocess, record_calls, spin_until, wait_for_exit
from test_bag_replay import IMAGE_TOPIC, make_bag, run_cli
import test_collision_node
from test_collision_node import FPS, Probe, image_message
from test_faults import reset_kind, segments
import test_tactile_node
from test_tactile_node import reliable_qos

pytestmark = pytest.mark.dds

# Fixtures of other test modules: pytest finds them as attributes of this module. Assigned, not
# imported by name, so that the tests' parameters of the same names do not redefine imports.
start_node = test_collision_node.start_node
weights = test_collision_node.weights
tactile_weights_file = test_tactile_node.weights

TIMEOUT_SEC = 30.0


# ------------------------------------------------------------------------------ camera restart
# Each life of the camera: the stamps of its frames. Between lives its publisher is destroyed
# and created again. The second life carries on the stamps (a quick restart: the state carries
# on too), the third starts 2 s later (a gap: one reset), the fourth starts its clock over (stamps
# go back: one reset).
CAMERA_LIVES = ([10 + i / FPS for i in range(3)], [10 + i / FPS for i in range(3, 5)],
                [12 + i / FPS for i in range(2)], [1 + i / FPS for i in range(2)])


def test_collision_node_through_camera_restarts(start_node, make_node, ros_executor, weights):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from rnn_perception.models.collision import frames_to_tensor, load_collision_model

    node = start_node(image_qos='auto')          # the default: follows the camera's publishers
    probe = Probe(make_node, node)
    reasons = record_calls(node.runtime, 'reset')
    stamps = [stamp for life in CAMERA_LIVES for stamp in life]
    frames = np.random.default_rng(4).integers(0, 256, (len(stamps), 64, 64, 3), dtype=np.uint8)
    sent = 0
    for life in CAMERA_LIVES:
        camera = probe.node.create_publisher(
            Image, node.images.topic, QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        )
        # the node re-subscribes to follow the camera's QoS: send once that has settled
        assert spin_until(
            ros_executor,
            lambda: (
                camera.get_subscription_count() > 0
                and node.images.reliability == 'reliable'
                and node.images.matched_publishers > 0
            ),
            TIMEOUT_SEC,
        )
        for stamp in life:
            received = node.runtime.counters.received
            camera.publish(image_message(frames[sent], stamp))
            sent += 1
            assert spin_until(
                ros_executor, lambda: node.runtime.counters.received > received, TIMEOUT_SEC
            )
        probe.node.destroy_publisher(camera)
        assert spin_until(ros_executor, lambda: node.images.matched_publishers == 0, TIMEOUT_SEC)

    assert spin_until(ros_executor, lambda: len(probe.stamped) == len(stamps), TIMEOUT_SEC)
    assert [stamp for stamp, _ in probe.stamped] == pytest.approx(stamps)
    assert [reset_kind(reason) for reason in reasons] == ['stamp gap', 'stamps went backwards']
    assert node.runtime.counters.rejected == node.runtime.counters.stale == 0
    model, _ = load_collision_model(weights)
    answers = np.array([probability for _, probability in probe.stamped])
    assert np.isfinite(answers).all()
    starts_over = [False] * 5 + [True, False, True, False]
    for start, stop in segments(starts_over):
        with torch.inference_mode():
            fresh = torch.sigmoid(model(frames_to_tensor(frames[None, start:stop])))[0].numpy()
        np.testing.assert_allclose(answers[start:stop], fresh, atol=1e-5)


def test_tactile_node_through_driver_restarts(
    ros_context, ros_executor, make_node, tactile_weights_file
):
    from geometry_msgs.msg import PoseArray, PoseStamped
    from rclpy.parameter import Parameter
    from std_msgs.msg import Float32MultiArray

    from rnn_perception.data.tactile_bag import pose_vector
    from rnn_perception.evaluation.tactile import stepped_predictions
    from rnn_perception.models.torch_engine import TactileTorchEngine
    from rnn_perception.models.tactile import load_tactile_model
    from rnn_perception.nodes.tactile_node import TactileNode
    from test_tactile_runtime import samples

    node = TactileNode(context=ros_context, namespace='/faults',
                       parameter_overrides=[Parameter('weights', value=str(tactile_weights_file))])
    ros_executor.add_node(node)
    try:
        reasons = record_calls(node.runtime, 'reset')
        probe = make_node('tactile_restart_probe')
        answers = []
        probe.create_subscription(
            PoseArray, '/faults/predicted_poses', answers.append, reliable_qos(50)
        )
        # 100 Hz stamps (ns): carried on over a quick restart, then 1 s later (reset), then from
        # 0.5 s (reset)
        lives = (
            [10**9 + k * 10**7 for k in range(3)],
            [10**9 + k * 10**7 for k in range(3, 5)],
            [2 * 10**9 + k * 10**7 for k in range(2)],
            [5 * 10**8 + k * 10**7 for k in range(2)],
        )
        stamps = [stamp for life in lives for stamp in life]
        tactile, poses = samples(len(stamps), seed=4)
        sent = 0
        for life in lives:
            tactile_pub = probe.create_publisher(
                Float32MultiArray, '/faults/tactile/raw', reliable_qos(20)
            )
            pose_pub = probe.create_publisher(PoseStamped, '/faults/object/pose', reliable_qos(20))
            assert spin_until(ros_executor, lambda: tactile_pub.get_subscription_count() > 0
                              and pose_pub.get_subscription_count() > 0, TIMEOUT_SEC)
            for stamp in life:
                processed = node.runtime.counters.processed
                tactile_pub.publish(Float32MultiArray(data=[float(v) for v in tactile[sent]]))
                pose_pub.publish(_pose_stamped(stamp, poses[sent]))
                sent += 1
                assert spin_until(
                    ros_executor, lambda: node.runtime.counters.processed > processed, TIMEOUT_SEC
                )
            probe.destroy_publisher(tactile_pub)
            probe.destroy_publisher(pose_pub)
        assert spin_until(ros_executor, lambda: len(answers) == len(stamps), TIMEOUT_SEC)
    finally:
        ros_executor.remove_node(node)
        node.destroy_node()
    assert [a.header.stamp.sec * 10**9 + a.header.stamp.nanosec for a in answers] == stamps
    assert [reset_kind(reason) for reason in reasons] == ['stamp gap', 'stamps went backwards']
    assert node.runtime.counters.rejected == node.runtime.pairer.unpaired == 0
    predicted = np.stack([np.stack([pose_vector(pose) for pose in a.poses]) for a in answers])
    assert np.isfinite(predicted).all()
    model, _ = load_tactile_model(tactile_weights_file)
    for start, stop in segments([False] * 5 + [True, False, True, False]):
        fresh = stepped_predictions(TactileTorchEngine(model, torch.device('cpu')),
                                    tactile[start:stop], poses[start:stop])
        np.testing.assert_allclose(predicted[start:stop], fresh, atol=1e-4)


def _pose_stamped(stamp_ns, pose):
    from geometry_msgs.msg import PoseStamped

    from rnn_perception.runtime.tactile_input import pose_fields

    message = PoseStamped()
    message.header.stamp.sec, message.header.stamp.nanosec = divmod(stamp_ns, 10**9)
    (x, y, z), (qx, qy, qz, qw) = pose_fields(pose)
    position, orientation = message.pose.position, message.pose.orientation
    position.x, position.y, position.z = x, y, z
    orientation.x, orientation.y, orientation.z, orientation.w = qx, qy, qz, qw
    return message


# ---------------------------------------------------------------------------- use_sim_time
def test_use_sim_time_with_the_player_clock(tmp_path, weights):
    """The node on the bag's clock (``play --clock``): frames are judged stale against sim time,
    none is, and the state resets only between the bag's episodes (1 s apart on its clock).

    On a DDS domain of its own: the player waits for a subscriber of the image topic, and
    readers of nodes that earlier tests killed linger in the run's domain."""
    import rclpy
    from geometry_msgs.msg import PointStamped
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from rnn_perception.data.bags import stamp_to_ns
    from rnn_perception.data.dodgeball_bag import episodes_from_bag
    from rnn_perception.evaluation.collision import evaluate_bag
    from rnn_perception.nodes.collision_node import CollisionNode

    bag = make_bag(tmp_path, episodes=3, storage='mcap')
    episodes = list(episodes_from_bag(bag))
    frame_count = sum(len(episode.frames) for episode in episodes)
    domain = 1 + (int(os.environ['ROS_DOMAIN_ID']) + 25) % 101
    context = Context()
    rclpy.init(context=context, domain_id=domain)
    executor = SingleThreadedExecutor(context=context)
    try:
        node = CollisionNode(context=context, parameter_overrides=[
            Parameter('weights', value=str(weights)), Parameter('use_sim_time', value=True),
            Parameter('image_qos', value='reliable'), Parameter('max_frame_age_s', value=0.5)])
        executor.add_node(node)
        reasons = record_calls(node.runtime, 'reset')
        listener = rclpy.create_node('sim_time_listener', context=context)
        executor.add_node(listener)
        answers = {}
        listener.create_subscription(
            PointStamped,
            '/collision_node/collision_probability_stamped',
            lambda m: answers.__setitem__(stamp_to_ns(m.header.stamp), m.point.x),
            reliable_qos(50),
        )
        play = run_cli('play', '--bag', str(bag), '--clock', '--start-delay', '2',
                       '--wait-for-subscriber', IMAGE_TOPIC)
        with python_subprocess(play, env={'ROS_DOMAIN_ID': str(domain)}) as player:
            assert wait_for_exit(executor, player, 120.0) == 0, process_output(player)
        spin_until(executor, lambda: len(answers) == frame_count, 5.0)
        now_ns = node.get_clock().now().nanoseconds
        counters, staleness = node.runtime.counters, node.runtime.staleness.status
    finally:
        executor.shutdown()
        rclpy.try_shutdown(context=context)

    last_stamp = max(int(stamp) for episode in episodes for stamp in episode.header_stamps_ns)
    assert (
        last_stamp - 10**9 <= now_ns <= last_stamp
    )  # the node's clock is the bag's (best-effort /clock)
    assert staleness == 'on'                        # stamps judged against it
    # keep-last 1 lets a starved node skip to the newest frame; on a quiet machine none is skipped
    assert len(answers) >= 0.9 * frame_count, f'{len(answers)} of {frame_count} frames answered'
    assert counters.stale <= 0.05 * frame_count, f'{counters.stale} frames stale'
    assert [reset_kind(reason) for reason in reasons] == ['stamp gap'] * (len(episodes) - 1), (
        reasons
    )
    assert all(math.isfinite(probability) for probability in answers.values())
    # episodes answered whole match the offline evaluation: the state is carried within them
    traces, _ = evaluate_bag(weights, bag)
    whole = [(episode, trace) for episode, trace in zip(episodes, traces)
             if all(int(stamp) in answers for stamp in episode.header_stamps_ns)]
    assert whole, 'no episode was answered whole'
    for episode, trace in whole:
        np.testing.assert_allclose([answers[int(stamp)] for stamp in episode.header_stamps_ns],
                                   trace.probabilities, atol=1e-4)
