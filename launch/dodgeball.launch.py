"""Start the dodgeball collision predictor: ``ros2 launch rnn_perception dodgeball.launch.py``.

Arguments:
  params_file  parameters YAML (default: the package's config/dodgeball.yaml)
  image_topic  camera image topic the node reads (default /camera/image_raw)
  image_transport  raw (sensor_msgs/Image on image_topic, default) or compressed
               (sensor_msgs/CompressedImage on <image_topic>/compressed), as image_transport
  device       where the model runs: auto (CUDA if available, else CPU), cpu or cuda
  backend      what steps the model: torch (default) or onnxruntime (the exported step)
  namespace    namespace of the node and its topics (default: none)

Without the ROS 2 CLI (pip installs, CI): ``python -m rnn_perception bringup dodgeball`` starts
the same node with the same YAML in one process.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                'params_file',
                default_value=PathJoinSubstitution(
                    [FindPackageShare('rnn_perception'), 'config', 'dodgeball.yaml']
                ),
                description='parameters YAML of the collision node',
            ),
            DeclareLaunchArgument(
                'image_topic',
                default_value='/camera/image_raw',
                description='camera image topic (sensor_msgs/Image)',
            ),
            DeclareLaunchArgument(
                'image_transport', default_value='raw', choices=['raw', 'compressed'],
                description='raw: sensor_msgs/Image on image_topic; compressed: '
                            'sensor_msgs/CompressedImage on <image_topic>/compressed',
            ),
            DeclareLaunchArgument(
                'device', default_value='auto', description='torch device: auto, cpu or cuda'
            ),
            DeclareLaunchArgument(
                'backend', default_value='torch', choices=['torch', 'onnxruntime'],
                description='what steps the model: torch or onnxruntime (the exported step)'
            ),
            DeclareLaunchArgument(
                'namespace', default_value='', description='namespace of the node and its topics'
            ),
            Node(
                package='rnn_perception',
                executable='collision_node',
                name='collision_node',
                namespace=LaunchConfiguration('namespace'),
                parameters=[
                    LaunchConfiguration('params_file'),
                    {'device': LaunchConfiguration('device'),
                     'backend': LaunchConfiguration('backend'),
                     'image_transport': LaunchConfiguration('image_transport')},
                ],
                remappings=[('camera/image_raw', LaunchConfiguration('image_topic'))],
                output='screen',
                emulate_tty=True,
            ),
        ]
    )
