"""Offline evaluation of the package's models on datasets and rosbag2 recordings."""
