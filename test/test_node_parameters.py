"""Every declared parameter of both nodes, set at run time through the parameter service (real
DDS) to a wrong type and, where its check has a range or choices, to out-of-range values:
refused with a reason, and the node keeps its old value. Read-only ones are refused whatever
the value. The attempts come from the PARAMETERS specs, so a new parameter is covered as is.

The wrong-type reason is rclpy's ("Wrong parameter type, expected ... got ..."): rclpy checks
types before any node callback runs, and each result of a SetParameters response belongs to the
parameter at the same position of the request.
"""
from __future__ import annotations

import math
from typing import Any, List, Tuple

import pytest

from ros_helpers import spin_until

pytestmark = pytest.mark.dds

TIMEOUT_SEC = 20.0
WRONG_TYPES = {
    bool: ['yes', 1],
    int: ['many', 2.5, True],
    float: ['fast', True, 1],
    str: [1.5, False],
}
# Values the checks may refuse, per type; each spec's own check picks the ones it refuses.
CANDIDATES = {float: [-1.0, 0.0, 1.0, 1.5, -0.5, math.nan, math.inf, -math.inf], int: [0, -1],
              str: ['', ' ', 'not-a-choice'], bool: []}


def attempts(spec) -> List[Tuple[Any, str]]:
    """(value, why it must be refused) for one parameter spec."""
    kind = type(spec.default)
    out_of_range = [
        value for value in CANDIDATES[kind] if spec.check is not None and spec.check(value)
    ]
    assert spec.check is None or out_of_range, (
        f'no value here that the check of {spec.name} refuses: add one'
    )
    tries = [(value, 'type') for value in WRONG_TYPES[kind]] + [
        (value, 'range') for value in out_of_range
    ]
    if spec.read_only:
        tries = [(value, 'read-only') for value, _ in tries] + [(spec.default, 'read-only')]
    return tries


def node_classes():
    from rnn_perception.nodes.collision_node import CollisionNode
    from rnn_perception.nodes.tactile_node import TactileNode

    return [(node, node.parameters) for node in (CollisionNode, TactileNode)]


@pytest.mark.parametrize('index', [0, 1], ids=['collision_node', 'tactile_node'])
def test_every_parameter_refuses_wrong_types_and_out_of_range_values_at_run_time(
    ros_context, ros_executor, make_node, index
):
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    node_class, specs = node_classes()[index]
    node = node_class(context=ros_context, namespace=f'/parameters{index}',
                      parameter_overrides=[Parameter('device', value='cpu')])
    ros_executor.add_node(node)
    try:
        client = AsyncParameterClient(
            make_node(f'parameter_client{index}'), node.get_fully_qualified_name()
        )
        assert client.wait_for_services(timeout_sec=TIMEOUT_SEC)
        before = {spec.name: node.get_parameter(spec.name).value for spec in specs}
        settings = node.settings
        tries = [(spec, value, why) for spec in specs for value, why in attempts(spec)]
        # one SetParameters request: rclpy sets its parameters one by one, a result each
        future = client.set_parameters(
            [Parameter(spec.name, value=value) for spec, value, _ in tries]
        )
        assert spin_until(ros_executor, future.done, TIMEOUT_SEC)
        results = future.result().results
        assert len(results) == len(tries)
        for (spec, value, why), result in zip(tries, results):
            attempt = f'{spec.name}={value!r} ({why})'
            assert not result.successful, f'{attempt} was accepted'
            if why == 'read-only':
                assert result.reason == f'Trying to set a read-only parameter: {spec.name}.', (
                    attempt
                )
            elif why == 'type':
                assert result.reason.startswith('Wrong parameter type, expected'), (
                    attempt,
                    result.reason,
                )
            else:
                assert result.reason == f'{spec.name}={value!r} refused: {spec.check(value)}', (
                    attempt
                )
        assert {spec.name: node.get_parameter(spec.name).value for spec in specs} == before
        assert node.settings == settings
        # ... and a good value still goes through
        changeable = next(
            spec for spec in specs if not spec.read_only and isinstance(spec.default, float)
        )
        future = client.set_parameters([Parameter(changeable.name, value=2 * changeable.default)])
        assert (
            spin_until(ros_executor, future.done, TIMEOUT_SEC)
            and future.result().results[0].successful
        )
        assert getattr(node.settings, changeable.name) == 2 * changeable.default
    finally:
        ros_executor.remove_node(node)
        node.destroy_node()
