"""Camera image conversion (no DDS): every accepted encoding, row padding, and refusals."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnn_perception.data.image_conversion import (MAX_IMAGE_PIXELS, SUPPORTED_ENCODINGS,
                                                  ImageConversionError, array_to_image_fields,
                                                  cv_bridge_decoder, decoder_name, image_to_rgb)


def encode(rgb: np.ndarray, encoding: str, padding: int = 0) -> SimpleNamespace:
    """An Image-like message holding ``rgb`` in ``encoding``, each row followed by ``padding``
    junk bytes (what a camera driver with aligned rows sends)."""
    alpha = np.full(rgb.shape[:2] + (1,), 77, np.uint8)
    pixels = {
        'rgb8': rgb,
        'bgr8': rgb[..., ::-1],
        'rgba8': np.concatenate([rgb, alpha], axis=2),
        'bgra8': np.concatenate([rgb[..., ::-1], alpha], axis=2),
        'mono8': rgb[..., :1],
    }[encoding]
    height, width, channels = pixels.shape
    rows = np.full((height, width * channels + padding), 0xEE, np.uint8)
    rows[:, :width * channels] = pixels.reshape(height, -1)
    return SimpleNamespace(height=height, width=width, encoding=encoding, is_bigendian=0,
                           step=width * channels + padding, data=rows.tobytes())


def expected_rgb(rgb: np.ndarray, encoding: str) -> np.ndarray:
    return np.repeat(rgb[..., :1], 3, axis=2) if encoding == 'mono8' else rgb


@pytest.fixture
def rgb():
    return np.random.default_rng(0).integers(0, 256, (6, 10, 3), dtype=np.uint8)


@pytest.mark.parametrize('encoding', sorted(SUPPORTED_ENCODINGS))
@pytest.mark.parametrize('padding', [0, 3])
def test_every_encoding_decodes_to_rgb(rgb, encoding, padding):
    result = image_to_rgb(encode(rgb, encoding, padding))
    assert result.dtype == np.uint8 and result.shape == (6, 10, 3)
    np.testing.assert_array_equal(result, expected_rgb(rgb, encoding))


@settings(max_examples=60, deadline=None)
@given(height=st.integers(1, 40), width=st.integers(1, 40), padding=st.integers(0, 9),
       encoding=st.sampled_from(sorted(SUPPORTED_ENCODINGS)), seed=st.integers(0, 2**31))
def test_any_size_and_padding(height, width, padding, encoding, seed):
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    np.testing.assert_array_equal(
        image_to_rgb(encode(rgb, encoding, padding)), expected_rgb(rgb, encoding)
    )


def test_extra_trailing_data_is_ignored(rgb):
    message = encode(rgb, 'rgb8')
    message.data += b'\x00' * 16
    np.testing.assert_array_equal(image_to_rgb(message), rgb)


def test_rclpy_and_rosbags_messages(rgb):
    from sensor_msgs.msg import Image

    from rnn_perception.data.bags import rgb_image_message

    rclpy_message = Image(**array_to_image_fields(rgb))        # data: array.array
    rosbags_message = rgb_image_message(rgb, 1_000_000_000, 'camera')   # data: numpy
    np.testing.assert_array_equal(image_to_rgb(rclpy_message), rgb)
    np.testing.assert_array_equal(image_to_rgb(rosbags_message), rgb)


@pytest.mark.parametrize('encoding,is_bigendian', [
    ('mono16', 1), ('mono16', 0), ('16UC1', 1), ('32FC1', 0), ('rgb16', 1), ('64FC1', 0)])
def test_wide_and_depth_encodings_are_refused(encoding, is_bigendian):
    message = SimpleNamespace(height=4, width=4, encoding=encoding, is_bigendian=is_bigendian,
                              step=4 * 4, data=bytes(64))
    with pytest.raises(ImageConversionError, match=rf"{encoding}.*more than 8 bits.*depth"):
        image_to_rgb(message)


@pytest.mark.parametrize('change,match', [
    ({'encoding': 'yuv422'}, r"unsupported encoding 'yuv422'"),
    ({'encoding': 'bayer_rggb8'}, r'unsupported encoding'),
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
