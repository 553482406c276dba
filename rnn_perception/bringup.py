"""``python -m rnn_perception bringup dodgeball``: what ``launch/dodgeball.launch.py`` starts, in one
process, for machines with rclpy but without the ROS 2 CLI (pip installs, CI).

The node reads the same YAML the launch file passes (``--params``, default the package's
``config/dodgeball.yaml``) through rcl's own ``--params-file``, so both paths resolve parameters
identically; ``--image-topic``, ``--device`` and ``--namespace`` are the launch arguments.
Anything from ``--ros-args`` on is handed to rclpy unchanged (``-p name:=value``, remaps, log
levels). Exit status: 0 after Ctrl-C / SIGTERM, 1 when the node cannot start (one line
``bringup dodgeball: error: ...``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

PACKAGE = 'rnn_perception'


def default_params_file() -> Path:
    """``config/dodgeball.yaml`` of the installed package (colcon), else of the source tree."""
    try:
        from ament_index_python.packages import get_package_share_directory
        installed = Path(get_package_share_directory(PACKAGE)) / 'config' / 'dodgeball.yaml'
    except (ImportError, LookupError, OSError):  # no ament index, or the package is not in it
        installed = None
    if installed is not None and installed.is_file():
        return installed
    return Path(__file__).resolve().parent.parent / 'config' / 'dodgeball.yaml'


def _split_ros_args(argv: List[str]) -> tuple[List[str], List[str]]:
    if '--ros-args' in argv:
        index = argv.index('--ros-args')
        return argv[:index], argv[index:]
    return argv, []


def dodgeball(argv: Optional[List[str]] = None) -> int:
    """Start the collision node with the dodgeball parameters and spin until shut down."""
    own_args, ros_args = _split_ros_args(list(sys.argv[1:] if argv is None else argv))
    parser = argparse.ArgumentParser(
        prog='python -m rnn_perception bringup dodgeball',
        description='Start the dodgeball collision node in this process (no ros2 launch needed).',
        epilog='Arguments from --ros-args on go to rclpy, e.g. --ros-args -p weights:=my.safetensors')
    parser.add_argument('--params', type=Path, default=None,
                        help=f'parameters YAML (default: {default_params_file()})')
    parser.add_argument('--image-topic', default='/camera/image_raw', help='camera image topic')
    parser.add_argument('--device', default='auto', help='torch device: auto, cpu or cuda')
    parser.add_argument('--namespace', default='', help='namespace of the node and its topics')
    args = parser.parse_args(own_args)
    params = args.params or default_params_file()
    if not params.is_file():
        print(f'bringup dodgeball: error: parameters file {params} not found', file=sys.stderr)
        return 1

    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    from .nodes.collision_node import IMAGE_TOPIC, CollisionNode, StartupError

    rclpy.init(args=[PACKAGE, '--ros-args', '--params-file', str(params), '-p', f'device:={args.device}',
                     '-r', f'{IMAGE_TOPIC}:={args.image_topic}', *ros_args[1:]])
    try:
        node = CollisionNode(namespace=args.namespace)
    except StartupError as error:
        print(f'bringup dodgeball: error: {error}', file=sys.stderr)
        rclpy.try_shutdown()
        return 1
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
