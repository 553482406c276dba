"""Smoke tests for real ROS 2: rclpy nodes talking over Fast DDS.

They run on the per-run DDS domain that conftest.py sets up (host-local discovery).
"""
from __future__ import annotations

import os
import time

import pytest

from ros_helpers import domain_id_for_pid, process_output, python_subprocess, spin_until

pytestmark = pytest.mark.dds

TIMEOUT_SEC = 20.0

IMAGE_W, IMAGE_H = 8, 6


def _expected_pixels(width: int, height: int) -> bytes:
    return bytes((i * 7 + 3) % 256 for i in range(width * height * 3))


# Child process: publishes sensor_msgs/Image on $SMOKE_TOPIC at 10 Hz, with its own
# pid in header.frame_id, until killed, its parent goes away, or 60 s pass.
_IMAGE_PUBLISHER = f'''
import os, sys, time
import rclpy
from rclpy.context import Context
from sensor_msgs.msg import Image

W, H = {IMAGE_W}, {IMAGE_H}
context = Context()
rclpy.init(context=context)
node = rclpy.create_node('smoke_image_pub', context=context)
pub = node.create_publisher(Image, os.environ['SMOKE_TOPIC'], 10)
msg = Image()
msg.header.frame_id = 'camera_%d' % os.getpid()
msg.height, msg.width = H, W
msg.encoding = 'rgb8'
msg.is_bigendian = 0
msg.step = W * 3
msg.data = bytes((i * 7 + 3) % 256 for i in range(W * H * 3))
print('ready domain=%d' % context.get_domain_id(), flush=True)
parent, deadline, seq = os.getppid(), time.monotonic() + 60.0, 0
while context.ok() and os.getppid() == parent and time.monotonic() < deadline:
    msg.header.stamp.sec = seq
    pub.publish(msg)
    seq += 1
    if seq % 10 == 0:
        print('published %d' % seq, flush=True)
    time.sleep(0.1)
'''


def test_environment_isolates_dds(ros_context):
    domain = int(os.environ['ROS_DOMAIN_ID'])
    assert 0 <= domain <= 101
    assert os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
    # The rclpy context really runs on the domain conftest chose.
    assert ros_context.get_domain_id() == domain


def test_string_between_two_nodes(make_node, ros_executor):
    from std_msgs.msg import String

    topic = f'smoke_chatter_{os.getpid()}'
    talker = make_node('smoke_talker')
    listener = make_node('smoke_listener')
    received = []
    sub = listener.create_subscription(String, topic, received.append, 10)
    pub = talker.create_publisher(String, topic, 10)
    sent = []

    def publish():
        msg = String()
        msg.data = f'hello {len(sent)}'
        sent.append(msg.data)
        pub.publish(msg)

    assert spin_until(ros_executor, lambda: len(received) >= 3, TIMEOUT_SEC, on_tick=publish), \
        f'listener got {len(received)} of {len(sent)} messages in {TIMEOUT_SEC} s'
    assert all(isinstance(m, String) for m in received)
    data = [m.data for m in received]
    # Every message arrived intact, in publishing order, with no duplicates.
    assert set(data) <= set(sent)
    assert data == sorted(set(data), key=sent.index)
    assert sub.get_publisher_count() == 1
    assert pub.get_subscription_count() == 1


def test_image_from_another_process(make_node, ros_executor):
    from sensor_msgs.msg import Image

    topic = f'smoke_image_{os.getpid()}'
    node = make_node('smoke_image_sub')
    received = []
    node.create_subscription(Image, topic, received.append, 10)

    with python_subprocess(_IMAGE_PUBLISHER, env={'SMOKE_TOPIC': topic}) as proc:
        got = spin_until(ros_executor, lambda: bool(received) or proc.poll() is not None,
                         TIMEOUT_SEC)
        out = process_output(proc)
        assert got and received, \
            f'no Image in {TIMEOUT_SEC} s (publisher rc={proc.poll()}); its output:\n{out}'

        # The publisher is a node of the other process, seen through DDS discovery.
        # (Node names travel on ros_discovery_info, which may lag the data a bit.)
        def publisher_nodes():
            return [i.node_name for i in node.get_publishers_info_by_topic('/' + topic)]

        spin_until(ros_executor, lambda: publisher_nodes() == ['smoke_image_pub'], 5.0)
        assert publisher_nodes() == ['smoke_image_pub']
        child_pid = proc.pid

    msg = received[0]
    assert child_pid != os.getpid()
    assert msg.header.frame_id == f'camera_{child_pid}'
    assert (msg.width, msg.height) == (IMAGE_W, IMAGE_H)
    assert msg.encoding == 'rgb8'
    assert msg.is_bigendian == 0
    assert msg.step == IMAGE_W * 3
    assert bytes(msg.data) == _expected_pixels(IMAGE_W, IMAGE_H)


def test_other_domain_is_not_seen(make_node, ros_executor):
    """A publisher on another domain id must stay invisible: the isolation works."""
    from sensor_msgs.msg import Image

    domain = int(os.environ['ROS_DOMAIN_ID'])
    other = domain_id_for_pid(domain)  # 1 + domain % 101: in 1..101, never `domain`
    assert other != domain
    topic = f'smoke_isolated_{os.getpid()}'
    node = make_node('smoke_isolated_sub')
    received = []
    node.create_subscription(Image, topic, received.append, 10)

    env = {'SMOKE_TOPIC': topic, 'ROS_DOMAIN_ID': str(other)}
    with python_subprocess(_IMAGE_PUBLISHER, env=env) as proc:
        # Wait until the other-domain publisher has been sending for ~2 s ...
        deadline = time.monotonic() + TIMEOUT_SEC
        while 'published 20' not in process_output(proc):
            assert proc.poll() is None, f'publisher died:\n{process_output(proc)}'
            assert time.monotonic() < deadline, f'publisher too slow:\n{process_output(proc)}'
            ros_executor.spin_once(timeout_sec=0.1)
        assert f'ready domain={other}' in process_output(proc)
        # ... then give discovery one more second, while spinning.
        spin_until(ros_executor, lambda: bool(received), 1.0)
        assert received == []
        assert node.get_publishers_info_by_topic('/' + topic) == []
