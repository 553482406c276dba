"""Start the tactile pose predictor: ``ros2 launch rnn_perception tactile.launch.py``.

Arguments:
  params_file     parameters YAML (default: the package's config/tactile.yaml)
  tactile_topic   tactile stream the node reads (default /tactile/raw)
  pose_topic      current object pose the node reads (default /object/pose)
  device          where the models run: auto (CUDA if available, else CPU), cpu or cuda
  backend         what steps the models: torch (default) or onnxruntime (the exported step)
  namespace       namespace of the nodes and their topics (default: none)
  with_collision  also start the dodgeball collision node (dodgeball.launch.py) (default false)

Without the ROS 2 CLI (pip installs, CI): ``python -m rnn_perception bringup tactile`` starts
the same node with the same YAML in one process (``bringup all``: both nodes).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                'params_file',
                default_value=PathJoinSubstitution(
                    [FindPackageShare('rnn_perception'), 'config', 'tactile.yaml']
                ),
                description='parameters YAML of the tactile node',
            ),
            DeclareLaunchArgument(
                'tactile_topic',
                default_value='/tactile/raw',
                description='tactile stream (std_msgs/Float32MultiArray, 21 values)',
            ),
            DeclareLaunchArgument(
                'pose_topic',
                default_value='/object/pose',
                description='current object pose (geometry_msgs/PoseStamped)',
            ),
            DeclareLaunchArgument(
                'device', default_value='auto', description='torch device: auto, cpu or cuda'
            ),
            DeclareLaunchArgument(
                'backend', default_value='torch', choices=['torch', 'onnxruntime'],
                description='what steps the models: torch or onnxruntime (the exported step)'
            ),
            DeclareLaunchArgument(
                'namespace',
                default_value='',
                description='namespace of the nodes and their topics',
            ),
            DeclareLaunchArgument(
                'with_collision',
                default_value='false',
                description='also start the collision node (dodgeball.launch.py)',
            ),
            Node(
                package='rnn_perception',
                executable='tactile_node',
                name='tactile_node',
                namespace=LaunchConfiguration('namespace'),
                parameters=[
                    LaunchConfiguration('params_file'),
                    {'device': LaunchConfiguration('device'),
                     'backend': LaunchConfiguration('backend')},
                ],
                remappings=[
                    ('tactile/raw', LaunchConfiguration('tactile_topic')),
                    ('object/pose', LaunchConfiguration('pose_topic')),
                ],
                output='screen',
                emulate_tty=True,
            ),
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(
                    PathJoinSubstitution(
                        [FindPackageShare('rnn_perception'), 'launch', 'dodgeball.launch.py']
                    )
                ),
                launch_arguments={
                    'device': LaunchConfiguration('device'),
                    'backend': LaunchConfiguration('backend'),
                    'namespace': LaunchConfiguration('namespace'),
                }.items(),
                condition=IfCondition(LaunchConfiguration('with_collision')),
            ),
        ]
    )
