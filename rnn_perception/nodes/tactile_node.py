"""``tactile_node``: where will the grasped object be over the next 20 samples? One LSTM step
per tactile sample.

Topics (relative names, so a namespace applies; remap them to your sensor and pose estimator):

* subscribes ``tactile/raw`` (``std_msgs/Float32MultiArray``: 21 values, electrodes 0..18,
  PDC, PAC, the layout ``python -m sim tactile --bag`` writes; see
  :mod:`rnn_perception.data.tactile_dataset`) and ``object/pose``
  (``geometry_msgs/PoseStamped``: the object's current pose estimate, the model's other
  input), both reliable, keep-last :data:`INPUT_DEPTH`;
* publishes ``predicted_poses`` (``geometry_msgs/PoseArray``): the next ``horizon`` (20) poses
  for every sample, header stamp = the sample's time (its pose's stamp), frame id = the
  ``frame_id`` parameter;
* publishes ``/diagnostics`` (``diagnostic_msgs/DiagnosticArray``): sample rate, latency
  p50/p99, message counters (received, processed, rejected, unpaired), resets, device;
* serves ``~/reset`` (``std_srvs/Trigger``): zero the recurrent state.

Behaviour (implemented, and documented in detail, in :mod:`rnn_perception.runtime.tactile`):
one ``step`` per sample with carried LSTM state on ``device`` (``auto``: CUDA if available,
else CPU; logged) in ``torch.inference_mode``; a tactile message and a pose make a sample;
the state resets on a stamp gap over ``reset_gap_s``, on stamps going backwards and on
``~/reset``; a GPU that fails during a step (out of memory, a CUDA error) is logged and the
model moves to the CPU for good (state reset, the sample answered there); bad messages (wrong
length, empty, NaN/inf, absurd magnitudes, zero quaternion) are counted, warned about
(throttled) and skipped with the sample they belong to, leaving the state alone; the node keeps
serving good messages (an unexpected error while handling a message is caught, counted as
``internal_errors`` and logged, never the end of the node). Every parameter is declared with a
description and validated; a missing, corrupt or mismatched weights file stops the start with
one message naming the file.
"""
from __future__ import annotations

import sys
import time
from typing import List, Optional

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Pose, PoseArray, PoseStamped, Quaternion
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import Float32MultiArray
from std_srvs.srv import Trigger

from ..runtime.tactile import (PARAMETERS, Outcome, StepResult, TactileDiagnostics, TactileRuntime, TactileSettings,
                               load_predictor, parameter_problem, pose_fields)
from .common import CallbackGuard, run_node, start_model

NODE_NAME = 'tactile_node'
TACTILE_TOPIC = 'tactile/raw'
POSE_TOPIC = 'object/pose'
OUTPUT_TOPIC = 'predicted_poses'
INPUT_DEPTH = 20          # 0.2 s at 100 Hz: a momentary stall loses nothing
OUTPUT_DEPTH = 10
WARNING_THROTTLE_S = 5.0


class TactileNode(Node):
    """Tactile samples and poses in, the next 20 poses out (see the module docstring)."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self.settings, model, metadata, path, device = start_model(
            self, PARAMETERS, parameter_problem, TactileSettings(), load_predictor)
        self.runtime = TactileRuntime(model, metadata, device, self.settings)
        self._diagnostics = TactileDiagnostics(self.runtime)
        self._guard = CallbackGuard(self.get_logger())
        self.get_logger().info(f'model {path} on {device} (trained at {self.runtime.rate_hz:g} Hz, '
                               f'{self.runtime.horizon} poses ahead)')
        self._poses_pub = self.create_publisher(PoseArray, OUTPUT_TOPIC, OUTPUT_DEPTH)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', OUTPUT_DEPTH)
        qos = QoSProfile(depth=INPUT_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(Float32MultiArray, TACTILE_TOPIC, self._on_tactile, qos)
        self.create_subscription(PoseStamped, POSE_TOPIC, self._on_pose, qos)
        self.create_service(Trigger, '~/reset', self._on_reset)
        # Steady time, not the node clock: a paused or absent /clock must not stop the reports.
        self.create_timer(self.settings.diagnostics_period_s, self._publish_diagnostics,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.add_post_set_parameters_callback(self._apply_parameters)

    def _apply_parameters(self, parameters: List[Parameter]) -> None:
        self.settings = self.settings.updated({p.name: p.value for p in parameters})
        self.runtime.configure(self.settings)

    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # ------------------------------------------------------------------------------- samples
    def _on_tactile(self, message: Float32MultiArray) -> None:
        with self._guard:
            self._answer(self.runtime.on_tactile(message, self._now_s()))

    def _on_pose(self, message: PoseStamped) -> None:
        with self._guard:
            self._answer(self.runtime.on_pose(message, self._now_s()))

    def _answer(self, result: StepResult) -> None:
        if result.device_failure:
            self.get_logger().error(f'{result.device_failure}; answering on the CPU from now on')
        elif result.reset_reason:
            self.get_logger().info(f'state reset: {result.reset_reason}', throttle_duration_sec=1.0)
        if result.outcome is Outcome.REJECTED:
            self.get_logger().warning(f'message skipped: {result.error}',
                                      throttle_duration_sec=WARNING_THROTTLE_S)
        if result.outcome is not Outcome.PROCESSED:
            return
        array = PoseArray(poses=[pose_message(pose) for pose in result.poses])
        array.header.stamp.sec, array.header.stamp.nanosec = divmod(result.stamp_ns, 1_000_000_000)
        array.header.frame_id = self.settings.frame_id
        self._poses_pub.publish(array)

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.runtime.reset('~/reset service call')
        self.get_logger().info('state reset: ~/reset service call')
        response.success = True
        response.message = 'recurrent state reset; the next sample starts from zeros'
        return response

    # --------------------------------------------------------------------------- diagnostics
    def _publish_diagnostics(self) -> None:
        report = self._diagnostics.report(time.monotonic(), *self._guard.report())
        status = DiagnosticStatus(
            level=bytes([report.level]), name=f'{self.get_fully_qualified_name()}: tactile pose predictor',
            message=report.message, hardware_id=str(self.runtime.device),
            values=[KeyValue(key=key, value=value) for key, value in report.values])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics_pub.publish(array)


def pose_message(pose) -> Pose:
    """``(x, y, z, angle)`` -> ``geometry_msgs/Pose`` (rotation about the grasp axis y)."""
    (x, y, z), (qx, qy, qz, qw) = pose_fields(pose)
    return Pose(position=Point(x=x, y=y, z=z), orientation=Quaternion(x=qx, y=qy, z=qz, w=qw))


def main(args: Optional[List[str]] = None) -> int:
    """``ros2 run rnn_perception tactile_node [--ros-args ...]``."""
    return run_node(NODE_NAME, TactileNode, args)


if __name__ == '__main__':
    sys.exit(main())
