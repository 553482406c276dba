"""Camera image conversion (no DDS): every accepted encoding, row padding, and refusals.

Each encoding's message is built from an RGB picture by a forward conversion (OpenCV's own where
it has one: ``RGB2YUV_UYVY``, ``RGB2YUV_YUY2``, ``RGB2YUV_I420``; sampling for Bayer mosaics;
numpy for the 16-bit byte orders) and the result is held to OpenCV's own inverse of the same
samples, taken, where possible, from another layout (I420 for nv21 and nv24, UYVY for YUYV), so
that a swapped U/V, byte order or Bayer code fails; and to the picture itself, within what
chroma subsampling or demosaicing loses.
"""
from __future__ import annotations

import re
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnn_perception.data import image_conversion
from rnn_perception.data.image_conversion import (MAX_IMAGE_PIXELS, SUPPORTED_ENCODINGS,
                                                  ImageConversionError, array_to_image_fields,
                                                  cv_bridge_decoder, decoder_name, image_to_rgb)

EXACT = ('rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', 'mono16', 'rgb16', 'bgr16')
YUV422 = ('yuv422', 'uyvy', 'yuv422_yuy2', 'yuyv')
# ROS names the top-left 2x2 block, row by row; the sampling below follows that name.
BAYER = {'bayer_rggb8': 'RGGB', 'bayer_bggr8': 'BGGR', 'bayer_gbrg8': 'GBRG',
         'bayer_grbg8': 'GRBG'}
# OpenCV's names for the same patterns (it names the block at row 1, column 1), written out here
# apart from the module's table; the demosaicing tests below confirm them on synthetic mosaics.
OPENCV_BAYER = {'bayer_rggb8': cv2.COLOR_BayerBG2RGB, 'bayer_bggr8': cv2.COLOR_BayerRG2RGB,
                'bayer_gbrg8': cv2.COLOR_BayerGR2RGB, 'bayer_grbg8': cv2.COLOR_BayerGB2RGB}
ALL = EXACT + YUV422 + ('nv21', 'nv24') + tuple(BAYER)


def test_the_table_is_what_these_tests_cover():
    assert sorted(SUPPORTED_ENCODINGS) == sorted(ALL)


# ------------------------------------------------------------------------ forward conversions
def i420_planes(rgb: np.ndarray):
    """Y ``(H, W)``, U and V ``(H/2, W/2)`` of OpenCV's ``RGB2YUV_I420`` (BT.601, Y 16..235),
    and the I420 image itself."""
    height, width = rgb.shape[:2]
    i420 = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
    flat, n = i420.ravel(), height * width
    quarter = (height // 2, width // 2)
    return (flat[:n].reshape(height, width), flat[n:n + n // 4].reshape(quarter),
            flat[n + n // 4:].reshape(quarter), i420)


def nv24_planes(rgb: np.ndarray):
    """Full-resolution Y, U, V of ``rgb``: I420 of the picture scaled up 2x (each pixel a 2x2
    block, so each chroma sample is one pixel's), and OpenCV's own inverse of that I420."""
    Y, U, V, i420 = i420_planes(np.repeat(np.repeat(rgb, 2, axis=0), 2, axis=1))
    return Y[::2, ::2], U, V, cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)[::2, ::2]


def mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """The one-byte-per-pixel Bayer mosaic of ``rgb``: pattern ``'RGGB'`` means R at (0, 0),
    G at (0, 1) and (1, 0), B at (1, 1)."""
    samples = np.empty(rgb.shape[:2], np.uint8)
    for index, colour in enumerate(pattern):
        dy, dx = divmod(index, 2)
        samples[dy::2, dx::2] = rgb[dy::2, dx::2, 'RGB'.index(colour)]
    return samples


def wide(channels: np.ndarray, big_endian: bool, seed: int = 0) -> np.ndarray:
    """16-bit rows: each 8-bit value as the high byte, a random low byte (which the converter
    must drop, not round in), in the byte order asked for."""
    low = np.random.default_rng(seed).integers(0, 256, channels.shape, dtype=np.uint16)
    values = (channels.astype(np.uint16) << 8) | low
    height = channels.shape[0]
    return values.astype('>u2' if big_endian else '<u2').view(np.uint8).reshape(height, -1)


def padded(rows: np.ndarray, step: int) -> np.ndarray:
    """``rows`` followed, each, by junk bytes up to ``step``."""
    out = np.full((rows.shape[0], step), 0xEE, np.uint8)
    out[:, :rows.shape[1]] = rows
    return out


def encode(rgb: np.ndarray, encoding: str, padding: int = 0,
           big_endian: bool = False) -> SimpleNamespace:
    """An Image-like message holding ``rgb`` in ``encoding``, each row (of each plane) followed
    by junk bytes (what a camera driver with aligned rows sends): ``padding`` of them after a
    row of ``step``, twice as many after nv24's chroma rows (twice as long)."""
    height, width = rgb.shape[:2]
    alpha = np.full((height, width, 1), 77, np.uint8)
    packed = {
        'rgb8': lambda: rgb,
        'bgr8': lambda: rgb[..., ::-1],
        'rgba8': lambda: np.concatenate([rgb, alpha], axis=2),
        'bgra8': lambda: np.concatenate([rgb[..., ::-1], alpha], axis=2),
        'mono8': lambda: rgb[..., :1],
        'mono16': lambda: wide(rgb[..., :1], big_endian),
        'rgb16': lambda: wide(rgb, big_endian),
        'bgr16': lambda: wide(rgb[..., ::-1], big_endian),
        'yuv422': lambda: cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_UYVY),
        'uyvy': lambda: cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_UYVY),
        'yuv422_yuy2': lambda: cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_YUY2),
        'yuyv': lambda: cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_YUY2),
        **{name: (lambda pattern=pattern: mosaic(rgb, pattern))
           for name, pattern in BAYER.items()},
    }
    if encoding in packed:
        rows = packed[encoding]().reshape(height, -1)
        step = rows.shape[1] + padding
        data = padded(rows, step)
    elif encoding == 'nv21':    # Y plane, then V U pairs of each 2x2 block
        Y, U, V, _ = i420_planes(rgb)
        step = width + padding
        vu = np.stack([V, U], axis=-1).reshape(height // 2, width)
        data = np.concatenate([padded(Y, step), padded(vu, step)])
    else:                       # nv24: Y plane, then U V pairs of each pixel, rows of 2 * step
        assert encoding == 'nv24', encoding
        Y, U, V, _ = nv24_planes(rgb)
        step = width + padding
        uv = np.stack([U, V], axis=-1).reshape(height, 2 * width)
        data = np.concatenate([padded(Y, step).ravel(), padded(uv, 2 * step).ravel()])
    return SimpleNamespace(height=height, width=width, encoding=encoding,
                           is_bigendian=int(big_endian), step=step, data=data.tobytes())


def reference(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """What ``image_to_rgb`` must return for ``encode(rgb, encoding)``, exactly: the picture for
    the lossless encodings, else OpenCV's own inverse of the same samples."""
    if encoding == 'mono8' or encoding == 'mono16':
        return np.repeat(rgb[..., :1], 3, axis=2)
    if encoding in EXACT:
        return rgb
    if encoding in YUV422:      # YUYV holds the UYVY samples in another order: one reference
        return cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_UYVY), cv2.COLOR_YUV2RGB_UYVY)
    if encoding == 'nv21':      # the same samples laid out as I420 (U plane, then V plane)
        return cv2.cvtColor(i420_planes(rgb)[3], cv2.COLOR_YUV2RGB_I420)
    if encoding == 'nv24':
        return nv24_planes(rgb)[3]
    return cv2.cvtColor(mosaic(rgb, BAYER[encoding]), OPENCV_BAYER[encoding])


def valid_size(encoding: str, height: int, width: int) -> tuple:
    """The nearest size at or above ``height`` x ``width`` that ``encoding`` can hold."""
    if encoding in YUV422 or encoding == 'nv21':
        width += width % 2
    if encoding == 'nv21':
        height += height % 2
    if encoding in BAYER:
        height, width = max(height, 3), max(width, 3)
    return height, width


def gradient(height: int, width: int) -> np.ndarray:
    """A smooth test picture: red across, green down, blue along the diagonal."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1),
                     (x + y) * 255 // max(width + height - 2, 1)], axis=-1).astype(np.uint8)


@pytest.fixture
def rgb():
    return np.random.default_rng(0).integers(0, 256, (6, 10, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------------- decoding
@pytest.mark.parametrize('encoding', ALL)
@pytest.mark.parametrize('padding', [0, 3])
def test_every_encoding_decodes_like_opencv(rgb, encoding, padding):
    result = image_to_rgb(encode(rgb, encoding, padding))
    assert result.dtype == np.uint8 and result.shape == (6, 10, 3)
    assert result.flags['C_CONTIGUOUS'] and result.flags['WRITEABLE']
    np.testing.assert_array_equal(result, reference(rgb, encoding))


@settings(max_examples=80, deadline=None)
@given(height=st.integers(1, 40), width=st.integers(1, 40), padding=st.integers(0, 9),
       encoding=st.sampled_from(ALL), big_endian=st.booleans(), seed=st.integers(0, 2**31))
def test_any_size_and_padding(height, width, padding, encoding, big_endian, seed):
    height, width = valid_size(encoding, height, width)
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    np.testing.assert_array_equal(
        image_to_rgb(encode(rgb, encoding, padding, big_endian)), reference(rgb, encoding)
    )


# (mean, largest) absolute error (0..255) allowed on the smooth gradient: what 4:2:2 / 4:2:0
# chroma and bilinear demosaicing lose there (about 1.7 / 2.3 / 0.8 mean; nv24 only rounds), with
# room; a swapped U/V or a wrong Bayer code costs 10 to 70 mean.
CLOSENESS = {**{name: (0, 0) for name in EXACT}, **{name: (2.5, 8) for name in YUV422},
             'nv21': (3.5, 15), 'nv24': (1.0, 3), **{name: (1.5, 20) for name in BAYER}}


@pytest.mark.parametrize('encoding', ALL)
@pytest.mark.parametrize('height,width', [(24, 32), (25, 31)])
def test_the_picture_comes_back(encoding, height, width):
    """Odd sizes where the layout allows (Bayer, nv24, the packed ones), with row padding."""
    height, width = valid_size(encoding, height, width)
    picture = gradient(height, width)
    expected = reference(picture, encoding) if encoding.startswith('mono') else picture
    error = np.abs(image_to_rgb(encode(picture, encoding, padding=5)).astype(int) - expected)
    mean, largest = CLOSENESS[encoding]
    assert error.mean() <= mean and error.max() <= largest, (error.mean(), error.max())


@pytest.mark.parametrize('encoding', [name for name in ALL if not name.startswith('mono')])
@pytest.mark.parametrize('colour', [(220, 30, 40), (30, 200, 60), (40, 50, 210), (200, 100, 30)])
def test_a_plain_colour_stays_that_colour(encoding, colour):
    """Red stays red: every channel order, U/V order and Bayer phase, checked without OpenCV's
    inverse (a constant mosaic demosaics exactly; YUV rounds within 2)."""
    picture = np.empty((8, 10, 3), np.uint8)
    picture[:] = colour
    result = image_to_rgb(encode(picture, encoding, padding=2)).astype(int)
    assert np.abs(result - colour).max() <= (0 if encoding in EXACT + tuple(BAYER) else 2)


@pytest.mark.parametrize('encoding', ['mono16', 'rgb16', 'bgr16'])
def test_16_bit_keeps_the_high_byte_in_the_byte_order_given(rgb, encoding):
    for big_endian in (False, True):
        message = encode(rgb, encoding, padding=1, big_endian=big_endian)
        np.testing.assert_array_equal(image_to_rgb(message), reference(rgb, encoding))
        message.is_bigendian = int(not big_endian)      # the low bytes, which are random
        assert not np.array_equal(image_to_rgb(message), reference(rgb, encoding))
    values = np.array([[[0x00FF], [0x0100], [0x7FFF], [0x8000], [0xFFFF]]], np.uint16)
    message = SimpleNamespace(height=1, width=5, encoding='mono16', is_bigendian=0, step=10,
                              data=values.astype('<u2').tobytes())
    np.testing.assert_array_equal(image_to_rgb(message)[0, :, 0], [0, 1, 127, 128, 255])


def test_nv24_and_nv21_agree_where_the_chroma_is_the_same():
    """A picture whose colour is constant over each 2x2 block loses nothing to 4:2:0: nv24 (U V
    pairs) must then decode exactly as nv21 (V U pairs) does, with the same YUV matrix."""
    blocks = np.random.default_rng(3).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    luma_texture = np.random.default_rng(4).integers(-20, 20, (8, 10, 1))
    picture = np.clip(np.repeat(np.repeat(blocks, 2, axis=0), 2, axis=1) + luma_texture, 0, 255)
    picture = picture.astype(np.uint8)
    Y, U, V, _ = i420_planes(picture)
    step = 10
    nv21 = np.concatenate([Y, np.stack([V, U], axis=-1).reshape(4, 10)])
    uv = np.repeat(np.repeat(np.stack([U, V], axis=-1), 2, axis=0), 2, axis=1)   # (8, 10, 2)
    nv24 = np.concatenate([Y.ravel(), uv.ravel()])
    from_nv21 = image_to_rgb(SimpleNamespace(height=8, width=10, encoding='nv21', is_bigendian=0,
                                             step=step, data=nv21.tobytes()))
    from_nv24 = image_to_rgb(SimpleNamespace(height=8, width=10, encoding='nv24', is_bigendian=0,
                                             step=step, data=nv24.tobytes()))
    np.testing.assert_array_equal(from_nv24, from_nv21)


@pytest.mark.parametrize('encoding', ALL)
def test_extra_trailing_data_is_ignored(rgb, encoding):
    message = encode(rgb, encoding)
    message.data += b'\x00' * 16
    np.testing.assert_array_equal(image_to_rgb(message), reference(rgb, encoding))


def test_rclpy_and_rosbags_messages(rgb):
    from sensor_msgs.msg import Image

    from rnn_perception.data.bags import rgb_image_message

    rclpy_message = Image(**array_to_image_fields(rgb))        # data: array.array
    rosbags_message = rgb_image_message(rgb, 1_000_000_000, 'camera')   # data: numpy
    np.testing.assert_array_equal(image_to_rgb(rclpy_message), rgb)
    np.testing.assert_array_equal(image_to_rgb(rosbags_message), rgb)
    for encoding in ('nv21', 'nv24', 'yuyv', 'bayer_grbg8', 'bgr16'):
        fields = vars(encode(rgb, encoding, padding=2, big_endian=True))
        np.testing.assert_array_equal(image_to_rgb(Image(**fields)), reference(rgb, encoding))


# ----------------------------------------------------------------------------------- refusals
STILL_REFUSED = [
    ('16UC1', r'more than 8 bits.*depth or data image'),
    ('32FC1', r'more than 8 bits.*depth or data image'),
    ('64FC1', r'more than 8 bits.*depth or data image'),
    ('rgba16', r'more than 8 bits.*mono16, rgb16, bgr16'),
    ('bgra16', r'more than 8 bits.*mono16, rgb16, bgr16'),
    ('bayer_rggb16', r'more than 8 bits.*mono16, rgb16, bgr16'),
    ('bayer_grbg16', r'more than 8 bits.*mono16, rgb16, bgr16'),
    ('nv12', r'YUV layout this node does not read'),
    ('i420', r'YUV layout this node does not read'),
    ('yuv420', r'YUV layout this node does not read'),
    ('8UC3', r'unsupported encoding'),
    ('jpeg', r'unsupported encoding'),
    ('YUYV', r'unsupported encoding'),
    ('', r'unsupported encoding'),
]


@pytest.mark.parametrize('encoding,reason', STILL_REFUSED)
@pytest.mark.parametrize('is_bigendian', [0, 1])
def test_other_encodings_are_refused_by_name(encoding, reason, is_bigendian):
    message = SimpleNamespace(height=4, width=4, encoding=encoding, is_bigendian=is_bigendian,
                              step=4 * 8, data=bytes(4 * 4 * 8 * 3))
    with pytest.raises(ImageConversionError, match=rf"encoding '{re.escape(encoding)}'.*"):
        image_to_rgb(message)
    with pytest.raises(ImageConversionError, match=reason):
        image_to_rgb(message)


@pytest.mark.parametrize('change,match', [
    ({'height': 0}, r'empty image'),
    ({'width': 0, 'step': 0}, r'empty image'),
    ({'height': 100_000, 'width': 100_000, 'step': 300_000}, r'too large'),
    ({'step': 29}, r'step 29 is shorter than a rgb8 row of 10 pixels \(30 bytes\)'),
    ({'data': bytes(100)}, r'data has 100 bytes, fewer than height\*step = 6\*30 = 180'),
    ({'data': b''}, r'data has 0 bytes'),
])
def test_malformed_messages_are_refused_with_a_reason(rgb, change, match):
    message = encode(rgb, 'rgb8')
    for field, value in change.items():
        setattr(message, field, value)
    with pytest.raises(ImageConversionError, match=match):
        image_to_rgb(message)


# bytes of a row of step for a 6x10 image, and the rows of step its data holds
ROW_LAYOUT = {**{name: (2, 6) for name in YUV422}, 'nv21': (1, 9), 'nv24': (1, 18),
              **{name: (1, 6) for name in BAYER}, 'mono16': (2, 6), 'rgb16': (6, 6),
              'bgr16': (6, 6)}
ROWS_NAME = {'nv21': r'height\*3/2', 'nv24': r'height\*3'}


@pytest.mark.parametrize('encoding', sorted(ROW_LAYOUT))
def test_too_short_step_or_data_is_refused_for_every_layout(rgb, encoding):
    bytes_per_pixel, rows = ROW_LAYOUT[encoding]
    row = 10 * bytes_per_pixel
    message = encode(rgb, encoding, padding=2)
    assert (message.step, len(message.data)) == (row + 2, rows * (row + 2))
    message.step = row - 1
    with pytest.raises(ImageConversionError, match=rf'step {row - 1} is shorter than a '
                       rf'{encoding} row of 10 pixels \({row} bytes\)'):
        image_to_rgb(message)
    message = encode(rgb, encoding)
    message.data = message.data[:-1]        # one byte short: the last row is cut
    with pytest.raises(ImageConversionError, match=rf'data has {rows * row - 1} bytes, fewer '
                       rf'than {ROWS_NAME.get(encoding, "height")}\*step = {rows}\*{row}'):
        image_to_rgb(message)


@pytest.mark.parametrize('encoding', sorted(ROWS_NAME))
def test_a_planar_image_without_its_chroma_plane_is_refused(rgb, encoding):
    message = encode(rgb, encoding)
    message.data = message.data[:6 * message.step]      # the Y plane only: height * step bytes
    with pytest.raises(ImageConversionError, match=r'fewer than height\*3'):
        image_to_rgb(message)


@pytest.mark.parametrize('encoding,height,width,match', [
    *[(name, 4, 5, rf'{name} needs an even width .* got 5') for name in YUV422],
    ('nv21', 4, 5, r'nv21 needs an even width .* got 5'),
    ('nv21', 5, 4, r'nv21 needs an even height .* got 5'),
    *[(name, 2, 8, rf'{name} needs at least 3x3 pixels to demosaic, got 8x2')
      for name in BAYER],
    ('bayer_rggb8', 8, 1, r'needs at least 3x3 pixels to demosaic, got 1x8'),
])
def test_sizes_the_layout_cannot_hold_are_refused(encoding, height, width, match):
    message = SimpleNamespace(height=height, width=width, encoding=encoding, is_bigendian=0,
                              step=2 * width, data=bytes(2 * width * height * 3))
    with pytest.raises(ImageConversionError, match=match):
        image_to_rgb(message)


@pytest.mark.parametrize('encoding,height,width', [
    ('nv24', 1, 1), ('nv24', 3, 5), ('bayer_bggr8', 3, 3), ('bayer_gbrg8', 5, 3), ('uyvy', 1, 2),
    ('mono16', 1, 1), ('nv21', 2, 2)])
def test_smallest_and_odd_sizes_the_layout_holds(encoding, height, width):
    rgb = np.random.default_rng(5).integers(0, 256, (height, width, 3), dtype=np.uint8)
    np.testing.assert_array_equal(image_to_rgb(encode(rgb, encoding, padding=1)),
                                  reference(rgb, encoding))


def test_size_guard_is_larger_than_8k():
    assert MAX_IMAGE_PIXELS > 7680 * 4320


def test_array_to_image_fields_round_trip(rgb):
    mono = rgb[..., 0]
    assert array_to_image_fields(rgb)['encoding'] == 'rgb8'
    fields = array_to_image_fields(mono)
    assert (fields['encoding'], fields['step']) == ('mono8', 10)
    np.testing.assert_array_equal(image_to_rgb(SimpleNamespace(**fields))[..., 1], mono)
    with pytest.raises(ImageConversionError):
        array_to_image_fields(rgb.astype(np.float32))


# ---------------------------------------------------------------------------------- cv_bridge
class _FakeBridge:
    """Stands in for cv_bridge.CvBridge: decodes like our converter, or fails like the PyPI
    wheel."""

    def __init__(self, broken: bool):
        self.broken = broken

    def imgmsg_to_cv2(self, message, desired_encoding):
        if self.broken:
            raise AttributeError("'numpy.ndarray' object has no attribute 'tostring'")
        assert desired_encoding == 'rgb8'
        return image_to_rgb(message)


def test_cv_bridge_is_used_only_when_it_works(rgb):
    assert cv_bridge_decoder(_FakeBridge(broken=True)) is None
    decoder = cv_bridge_decoder(_FakeBridge(broken=False))
    np.testing.assert_array_equal(decoder(encode(rgb, 'bgr8', 2), 3), rgb)
    assert decoder_name() in ('cv_bridge', 'numpy')


def test_cv_bridge_decodes_only_the_8_bit_rgb_and_mono_encodings(rgb, monkeypatch):
    """A working bridge gets rgb8, bgr8, rgba8, bgra8 and mono8; every other encoding is ours,
    whatever the bridge would make of it."""
    bridged = []

    def bridge(message, channels):
        bridged.append(message.encoding)
        return np.zeros((message.height, message.width, 3), np.uint8)

    monkeypatch.setattr(image_conversion, '_active_decoder', lambda: ('cv_bridge', bridge))
    for encoding in ALL:
        image_to_rgb(encode(rgb, encoding))
    assert bridged == ['rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8']
