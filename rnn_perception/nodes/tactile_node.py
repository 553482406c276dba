"""``tactile_node``: where will the grasped object be over the next 20 samples? One LSTM step
per tactile sample.

Topics (relative names, so a namespace applies; remap them to your sensor and pose estimator):

* subscribes ``tactile/raw`` (``std_msgs/Float32MultiArray``: 21 values, electrodes 0..18,
  PDC, PAC, the layout ``python -m sim tactile --bag`` writes; see
  :mod:`rnn_perception.data.tactile_dataset`; a layout's ``data_offset`` is honoured and field
  names in its label are checked, see :func:`~rnn_perception.runtime.tactile.tactile_values`)
  and ``object/pose`` (``geometry_msgs/PoseStamped``: the object's current pose estimate,
  the model's other input), both reliable, keep-last :data:`INPUT_DEPTH`;
* publishes ``predicted_poses`` (``geometry_msgs/PoseArray``): the next ``horizon`` (20) poses
  for every sample, header stamp = the sample's time (its pose's stamp), frame id = the
  ``frame_id`` parameter;
* publishes ``/diagnostics`` (``diagnostic_msgs/DiagnosticArray``): sample rate, latency
  p50/p99, message counters (received, processed, rejected, unpaired), resets, device,
  backend;
* serves ``~/reset`` (``std_srvs/Trigger``): zero the recurrent state.

Behaviour (implemented, and documented in detail, in :mod:`rnn_perception.runtime.tactile`):
one step per sample with carried LSTM state on the ``backend`` (``torch``, or ``onnxruntime``:
the exported step) and ``device`` (``auto``: CUDA if available, else CPU; logged); a tactile
message and a pose make a sample; the state resets on a stamp gap over ``reset_gap_s``, on
stamps going backwards and on ``~/reset``; a GPU or execution provider that fails during a
step (out of memory, a CUDA error) is logged and the model moves to the CPU for good (state
reset, the sample answered there); bad messages (wrong length, empty, NaN/inf, absurd
magnitudes, zero quaternion) are counted, warned about
(throttled) and skipped with the sample they belong to, leaving the state alone; the node keeps
serving good messages (an unexpected error while handling a message is caught, counted as
``internal_errors`` and logged, never the end of the node). Every parameter is declared with a
description and validated; a missing, corrupt or mismatched weights file stops the start with
one message naming the file.
"""
from __future__ import annotations

import sys
from typing import List, Optional, Sequence, Tuple

from geometry_msgs.msg import Point, Pose, PoseArray, PoseStamped, Quaternion
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import Float32MultiArray

from ..runtime.diagnostics import DiagnosticReport
from ..runtime.tactile import load_predictor, Outcome, StepResult, TactileRuntime
from ..runtime.tactile_diagnostics import TactileDiagnostics
from ..runtime.tactile_input import pose_fields
from ..runtime.tactile_parameters import PARAMETERS, TactileSettings
from .common import OUTPUT_DEPTH, WARNING_THROTTLE_S, ModelNode, run_node

NODE_NAME = 'tactile_node'
TACTILE_TOPIC = 'tactile/raw'
POSE_TOPIC = 'object/pose'
OUTPUT_TOPIC = 'predicted_poses'
INPUT_DEPTH = 20          # 0.2 s at 100 Hz: a momentary stall loses nothing


class TactileNode(ModelNode):
    """Tactile samples and poses in, the next 20 poses out (see the module docstring)."""

    parameters = PARAMETERS
    settings_type = TactileSettings
    load_model = staticmethod(load_predictor)
    runtime_type = TactileRuntime
    title = 'tactile pose predictor'
    input_name = 'sample'

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self._diagnostics = TactileDiagnostics(self.runtime)
        self.get_logger().info(
            f'model {self.model_path}, {self.runtime.engine.describe()} (trained at '
            f'{self.runtime.rate_hz:g} Hz, {self.runtime.horizon} poses ahead)')
        self._poses_pub = self.create_publisher(PoseArray, OUTPUT_TOPIC, OUTPUT_DEPTH)
        qos = QoSProfile(depth=INPUT_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(Float32MultiArray, TACTILE_TOPIC, self._on_tactile, qos)
        self.create_subscription(PoseStamped, POSE_TOPIC, self._on_pose, qos)

    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # ------------------------------------------------------------------------------- samples
    def _on_tactile(self, message: Float32MultiArray) -> None:
        with self.callback_guard:
            self._answer(self.runtime.on_tactile(message, self._now_s()))

    def _on_pose(self, message: PoseStamped) -> None:
        with self.callback_guard:
            self._answer(self.runtime.on_pose(message, self._now_s()))

    def _answer(self, result: StepResult) -> None:
        self.log_state(result)
        if result.outcome is Outcome.REJECTED:
            self.get_logger().warning(f'message skipped: {result.error}',
                                      throttle_duration_sec=WARNING_THROTTLE_S)
        if result.outcome is not Outcome.PROCESSED:
            return
        array = PoseArray(poses=[pose_message(pose) for pose in result.poses])
        array.header.stamp.sec, array.header.stamp.nanosec = divmod(result.stamp_ns, 1_000_000_000)
        array.header.frame_id = self.settings.frame_id
        self._poses_pub.publish(array)

    def diagnostics_report(self, now_s: float, warnings: List[str],
                           values: Sequence[Tuple[str, str]]) -> DiagnosticReport:
        return self._diagnostics.report(now_s, warnings, values)


def pose_message(pose) -> Pose:
    """``(x, y, z, angle)`` -> ``geometry_msgs/Pose`` (rotation about the grasp axis y)."""
    (x, y, z), (qx, qy, qz, qw) = pose_fields(pose)
    return Pose(position=Point(x=x, y=y, z=z), orientation=Quaternion(x=qx, y=qy, z=qz, w=qw))


def main(args: Optional[List[str]] = None) -> int:
    """``ros2 run rnn_perception tactile_node [--ros-args ...]``."""
    return run_node(NODE_NAME, TactileNode, args)


if __name__ == '__main__':
    sys.exit(main())
