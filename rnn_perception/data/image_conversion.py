"""``sensor_msgs/msg/Image`` -> ``(H, W, 3)`` uint8 RGB numpy array, for real cameras.

Accepted encodings (names as in ``sensor_msgs/image_encodings.hpp``), any resolution the
layout allows, with or without row padding (``step`` larger than the bytes a row needs):

* ``rgb8``, ``bgr8``, ``rgba8``, ``bgra8``, ``mono8`` (grey is copied to the three channels);
* ``mono16``, ``rgb16``, ``bgr16``: the **high byte** of each 16-bit value is kept
  (``value >> 8``, truncating), in the byte order ``is_bigendian`` gives. This assumes the values
  span the 16-bit range (MSB-aligned); a 12-bit value stored in the low bits comes out dark;
* ``yuv422`` and its alias ``uyvy`` (bytes U Y0 V Y1), ``yuv422_yuy2`` and its alias ``yuyv``
  (Y0 U Y1 V): 4:2:2, so the width must be even; ``cv2.COLOR_YUV2RGB_UYVY`` / ``_YUY2``;
* ``nv21``: a Y plane (``height`` rows of ``step`` bytes), then ``height / 2`` rows of ``step``
  bytes of interleaved V, U for each 2x2 block (4:2:0): even width and height, and
  ``height * 3 / 2 * step`` bytes of data; ``cv2.COLOR_YUV2RGB_NV21``;
* ``nv24``: a Y plane (``height`` rows of ``step`` bytes), then ``height`` rows of ``2 * step``
  bytes of interleaved U, V for every pixel (4:4:4): ``step`` is, as everywhere in ROS, the row
  length of the first plane, and the chroma rows are twice as long (as GStreamer and V4L2 lay
  NV24 out), so the data holds ``height * 3 * step`` bytes. OpenCV has no NV24 code: each pixel
  is written as a U Y V Y pair with itself and decoded with ``cv2.COLOR_YUV2RGB_UYVY``, so nv24
  uses exactly OpenCV's YUV matrix for nv21 and 4:2:2 (BT.601, Y in 16..235), not the full-range
  one of ``cv2.COLOR_YUV2RGB``;
* ``bayer_rggb8``, ``bayer_bggr8``, ``bayer_gbrg8``, ``bayer_grbg8`` (the top-left 2x2 block, read
  row by row): bilinear demosaicing by OpenCV, whose codes name the pattern differently (from the
  second row and column): ``rggb`` is ``cv2.COLOR_BayerBG2RGB``, ``bggr`` ``BayerRG``, ``gbrg``
  ``BayerGR``, ``grbg`` ``BayerGB`` (checked on synthetic mosaics in the tests). Any width and
  height from 3 up (OpenCV returns black below 3 pixels, so smaller images are refused).

Everything else is refused with :class:`ImageConversionError` and a reason that names the
encoding: depth and data images (``16UC1``, ``32FC1``...), 16-bit colour and Bayer other than the
three above (``rgba16``, ``bayer_rggb16``...), other YUV layouts (``nv12``, ``i420``...), unknown
encodings; and zero or absurd sizes, a width or height the layout cannot hold (odd for 4:2:2 or
4:2:0, under 3 for Bayer), a ``step`` too short for a row, data shorter than the rows need.

The message is checked here first, whatever decodes it, so a malformed message never reaches a
decoder. The five 8-bit RGB/mono encodings are decoded by ``cv_bridge`` when it imports *and*
passes a probe on a tiny image (the PyPI ``cv-bridge`` wheel imports under numpy 2 but may fail
at run time, e.g. on the removed ``ndarray.tostring``); otherwise, and always for the other
encodings (so that no bridge's 16-bit scaling or YUV matrix differs from ours), a numpy/OpenCV
decoder of our own. Either way the result is the same array. Works on rclpy messages and on
rosbags' deserialised messages alike (it only reads the fields).
"""
from __future__ import annotations

from functools import cache
import re
from typing import Callable, NamedTuple, Optional

import cv2
import numpy as np

# How an encoding's bytes are laid out (``Encoding.layout``).
PACKED = 'packed'        # height rows of width pixels of 8-bit channels
PACKED16 = 'packed16'    # the same with 16-bit channels
YUV422 = 'yuv422'        # height rows of width/2 four-byte pixel pairs
BAYER = 'bayer'          # height rows of width one-byte colour samples
NV21 = 'nv21'            # Y plane, then a half-height plane of V, U pairs
NV24 = 'nv24'            # Y plane, then a full-height plane of U, V pairs (rows of 2 * step)


class Encoding(NamedTuple):
    """How an accepted encoding is laid out and turned into RGB."""

    bytes_per_pixel: int        # in a row of ``step`` (the Y plane for nv21 and nv24)
    conversion: Optional[int]   # OpenCV code to RGB (of the unpacked pixels); None: already RGB
    layout: str = PACKED

    def rows(self, height: int) -> int:
        """Rows of ``step`` bytes that ``data`` holds for an image ``height`` pixels high."""
        return {NV21: height * 3 // 2, NV24: height * 3}.get(self.layout, height)


# The accepted encodings: the one table of what this converter reads.
SUPPORTED_ENCODINGS = {
    'rgb8': Encoding(3, None),
    'bgr8': Encoding(3, cv2.COLOR_BGR2RGB),
    'rgba8': Encoding(4, cv2.COLOR_RGBA2RGB),
    'bgra8': Encoding(4, cv2.COLOR_BGRA2RGB),
    'mono8': Encoding(1, cv2.COLOR_GRAY2RGB),
    'mono16': Encoding(2, cv2.COLOR_GRAY2RGB, PACKED16),
    'rgb16': Encoding(6, None, PACKED16),
    'bgr16': Encoding(6, cv2.COLOR_BGR2RGB, PACKED16),
    'yuv422': Encoding(2, cv2.COLOR_YUV2RGB_UYVY, YUV422),
    'uyvy': Encoding(2, cv2.COLOR_YUV2RGB_UYVY, YUV422),
    'yuv422_yuy2': Encoding(2, cv2.COLOR_YUV2RGB_YUY2, YUV422),
    'yuyv': Encoding(2, cv2.COLOR_YUV2RGB_YUY2, YUV422),
    'nv21': Encoding(1, cv2.COLOR_YUV2RGB_NV21, NV21),
    'nv24': Encoding(1, cv2.COLOR_YUV2RGB_UYVY, NV24),     # per pixel, see the module docstring
    # ROS names the top-left 2x2 block; OpenCV names the block starting at row 1, column 1.
    'bayer_rggb8': Encoding(1, cv2.COLOR_BayerBG2RGB, BAYER),
    'bayer_bggr8': Encoding(1, cv2.COLOR_BayerRG2RGB, BAYER),
    'bayer_gbrg8': Encoding(1, cv2.COLOR_BayerGR2RGB, BAYER),
    'bayer_grbg8': Encoding(1, cv2.COLOR_BayerGB2RGB, BAYER),
}

# Refused by name, so the refusal says what the image is rather than "unknown".
# More than 8 bits per channel and not one of the 16-bit encodings above: depth, disparity and
# other data images (the generic types), 16-bit colour with alpha, 16-bit Bayer.
WIDE_ENCODINGS = {
    'rgba16', 'bgra16', 'bayer_rggb16', 'bayer_bggr16', 'bayer_gbrg16', 'bayer_grbg16',
    '16UC1', '16UC2', '16UC3', '16UC4', '16SC1', '16SC2', '16SC3', '16SC4',
    '32SC1', '32SC2', '32SC3', '32SC4', '32FC1', '32FC2', '32FC3', '32FC4',
    '64FC1', '64FC2', '64FC3', '64FC4',
}
# YUV layouts other than the four above.
OTHER_YUV_ENCODINGS = {'nv12', 'i420', 'yuv420', 'yv12', 'nv16', 'nv61', 'nv42', 'yuv444'}
_GENERIC_TYPE = re.compile(r'\d+[USF]C\d')

# Larger than any camera (8K is 33 MP): a guard against header garbage asking for gigabytes.
MAX_IMAGE_PIXELS = 8192 * 8192

# Smallest image OpenCV demosaics (below 3 pixels either way it returns black).
MIN_BAYER_SIZE = 3


class ImageConversionError(ValueError):
    """An image message that cannot be turned into an RGB array; the message says why."""


def _refuse_encoding(encoding: str) -> ImageConversionError:
    supported = ', '.join(SUPPORTED_ENCODINGS)
    if encoding in WIDE_ENCODINGS:
        what = ('a depth or data image' if _GENERIC_TYPE.fullmatch(encoding) else
                'not one of the 16-bit encodings read here: mono16, rgb16, bgr16')
        return ImageConversionError(
            f'encoding {encoding!r} has more than 8 bits per channel ({what}); this node needs '
            f'a camera image ({supported})')
    if encoding in OTHER_YUV_ENCODINGS:
        return ImageConversionError(
            f'encoding {encoding!r} is a YUV layout this node does not read (supported: '
            f'{supported})')
    return ImageConversionError(f'unsupported encoding {encoding!r} (supported: {supported})')


def check_image(message) -> int:
    """Validate ``message``'s header fields against its data; return the bytes per pixel in a
    row of ``step`` (the channel count for the 8-bit packed encodings).

    Raises :class:`ImageConversionError` naming the first problem found.
    """
    encoding = message.encoding
    if encoding not in SUPPORTED_ENCODINGS:
        raise _refuse_encoding(encoding)
    spec = SUPPORTED_ENCODINGS[encoding]
    height, width, step = int(message.height), int(message.width), int(message.step)
    if height <= 0 or width <= 0:
        raise ImageConversionError(f'empty image ({width}x{height})')
    if height * width > MAX_IMAGE_PIXELS:
        raise ImageConversionError(
            f'image too large ({width}x{height} > {MAX_IMAGE_PIXELS} pixels)'
        )
    if spec.layout in (YUV422, NV21) and width % 2:
        raise ImageConversionError(
            f'{encoding} needs an even width (its chroma is shared by pixel pairs), got {width}')
    if spec.layout == NV21 and height % 2:
        raise ImageConversionError(
            f'{encoding} needs an even height (its chroma is shared by 2x2 blocks), got {height}')
    if spec.layout == BAYER and min(height, width) < MIN_BAYER_SIZE:
        raise ImageConversionError(
            f'{encoding} needs at least {MIN_BAYER_SIZE}x{MIN_BAYER_SIZE} pixels to demosaic, '
            f'got {width}x{height}')
    row = width * spec.bytes_per_pixel
    if step < row:
        raise ImageConversionError(
            f'step {step} is shorter than a {encoding} row of {width} pixels ({row} bytes)'
        )
    rows = spec.rows(height)
    needed = rows * step
    size = len(message.data)
    if size < needed:
        rows_name = {NV21: 'height*3/2', NV24: 'height*3'}.get(spec.layout, 'height')
        raise ImageConversionError(
            f'data has {size} bytes, fewer than {rows_name}*step = {rows}*{step} = {needed}')
    return spec.bytes_per_pixel


def _decode_with_numpy(message, bytes_per_pixel: int) -> np.ndarray:
    """The package's own decoder: strided views of the rows (no copy of the padding), then one
    OpenCV colour conversion."""
    height, width, step = int(message.height), int(message.width), int(message.step)
    spec = SUPPORTED_ENCODINGS[message.encoding]
    rows = np.frombuffer(
        message.data, dtype=np.uint8, count=spec.rows(height) * step
    ).reshape(-1, step)
    row = width * bytes_per_pixel
    if spec.layout == NV21:         # one (height * 3/2, width) image: OpenCV's NV21 layout
        pixels = rows[:, :width]
    elif spec.layout == NV24:
        pixels = _nv24_as_uyvy(rows[:height, :width],
                               rows[height:].reshape(height, 2 * step)[:, :2 * width])
    else:
        pixels = rows[:, :row]
        if spec.layout == PACKED16:     # keep the high byte of each 16-bit value
            high = 0 if message.is_bigendian else 1
            pixels = np.ascontiguousarray(
                pixels.reshape(height, width, bytes_per_pixel // 2, 2)[..., high])
        elif spec.layout in (PACKED, YUV422):
            pixels = pixels.reshape(height, width, -1)
    if spec.conversion is None:
        return pixels.copy()    # own the pixels: the message buffer may be read-only or reused
    rgb = cv2.cvtColor(pixels, spec.conversion)
    if spec.layout == NV24:     # every other column (the pairs' twins); faster than [:, ::2]
        return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_NEAREST)
    return rgb


def _nv24_as_uyvy(luma: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    """``(H, 2W, 2)`` UYVY image in which each nv24 pixel (``luma`` Y, ``chroma`` U V) is a pixel
    pair of its own: its even columns decode to the nv24 image with OpenCV's YUV matrix."""
    height, width = luma.shape
    pairs = np.empty((height, width, 4), np.uint8)
    pairs[..., 0] = chroma[:, 0::2]     # U
    pairs[..., 1] = luma
    pairs[..., 2] = chroma[:, 1::2]     # V
    pairs[..., 3] = luma
    return pairs.reshape(height, 2 * width, 2)


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
    """Which decoder converts the 8-bit RGB and mono images in this process: ``'cv_bridge'`` or
    ``'numpy'`` (the other encodings always take ``'numpy'``)."""
    return _active_decoder()[0]


def image_to_rgb(message) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB array (C-contiguous, writable, its own copy) of a
    ``sensor_msgs/msg/Image``; :class:`ImageConversionError` when it cannot be read."""
    bytes_per_pixel = check_image(message)
    if SUPPORTED_ENCODINGS[message.encoding].layout != PACKED:
        return _decode_with_numpy(message, bytes_per_pixel)
    return _active_decoder()[1](message, bytes_per_pixel)


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
