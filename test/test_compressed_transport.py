"""The collision node on ``image_transport`` ``compressed`` over real DDS: OpenCV-encoded JPEG and
PNG ``sensor_msgs/CompressedImage`` frames on ``<image topic>/compressed``, answered exactly as
the runtime answers the same messages offline; a corrupt, truncated or empty payload and an
unknown format are counted, reported and dropped, and the recurrent state is left alone."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from ros_helpers import spin_until
import test_collision_node
from test_collision_node import FPS, Probe
from test_compressed_image import pattern

pytestmark = pytest.mark.dds

# Fixtures of another test module: assigned, not imported by name (see test_faults_dds.py).
start_node = test_collision_node.start_node
weights = test_collision_node.weights

TIMEOUT_SEC = 30.0


def compressed_message(rgb: np.ndarray, stamp_s: float, extension: str = '.jpg',
                       image_format: str = 'rgb8; jpeg compressed bgr8'):
    from sensor_msgs.msg import CompressedImage

    ok, data = cv2.imencode(extension, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    message = CompressedImage(format=image_format, data=data.tobytes())
    message.header.stamp.sec, fraction = int(stamp_s), stamp_s % 1
    message.header.stamp.nanosec = round(fraction * 1e9)
    message.header.frame_id = 'camera'
    return message


def camera_frames(count: int, height: int = 480, width: int = 640):
    """``count`` 640x480 frames of a pattern with a disc moving across it."""
    frames = []
    for index in range(count):
        frame = pattern(height, width)
        cv2.circle(frame, (80 + 40 * index, height // 3), 30, (255, 255, 255), -1)
        frames.append(frame)
    return frames


def offline_probabilities(node, messages):
    """What a fresh runtime with the node's model and settings answers to ``messages``."""
    import torch

    from rnn_perception.models.loading import LoadedModel
    from rnn_perception.runtime.collision import CollisionRuntime

    runtime = CollisionRuntime(LoadedModel(node.runtime.model, {'fps': FPS, 'threshold': 0.5},
                                           None, torch.device(node.runtime.device)),
                               node.settings)
    results = [runtime.process(message, 0.0) for message in messages]
    return [result.probability for result in results if result.probability is not None]


class CompressedProbe(Probe):
    """The probe, publishing ``CompressedImage`` on the compressed transport's topic."""

    @property
    def images(self):
        from sensor_msgs.msg import CompressedImage

        if self._images is None:
            self._images = self.node.create_publisher(
                CompressedImage, f'{self.namespace}/camera/image_raw/compressed', 10)
        return self._images


def test_compressed_jpeg_frames_are_answered_as_offline(start_node, make_node, ros_executor):
    node = start_node(image_transport='compressed')
    assert node.images.topic == f'{node.get_namespace()}/camera/image_raw/compressed'
    probe = CompressedProbe(make_node, node)
    messages = [compressed_message(frame, 1.0 + index / FPS)
                for index, frame in enumerate(camera_frames(6))]
    messages[3] = compressed_message(camera_frames(4)[3], 1.0 + 3 / FPS, '.png',
                                     'bgr8; png compressed bgr8')    # a PNG mid-stream
    for message in messages:
        probe.send(ros_executor, node, message)
    assert spin_until(ros_executor, lambda: len(probe.stamped) == len(messages), TIMEOUT_SEC)
    assert [stamp for stamp, _ in probe.stamped] == pytest.approx(
        [1.0 + i / FPS for i in range(len(messages))])
    assert [p for _, p in probe.stamped] == pytest.approx(
        offline_probabilities(node, messages), abs=1e-6)
    assert node.runtime.read_frame.scale == 4            # 640x480 decoded at 1/4 after frame 1
    assert node.runtime.counters.resets == 0             # the scale change is no resolution change


def test_bad_compressed_frames_are_counted_and_leave_the_state_alone(start_node, make_node,
                                                                     ros_executor):
    from sensor_msgs.msg import CompressedImage

    node = start_node(image_transport='compressed')
    probe = CompressedProbe(make_node, node)
    frames = camera_frames(5)
    good = [compressed_message(frame, 1.0 + index / FPS) for index, frame in enumerate(frames)]
    truncated = compressed_message(frames[0], 1.0)
    truncated.data = truncated.data[:len(truncated.data) // 2]
    bad = [truncated, CompressedImage(format='jpeg', data=b''),
           CompressedImage(format='h264', data=good[0].data),
           CompressedImage(format='png', data=bytes(100))]
    for message, garbage in zip(good, bad):
        probe.send(ros_executor, node, message)
        probe.send(ros_executor, node, garbage)
    probe.send(ros_executor, node, good[-1])
    assert spin_until(ros_executor, lambda: len(probe.stamped) == len(good), TIMEOUT_SEC)
    # the garbage in between changed nothing: the answers are those of the good frames alone
    assert [p for _, p in probe.stamped] == pytest.approx(offline_probabilities(node, good),
                                                          abs=1e-6)
    level, message, values = probe.latest_diagnostics(
        ros_executor, lambda v: v['frames_rejected'] == str(len(bad)))
    assert level == 1 and 'rejected since the last report' in message
    assert values['state_resets'] == '0'
    assert 'not a png file' in values['last_rejection']
