"""rnn_perception: recurrent perception for ROS 2 robots.

Floors, bottom to top, every import pointing down (``test/test_layering.py``): ``cli``,
``device``, ``files``; ``cells`` (the one place recurrence lives), ``data``; ``models``, ``ros``;
``runtime`` (what a node does, without ROS), ``evaluation``; ``nodes``, ``training``; the jobs
``bringup`` and ``demo``; ``commands``. The simulators live in the top-level ``sim`` package and
are never imported by the package.
"""

__version__ = '0.1.0'
