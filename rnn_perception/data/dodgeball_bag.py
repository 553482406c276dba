"""The episodes of a dodgeball rosbag2 (``python -m sim dodgeball --bag``, or a camera recorded
with ``ros2 bag record`` beside the ground truth): each image paired with its ground truth by bag
time, read as the collision node reads a camera's (:mod:`.image_conversion`), and grouped into
episodes by the ground truth's ``episode`` field.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterator, List

import numpy as np

from ..files import PathLike
from .bags import (
    BagError,
    IMAGE_MSGTYPE,
    LABELLED_ARRAY_MSGTYPE,
    labelled_array_fields,
    read_bag,
    stamp_to_ns,
)
from .dodgeball_dataset import GROUND_TRUTH_FIELDS, GROUND_TRUTH_TOPIC, IMAGE_TOPIC
from .image_conversion import ImageConversionError, image_to_rgb


@dataclass
class BagEpisode:
    """One episode read back from a dodgeball bag."""

    episode: int
    hit: bool
    contact_time_s: float          # within the episode; inf for misses
    frames: List[np.ndarray]       # (H, W, 3) uint8 RGB, as recorded
    stamps_s: np.ndarray           # frame times within the episode (header stamp - first frame's)
    header_stamps_ns: np.ndarray   # the images' header stamps, to match a node's outputs to frames


@dataclass
class _LabelledFrame:
    header_stamp_ns: int
    rgb: np.ndarray
    truth: Dict[str, float]


def _labelled_frames(path: PathLike) -> Iterator[_LabelledFrame]:
    """Images paired with their ground truth by bag time (the ground truth has no header)."""
    pending: Dict[str, Dict[int, Any]] = {IMAGE_TOPIC: {}, GROUND_TRUTH_TOPIC: {}}
    seen = {IMAGE_TOPIC: 0, GROUND_TRUTH_TOPIC: 0}
    paired = 0
    for record in read_bag(
        path, {IMAGE_TOPIC: IMAGE_MSGTYPE, GROUND_TRUTH_TOPIC: LABELLED_ARRAY_MSGTYPE}
    ):
        seen[record.topic] += 1
        pending[record.topic][record.stamp_ns] = record.message
        if all(record.stamp_ns in messages for messages in pending.values()):
            image = pending[IMAGE_TOPIC].pop(record.stamp_ns)
            truth = pending[GROUND_TRUTH_TOPIC].pop(record.stamp_ns)
            paired += 1
            yield _LabelledFrame(
                stamp_to_ns(image.header.stamp),
                _bag_image(path, image, record.stamp_ns),
                _ground_truth(path, truth, record.stamp_ns),
            )
    missing = [topic for topic, count in seen.items() if count == 0]
    if missing:
        raise BagError(f'{path}: no messages on {" or ".join(missing)}; a dodgeball bag needs '
                       f'{IMAGE_TOPIC} and {GROUND_TRUTH_TOPIC}')
    if not paired:
        raise BagError(f'{path}: no image shares its bag time with a ground-truth message')


def _bag_image(path: PathLike, image, stamp_ns: int) -> np.ndarray:
    """The RGB pixels of a bag's image, read as the collision node reads a camera's."""
    try:
        return image_to_rgb(image)
    except ImageConversionError as error:
        raise BagError(
            f'{path}: unreadable {IMAGE_TOPIC} image at bag time {stamp_ns / 1e9:.3f} s ({error})'
        ) from None


def _ground_truth(path: PathLike, truth, stamp_ns: int) -> Dict[str, float]:
    try:
        fields = labelled_array_fields(truth)
    except BagError as error:
        raise BagError(
            f'{path}: {GROUND_TRUTH_TOPIC} at bag time {stamp_ns / 1e9:.3f} s: {error}'
        ) from None
    missing = [name for name in GROUND_TRUTH_FIELDS if name not in fields]
    if missing:
        raise BagError(
            f'{path}: {GROUND_TRUTH_TOPIC} at bag time {stamp_ns / 1e9:.3f} s lacks the fields '
            f'{", ".join(missing)}'
        )
    return fields


def _bag_episode(frames: List[_LabelledFrame]) -> BagEpisode:
    first = frames[0].truth
    header_stamps = np.array([frame.header_stamp_ns for frame in frames], dtype=np.int64)
    return BagEpisode(
        episode=int(first['episode']), hit=bool(first['hit']),
        contact_time_s=float(first['episode_time_s']) + float(first['time_to_contact_s']),
        frames=[frame.rgb for frame in frames], stamps_s=(header_stamps - header_stamps[0]) / 1e9,
        header_stamps_ns=header_stamps)


def episodes_from_bag(path: PathLike) -> Iterator[BagEpisode]:
    """The episodes of a dodgeball bag in recorded order, one at a time (bounded memory).

    Frames go to the episode named by their ground truth's ``episode`` field. Raises
    ``BagError`` for a path that is no bag, or a bag without images or ground truth.
    """
    frames: List[_LabelledFrame] = []
    for frame in _labelled_frames(path):
        if frames and frame.truth['episode'] != frames[-1].truth['episode']:
            yield _bag_episode(frames)
            frames = []
        frames.append(frame)
    if frames:
        yield _bag_episode(frames)
