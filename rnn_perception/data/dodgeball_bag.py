"""The episodes of a dodgeball rosbag2 (``python -m sim dodgeball --bag``, or a camera recorded
with ``ros2 bag record`` beside the ground truth): each image paired with its ground truth by bag
time, read as the collision node reads a camera's (:mod:`.camera_frames`), and grouped into
episodes by the ground truth's ``episode`` field.

The camera topic is the bag's one ``sensor_msgs/msg/Image`` or ``sensor_msgs/msg/CompressedImage``
topic, or the one named (a bag may hold several, e.g. ``/camera/image_raw`` and its
``/compressed`` twin). Any bag ``rosbags`` reads will do: sqlite3 or mcap, zstd-compressed files
or messages, mcap chunks compressed with zstd or lz4.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Set, Tuple

import numpy as np

from ..files import PathLike
from .bags import (BagError, bag_topics, LABELLED_ARRAY_MSGTYPE, labelled_array_fields, read_bag,
                   stamp_to_ns)
from .camera_frames import frame_reader, FrameReader, TRANSPORT_OF_MSGTYPE
from .dodgeball_dataset import GROUND_TRUTH_FIELDS, GROUND_TRUTH_TOPIC, IMAGE_TOPIC
from .image_conversion import ImageConversionError


@dataclass
class BagEpisode:
    """One episode read back from a dodgeball bag."""

    episode: int
    hit: bool
    contact_time_s: float          # within the episode; inf for misses
    frames: List[np.ndarray]       # (H, W, 3) uint8 RGB, as decoded (see episodes_from_bag)
    stamps_s: np.ndarray           # frame times within the episode (header stamp - first frame's)
    header_stamps_ns: np.ndarray   # the images' header stamps, to match a node's outputs to frames


@dataclass
class _LabelledFrame:
    header_stamp_ns: int
    rgb: np.ndarray
    truth: Dict[str, float]


def camera_topic(path: PathLike, topics: Mapping[str, Set[str]],
                 image_topic: Optional[str]) -> Tuple[str, str]:
    """The camera topic of a bag with ``topics`` (topic -> its types) and its message type:
    ``image_topic`` if given, else its only image topic; :class:`BagError` saying what to name
    otherwise."""
    cameras = sorted(topic for topic, msgtypes in topics.items()
                     if msgtypes & TRANSPORT_OF_MSGTYPE.keys())
    if image_topic is None and len(cameras) == 1:
        image_topic = cameras[0]
    elif image_topic is None and not cameras and IMAGE_TOPIC in topics:
        image_topic = IMAGE_TOPIC     # the usual camera topic with something else on it: say so
    if image_topic is not None:
        if image_topic not in topics:
            raise BagError(f'{path}: no topic {image_topic} (image topics: '
                           f'{", ".join(cameras) or "none"})')
        msgtypes = sorted(topics[image_topic])
        if len(msgtypes) > 1:
            raise BagError(f'{path}: {image_topic} is recorded with {len(msgtypes)} message '
                           f'types ({", ".join(msgtypes)})')
        if image_topic not in cameras:
            raise BagError(f'{path}: {image_topic} carries {msgtypes[0]}, not '
                           f'{" or ".join(TRANSPORT_OF_MSGTYPE)}')
        return image_topic, msgtypes[0]
    if not cameras:
        raise BagError(f'{path}: no camera topic ({" or ".join(TRANSPORT_OF_MSGTYPE)}, such as '
                       f'{IMAGE_TOPIC}); a dodgeball bag needs one beside {GROUND_TRUTH_TOPIC}')
    raise BagError(f'{path}: several camera topics ({", ".join(cameras)}); name one with '
                   '--image-topic')


def _labelled_frames(path: PathLike, image_topic: Optional[str],
                     min_size: Optional[Sequence[int]]) -> Iterator[_LabelledFrame]:
    """Images paired with their ground truth by bag time (the ground truth has no header)."""
    image_topic, image_msgtype = camera_topic(path, bag_topics(path), image_topic)
    read_frame = frame_reader(TRANSPORT_OF_MSGTYPE[image_msgtype], min_size)
    pending: Dict[str, Dict[int, Any]] = {image_topic: {}, GROUND_TRUTH_TOPIC: {}}
    seen = {image_topic: 0, GROUND_TRUTH_TOPIC: 0}
    paired = 0
    for record in read_bag(
        path, {image_topic: image_msgtype, GROUND_TRUTH_TOPIC: LABELLED_ARRAY_MSGTYPE}
    ):
        seen[record.topic] += 1
        pending[record.topic][record.stamp_ns] = record.message
        if all(record.stamp_ns in messages for messages in pending.values()):
            image = pending[image_topic].pop(record.stamp_ns)
            truth = pending[GROUND_TRUTH_TOPIC].pop(record.stamp_ns)
            paired += 1
            yield _LabelledFrame(
                stamp_to_ns(image.header.stamp),
                _bag_image(path, read_frame, image_topic, image, record.stamp_ns),
                _ground_truth(path, truth, record.stamp_ns),
            )
    missing = [topic for topic, count in seen.items() if count == 0]
    if missing:
        raise BagError(f'{path}: no messages on {" or ".join(missing)}; a dodgeball bag needs '
                       f'{image_topic} and {GROUND_TRUTH_TOPIC}')
    if not paired:
        raise BagError(f'{path}: no image shares its bag time with a ground-truth message')


def _bag_image(path: PathLike, read_frame: FrameReader, topic: str, image,
               stamp_ns: int) -> np.ndarray:
    """The RGB pixels of a bag's image, read as the collision node reads a camera's."""
    try:
        return read_frame(image)[0]
    except ImageConversionError as error:
        raise BagError(
            f'{path}: unreadable {topic} image at bag time {stamp_ns / 1e9:.3f} s ({error})'
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


def episodes_from_bag(path: PathLike, image_topic: Optional[str] = None,
                      min_size: Optional[Sequence[int]] = None) -> Iterator[BagEpisode]:
    """The episodes of a dodgeball bag in recorded order, one at a time (bounded memory).

    ``image_topic``: the camera topic (default: the bag's only image topic). Compressed frames
    are decoded as the collision node decodes them for a model of input size ``min_size``
    ``(height, width)`` (at the smallest JPEG scale that keeps that size; ``None``: in full).
    Frames go to the episode named by their ground truth's ``episode`` field. Raises
    ``BagError`` for a path that is no bag, or a bag without images or ground truth.
    """
    frames: List[_LabelledFrame] = []
    for frame in _labelled_frames(path, image_topic, min_size):
        if frames and frame.truth['episode'] != frames[-1].truth['episode']:
            yield _bag_episode(frames)
            frames = []
        frames.append(frame)
    if frames:
        yield _bag_episode(frames)
