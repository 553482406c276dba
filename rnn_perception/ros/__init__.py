"""ROS 2 glue: image conversion, image QoS selection and the rosbag2 player.

Submodules are imported on demand: :mod:`.image_conversion` needs only numpy and OpenCV (it
reads any object with the ``sensor_msgs/msg/Image`` fields, rclpy's or rosbags'), while
:mod:`.qos` and :mod:`.player` need rclpy.
"""
