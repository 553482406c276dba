"""Offline simulators that make the package's training data (``python -m sim --help``).

Developer tools only: they import pybullet, so runtime nodes never import ``sim``; what
runtime and training code need (dataset readers, bag helpers) lives in
``rnn_perception.data``.
"""
