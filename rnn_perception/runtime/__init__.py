"""What the ROS nodes do, without ROS: per-frame policy, model stepping and statistics.

Nodes in :mod:`rnn_perception.nodes` only adapt messages, parameters and timers to the classes
here, so all of the behaviour is testable (and benchmarkable) without DDS.
"""
