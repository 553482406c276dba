"""``sensor_msgs/msg/CompressedImage`` -> ``(H, W, 3)`` uint8 RGB, decoded by OpenCV.

What ``image_transport``'s ``compressed`` transport publishes (``<camera topic>/compressed``),
and what ``ros2 bag record`` keeps of it. ``format`` is what ``compressed_image_transport``
writes: plain ``jpeg`` or ``png`` (older drivers, ``jpg`` too), or ``<encoding>; <codec>
compressed <encoding>`` such as ``rgb8; jpeg compressed bgr8`` or ``mono8; png compressed
mono8``. Either way the bytes are a JPEG or PNG file, which OpenCV decodes to BGR (grey copied to
three channels) and which is returned as RGB. Refused with :class:`CompressedImageError` and the
reason, never passed on half-decoded: an empty payload, another codec (``tiff``, a video
format), a depth image (``compressedDepth``), bytes that are not the codec ``format`` names, and
corrupt or truncated data (OpenCV's decoders return nothing for these).

**Reduced decoding.** A model that looks at 64x64 pixels does not need a 1280x720 frame:
libjpeg can decode at 1/2, 1/4 or 1/8 scale, skipping most of the inverse DCT work
(``cv2.IMREAD_REDUCED_COLOR_*``). :class:`CompressedImageDecoder` picks the largest scale that
keeps the frame at least ``min_size`` in both directions, from the size of the camera's previous
frame (a camera's size does not change from frame to frame; the first frame, and a frame that
came out smaller than ``min_size`` after a change of size, are decoded in full). PNG has no
scaled decoding and is always decoded in full.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from .image_conversion import ImageConversionError

JPEG, PNG = 'jpeg', 'png'
CODEC_NAMES = {'jpeg': JPEG, 'jpg': JPEG, 'png': PNG}
MAGIC = {JPEG: b'\xff\xd8\xff', PNG: b'\x89PNG\r\n\x1a\n'}
# libjpeg's scaled decoding: scale denominator -> OpenCV flag, largest first.
REDUCED_FLAGS = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                 (2, cv2.IMREAD_REDUCED_COLOR_2), (1, cv2.IMREAD_COLOR))


class CompressedImageError(ImageConversionError):
    """A compressed image that cannot be turned into an RGB array; the message says why."""


def codec_of(image_format: str) -> str:
    """The codec (``'jpeg'`` or ``'png'``) of a ``CompressedImage.format``, or
    :class:`CompressedImageError` naming the format."""
    text = image_format.strip().lower()
    if 'compresseddepth' in text:
        raise CompressedImageError(
            f'format {image_format!r} is a depth image (compressedDepth transport); this node '
            'needs a camera image')
    # 'rgb8; jpeg compressed bgr8' -> 'jpeg'; 'png' -> 'png'
    codec = text.rpartition(';')[2].split()[0] if text else ''
    if codec not in CODEC_NAMES:
        raise CompressedImageError(
            f'unsupported compressed format {image_format!r} (supported: jpeg, png, as '
            "compressed_image_transport writes them, e.g. 'bgr8; jpeg compressed bgr8')")
    return CODEC_NAMES[codec]


def _payload(message) -> Tuple[str, np.ndarray]:
    """The codec and the bytes of ``message``, checked against each other."""
    codec = codec_of(message.format)
    data = np.frombuffer(message.data, dtype=np.uint8) if len(message.data) else None
    if data is None:
        raise CompressedImageError(f'empty {codec} payload (0 bytes)')
    if data[:len(MAGIC[codec])].tobytes() != MAGIC[codec]:
        raise CompressedImageError(
            f'format {message.format!r} names {codec}, but the {data.size} bytes are not a '
            f'{codec} file')
    return codec, data


def _decode(codec: str, data: np.ndarray, flag: int) -> np.ndarray:
    bgr = cv2.imdecode(data, flag)
    if bgr is None:
        raise CompressedImageError(f'corrupt or truncated {codec} data ({data.size} bytes)')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def encode(rgb: np.ndarray, codec: str, jpeg_quality: int = 95) -> Tuple[str, np.ndarray]:
    """``(H, W, 3)`` uint8 RGB -> the ``format`` and bytes ``compressed_image_transport``
    publishes for an ``rgb8`` camera: ``'rgb8; jpeg compressed bgr8'`` (or ``png``)."""
    flags = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if codec == JPEG else []
    ok, data = cv2.imencode(f'.{codec}', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), flags)
    if not ok:
        raise CompressedImageError(f'OpenCV could not encode a {rgb.shape} frame as {codec}')
    return f'rgb8; {codec} compressed bgr8', data.reshape(-1)


class CompressedImageDecoder:
    """Decodes one camera's ``CompressedImage`` stream at the smallest scale that keeps frames at
    least ``min_size`` ``(height, width)`` (see the module docstring); ``None``: at full size."""

    def __init__(self, min_size: Optional[Sequence[int]] = None):
        self.min_size = min_size
        self.full_size: Optional[Tuple[int, int]] = None    # (height, width) of the frames
        self.scale = 1                                      # the last frame's denominator

    def _scale_for(self, codec: str) -> Tuple[int, int]:
        if codec != JPEG or self.full_size is None or self.min_size is None:
            return 1, cv2.IMREAD_COLOR
        (height, width), (min_height, min_width) = self.full_size, self.min_size
        for scale, flag in REDUCED_FLAGS:
            if height // scale >= min_height and width // scale >= min_width:
                return scale, flag
        return 1, cv2.IMREAD_COLOR

    def __call__(self, message) -> Tuple[np.ndarray, Tuple[int, int]]:
        """``message`` -> its pixels as ``(ceil(H / scale), ceil(W / scale), 3)`` uint8 RGB, and
        the camera's full ``(width, height)``."""
        codec, data = _payload(message)
        scale, flag = self._scale_for(codec)
        rgb = _decode(codec, data, flag)
        if scale > 1:
            height, width = self.full_size
            if rgb.shape[:2] != (-(-height // scale), -(-width // scale)):
                scale, rgb = 1, _decode(codec, data, cv2.IMREAD_COLOR)   # the size changed
        if scale == 1:
            self.full_size = rgb.shape[:2]
        self.scale = scale
        return rgb, (self.full_size[1], self.full_size[0])
