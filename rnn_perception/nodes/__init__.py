"""ROS 2 nodes (rclpy): thin adapters between topics and :mod:`rnn_perception.runtime`."""
