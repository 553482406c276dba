"""``collision_node``: will the ball in view hit the robot? One ConvLSTM step per camera frame.

Topics (relative names, so a namespace applies; remap ``camera/image_raw`` to your camera):

* subscribes ``camera/image_raw`` (``sensor_msgs/Image``: rgb8, bgr8, rgba8, bgra8, mono8,
  mono16, rgb16, bgr16, yuv422/uyvy, yuv422_yuy2/yuyv, nv21, nv24 or 8-bit Bayer, see
  :mod:`rnn_perception.data.image_conversion`; any resolution, row padding allowed), or with
  ``image_transport`` ``compressed`` ``camera/image_raw/compressed``
  (``sensor_msgs/CompressedImage``, JPEG or PNG, see :mod:`rnn_perception.data.compressed_image`);
  keep-last ``image_queue_depth`` (1: the newest frame), reliability per ``image_qos``
  (``auto`` follows the camera's publishers; see
  :mod:`rnn_perception.ros.qos` for why this matters);
* publishes ``collision_probability`` (``std_msgs/Float32``) and ``collision_alert``
  (``std_msgs/Bool``, with hysteresis) for every processed frame;
* publishes ``~/collision_probability_stamped`` (``geometry_msgs/PointStamped``, ``point.x`` =
  probability, header = the camera frame's header), so a consumer knows which frame each
  probability belongs to;
* publishes ``~/activations`` (``sensor_msgs/Image`` mono8): the ConvLSTM ``h`` and ``c`` maps
  tiled, computed only while someone subscribes;
* publishes ``/diagnostics`` (``diagnostic_msgs/DiagnosticArray``): processing rate, latency
  p50/p99, frame counters (received, processed, subsampled, stale, rejected), resets, device,
  backend;
* serves ``~/reset`` (``std_srvs/Trigger``): zero the recurrent state.

Behaviour (implemented, and documented in detail, in :mod:`rnn_perception.runtime.collision`):

* the model runs **one step per frame with carried hidden state**, never re-running a window,
  on the ``backend`` (``torch``, or ``onnxruntime``: the exported step, see
  :mod:`rnn_perception.models.engines`) and ``device`` (``auto``: CUDA if available, else CPU;
  logged), with ``cpu_threads`` threads (default 1, the fastest for one small frame);
* the state resets on a stamp gap over ``reset_gap_s``, on stamps going backwards (a looping
  bag), on a resolution change, and on ``~/reset``;
* a GPU or execution provider that fails during a step (out of memory, a CUDA error) is logged
  and the model moves to the CPU for good: the state resets, the frame is answered there, the
  diagnostics say so (a provider that cannot start is reported the same way);
* **frame rate**: the weights were trained at the rate in their metadata (``fps``). Faster
  cameras are *subsampled* to it (``subsample_to_model_rate``), because the ConvLSTM has learnt
  motion per step; slower cameras are used as they are with a warning in the log and the
  diagnostics (frames cannot be invented);
* frames older than ``max_frame_age_s`` against the node clock are dropped and counted
  (``use_sim_time`` honoured; the check is off where stamps and clock are not comparable);
* unreadable frames (unknown or depth encodings, short data, zero or huge size) are counted,
  logged with a throttled warning and dropped; the node keeps answering good frames; an
  unexpected error while handling a frame is caught, counted (``internal_errors``) and logged,
  never the end of the node;
* a matched publisher that sends nothing for ``no_frame_warning_s`` is reported in the log and
  the diagnostics, with the Fast DDS large-frame remedy.

Every parameter is declared with a description and validated; a bad value is refused with the
reason (at start-up: the node does not start; at run time: the old value stays). A missing,
corrupt or mismatched weights file stops the start with one message naming the file.
"""
from __future__ import annotations

import sys
import time
from typing import List, Optional, Sequence, Tuple

from geometry_msgs.msg import PointStamped
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Bool, Float32

from ..data.camera_frames import COMPRESSED_TRANSPORT
from ..data.image_conversion import array_to_image_fields, decoder_name
from ..ros.qos import MatchingImageSubscription
from ..runtime.activation_mosaic import activation_mosaic
from ..runtime.collision import CollisionRuntime, load_predictor, Outcome
from ..runtime.collision_diagnostics import DiagnosticsSummary
from ..runtime.collision_parameters import CollisionSettings, PARAMETERS
from ..runtime.diagnostics import DiagnosticReport
from ..runtime.watchdog import NoFrameWatchdog
from .common import ModelNode, OUTPUT_DEPTH, run_node, WARNING_THROTTLE_S

NODE_NAME = 'collision_node'
IMAGE_TOPIC = 'camera/image_raw'


class CollisionNode(ModelNode):
    """Camera frames in, collision probability and alert out (see the module docstring)."""

    parameters = PARAMETERS
    settings_type = CollisionSettings
    load_model = staticmethod(load_predictor)
    runtime_type = CollisionRuntime
    title = 'collision predictor'
    input_name = 'frame'

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self._diagnostics = DiagnosticsSummary(self.runtime)
        self._watchdog = NoFrameWatchdog(self.settings.no_frame_warning_s)
        self.get_logger().info(
            f'model {self.model_path}, {self.runtime.engine.describe()} '
            f'(trained at {self.runtime.model_fps:g} fps, alert '
            f'threshold {self.runtime.alert.on_threshold:g}); images decoded with {decoder_name()}'
        )

        self._probability_pub = self.create_publisher(
            Float32, 'collision_probability', OUTPUT_DEPTH
        )
        self._stamped_pub = self.create_publisher(PointStamped, '~/collision_probability_stamped',
                                                  OUTPUT_DEPTH)
        self._alert_pub = self.create_publisher(Bool, 'collision_alert', OUTPUT_DEPTH)
        self._activations_pub = self.create_publisher(Image, '~/activations', 1)
        compressed = self.settings.image_transport == COMPRESSED_TRANSPORT
        # image_transport's rule: the compressed stream is <the remapped image topic>/compressed
        topic = f'{self.resolve_topic_name(IMAGE_TOPIC)}/compressed' if compressed else IMAGE_TOPIC
        self.images = MatchingImageSubscription(
            self, CompressedImage if compressed else Image, topic, self._on_image,
            self.settings.image_qos, self.settings.image_queue_depth)

    def parameters_changed(self) -> None:
        self._watchdog.timeout_s = self.settings.no_frame_warning_s
        if self.settings.image_qos != self.images.mode:
            self.images.set_mode(self.settings.image_qos)

    # -------------------------------------------------------------------------------- frames
    def _on_image(self, message) -> None:
        with self.callback_guard:
            self._process(message)

    def _process(self, message) -> None:
        self._watchdog.frame_arrived(time.monotonic())
        result = self.runtime.process(message, self.get_clock().now().nanoseconds * 1e-9)
        self.log_state(result)
        if result.outcome is Outcome.REJECTED:
            self.get_logger().warning(f'frame dropped: {result.error}',
                                      throttle_duration_sec=WARNING_THROTTLE_S)
        elif result.outcome is Outcome.STALE:
            self.get_logger().warning(
                'stale frame dropped '
                f'(older than max_frame_age_s={self.settings.max_frame_age_s:g} s)',
                throttle_duration_sec=WARNING_THROTTLE_S,
            )
        if result.outcome is not Outcome.PROCESSED:
            return
        self._probability_pub.publish(Float32(data=result.probability))
        stamped = PointStamped(header=message.header)
        stamped.point.x = result.probability
        self._stamped_pub.publish(stamped)
        self._alert_pub.publish(Bool(data=result.alert))
        if (
            self._activations_pub.get_subscription_count() > 0
        ):  # the mosaic costs: only when watched
            mosaic = activation_mosaic(self.runtime.recurrent_state_arrays())
            self._activations_pub.publish(
                Image(header=message.header, **array_to_image_fields(mosaic))
            )

    # --------------------------------------------------------------------------- diagnostics
    def diagnostics_report(self, now_s: float, warnings: List[str],
                           values: Sequence[Tuple[str, str]]) -> DiagnosticReport:
        matched = self.images.matched_publishers
        silent = self._watchdog.check(now_s, matched, self.images.topic)
        if silent:
            self.get_logger().warning(silent, throttle_duration_sec=4 * WARNING_THROTTLE_S)
        return self._diagnostics.report(now_s, ([silent] if silent else []) + warnings, [
            ('image_topic', self.images.topic),
            ('image_qos', f'{self.images.reliability} (image_qos={self.images.mode})'),
            ('matched_publishers', str(matched)),
            *values,
        ])


def main(args: Optional[List[str]] = None) -> int:
    """``ros2 run rnn_perception collision_node [--ros-args ...]``."""
    return run_node(NODE_NAME, CollisionNode, args)


if __name__ == '__main__':
    sys.exit(main())
