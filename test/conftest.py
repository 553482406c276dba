"""Test-suite setup: DDS isolation for real ROS 2, and rclpy fixtures.

pytest imports this file before it collects any test module, so the environment
set here is in place before anything imports or initialises rclpy, and every
subprocess a test starts inherits it:

* ``ROS_DOMAIN_ID``: a per-run domain in [1, 101] derived from the pid (0, the
  default of every other ROS 2 process, is avoided), unless the caller set one.
  Concurrent CI runs / sessions on one machine therefore don't see each other's
  topics.
* ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` (always): discovery stays on this
  host. ``ROS_STATIC_PEERS`` is dropped so nothing off-host is added back.
  ``ROS_LOCALHOST_ONLY`` is deliberately not set: Kilted's rcl no longer reads it
  (it is a no-op there) and on Jazzy it only triggers a deprecation warning.
* ``ROS_LOG_DIR``: rcl's spdlog files go to a temp dir of this run (removed at
  the end) instead of ~/.ros/log, unless the caller set one.
* ``XDG_CACHE_HOME``: a temp dir of this run (removed at the end), so the ONNX
  steps the onnxruntime backend exports never land in the user's cache, and every
  run starts without them.
"""
from __future__ import annotations

import itertools
import os
import shutil
import sys
import tempfile

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:  # `import ros_helpers` works under any --import-mode
    sys.path.insert(0, _HERE)

from ros_helpers import domain_id_for_pid, spin_until  # noqa: E402

if not os.environ.get('ROS_DOMAIN_ID', '').strip():
    os.environ['ROS_DOMAIN_ID'] = str(domain_id_for_pid(os.getpid()))
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.pop('ROS_STATIC_PEERS', None)

_OWN_LOG_DIR = None
if not os.environ.get('ROS_LOG_DIR'):
    _OWN_LOG_DIR = tempfile.mkdtemp(prefix='rnn_perception_roslog_')
    os.environ['ROS_LOG_DIR'] = _OWN_LOG_DIR
_OWN_CACHE_DIR = tempfile.mkdtemp(prefix='rnn_perception_cache_')
os.environ['XDG_CACHE_HOME'] = _OWN_CACHE_DIR


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'dds: talks over real DDS (rclpy nodes, player or node processes); '
        '`benchmarks/stress_tests.py` runs these again and again under load')
    config.addinivalue_line(
        'markers', 'cuda: needs a CUDA GPU (skips without one); `benchmarks/gpu_check.sh` runs '
        'these on a GPU machine')
    # rclpy's message-type loading imports lark, which imports the deprecated
    # sre_parse/sre_constants modules: third-party noise, not ours.
    config.addinivalue_line(
        'filterwarnings', "ignore:module 'sre_(parse|constants)' is deprecated:DeprecationWarning")


def pytest_report_header(config):
    return (f"ROS 2 isolation: ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']} "
            f"ROS_AUTOMATIC_DISCOVERY_RANGE={os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']}")


def pytest_unconfigure(config):
    if _OWN_LOG_DIR is not None:
        shutil.rmtree(_OWN_LOG_DIR, ignore_errors=True)
    shutil.rmtree(_OWN_CACHE_DIR, ignore_errors=True)


@pytest.fixture
def ros_context():
    """A fresh, initialised ``rclpy.context.Context``; shut down after the test.

    Create nodes with ``rclpy.create_node(name, context=ros_context)`` (or use
    ``make_node``), executors with ``SingleThreadedExecutor(context=ros_context)``.
    """
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        context.try_shutdown()


@pytest.fixture
def ros_executor(ros_context):
    """A ``SingleThreadedExecutor`` on ``ros_context``; shut down after the test."""
    from rclpy.executors import SingleThreadedExecutor

    executor = SingleThreadedExecutor(context=ros_context)
    try:
        yield executor
    finally:
        executor.shutdown(timeout_sec=1.0)


@pytest.fixture
def make_node(ros_context, ros_executor):
    """Factory: ``make_node(name, **kwargs)`` -> an rclpy Node in ``ros_context``,
    already added to ``ros_executor``; all are destroyed after the test."""
    import rclpy

    nodes = []

    def _make(name, **kwargs):
        node = rclpy.create_node(name, context=ros_context, **kwargs)
        nodes.append(node)
        ros_executor.add_node(node)
        return node

    try:
        yield _make
    finally:
        for node in reversed(nodes):
            try:
                ros_executor.remove_node(node)
            except Exception:
                pass
            node.destroy_node()


_node_namespaces = itertools.count()


@pytest.fixture
def spun_node(ros_context, ros_executor):
    """Factory: ``spun_node(node_class, **parameters)`` -> one of the package's nodes, built with
    ``parameters`` as overrides in a namespace of its own (so nodes of one test never share
    topics), already added to ``ros_executor``; all are destroyed after the test."""
    from rclpy.parameter import Parameter

    nodes = []

    def start(node_class, **parameters):
        node = node_class(
            context=ros_context,
            namespace=f'/n{next(_node_namespaces)}',
            parameter_overrides=[
                Parameter(name, value=value) for name, value in parameters.items()
            ],
        )
        ros_executor.add_node(node)
        nodes.append(node)
        return node

    try:
        yield start
    finally:
        for node in reversed(nodes):
            ros_executor.remove_node(node)
            node.destroy_node()


@pytest.fixture(name='spin_until')
def _spin_until_fixture():
    """``spin_until(executor, predicate, timeout_sec=20.0, period_sec=0.05,
    on_tick=None) -> bool`` (also importable: ``from ros_helpers import spin_until``)."""
    return spin_until
