"""Garbage over real DDS: a probe publishes streams of malformed messages interleaved with good
ones (``malformed.py``) to a running collision node and a running tactile node (in process, spun
by the test's executor; everything still goes through Fast DDS). Every good input is answered,
matched by header stamp and equal to a fresh runtime's answer; no bad one is; the node's
/diagnostics count every bad one as rejected.

The probe publishes each message once the node has taken the one before: the image
subscription is keep-last 1 (a newer message would replace an unread one), and the tactile node
pairs its two topics by arrival, which DDS does not order across topics.
"""
from __future__ import annotations


import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from malformed import (
    TactileSample,
    assert_pose_array_close,
    bad_count,
    bad_images,
    bad_tactile_messages,
    collision_runtime,
    good_images,
    good_poses,
    good_tactile_values,
    stamp_image,
    stamp_ns,
    stream_messages,
    tactile_reference,
)
from ros_helpers import spin_until

pytestmark = pytest.mark.dds

TIMEOUT_SEC = 20.0
# Each example starts a node and its probe: a few long streams, not shrunk (each try costs DDS
# discovery; a failure prints its stream).
OVER_DDS = settings(
    max_examples=3,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

image_bursts = st.lists(st.tuples(st.lists(bad_images(), min_size=1, max_size=6), good_images()),
                        min_size=3, max_size=5)
tactile_bursts = st.lists(
    st.builds(
        TactileSample,
        good_tactile_values,
        good_poses,
        st.lists(bad_tactile_messages, min_size=1, max_size=5),
        st.lists(bad_tactile_messages, max_size=1),
    ),
    min_size=3,
    max_size=6,
)


def reliable(depth: int):
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)


class Probe:
    """A helper node around ``node`` (started in a namespace of its own): publishes to its
    inputs one message at a time, records its answers and its /diagnostics values."""

    def __init__(self, make_node, executor, node, answer_type, answer_topic: str):
        from diagnostic_msgs.msg import DiagnosticArray

        self.executor, self.target = executor, node
        self.node = make_node(f'probe{node.get_namespace().replace("/", "_")}')
        self.answers, self.diagnostics = [], []
        self.node.create_subscription(answer_type, answer_topic, self.answers.append, reliable(50))
        self.node.create_subscription(DiagnosticArray, '/diagnostics',
                                      self._on_diagnostics, 10)

    def publisher(self, message_type, topic: str):
        publisher = self.node.create_publisher(
            message_type, f'{self.target.get_namespace()}/{topic}', reliable(10)
        )
        assert spin_until(
            self.executor, lambda: publisher.get_subscription_count() > 0, TIMEOUT_SEC
        )
        return publisher

    def send(self, publisher, message, received) -> None:
        """Publish ``message`` and spin until the node has taken it (``received()`` grows)."""
        before = received()
        publisher.publish(message)
        assert spin_until(self.executor, lambda: received() > before, TIMEOUT_SEC), (
            'the node never got it'
        )

    def _on_diagnostics(self, array) -> None:
        name = self.target.get_fully_qualified_name() + ':'
        self.diagnostics += [
            {kv.key: kv.value for kv in s.values} for s in array.status if s.name.startswith(name)
        ]

    def wait_for_diagnostics(self, predicate) -> dict:
        assert spin_until(
            self.executor, lambda: any(map(predicate, self.diagnostics)), TIMEOUT_SEC
        ), f'no matching diagnostics; last: {self.diagnostics[-1:]}'
        return next(values for values in self.diagnostics if predicate(values))

    def settle(self, seconds: float = 0.3) -> None:
        """Spin a little longer, so an answer that should not come has the time to."""
        spin_until(self.executor, lambda: False, seconds)


@pytest.fixture
def start_node(spun_node):
    """``start_node(node_class, **parameters)``: on the shipped model (CPU), fast diagnostics, in
    a namespace of its own, spun by ``ros_executor``."""
    return lambda node_class, **parameters: spun_node(node_class, **{
        'device': 'cpu', 'diagnostics_period_s': 0.2, **parameters})


@OVER_DDS
@given(stream=image_bursts)
def test_collision_node_answers_every_good_frame_and_no_garbage(
    start_node, make_node, ros_executor, stream
):
    from geometry_msgs.msg import PointStamped
    from sensor_msgs.msg import Image

    from rnn_perception.nodes.collision_node import CollisionNode

    # reliable like the probe; no age check: garbage stamps are random
    node = start_node(CollisionNode, image_qos='reliable', max_frame_age_s=0.0)
    probe = Probe(
        make_node,
        ros_executor,
        node,
        PointStamped,
        f'{node.get_fully_qualified_name()}/collision_probability_stamped',
    )
    images = probe.publisher(Image, 'camera/image_raw')
    received = lambda: node.runtime.counters.received  # noqa: E731
    reference, expected = collision_runtime(), []
    for index, (garbage, good) in enumerate(stream):
        for bad in garbage:
            probe.send(images, bad, received)
        probe.send(images, stamp_image(good, index), received)
        expected.append((stamp_ns(good.header), reference.process(good, 1.0).probability))
    assert spin_until(ros_executor, lambda: len(probe.answers) >= len(expected), TIMEOUT_SEC)
    probe.settle()
    assert [stamp_ns(answer.header) for answer in probe.answers] == [
        stamp for stamp, _ in expected
    ]
    assert [answer.point.x for answer in probe.answers] == pytest.approx(
        [p for _, p in expected], abs=1e-6
    )
    bad = sum(len(garbage) for garbage, _ in stream)
    values = probe.wait_for_diagnostics(lambda v: v['frames_received'] == str(bad + len(stream)))
    assert (values['frames_rejected'], values['frames_processed']) == (str(bad), str(len(stream)))
    assert values['internal_errors'] == '0'


@OVER_DDS
@given(samples=tactile_bursts)
def test_tactile_node_answers_every_intact_sample_and_no_garbage(
    start_node, make_node, ros_executor, samples
):
    from geometry_msgs.msg import PoseArray, PoseStamped
    from std_msgs.msg import Float32MultiArray

    from rnn_perception.nodes.tactile_node import TactileNode

    node = start_node(TactileNode)
    probe = Probe(
        make_node, ros_executor, node, PoseArray, f'{node.get_namespace()}/predicted_poses'
    )
    publishers = {'tactile': probe.publisher(Float32MultiArray, 'tactile/raw'),
                  'pose': probe.publisher(PoseStamped, 'object/pose')}
    counters = node.runtime.counters
    received = lambda: counters.tactile_received + counters.poses_received  # noqa: E731
    for kind, message, _ in stream_messages(samples):
        probe.send(publishers[kind], message, received)
    expected = tactile_reference(samples)
    assert spin_until(ros_executor, lambda: len(probe.answers) >= len(expected), TIMEOUT_SEC)
    probe.settle()
    assert [stamp_ns(answer.header) for answer in probe.answers] == sorted(expected)
    for answer in probe.answers:
        assert_pose_array_close(answer, expected[stamp_ns(answer.header)])
    bad = bad_count(samples)
    values = probe.wait_for_diagnostics(lambda v: v['messages_rejected'] == str(bad))
    assert values['samples_processed'] == str(len(expected)) and values['internal_errors'] == '0'
