"""``python -m rnn_perception bringup dodgeball|tactile|all``: what
``launch/dodgeball.launch.py`` / ``launch/tactile.launch.py`` start, in one process, for machines
with rclpy but without the ROS 2 CLI (pip installs, CI). ``all`` starts both nodes
(``tactile.launch.py with_collision:=true``).

Each node reads the same YAML its launch file passes (``--params``, default the package's
``config/dodgeball.yaml`` / ``config/tactile.yaml``; ``all`` takes ``--dodgeball-params`` and
``--tactile-params``) through rcl's own ``--params-file``, so both paths resolve parameters
identically; the topic options, ``--image-transport``, ``--device``, ``--backend`` and
``--namespace`` are the launch arguments.
Anything from ``--ros-args`` on is handed to rclpy unchanged (``-p name:=value``, remaps, log
levels). Exit status: 0 after Ctrl-C / SIGTERM, 1 when a node cannot start (one line
``bringup <what>: error: ...``).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from .cli import OneLineParser, report_error, UsageError
from .data.camera_frames import IMAGE_TRANSPORTS, RAW_TRANSPORT
from .device import add_device_option
from .models.step_engine import BACKENDS, TORCH_BACKEND

PACKAGE = 'rnn_perception'


def default_params_file(name: str = 'dodgeball.yaml') -> Path:
    """``config/<name>`` of the installed package (colcon), else of the source tree."""
    try:
        from ament_index_python.packages import get_package_share_directory
        installed = Path(get_package_share_directory(PACKAGE)) / 'config' / name
    except (ImportError, LookupError, OSError):  # no ament index, or the package is not in it
        installed = None
    if installed is not None and installed.is_file():
        return installed
    return Path(__file__).resolve().parent.parent / 'config' / name


@dataclass(frozen=True)
class NodeLaunch:
    """One node bringup can start: its YAML, its node class and the input topics it remaps."""

    name: str  # 'dodgeball' / 'tactile': the YAML's and option's stem
    node_name: str
    node_class: str  # 'module:Class' under rnn_perception.nodes
    topics: Tuple[
        Tuple[str, str, str], ...
    ]  # (option, the node's relative topic, default remap target)

    def add_options(self, parser: argparse.ArgumentParser, params_option: str) -> None:
        parser.add_argument(
            params_option,
            type=Path,
            default=None,
            dest=f'{self.name}_params',
            help=f'{self.name} parameters YAML '
            f'(default: {default_params_file(self.name + ".yaml")})',
        )
        for option, topic, default in self.topics:
            parser.add_argument(option, default=default, help=f'topic the node reads as {topic}')

    def rcl_arguments(self, args: argparse.Namespace) -> List[str]:
        """``--params-file`` and the node-scoped remaps (``node:from:=to``) of this node."""
        params = getattr(args, f'{self.name}_params') or default_params_file(self.name + '.yaml')
        if not params.is_file():
            raise FileNotFoundError(f'parameters file {params} not found')
        remaps = [
            ['-r', f'{self.node_name}:{topic}:={getattr(args, option[2:].replace("-", "_"))}']
            for option, topic, _ in self.topics
        ]
        return ['--params-file', str(params), *(part for remap in remaps for part in remap)]

    def node_type(self):
        module, name = self.node_class.split(':')
        return getattr(importlib.import_module(f'{__package__}.nodes.{module}'), name)


DODGEBALL = NodeLaunch('dodgeball', 'collision_node', 'collision_node:CollisionNode',
                       (('--image-topic', 'camera/image_raw', '/camera/image_raw'),))
TACTILE = NodeLaunch(
    'tactile',
    'tactile_node',
    'tactile_node:TactileNode',
    (
        ('--tactile-topic', 'tactile/raw', '/tactile/raw'),
        ('--pose-topic', 'object/pose', '/object/pose'),
    ),
)


def _split_ros_args(argv: List[str]) -> tuple[List[str], List[str]]:
    if '--ros-args' in argv:
        index = argv.index('--ros-args')
        return argv[:index], argv[index:]
    return argv, []


def bringup(what: str, launches: Tuple[NodeLaunch, ...], argv: Optional[List[str]]) -> int:
    """Start ``launches``' nodes in this process and spin them until shut down."""
    own_args, ros_args = _split_ros_args(list(sys.argv[1:] if argv is None else argv))
    names = ' and '.join(launch.node_name for launch in launches)
    parser = OneLineParser(
        prog=f'python -m rnn_perception bringup {what}',
        description=f'Start {names} in this process (no ros2 launch needed).',
        epilog='Arguments from --ros-args on go to rclpy, e.g. '
        '--ros-args -p weights:=my.safetensors',
    )
    for launch in launches:
        launch.add_options(parser, '--params' if len(launches) == 1 else f'--{launch.name}-params')
    add_device_option(parser, default='auto')
    parser.add_argument('--backend', choices=BACKENDS, default=TORCH_BACKEND,
                        help='what steps the models: torch, or onnxruntime (the exported step; '
                             f'see the backend parameter) (default: {TORCH_BACKEND})')
    if DODGEBALL in launches:
        parser.add_argument('--image-transport', choices=IMAGE_TRANSPORTS, default=RAW_TRANSPORT,
                            help='raw: sensor_msgs/Image on the image topic; compressed: '
                                 'sensor_msgs/CompressedImage on <image topic>/compressed '
                                 f'(default: {RAW_TRANSPORT})')
    parser.add_argument('--namespace', default='', help='namespace of the nodes and their topics')
    try:
        args = parser.parse_args(own_args)
        rcl_args = [part for launch in launches for part in launch.rcl_arguments(args)]
    except (UsageError, FileNotFoundError) as error:
        return report_error(f'bringup {what}', error)

    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from .nodes.common import spin_until_shutdown, StartupError

    node_parameters = [f'device:={args.device}', f'backend:={args.backend}']
    if DODGEBALL in launches:
        node_parameters.append(f'image_transport:={args.image_transport}')
    rclpy.init(args=[PACKAGE, '--ros-args', *rcl_args,
                     *(part for value in node_parameters for part in ('-p', value)),
                     *ros_args[1:]])
    nodes = []
    try:
        for launch in launches:
            nodes.append(launch.node_type()(namespace=args.namespace))
    except StartupError as error:
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown()
        return report_error(f'bringup {what}', error)
    executor = SingleThreadedExecutor()
    for node in nodes:
        executor.add_node(node)
    try:
        spin_until_shutdown(executor)
    finally:
        executor.shutdown()
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def dodgeball(argv: Optional[List[str]] = None) -> int:
    """Start the collision node with the dodgeball parameters and spin until shut down."""
    return bringup('dodgeball', (DODGEBALL,), argv)


def tactile(argv: Optional[List[str]] = None) -> int:
    """Start the tactile node with the tactile parameters and spin until shut down."""
    return bringup('tactile', (TACTILE,), argv)


def both(argv: Optional[List[str]] = None) -> int:
    """Start the collision and the tactile node in one process."""
    return bringup('all', (DODGEBALL, TACTILE), argv)
