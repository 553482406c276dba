"""A camera's frames as the collision model reads them, whichever ``image_transport`` carried
them: one reader per camera stream, shared by the node and by ``eval --bag``.

``raw`` is a ``sensor_msgs/msg/Image`` (:mod:`.image_conversion`), ``compressed`` a
``sensor_msgs/msg/CompressedImage`` on ``<image topic>/compressed`` (:mod:`.compressed_image`).
A reader maps a message to ``(RGB pixels, the camera's full (width, height))``.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import numpy as np

from .bags import COMPRESSED_IMAGE_MSGTYPE, IMAGE_MSGTYPE
from .compressed_image import CompressedImageDecoder
from .image_conversion import image_to_rgb

RAW_TRANSPORT, COMPRESSED_TRANSPORT = 'raw', 'compressed'
IMAGE_TRANSPORTS = (RAW_TRANSPORT, COMPRESSED_TRANSPORT)
TRANSPORT_OF_MSGTYPE = {IMAGE_MSGTYPE: RAW_TRANSPORT,
                        COMPRESSED_IMAGE_MSGTYPE: COMPRESSED_TRANSPORT}

FrameReader = Callable[[object], Tuple[np.ndarray, Tuple[int, int]]]


def raw_frame(message) -> Tuple[np.ndarray, Tuple[int, int]]:
    """A ``sensor_msgs/Image`` -> its RGB pixels and its ``(width, height)``."""
    rgb = image_to_rgb(message)
    return rgb, (rgb.shape[1], rgb.shape[0])


def frame_reader(transport: str, min_size: Optional[Sequence[int]] = None) -> FrameReader:
    """The reader of one camera stream on ``transport``; compressed frames are decoded at the
    smallest scale that keeps them at least ``min_size`` ``(height, width)`` (``None``: full
    size)."""
    if transport == COMPRESSED_TRANSPORT:
        return CompressedImageDecoder(min_size)
    return raw_frame
