"""Ctrl-C while a node spins: the shutdown races the executor, and every way it surfaces is a
clean stop (exit 0), while a real failure of a still-valid context is not swallowed.

The race was seen in a loaded stress run: SIGINT to ``bringup dodgeball`` arrived while the
executor built its next wait set, rclpy raised ``RCLError: failed to initialize wait set: the
given context is not valid``, and bringup exited 1 with a traceback.
"""
from __future__ import annotations

import pytest

from rnn_perception.nodes.common import spin_until_shutdown


class ShutdownDuringSpin:
    """An executor whose ``spin`` shuts its (real) context down, as rclpy's signal handler
    does, then raises what rclpy raises from that point."""

    def __init__(self, context, error: BaseException, shut_down: bool = True):
        self.context, self._error, self._shut_down = context, error, shut_down

    def spin(self):
        if self._shut_down:
            self.context.shutdown()
        raise self._error


INVALID_CONTEXT = RuntimeError('failed to initialize wait set: the given context is not valid, '
                               'either rcl_init() was not called or rcl_shutdown() was called.')


@pytest.mark.parametrize('error', [KeyboardInterrupt(), INVALID_CONTEXT],
                         ids=['KeyboardInterrupt', 'RCLError'])
def test_the_shutdown_race_is_a_clean_stop(ros_context, error):
    spin_until_shutdown(ShutdownDuringSpin(ros_context, error))
    assert not ros_context.ok()


def test_an_external_shutdown_is_a_clean_stop(ros_context):
    from rclpy.executors import ExternalShutdownException

    spin_until_shutdown(ShutdownDuringSpin(ros_context, ExternalShutdownException()))


def test_a_runtime_error_of_a_valid_context_propagates(ros_context):
    with pytest.raises(RuntimeError, match='not valid'):
        spin_until_shutdown(ShutdownDuringSpin(ros_context, INVALID_CONTEXT, shut_down=False))
    assert ros_context.ok()
