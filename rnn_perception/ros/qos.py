"""Camera image subscriptions whose QoS actually delivers the frames.

Measured on the project machine with Fast DDS defaults (rmw_fastrtps_cpp, Kilted):

* a **best-effort** subscription receives 64x64 frames from a reliable publisher, but silently
  loses every 640x480 and 1280x720 frame; a **reliable** subscription receives them all;
* a reliable subscription receives nothing at all from a best-effort publisher (incompatible QoS);
* a best-effort publisher's 640x480 frames are lost even to a best-effort subscriber, unless
  *every* process runs with ``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA``; a process with it cannot
  talk to one without it, so it is never set for one node alone (the node's no-frame warning
  names it as the remedy).

Hence :class:`MatchingImageSubscription`: keep-last 1 (always the newest frame), volatile, and
the reliability of :func:`~rnn_perception.ros.reliability.choose_reliability`: with ``auto``,
what the topic's publishers offer, re-checked whenever a publisher matches or unmatches and
every :data:`GRAPH_CHECK_PERIOD_S` (a publisher that cannot match, e.g. best effort against our
reliable subscription, raises no event), because the node may start before the camera, or the
camera may restart with other settings.
"""
from __future__ import annotations

from typing import Callable, List

from rclpy.clock import Clock, ClockType
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from .reliability import choose_reliability

RELIABILITY_POLICIES = {
    'reliable': ReliabilityPolicy.RELIABLE,
    'best_effort': ReliabilityPolicy.BEST_EFFORT,
}
GRAPH_CHECK_PERIOD_S = 1.0


def image_qos(reliability: str, depth: int = 1) -> QoSProfile:
    """Keep-last ``depth``, volatile, with the given reliability (``'reliable'`` or
    ``'best_effort'``)."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=RELIABILITY_POLICIES[reliability],
        durability=DurabilityPolicy.VOLATILE,
    )


def offered_reliabilities(node: Node, topic: str) -> List[str]:
    """The reliability each publisher of ``topic`` (fully resolved) offers."""
    return [
        'reliable' if info.qos_profile.reliability == ReliabilityPolicy.RELIABLE else 'best_effort'
        for info in node.get_publishers_info_by_topic(topic)
    ]


class MatchingImageSubscription:
    """A subscription of ``node`` to ``topic`` whose reliability follows ``mode``
    (``auto | reliable | best_effort``), recreated whenever the choice changes; keep-last
    ``depth``."""

    def __init__(
        self, node: Node, msg_type, topic: str, callback: Callable, mode: str, depth: int = 1
    ):
        self._node = node
        self._msg_type = msg_type
        self._name = topic                            # as given: rcl applies remappings to it
        self.topic = node.resolve_topic_name(topic)   # resolved: for graph queries and logs
        self._callback = callback
        self.mode = mode
        self.depth = depth
        self.reliability = None
        self._subscription = None
        self.update()
        self._timer = node.create_timer(GRAPH_CHECK_PERIOD_S, self.update,
                                        clock=Clock(clock_type=ClockType.STEADY_TIME))

    @property
    def matched_publishers(self) -> int:
        return self._subscription.get_publisher_count()

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        self.update()

    def update(self) -> None:
        """Re-read the publishers' QoS; resubscribe when the reliability to use changed."""
        offered = offered_reliabilities(self._node, self.topic)
        wanted = choose_reliability(self.mode, offered)
        if wanted == self.reliability:
            return
        if self._subscription is not None:
            self._node.destroy_subscription(self._subscription)
        self._subscription = self._node.create_subscription(
            self._msg_type, self._name, self._callback, image_qos(wanted, self.depth),
            event_callbacks=SubscriptionEventCallbacks(matched=lambda _: self.update()))
        self.reliability = wanted
        self._node.get_logger().info(
            f'subscribed to {self.topic} {wanted}, keep-last {self.depth} '
            f'(image_qos={self.mode}, publishers offer: {", ".join(offered) or "none yet"})'
        )
