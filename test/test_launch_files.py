"""The launch file, its YAML and the in-process bringup.

``launch`` / ``launch_ros`` are not installed here, so the launch file is checked statically
(it compiles; what it names exists); the YAML is loaded by a real node through rcl's own
``--params-file``, and ``bringup dodgeball`` runs as a real process.
"""
from __future__ import annotations

import ast
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

import test_collision_node
from ros_helpers import PYTHON, spin_until

pytestmark = pytest.mark.dds

REPO = Path(__file__).resolve().parent.parent
LAUNCH_FILE = REPO / 'launch' / 'dodgeball.launch.py'
PARAMS_FILE = REPO / 'config' / 'dodgeball.yaml'
TIMEOUT_SEC = 20.0


def _literal_strings(node: ast.AST) -> list[str]:
    """The literal text of a string or f-string node (f-string: its literal parts joined)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [''.join(part.value for part in node.values if isinstance(part, ast.Constant))]
    return []


def console_scripts() -> set[str]:
    """The names setup.py declares under ``entry_points['console_scripts']``."""
    for node in ast.walk(ast.parse((REPO / 'setup.py').read_text())):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if key is not None and _literal_strings(key) == ['console_scripts']:
                    return {text.split('=')[0].strip()
                            for item in value.elts for text in _literal_strings(item)}
    raise AssertionError("setup.py declares no entry_points['console_scripts']")


def launch_calls(name: str) -> list[ast.Call]:
    tree = ast.parse(LAUNCH_FILE.read_text(), str(LAUNCH_FILE))
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, 'id', getattr(node.func, 'attr', None)) == name]


def keyword(call: ast.Call, name: str):
    return next(k.value for k in call.keywords if k.arg == name)


# untrained collision weights: a fixture of another test module, assigned, not imported by name
weights = test_collision_node.weights


# ------------------------------------------------------------------------------- launch file
def test_launch_file_compiles_and_defines_the_entry_point():
    source = LAUNCH_FILE.read_text()
    compile(source, str(LAUNCH_FILE), 'exec')
    functions = [n.name for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)]
    assert 'generate_launch_description' in functions


def test_launch_file_names_only_installed_executables():
    executables = [
        _literal_strings(keyword(call, 'executable'))[0] for call in launch_calls('Node')
    ]
    assert executables == ['collision_node']
    assert set(executables) <= console_scripts()


def test_launch_arguments_and_node_wiring():
    from rnn_perception.nodes.collision_node import IMAGE_TOPIC, NODE_NAME

    arguments = [
        _literal_strings(call.args[0])[0] for call in launch_calls('DeclareLaunchArgument')
    ]
    assert arguments == ['params_file', 'image_topic', 'image_transport', 'device', 'backend',
                         'namespace']
    (node,) = launch_calls('Node')
    assert _literal_strings(keyword(node, 'package')) == ['rnn_perception']
    assert _literal_strings(keyword(node, 'name')) == [NODE_NAME]
    (remapping,) = keyword(node, 'remappings').elts
    assert _literal_strings(remapping.elts[0]) == [IMAGE_TOPIC]
    (share_path,) = launch_calls('PathJoinSubstitution')
    parts = [text for element in share_path.args[0].elts for text in _literal_strings(element)]
    assert parts == ['config', 'dodgeball.yaml'] and PARAMS_FILE.is_file()


# ---------------------------------------------------------------------------------------- YAML
def _params_section():
    document = yaml.safe_load(PARAMS_FILE.read_text())
    (key,) = document
    return key, document[key]['ros__parameters']


def _node_with_params_file(params_file: Path, weights: Path, namespace: str = ''):
    import rclpy
    from rclpy.context import Context

    from rnn_perception.nodes.collision_node import CollisionNode

    context = Context()
    rclpy.init(context=context, args=['test', '--ros-args', '--params-file', str(params_file),
                                      '-p', f'weights:={weights}'])
    return context, CollisionNode(context=context, namespace=namespace)


def test_yaml_node_key_matches_the_node():
    from rnn_perception.nodes.collision_node import NODE_NAME

    key, _ = _params_section()
    assert key in (NODE_NAME, f'/{NODE_NAME}', f'/**/{NODE_NAME}')


def test_every_yaml_parameter_is_declared_and_accepted(weights):
    _, parameters = _params_section()
    context, node = _node_with_params_file(PARAMS_FILE, weights)
    try:
        declared = set(node.list_parameters([], 0).names)
        assert set(parameters) - {'weights'} <= declared
        for name, value in parameters.items():
            if name != 'weights':
                assert node.get_parameter(name).value == value, name
    finally:
        node.destroy_node()
        context.try_shutdown()


def test_yaml_reaches_a_namespaced_node(weights, tmp_path):
    key, parameters = _params_section()
    changed = tmp_path / 'changed.yaml'
    changed.write_text(
        yaml.safe_dump({key: {'ros__parameters': {**parameters, 'reset_gap_s': 0.75}}})
    )
    context, node = _node_with_params_file(changed, weights, namespace='/robot1')
    try:
        assert node.get_parameter('reset_gap_s').value == 0.75
        assert node.runtime.settings.reset_gap_s == 0.75
    finally:
        node.destroy_node()
        context.try_shutdown()


# -------------------------------------------------------------------------------------- bringup
@pytest.mark.parametrize('transport, topic', [
    ('raw', '/bringup_test/image'), ('compressed', '/bringup_test/image/compressed')])
def test_bringup_starts_the_node_with_the_yaml_and_launch_arguments(weights, tmp_path, make_node,
                                                                    ros_executor, transport,
                                                                    topic):
    from rclpy.parameter import parameter_value_to_python
    from rclpy.parameter_client import AsyncParameterClient

    key, parameters = _params_section()
    params = tmp_path / 'bringup.yaml'
    params.write_text(
        yaml.safe_dump({key: {'ros__parameters': {**parameters, 'reset_gap_s': 0.75}}})
    )
    command = [
        PYTHON,
        '-m',
        'rnn_perception',
        'bringup',
        'dodgeball',
        '--params',
        str(params),
        '--image-topic',
        '/bringup_test/image',
        '--namespace',
        'bringup_test',
        '--device',
        'cpu',
        '--image-transport',
        transport,
        '--ros-args',
        '-p',
        f'weights:={weights}',
    ]
    helper = make_node('bringup_probe')
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        client = AsyncParameterClient(helper, '/bringup_test/collision_node')
        assert client.wait_for_services(timeout_sec=TIMEOUT_SEC), 'bringup node never came up'
        future = client.get_parameters(['reset_gap_s', 'device', 'image_transport'])
        assert spin_until(ros_executor, future.done, TIMEOUT_SEC)
        assert [parameter_value_to_python(v) for v in future.result().values] == [
            0.75, 'cpu', transport]

        def image_subscribers():
            return [
                info.node_name
                for info in helper.get_subscriptions_info_by_topic(topic)
            ]

        assert spin_until(
            ros_executor, lambda: image_subscribers() == ['collision_node'], TIMEOUT_SEC
        )
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=TIMEOUT_SEC)[0]
    assert process.returncode == 0, output


def test_bringup_reports_a_missing_params_file(capsys):
    from rnn_perception.bringup import dodgeball

    assert dodgeball(['--params', '/nonexistent/dodgeball.yaml']) == 1
    assert capsys.readouterr().err == \
        'bringup dodgeball: error: parameters file /nonexistent/dodgeball.yaml not found\n'


def test_bringup_default_params_file_is_the_packaged_one():
    from rnn_perception.bringup import default_params_file

    assert default_params_file().resolve() == PARAMS_FILE


# ------------------------------------------------------------------------------ tactile launch
TACTILE_LAUNCH = REPO / 'launch' / 'tactile.launch.py'
TACTILE_PARAMS = REPO / 'config' / 'tactile.yaml'


def tactile_calls(name: str) -> list[ast.Call]:
    tree = ast.parse(TACTILE_LAUNCH.read_text(), str(TACTILE_LAUNCH))
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, 'id', getattr(node.func, 'attr', None)) == name]


def test_tactile_launch_file_compiles_names_installed_executables_and_wires_the_node():
    from rnn_perception.nodes.tactile_node import NODE_NAME, POSE_TOPIC, TACTILE_TOPIC

    compile(TACTILE_LAUNCH.read_text(), str(TACTILE_LAUNCH), 'exec')
    (node,) = tactile_calls('Node')
    assert (
        _literal_strings(keyword(node, 'executable')) == [NODE_NAME]
        and NODE_NAME in console_scripts()
    )
    assert _literal_strings(keyword(node, 'name')) == [NODE_NAME]
    assert [_literal_strings(r.elts[0])[0] for r in keyword(node, 'remappings').elts] == [
        TACTILE_TOPIC,
        POSE_TOPIC,
    ]
    arguments = [
        _literal_strings(call.args[0])[0] for call in tactile_calls('DeclareLaunchArgument')
    ]
    assert arguments == [
        'params_file',
        'tactile_topic',
        'pose_topic',
        'device',
        'backend',
        'namespace',
        'with_collision',
    ]
    included = [
        text
        for call in tactile_calls('PathJoinSubstitution')
        for element in call.args[0].elts
        for text in _literal_strings(element)
    ]
    assert (
        included == ['config', 'tactile.yaml', 'launch', 'dodgeball.launch.py']
        and TACTILE_PARAMS.is_file()
    )


def test_every_tactile_yaml_parameter_is_declared_and_accepted(tmp_path):
    import rclpy
    from rclpy.context import Context

    from rnn_perception.models.tactile import TactilePredictor, save_tactile_model
    from rnn_perception.nodes.tactile_node import NODE_NAME, TactileNode

    document = yaml.safe_load(TACTILE_PARAMS.read_text())
    (key,) = document
    assert key == f'/**/{NODE_NAME}'
    parameters = document[key]['ros__parameters']
    weights = tmp_path / 'tactile.safetensors'
    save_tactile_model(weights, TactilePredictor(), {'rate_hz': 100.0})
    context = Context()
    rclpy.init(context=context, args=['test', '--ros-args', '--params-file', str(TACTILE_PARAMS),
                                      '-p', f'weights:={weights}'])
    node = TactileNode(context=context, namespace='/robot1')
    try:
        assert set(parameters) <= set(node.list_parameters([], 0).names)
        for name, value in parameters.items():
            if name != 'weights':
                assert node.get_parameter(name).value == value, name
    finally:
        node.destroy_node()
        context.try_shutdown()


@pytest.mark.parametrize('what,option', [('tactile', '--params'), ('all', '--tactile-params')])
def test_tactile_bringup_reports_a_missing_params_file(capsys, what, option):
    from rnn_perception import bringup

    assert {'tactile': bringup.tactile, 'all': bringup.both}[what](
        [option, '/nonexistent/tactile.yaml']
    ) == 1
    assert capsys.readouterr().err == \
        f'bringup {what}: error: parameters file /nonexistent/tactile.yaml not found\n'
