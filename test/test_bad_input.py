"""Malformed input, tried for real (property-based): both runtimes, and both nodes' subscription
callbacks (real in-process rclpy nodes on the shipped default models, called directly), fed
streams of real ROS messages where garbage (see ``malformed.py``) is interleaved with good input.

Invariants: nothing escapes (and the nodes' last-resort guard never fires: the runtimes classify
bad input themselves); every bad message is rejected, counted and shows in the diagnostics; every
good input is answered exactly as a fresh runtime fed only the good history answers it, with
finite outputs. Tactile: a bad message costs the sample it belongs to (one arriving between a
sample's tactile array and its pose breaks that pair), so the good history is the intact samples.
"""
from __future__ import annotations

import contextlib
import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from ros_helpers import record_calls

from malformed import (
    assert_pose_array_close,
    bad_count,
    collision_runtime,
    feed_tactile,
    image,
    image_streams,
    pose,
    stamp_image,
    stamp_ns,
    stream_messages,
    tactile,
    tactile_reference,
    tactile_runtime,
    tactile_streams,
)

# The node fixture is per test, the nodes per example (cheap: the weights are small).
PROPERTIES = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_namespaces = itertools.count()


@pytest.fixture
def start_node(ros_context):
    """``with start_node(node_class, **parameters) as node``: a node on the shipped model (CPU)
    in a namespace of its own, destroyed at the end of the block (of the example: shrinking a
    failure tries hundreds)."""
    from rclpy.parameter import Parameter

    @contextlib.contextmanager
    def start(node_class, **parameters):
        overrides = [
            Parameter(name, value=value) for name, value in {'device': 'cpu', **parameters}.items()
        ]
        node = node_class(
            context=ros_context,
            namespace=f'/bad{next(_namespaces)}',
            parameter_overrides=overrides,
        )
        try:
            yield node
        finally:
            node.destroy_node()
    return start


def diagnostic_values(node) -> tuple:
    """(level, message, key -> value) of the node's next /diagnostics report."""
    reports = record_calls(node._diagnostics_pub, 'publish')
    node._publish_diagnostics()
    status = reports[-1].status[0]
    return status.level[0], status.message, {kv.key: kv.value for kv in status.values}


# --------------------------------------------------------------------------------- collision
@PROPERTIES
@given(stream=image_streams)
def test_collision_runtime_rejects_garbage_and_answers_like_a_fresh_runtime(stream):
    from rnn_perception.runtime.collision import Outcome
    from rnn_perception.runtime.collision_diagnostics import DiagnosticsSummary
    from rnn_perception.runtime.diagnostics import DIAGNOSTIC_WARN

    runtime, reference = collision_runtime(), collision_runtime()
    summary = DiagnosticsSummary(runtime)
    summary.report(0.0)
    for index, (garbage, good) in enumerate(stream):
        for bad in garbage:
            result = runtime.process(bad, 1.0)
            assert result.outcome is Outcome.REJECTED and result.error, result
        stamp_image(good, index)
        result, expected = runtime.process(good, 1.0), reference.process(good, 1.0)
        assert result.outcome is expected.outcome is Outcome.PROCESSED
        assert math.isfinite(result.probability)
        assert result.probability == pytest.approx(expected.probability, abs=1e-6)
    bad = sum(len(garbage) for garbage, _ in stream)
    report = summary.report(1.0)
    values = dict(report.values)
    assert (values['frames_rejected'], values['frames_processed']) == (str(bad), str(len(stream)))
    assert values['state_resets'] == '0'
    if bad:
        assert report.level == DIAGNOSTIC_WARN and f'{bad} frame(s) rejected' in report.message


@PROPERTIES
@given(stream=image_streams)
def test_collision_node_callback_rejects_garbage_and_answers_like_a_fresh_node(start_node, stream):
    from rnn_perception.nodes.collision_node import CollisionNode

    with start_node(CollisionNode, max_frame_age_s=0.0) as node:
        check_collision_node(node, stream)


def check_collision_node(node, stream) -> None:
    reference = collision_runtime()
    answers = record_calls(node._stamped_pub, 'publish')
    for index, (garbage, good) in enumerate(stream):
        for bad in garbage:
            node._on_image(bad)
        node._on_image(stamp_image(good, index))
        assert len(answers) == index + 1, 'a good frame went unanswered, or garbage was answered'
        assert stamp_ns(answers[-1].header) == stamp_ns(good.header)
        assert math.isfinite(answers[-1].point.x)
        assert answers[-1].point.x == pytest.approx(
            reference.process(good, 1.0).probability, abs=1e-6
        )
    bad = sum(len(garbage) for garbage, _ in stream)
    level, message, values = diagnostic_values(node)
    assert values['frames_rejected'] == str(bad) and values['internal_errors'] == '0'
    assert level == (1 if bad else 0) and ('rejected' in message) == bool(bad)


# ----------------------------------------------------------------------------------- tactile
@PROPERTIES
@given(samples=tactile_streams)
def test_tactile_runtime_rejects_garbage_and_answers_like_a_fresh_runtime(samples):
    from rnn_perception.runtime.diagnostics import DIAGNOSTIC_WARN
    from rnn_perception.runtime.tactile import Outcome
    from rnn_perception.runtime.tactile_diagnostics import TactileDiagnostics

    runtime = tactile_runtime()
    diagnostics = TactileDiagnostics(runtime)
    diagnostics.report(0.0)
    answers = {}
    for kind, message, bad in stream_messages(samples):
        result = feed_tactile(runtime, kind, message)
        assert (result.outcome is Outcome.REJECTED) == bad, (kind, message, result)
        if result.outcome is Outcome.PROCESSED:
            assert np.isfinite(result.poses).all()
            answers[result.stamp_ns] = result.poses
    expected = tactile_reference(samples)
    assert len(expected) == sum(sample.intact for sample in samples)
    assert sorted(answers) == sorted(expected)
    for stamp, poses in answers.items():
        np.testing.assert_allclose(poses, expected[stamp], rtol=0, atol=1e-6)
    bad = bad_count(samples)
    report = diagnostics.report(1.0)
    values = dict(report.values)
    assert values['messages_rejected'] == str(bad) and values['state_resets'] == '0'
    if bad:
        assert report.level == DIAGNOSTIC_WARN and f'{bad} message(s) rejected' in report.message


@PROPERTIES
@given(samples=tactile_streams)
def test_tactile_node_callbacks_reject_garbage_and_answer_like_a_fresh_node(start_node, samples):
    from rnn_perception.nodes.tactile_node import TactileNode

    with start_node(TactileNode) as node:
        check_tactile_node(node, samples)


def check_tactile_node(node, samples) -> None:
    answers = record_calls(node._poses_pub, 'publish')
    for kind, message, _ in stream_messages(samples):
        (node._on_tactile if kind == 'tactile' else node._on_pose)(message)
    expected = tactile_reference(samples)
    assert [stamp_ns(answer.header) for answer in answers] == sorted(expected)
    for answer in answers:
        assert_pose_array_close(answer, expected[stamp_ns(answer.header)])
    bad = bad_count(samples)
    level, message, values = diagnostic_values(node)
    assert values['messages_rejected'] == str(bad) and values['internal_errors'] == '0'
    assert ('rejected' in message) == bool(bad)
    if bad:
        assert level == 1


# ------------------------------------------------------------------------ the last-resort guard
def test_an_unexpected_error_in_a_callback_is_caught_counted_and_reported(start_node, monkeypatch):
    from rnn_perception.nodes.collision_node import CollisionNode
    from rnn_perception.nodes.tactile_node import TactileNode

    def injected(*args):
        raise RuntimeError('injected failure')

    frame = stamp_image(image(4, 4, 'mono8', 4, bytes(16)), 0)
    with (
        start_node(CollisionNode, max_frame_age_s=0.0) as collision,
        start_node(TactileNode) as tactile_node,
    ):
        answers = (
            record_calls(collision._stamped_pub, 'publish'),
            record_calls(tactile_node._poses_pub, 'publish'),
        )
        monkeypatch.setattr(collision.runtime, 'process', injected)
        monkeypatch.setattr(tactile_node.runtime, 'on_pose', injected)
        collision._on_image(frame)                                            # nothing escapes
        tactile_node._on_tactile(tactile([2500.0] * 21))
        tactile_node._on_pose(pose(1_000_000_000, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]))
        for node in (collision, tactile_node):
            level, message, values = diagnostic_values(node)
            assert level == 1 and '1 internal error(s) since the last report' in message
            assert (values['internal_errors'], values['last_internal_error']) == (
                '1',
                'RuntimeError: injected failure',
            )
            _, message, values = diagnostic_values(node)  # warned once, counted for good
            assert 'internal error' not in message and values['internal_errors'] == '1'
        monkeypatch.undo()                                                    # the nodes carry on
        collision._on_image(stamp_image(frame, 1))
        tactile_node._on_tactile(tactile([2500.0] * 21))
        tactile_node._on_pose(pose(1_010_000_000, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]))
        assert [len(sent) for sent in answers] == [1, 1]
