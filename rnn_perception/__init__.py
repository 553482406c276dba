"""rnn_perception: recurrent perception for ROS 2 robots.

Layout: ``cells`` (the one place recurrence lives), ``training`` (offline training and
benchmarks), ``data`` (datasets). Runtime nodes and ROS conversions build on these;
the simulators live in the top-level ``sim`` package and are never imported by nodes.
"""

__version__ = '0.1.0'
