"""The episodes of a tactile rosbag2 (``python -m sim tactile --bag``): each tactile array paired
with the pose of its bag time, split into episodes at gaps over :data:`EPISODE_GAP_S`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterator, List

import numpy as np

from ..files import PathLike
from .bags import BagError, LABELLED_ARRAY_MSGTYPE, POSE_STAMPED_MSGTYPE, read_bag, stamp_to_ns
from .tactile_dataset import POSE_TOPIC, quaternion_angle, TACTILE_FIELDS, TACTILE_TOPIC


EPISODE_GAP_S = 0.1          # a longer silence between samples starts a new episode


@dataclass
class BagEpisode:
    """One episode read back from a tactile bag: per sample the tactile values, the pose and its
    stamp."""

    episode: int
    tactile: np.ndarray        # (T, 21)
    poses: np.ndarray  # (T, 4) x, y, z, angle
    stamps_ns: np.ndarray  # (T,) the poses' header stamps, to match a node's outputs to samples


def pose_vector(message) -> np.ndarray:
    """``geometry_msgs/Pose`` -> ``(x, y, z, angle about y)``."""
    p, q = message.position, message.orientation
    return np.array([p.x, p.y, p.z, quaternion_angle(q.x, q.y, q.z, q.w)], np.float32)


def _samples(path: PathLike) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(stamp_ns, tactile, pose)`` of every tactile message paired with the pose of its bag
    time."""
    pending: Dict[str, Dict[int, Any]] = {TACTILE_TOPIC: {}, POSE_TOPIC: {}}
    seen = {TACTILE_TOPIC: 0, POSE_TOPIC: 0}
    for record in read_bag(
        path, {TACTILE_TOPIC: LABELLED_ARRAY_MSGTYPE, POSE_TOPIC: POSE_STAMPED_MSGTYPE}
    ):
        seen[record.topic] += 1
        pending[record.topic][record.stamp_ns] = record.message
        if all(record.stamp_ns in messages for messages in pending.values()):
            tactile = np.asarray(pending[TACTILE_TOPIC].pop(record.stamp_ns).data, np.float32)
            pose = pending[POSE_TOPIC].pop(record.stamp_ns)
            if tactile.shape != (len(TACTILE_FIELDS),):
                raise BagError(f'{path}: a {TACTILE_TOPIC} message holds {tactile.size} values, '
                               f'not {len(TACTILE_FIELDS)}')
            yield stamp_to_ns(pose.header.stamp), tactile, pose_vector(pose.pose)
    missing = [topic for topic, count in seen.items() if count == 0]
    if missing:
        raise BagError(f'{path}: no messages on {" or ".join(missing)}; a tactile bag needs '
                       f'{TACTILE_TOPIC} and {POSE_TOPIC}')


def episodes_from_bag(path: PathLike) -> Iterator[BagEpisode]:
    """The episodes of a tactile bag in recorded order (split at gaps over
    :data:`EPISODE_GAP_S`)."""
    samples: List[tuple] = []
    index = 0

    def episode() -> BagEpisode:
        stamps, tactile, poses = zip(*samples)
        return BagEpisode(index, np.stack(tactile), np.stack(poses), np.array(stamps, np.int64))

    for sample in _samples(path):
        if samples and not 0 <= sample[0] - samples[-1][0] <= EPISODE_GAP_S * 1e9:
            yield episode()
            samples, index = [], index + 1
        samples.append(sample)
    if not samples:
        raise BagError(
            f'{path}: no {TACTILE_TOPIC} message shares its bag time with a {POSE_TOPIC} message'
        )
    yield episode()
