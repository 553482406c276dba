"""Which reliability an image subscription takes: the rule, without rclpy (the collision
runtime's ``image_qos`` parameter names its choices; :mod:`.qos` applies it to a subscription)."""
from __future__ import annotations

from typing import Sequence

RELIABILITY_CHOICES = ('auto', 'reliable', 'best_effort')


def choose_reliability(mode: str, offered: Sequence[str]) -> str:
    """The image subscription's reliability (``'reliable'`` or ``'best_effort'``).

    ``mode`` ``'reliable'``/``'best_effort'`` is taken as is. ``'auto'`` matches what the topic's
    publishers ``offered`` (as rosbag2's recorder does): reliable only when every publisher is
    reliable (a best-effort subscription silently loses large frames of a reliable publisher
    under Fast DDS), best effort as soon as one is not (a reliable subscription gets nothing
    from a best-effort publisher), and best effort while there is none (it matches any
    publisher that appears until the choice is made again).
    """
    if mode != 'auto':
        return mode
    if offered and all(reliability == 'reliable' for reliability in offered):
        return 'reliable'
    return 'best_effort'
