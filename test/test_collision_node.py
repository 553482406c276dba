"""collision_node over real DDS (rclpy, Fast DDS), on the per-run domain of conftest.py.

Cameras in another process cover the QoS cases that matter (a reliable 640x480 publisher, a
best-effort one); the rest publishes from a helper node in this process, which still goes
through DDS (rclpy has no intra-process shortcut).
"""
from __future__ import annotations

import subprocess

import numpy as np
import onnxruntime
import pytest
import torch

from ros_helpers import PYTHON, process_output, python_subprocess, spin_until

pytestmark = pytest.mark.dds

TIMEOUT_SEC = 20.0
FPS = 30.0


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    from rnn_perception.models.collision import CollisionPredictor, save_collision_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('weights') / 'collision.safetensors'
    save_collision_model(path, CollisionPredictor(), {'fps': FPS, 'threshold': 0.5})
    return path


@pytest.fixture
def start_node(spun_node, weights):
    """``start_node(**parameters) -> CollisionNode`` in a namespace of its own, spun by
    ``ros_executor``. Unless overridden: fast diagnostics, and ``image_qos`` reliable like the
    probe's publisher (``auto`` would first subscribe best effort, then switch once it sees the
    publisher, and a frame sent during the switch may be lost: the QoS tests cover ``auto``)."""
    from rnn_perception.nodes.collision_node import CollisionNode

    return lambda **parameters: spun_node(
        CollisionNode,
        **{
            'weights': str(weights),
            'diagnostics_period_s': 0.2,
            'image_qos': 'reliable',
            **parameters,
        },
    )


class Probe:
    """A helper node: publishes images to a collision node and records what it answers."""

    def __init__(self, make_node, collision_node):
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PointStamped
        from std_msgs.msg import Bool, Float32

        self.namespace = collision_node.get_namespace()
        self.fqn = collision_node.get_fully_qualified_name()
        self.node = make_node(f'probe{self.namespace.replace("/", "_")}')
        self.probabilities, self.stamped, self.alerts, self.diagnostics = [], [], [], []
        self.node.create_subscription(Float32, f'{self.namespace}/collision_probability',
                                      lambda m: self.probabilities.append(m.data), 10)
        self.node.create_subscription(
            PointStamped,
            f'{self.fqn}/collision_probability_stamped',
            lambda m: self.stamped.append((_stamp_s(m.header), m.point.x)),
            10,
        )
        self.node.create_subscription(Bool, f'{self.namespace}/collision_alert',
                                      lambda m: self.alerts.append(m.data), 10)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 10)
        self._images = None

    @property
    def images(self):
        """The probe's reliable image publisher, created on first use (so that it does not sway
        an ``image_qos: auto`` node while a camera in another process is tested)."""
        from sensor_msgs.msg import Image

        if self._images is None:
            self._images = self.node.create_publisher(
                Image, f'{self.namespace}/camera/image_raw', 10
            )
        return self._images

    def _on_diagnostics(self, array):
        for status in array.status:
            if status.name.startswith(self.fqn + ':'):
                self.diagnostics.append((status.level[0], status.message,
                                         {kv.key: kv.value for kv in status.values}))

    def send(self, executor, collision_node, message):
        """Publish one image and spin until the collision node has received it."""
        received = collision_node.runtime.counters.received
        assert spin_until(executor, lambda: self.images.get_subscription_count() > 0, TIMEOUT_SEC)
        self.images.publish(message)
        assert spin_until(executor, lambda: collision_node.runtime.counters.received > received,
                          TIMEOUT_SEC), 'the collision node never received the image'

    def latest_diagnostics(self, executor, predicate=lambda values: True):
        """Spin until a diagnostics report matching ``predicate`` arrives; return it."""
        count = len(self.diagnostics)
        assert spin_until(executor, lambda: any(predicate(d[2]) for d in self.diagnostics[count:]),
                          TIMEOUT_SEC), f'no matching diagnostics; last: {self.diagnostics[-1:]}'
        return next(d for d in reversed(self.diagnostics) if predicate(d[2]))


def _stamp_s(header) -> float:
    return header.stamp.sec + header.stamp.nanosec * 1e-9


def image_message(rgb: np.ndarray, stamp_s: float, encoding: str = 'rgb8'):
    from sensor_msgs.msg import Image

    from rnn_perception.data.image_conversion import array_to_image_fields

    message = Image(**array_to_image_fields(rgb))
    message.encoding = encoding
    message.header.stamp.sec, message.header.stamp.nanosec = divmod(
        round(stamp_s * 1e9), 1_000_000_000
    )
    return message


def fresh_probability(weights, rgb: np.ndarray) -> float:
    """The model's answer for ``rgb`` as the first frame after a reset, computed offline."""
    from rnn_perception.models.collision import (
        frames_to_tensor,
        load_collision_model,
        resize_frames,
    )

    model, _ = load_collision_model(weights)
    with torch.inference_mode():
        logits, _ = model.step(frames_to_tensor(resize_frames(rgb[None], model.config.image_size)))
    return float(torch.sigmoid(logits[0]))


@pytest.fixture
def frames():
    return np.random.default_rng(3).integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)


# --------------------------------------------------------------------- cameras in another process
# Publishes CAM_WIDTH x CAM_HEIGHT rgb8 frames at 30 Hz on CAM_TOPIC with CAM_RELIABILITY,
# stamped 1000 s + n/30 (a sim-like clock), until killed, orphaned or 60 s pass.
_CAMERA = '''
import os, time
import rclpy
from rclpy.context import Context
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

width, height = int(os.environ['CAM_WIDTH']), int(os.environ['CAM_HEIGHT'])
reliability = {'reliable': ReliabilityPolicy.RELIABLE,
               'best_effort': ReliabilityPolicy.BEST_EFFORT}[os.environ['CAM_RELIABILITY']]
context = Context()
rclpy.init(context=context)
node = rclpy.create_node('test_camera', context=context)
qos = QoSProfile(depth=5, reliability=reliability)
publisher = node.create_publisher(Image, os.environ['CAM_TOPIC'], qos)
message = Image(height=height, width=width, encoding='rgb8', step=width * 3,
                data=os.urandom(width * height * 3))
parent, start, sequence = os.getppid(), time.monotonic(), 0
while context.ok() and os.getppid() == parent and time.monotonic() - start < 60.0:
    message.header.stamp.sec, message.header.stamp.nanosec = divmod(
        10**12 + sequence * 10**9 // 30, 10**9)
    publisher.publish(message)
    sequence += 1
    time.sleep(max(0.0, start + sequence / 30.0 - time.monotonic()))
'''


def _answered_stamps(probe, executor, node, reliability, count):
    """Once ``node`` subscribes with ``reliability`` and answers, the stamps of its next
    ``count`` answers."""
    assert spin_until(executor, lambda: node.images.reliability == reliability and probe.stamped,
                      TIMEOUT_SEC), \
        f'subscription {node.images.reliability}, {len(probe.stamped)} answers'
    first = len(probe.stamped)
    assert spin_until(executor, lambda: len(probe.stamped) >= first + count, TIMEOUT_SEC), \
        f'{len(probe.stamped) - first} of {count} answers'
    return [stamp for stamp, _ in probe.stamped[first:first + count]]


def test_reliable_640x480_camera_in_another_process(start_node, make_node, ros_executor):
    node = start_node(image_qos='auto')
    probe = Probe(make_node, node)
    environment = {'CAM_WIDTH': '640', 'CAM_HEIGHT': '480', 'CAM_RELIABILITY': 'reliable',
                   'CAM_TOPIC': node.images.topic}
    with python_subprocess(_CAMERA, env=environment) as camera:
        stamps = _answered_stamps(probe, ros_executor, node, 'reliable', 40)
        assert camera.poll() is None, process_output(camera)
    # The camera numbers its frames in their stamps (n/30 s): how many of those sent while we
    # listened were answered? Keep-last 1 lets a starved node skip to the newest frame, so allow
    # some loss on a busy machine; a best-effort subscription would get none of them.
    sent = round((stamps[-1] - stamps[0]) * FPS) + 1
    assert len(stamps) >= 0.8 * sent, f'{len(stamps)} of {sent} frames answered'
    assert node.runtime.counters.rejected == 0


def test_best_effort_camera_in_another_process(start_node, make_node, ros_executor):
    node = start_node(image_qos='auto')
    probe = Probe(make_node, node)
    environment = {'CAM_WIDTH': '64', 'CAM_HEIGHT': '64', 'CAM_RELIABILITY': 'best_effort',
                   'CAM_TOPIC': node.images.topic}
    with python_subprocess(_CAMERA, env=environment) as camera:
        stamps = _answered_stamps(probe, ros_executor, node, 'best_effort', 20)
        assert camera.poll() is None, process_output(camera)
    sent = round((stamps[-1] - stamps[0]) * FPS) + 1
    assert len(stamps) >= 0.8 * sent, f'{len(stamps)} of {sent} frames answered'
    _, _, values = probe.latest_diagnostics(ros_executor)
    assert values['image_qos'] == 'best_effort (image_qos=auto)'


# ------------------------------------------------------------------------------ this process
def test_garbage_frames_are_counted_and_good_ones_answered(
    start_node, make_node, ros_executor, frames
):
    node = start_node()
    probe = Probe(make_node, node)
    depth = image_message(frames[0], 1.0, encoding='32FC1')
    short = image_message(frames[0], 1.0)
    short.data = short.data[:1000]
    zero = image_message(frames[0][:0], 1.0)
    unknown = image_message(frames[0], 1.0, encoding='jpeg')
    garbage = [depth, short, zero, unknown]
    for index, bad in enumerate(garbage):
        probe.send(ros_executor, node, image_message(frames[index], 1.0 + index / FPS))
        probe.send(ros_executor, node, bad)
    assert spin_until(ros_executor, lambda: len(probe.stamped) == len(garbage), TIMEOUT_SEC)
    assert [stamp for stamp, _ in probe.stamped] == pytest.approx(
        [1.0 + i / FPS for i in range(4)]
    )
    level, message, values = probe.latest_diagnostics(
        ros_executor, lambda v: v['frames_rejected'] == '4'
    )
    assert level == 1 and 'rejected since the last report' in message
    assert (values['frames_received'], values['frames_processed']) == ('8', '4')
    assert 'unsupported encoding' in values['last_rejection']
    # The node keeps answering good frames after garbage.
    probe.send(ros_executor, node, image_message(frames[4], 1.0 + 4 / FPS))
    assert spin_until(
        ros_executor, lambda: len(probe.probabilities) == len(probe.alerts) == 5, TIMEOUT_SEC
    )


def test_diagnostics_report_rate_latency_counters_and_device(
    start_node, make_node, ros_executor, frames
):
    node = start_node()
    probe = Probe(make_node, node)
    probe.send(ros_executor, node, image_message(frames[0], 1.0))
    level, message, values = probe.latest_diagnostics(
        ros_executor, lambda v: v['frames_processed'] == '1'
    )
    assert level == 0 and message.endswith('frames/s')
    for key in ('rate_hz', 'latency_p50_ms', 'latency_p99_ms', 'frames_stale', 'frames_subsampled',
                'state_resets', 'matched_publishers'):
        assert key in values
    assert float(values['latency_p99_ms']) > 0 and values['device'] == 'cpu'


def test_reset_service(start_node, make_node, ros_executor, frames, weights):
    from std_srvs.srv import Trigger

    node = start_node()
    probe = Probe(make_node, node)
    probe.send(ros_executor, node, image_message(frames[0], 1.0))
    client = probe.node.create_client(Trigger, f'{probe.fqn}/reset')
    assert client.wait_for_service(timeout_sec=TIMEOUT_SEC)
    future = client.call_async(Trigger.Request())
    assert spin_until(ros_executor, future.done, TIMEOUT_SEC)
    assert future.result().success and node.runtime.counters.resets == 1
    probe.send(ros_executor, node, image_message(frames[1], 1.0 + 1 / FPS))
    assert spin_until(ros_executor, lambda: len(probe.stamped) == 2, TIMEOUT_SEC)
    assert probe.stamped[1][1] == pytest.approx(fresh_probability(weights, frames[1]), abs=1e-5)


@pytest.mark.parametrize('backend', ['torch', 'onnxruntime'])
def test_stamps_going_backwards_reset_the_state(
    start_node, make_node, ros_executor, frames, weights, backend
):
    node = start_node(backend=backend)
    assert node.runtime.engine.describe().startswith(backend)
    probe = Probe(make_node, node)
    for index, stamp in enumerate([10.0, 10.0 + 1 / FPS, 10.0 + 2 / FPS, 5.0]):
        probe.send(ros_executor, node, image_message(frames[index], stamp))
    assert spin_until(ros_executor, lambda: len(probe.stamped) == 4, TIMEOUT_SEC)
    assert probe.stamped[3][0] == pytest.approx(5.0)
    assert probe.stamped[3][1] == pytest.approx(fresh_probability(weights, frames[3]), abs=1e-5)
    assert probe.stamped[1][1] != pytest.approx(fresh_probability(weights, frames[1]), abs=1e-6)
    assert node.runtime.last_reset_reason == 'stamps went backwards by 5.067 s'


def test_stale_frames_are_dropped_against_the_sim_clock(
    start_node, make_node, ros_executor, frames
):
    from rclpy.qos import QoSProfile
    from rosgraph_msgs.msg import Clock

    node = start_node(use_sim_time=True, max_frame_age_s=0.5)
    probe = Probe(make_node, node)
    clock_publisher = probe.node.create_publisher(Clock, '/clock', QoSProfile(depth=1))
    clock = Clock()
    clock.clock.sec = 100

    def sim_time_reached():
        clock_publisher.publish(clock)
        return node.get_clock().now().nanoseconds == 100 * 10**9

    assert spin_until(ros_executor, sim_time_reached, TIMEOUT_SEC)
    probe.send(ros_executor, node, image_message(frames[0], 90.0))      # 10 s old: stale
    probe.send(ros_executor, node, image_message(frames[1], 99.9))      # 0.1 s old: fine
    assert spin_until(ros_executor, lambda: len(probe.stamped) == 1, TIMEOUT_SEC)
    assert probe.stamped[0][0] == pytest.approx(99.9)
    _, message, values = probe.latest_diagnostics(ros_executor, lambda v: v['frames_stale'] == '1')
    assert values['stale_check'] == 'on' and 'stale frame(s) dropped' in message


def test_silent_matched_publisher_is_reported_with_the_remedy(start_node, make_node, ros_executor):
    node = start_node(no_frame_warning_s=0.3)
    probe = Probe(make_node, node)
    assert (
        probe.images.topic_name == node.images.topic
    )  # a publisher that matches, never publishes
    assert spin_until(
        ros_executor, lambda: probe.diagnostics and probe.diagnostics[-1][0] == 1, TIMEOUT_SEC
    )
    _, message, values = probe.diagnostics[-1]
    assert (values['matched_publishers'], values['frames_received']) == ('1', '0')
    assert 'no frame arrived' in message and 'FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA' in message


def test_activation_maps_only_for_subscribers(start_node, make_node, ros_executor, frames):
    from sensor_msgs.msg import Image

    node = start_node()
    probe = Probe(make_node, node)
    assert node._activations_pub.get_subscription_count() == 0
    pictures = []
    probe.node.create_subscription(Image, f'{probe.fqn}/activations', pictures.append, 1)
    assert spin_until(
        ros_executor, lambda: node._activations_pub.get_subscription_count() == 1, TIMEOUT_SEC
    )
    probe.send(ros_executor, node, image_message(frames[0], 1.0))
    assert spin_until(ros_executor, lambda: pictures, TIMEOUT_SEC)
    picture = pictures[0]
    assert picture.encoding == 'mono8' and picture.width == 8 * 17 - 1
    assert _stamp_s(picture.header) == pytest.approx(1.0)


# ------------------------------------------------------------------------------------ parameters
def test_bad_parameter_value_is_refused_with_a_reason_and_the_old_value_kept(start_node, make_node,
                                                                             ros_executor):
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    node = start_node(reset_gap_s=0.7)
    helper = make_node('parameter_helper')
    client = AsyncParameterClient(helper, node.get_fully_qualified_name())
    assert client.wait_for_services(timeout_sec=TIMEOUT_SEC)

    def set_remotely(name, value):
        future = client.set_parameters([Parameter(name, value=value)])
        assert spin_until(ros_executor, future.done, TIMEOUT_SEC)
        return future.result().results[0]

    refused = set_remotely('reset_gap_s', -1.0)
    assert not refused.successful
    assert refused.reason == 'reset_gap_s=-1.0 refused: must be a finite number > 0'
    assert (
        node.get_parameter('reset_gap_s').value == 0.7 and node.runtime.settings.reset_gap_s == 0.7
    )
    assert 'read-only' in set_remotely('device', 'cpu').reason
    assert 'auto, reliable, best_effort' in set_remotely('image_qos', 'fastest').reason
    assert set_remotely('reset_gap_s', 2.0).successful
    assert node.runtime.settings.reset_gap_s == 2.0
    assert set_remotely('image_qos', 'best_effort').successful
    assert node.images.reliability == 'best_effort'


def test_every_parameter_has_a_description(start_node):
    from rnn_perception.runtime.collision_parameters import PARAMETERS

    node = start_node()
    descriptors = node.describe_parameters([spec.name for spec in PARAMETERS])
    assert all(descriptor.description for descriptor in descriptors)
    assert [d.read_only for d in descriptors] == [spec.read_only for spec in PARAMETERS]


@pytest.mark.parametrize(
    'overrides,match',
    [
        ({'reset_gap_s': 0.0}, r'^reset_gap_s=0\.0 refused: must be a finite number > 0$'),
        ({'device': 'tpu'}, r"^device='tpu' refused: must be one of: auto, cpu, cuda$"),
        ({'backend': 'tensorflow'},
         r"^backend='tensorflow' refused: must be one of: torch, onnxruntime$"),
        ({'onnx_providers': 'cuda,npu'}, r"^onnx_providers='cuda,npu' refused: must be auto or a "
                                         r'comma-separated list of tensorrt, cuda, cpu '
                                         r'\(unknown: npu\)$'),
        pytest.param({'backend': 'onnxruntime', 'device': 'cuda'},
                     r'^device cuda requested but this onnxruntime has no CUDA execution provider',
                     marks=pytest.mark.skipif(
                         'CUDAExecutionProvider' in onnxruntime.get_available_providers(),
                         reason='this onnxruntime has the CUDA provider')),
        (
            {'weights': '/nonexistent/collision.safetensors'},
            r'/nonexistent/collision\.safetensors not found',
        ),
    ],
)
def test_node_refuses_to_start_on_a_bad_value(start_node, overrides, match):
    from rnn_perception.nodes.common import StartupError

    with pytest.raises(StartupError, match=match):
        start_node(**overrides)


def test_node_refuses_weights_of_another_model(start_node, tmp_path):
    from rnn_perception.nodes.common import StartupError
    from rnn_perception.files import save_checkpoint

    path = tmp_path / 'tactile.safetensors'
    save_checkpoint(path, {'w': torch.zeros(1)}, {'kind': 'tactile'})
    with pytest.raises(
        StartupError, match=rf"^{path}: holds a 'tactile' model, not a 'collision' one$"
    ):
        start_node(weights=str(path))


def test_corrupt_weights_stop_the_executable_with_one_clear_line(tmp_path):
    corrupt = tmp_path / 'corrupt.safetensors'
    corrupt.write_bytes(b'\x00' * 64)
    result = subprocess.run(
        [
            PYTHON,
            '-m',
            'rnn_perception.nodes.collision_node',
            '--ros-args',
            '-p',
            f'weights:={corrupt}',
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f'collision_node: error: {corrupt}: not a readable checkpoint')
