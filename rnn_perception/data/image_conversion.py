"""``sensor_msgs/msg/Image`` -> ``(H, W, 3)`` uint8 RGB numpy array, for real cameras.

Accepted encodings: ``rgb8``, ``bgr8``, ``rgba8``, ``bgra8`` and ``mono8`` (grey is copied to
the three channels), any resolution, with or without row padding (``step`` larger than
``width * channels``). Everything else is refused with :class:`ImageConversionError` and a reason:
16-bit and float images (depth cameras: ``16UC1``, ``32FC1``, ``mono16``, ``rgb16``...), Bayer
and unknown encodings, zero or absurd sizes, a ``step`` too short for a row, data shorter than
``height * step``.

The message is checked here first, whatever decodes it, so a malformed message never reaches a
decoder. The decoding itself uses ``cv_bridge`` when it imports *and* passes a probe on a tiny
image (the PyPI ``cv-bridge`` wheel imports under numpy 2 but may fail at run time, e.g. on the
removed ``ndarray.tostring``); otherwise a numpy/OpenCV decoder of our own. Either way the
result is the same array. Works on rclpy messages and on rosbags' deserialised messages alike
(it only reads the fields).
"""
from __future__ import annotations

from functools import cache
from typing import Callable, Optional

import cv2
import numpy as np

# encoding -> (channels, OpenCV conversion to RGB; None when the pixels already are RGB)
SUPPORTED_ENCODINGS = {
    'rgb8': (3, None),
    'bgr8': (3, cv2.COLOR_BGR2RGB),
    'rgba8': (4, cv2.COLOR_RGBA2RGB),
    'bgra8': (4, cv2.COLOR_BGRA2RGB),
    'mono8': (1, cv2.COLOR_GRAY2RGB),
}

# Encodings with more than 8 bits per channel: depth and HDR cameras. Named so the refusal
# says what the image is, rather than "unknown".
WIDE_ENCODINGS = {
    'mono16', 'rgb16', 'bgr16', 'rgba16', 'bgra16',
    '16UC1', '16UC2', '16UC3', '16UC4', '16SC1', '16SC2', '16SC3', '16SC4',
    '32SC1', '32SC2', '32SC3', '32SC4', '32FC1', '32FC2', '32FC3', '32FC4',
    '64FC1', '64FC2', '64FC3', '64FC4',
}

# Larger than any camera (8K is 33 MP): a guard against header garbage asking for gigabytes.
MAX_IMAGE_PIXELS = 8192 * 8192


class ImageConversionError(ValueError):
    """An image message that cannot be turned into an RGB array; the message says why."""


def check_image(message) -> int:
    """Validate ``message``'s header fields against its data; return its channel count.

    Raises :class:`ImageConversionError` naming the first problem found.
    """
    encoding = message.encoding
    if encoding in WIDE_ENCODINGS:
        raise ImageConversionError(
            f'encoding {encoding!r} has more than 8 bits per channel (a depth or HDR image); '
            f'this node needs a colour or mono8 camera image ({", ".join(SUPPORTED_ENCODINGS)})')
    if encoding not in SUPPORTED_ENCODINGS:
        raise ImageConversionError(
            f'unsupported encoding {encoding!r} (supported: {", ".join(SUPPORTED_ENCODINGS)})')
    channels = SUPPORTED_ENCODINGS[encoding][0]
    height, width, step = int(message.height), int(message.width), int(message.step)
    if height <= 0 or width <= 0:
        raise ImageConversionError(f'empty image ({width}x{height})')
    if height * width > MAX_IMAGE_PIXELS:
        raise ImageConversionError(
            f'image too large ({width}x{height} > {MAX_IMAGE_PIXELS} pixels)'
        )
    if step < width * channels:
        raise ImageConversionError(
            f'step {step} is shorter than a {encoding} row of {width} pixels '
            f'({width * channels} bytes)'
        )
    size = len(message.data)
    if size < height * step:
        raise ImageConversionError(
            f'data has {size} bytes, fewer than height*step = {height}*{step} = {height * step}')
    return channels


def _decode_with_numpy(message, channels: int) -> np.ndarray:
    """The package's own decoder: a strided view of the rows, then one OpenCV colour conversion."""
    height, width, step = int(message.height), int(message.width), int(message.step)
    rows = np.frombuffer(message.data, dtype=np.uint8, count=height * step).reshape(height, step)
    pixels = rows[:, :width * channels].reshape(height, width, channels)
    conversion = SUPPORTED_ENCODINGS[message.encoding][1]
    if conversion is None:
        return pixels.copy()    # own the pixels: the message buffer may be read-only or reused
    return cv2.cvtColor(pixels, conversion)


Decoder = Callable[[object, int], np.ndarray]


def cv_bridge_decoder(bridge) -> Optional[Decoder]:
    """A decoder backed by ``bridge`` (a ``cv_bridge.CvBridge``), or ``None`` when the bridge
    fails a probe: it must decode a 2x2 ``bgr8`` image with row padding into the same RGB array
    as our own decoder (catches the numpy-2 breakage of the PyPI wheel, and any other)."""
    try:
        from sensor_msgs.msg import Image
        probe = Image(height=2, width=2, encoding='bgr8', step=8, data=bytes(range(1, 17)))
        expected = _decode_with_numpy(probe, 3)
        if not np.array_equal(bridge.imgmsg_to_cv2(probe, desired_encoding='rgb8'), expected):
            return None
    except Exception:  # noqa: BLE001 - whatever breaks, the bridge is unusable here
        return None
    return lambda message, channels: np.array(
        bridge.imgmsg_to_cv2(message, desired_encoding='rgb8')
    )


@cache   # chosen once per process, on first use: importing cv_bridge is not free
def _active_decoder() -> tuple[str, Decoder]:
    try:
        from cv_bridge import CvBridge
        decoder = cv_bridge_decoder(CvBridge())
    except Exception:  # noqa: BLE001 - not installed, or broken at import
        decoder = None
    return ('cv_bridge', decoder) if decoder is not None else ('numpy', _decode_with_numpy)


def decoder_name() -> str:
    """Which decoder converts images in this process: ``'cv_bridge'`` or ``'numpy'``."""
    return _active_decoder()[0]


def image_to_rgb(message) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB array (C-contiguous, writable, its own copy) of a
    ``sensor_msgs/msg/Image``; :class:`ImageConversionError` when it cannot be read."""
    channels = check_image(message)
    return _active_decoder()[1](message, channels)


def array_to_image_fields(pixels: np.ndarray) -> dict:
    """The ``height``, ``width``, ``encoding``, ``is_bigendian``, ``step`` and ``data`` fields of
    an ``rgb8`` (``(H, W, 3)``) or ``mono8`` (``(H, W)``) image holding a uint8 array."""
    if (
        pixels.dtype != np.uint8
        or pixels.ndim not in (2, 3)
        or (pixels.ndim == 3 and pixels.shape[2] != 3)
    ):
        raise ImageConversionError(
            f'expected (H, W) or (H, W, 3) uint8, got {pixels.dtype} {pixels.shape}'
        )
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else 3
    return {'height': height, 'width': width, 'encoding': 'mono8' if channels == 1 else 'rgb8',
            'is_bigendian': 0, 'step': width * channels,
            'data': np.ascontiguousarray(pixels).tobytes()}
