"""ROS 2 over DDS: the image subscription's QoS (:mod:`.qos`, the rule in :mod:`.reliability`)
and the rosbag2 player (:mod:`.player`). Submodules are imported on demand; :mod:`.reliability`
needs no rclpy.
"""
