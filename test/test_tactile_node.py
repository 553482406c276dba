"""The tactile node over real DDS: in-process adapter checks (bad input, reset service, start-up
errors), then the whole loop

    sim -> bag -> ``play`` -> ``bringup tactile`` (tactile node) -> PoseArray subscriber -> metrics

compared with the offline ``eval tactile --bag`` of the same bag and weights.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from ros_helpers import PYTHON, process_output, python_subprocess, spin_until
from test_tactile_model import NORMALISATION

pytestmark = pytest.mark.dds

REPO = Path(__file__).resolve().parent.parent
TIMEOUT_SEC = 60.0


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    from rnn_perception.models.tactile import TactileConfig, TactilePredictor, save_tactile_model

    torch.manual_seed(0)
    model = TactilePredictor(TactileConfig(hidden_size=16, horizon=5))
    torch.nn.init.normal_(model.head[-1].weight, std=0.1)
    model.set_normalisation(NORMALISATION)
    path = tmp_path_factory.mktemp('weights') / 'tactile.safetensors'
    save_tactile_model(path, model, {'rate_hz': 100.0})
    return path


def reliable_qos(depth: int):
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)


def stamp_ns(message) -> int:
    return message.header.stamp.sec * 1_000_000_000 + message.header.stamp.nanosec


def pose_array_vectors(message) -> np.ndarray:
    from rnn_perception.data.tactile_bag import pose_vector

    return np.stack([pose_vector(pose) for pose in message.poses])


# ---------------------------------------------------------------------------------- in process
def start_node(ros_context, weights, **parameters):
    from rclpy.parameter import Parameter

    from rnn_perception.nodes.tactile_node import TactileNode

    overrides = [
        Parameter(name, value=value)
        for name, value in {'weights': str(weights), **parameters}.items()
    ]
    return TactileNode(context=ros_context, parameter_overrides=overrides)


def test_node_skips_bad_input_keeps_serving_and_resets_on_request(
    ros_context, ros_executor, make_node, weights
):
    from geometry_msgs.msg import PoseArray, PoseStamped
    from std_msgs.msg import Float32MultiArray
    from std_srvs.srv import Trigger

    node = start_node(ros_context, weights, frame_id='palm')
    ros_executor.add_node(node)
    try:
        probe = make_node('tactile_probe')
        tactile_pub = probe.create_publisher(Float32MultiArray, '/tactile/raw', reliable_qos(20))
        pose_pub = probe.create_publisher(PoseStamped, '/object/pose', reliable_qos(20))
        answers = []
        probe.create_subscription(PoseArray, '/predicted_poses', answers.append, reliable_qos(20))
        assert spin_until(
            ros_executor,
            lambda: (
                tactile_pub.get_subscription_count() == 1
                and pose_pub.get_subscription_count() == 1
                and probe.count_publishers('/predicted_poses')
            ),
        )

        def send(values, k):
            pose = PoseStamped()
            pose.header.stamp.sec, pose.header.stamp.nanosec = 1, k * 10_000_000
            pose.pose.orientation.w = 1.0
            tactile_pub.publish(Float32MultiArray(data=list(values)))
            pose_pub.publish(pose)

        send([2500.0] * 21, 0)
        send([2500.0] * 5, 1)                            # wrong length: skipped with its sample
        send([float('nan')] * 21, 2)                     # NaN: skipped
        send([2500.0] * 21, 3)
        assert spin_until(ros_executor, lambda: len(answers) == 2, 10.0)
        assert [stamp_ns(a) for a in answers] == [1_000_000_000, 1_030_000_000]
        assert all(a.header.frame_id == 'palm' and len(a.poses) == 5 for a in answers)
        assert node.runtime.counters.rejected == 2

        client = probe.create_client(Trigger, '/tactile_node/reset')
        assert client.wait_for_service(timeout_sec=10.0)
        future = client.call_async(Trigger.Request())
        assert spin_until(ros_executor, future.done, 10.0) and future.result().success
        assert (
            node.runtime.state is None and node.runtime.last_reset_reason == '~/reset service call'
        )
    finally:
        ros_executor.remove_node(node)
        node.destroy_node()


def test_node_refuses_to_start_with_a_bad_weights_file_or_parameter(
    ros_context, tmp_path, weights
):
    from rnn_perception.nodes.common import StartupError

    with pytest.raises(StartupError, match='missing.safetensors not found'):
        start_node(ros_context, tmp_path / 'missing.safetensors')
    with pytest.raises(
        StartupError, match='reset_gap_s=-1.0 refused: must be a finite number > 0'
    ):
        start_node(ros_context, weights, reset_gap_s=-1.0)


# ------------------------------------------------------------------------------ the whole loop
def run_cli(*argv: str) -> str:
    return (
        f'import sys\nfrom rnn_perception.commands import main\nsys.exit(main({list(argv)!r}))\n'
    )


def test_replay_through_dds_matches_offline_evaluation(
    tmp_path, weights, make_node, ros_executor, capsys
):
    from geometry_msgs.msg import PoseArray

    from rnn_perception.data.tactile_bag import episodes_from_bag
    from rnn_perception.evaluation.tactile import evaluate_bag
    from rnn_perception.evaluation.tactile_metrics import bag_prediction, tactile_metrics

    bag = tmp_path / 'bag'
    subprocess.run(
        [
            PYTHON,
            '-m',
            'sim',
            'tactile',
            '--episodes',
            '3',
            '--seed',
            '7',
            '--duration',
            '1.0',
            '--out',
            str(tmp_path / 'data'),
            '--bag',
            str(bag),
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=120,
    )
    offline_predictions, offline_metrics = evaluate_bag(weights, bag)
    episodes = list(episodes_from_bag(bag))
    probe = make_node('tactile_replay_probe')
    stamps = [int(s) for e in episodes for s in e.stamps_ns]
    received = []
    probe.create_subscription(
        PoseArray,
        '/predicted_poses',
        lambda m: received.append((stamp_ns(m), pose_array_vectors(m))),
        reliable_qos(50),
    )

    offline_by_stamp = {
        int(stamp): future
        for episode, prediction in zip(episodes, offline_predictions)
        for stamp, future in zip(episode.stamps_ns, prediction.predicted)
    }

    def complete_passes():
        """The node's passes over the bag (the player loops; a new pass starts where the stamps go
        back) that answered every sample, as stamp -> poses."""
        passes = [[]]
        for record in list(received):
            if passes[-1] and record[0] < passes[-1][-1][0]:
                passes.append([])
            passes[-1].append(record)
        return [dict(run) for run in passes if [stamp for stamp, _ in run] == stamps]

    def worst_difference(answers) -> float:
        return max(
            float(np.abs(answers[stamp] - offline_by_stamp[stamp]).max()) for stamp in stamps
        )

    def matching_pass():
        """A complete pass equal to the offline evaluation. Tactile arrays carry no stamp, so the
        node pairs them with poses by arrival; DDS keeps order within a topic, not across the two,
        so a stalled CPU can, rarely, hand the node one sample's messages out of order: that pass
        is off by one pairing, the next one is whole again."""
        return next((run for run in complete_passes() if worst_difference(run) <= 1e-5), None)

    # the node on the onnxruntime backend, the offline evaluation on torch: the two backends
    # agree through DDS too. The graph is exported here, beside the weights (as the shipped
    # models carry theirs), so the node process starts without exporting (test_backends
    # covers the export at start).
    from rnn_perception.models.onnx_export import export_step
    from rnn_perception.models.tactile import load_tactile_model

    export_step('tactile', *load_tactile_model(weights), weights, weights.with_suffix('.onnx'))
    with python_subprocess(run_cli('bringup', 'tactile', '--device', 'cpu', '--backend',
                                   'onnxruntime', '--ros-args',
                                   '-p', f'weights:={weights}')) as node:
        assert spin_until(ros_executor, lambda: probe.count_publishers('/predicted_poses') == 1
                          or node.poll() is not None, TIMEOUT_SEC)
        assert node.poll() is None, process_output(node)
        # --loop: a sample lost to discovery at the start only costs a pass (each pass starts with
        # stamps going back, so the node starts it from a fresh state, as evaluate_bag does)
        # recorded rate (200 messages/s): a loaded CI machine keeps up and answers whole passes
        play = run_cli(
            'play',
            '--bag',
            str(bag),
            '--start-delay',
            '1',
            '--loop',
            '--wait-for-subscriber',
            '/tactile/raw',
            '--wait-for-subscriber',
            '/object/pose',
        )
        with python_subprocess(play) as player:
            assert spin_until(
                ros_executor, lambda: matching_pass() or player.poll() is not None, 3 * TIMEOUT_SEC
            )
            assert player.poll() is None, process_output(player)
        assert node.poll() is None, process_output(node)
    answers = matching_pass()
    assert answers is not None, (
        f'{len(complete_passes())} complete passes, none equal to the offline evaluation '
        f'(closest off by {min(map(worst_difference, complete_passes()), default=None)})'
    )
    node_predictions = [bag_prediction(episode, np.stack([answers[s] for s in episode.stamps_ns]))
                        for episode in episodes]
    node_metrics = tactile_metrics(node_predictions)
    for key in (
        'model_mae_deg',
        'const_velocity_mae_deg',
        'zero_motion_mae_deg',
        'model_position_mm',
        'episodes',
    ):
        assert node_metrics[key] == pytest.approx(offline_metrics[key], rel=1e-4, abs=1e-6), key
    with capsys.disabled():
        print(
            f"\ntactile replay over DDS: {len(answers)}/{len(stamps)} samples answered; "
            f"angle error {node_metrics['model_mae_deg']:.4f} deg "
            f"(offline {offline_metrics['model_mae_deg']:.4f})"
        )
