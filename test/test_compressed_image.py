"""CompressedImage decoding: real JPEG and PNG bytes made by OpenCV, the format strings
compressed_image_transport writes, libjpeg's reduced decoding, and what is refused."""
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from rnn_perception.data.compressed_image import (codec_of, CompressedImageDecoder,
                                                  CompressedImageError)
from rnn_perception.data.image_conversion import ImageConversionError

MODEL_SIZE = (64, 64)


def pattern(height: int, width: int) -> np.ndarray:
    """A smooth colour pattern with edges: gradients, a disc and a checker (RGB)."""
    rows, columns = np.mgrid[0:height, 0:width]
    image = np.stack([255 * columns / width, 255 * rows / height,
                      128 + 100 * np.sin(columns / 23.0)], axis=-1)
    image[((rows // 40) + (columns // 40)) % 2 == 0, 2] = 30
    cv2.circle(image, (width // 3, height // 2), height // 5, (250, 40, 40), -1)
    return image.astype(np.uint8)


def compressed(rgb: np.ndarray, image_format: str = 'rgb8; jpeg compressed bgr8',
               extension: str = '.jpg', quality: int = 90) -> SimpleNamespace:
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if extension == '.jpg' else []
    ok, data = cv2.imencode(extension, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    assert ok
    return SimpleNamespace(format=image_format, data=data.tobytes())


@pytest.mark.parametrize('image_format, codec', [
    ('jpeg', 'jpeg'), ('jpg', 'jpeg'), ('png', 'png'), ('rgb8; jpeg compressed bgr8', 'jpeg'),
    ('bgr8; jpeg compressed bgr8', 'jpeg'), ('mono8; png compressed mono8', 'png'),
    (' RGB8; PNG compressed BGR8 ', 'png')])
def test_the_formats_compressed_image_transport_writes(image_format, codec):
    assert codec_of(image_format) == codec


@pytest.mark.parametrize('image_format, reason', [
    ('tiff', 'unsupported compressed format'), ('h264', 'unsupported compressed format'),
    ('', 'unsupported compressed format'),
    ('16UC1; compressedDepth png', 'depth image'), ('32FC1; compressedDepth rvl', 'depth image')])
def test_other_formats_are_refused_by_name(image_format, reason):
    with pytest.raises(CompressedImageError, match=reason):
        codec_of(image_format)


def test_png_decodes_exactly_and_jpeg_closely():
    rgb = pattern(48, 70)
    decode = CompressedImageDecoder(MODEL_SIZE)
    pixels, size = decode(compressed(rgb, 'bgr8; png compressed bgr8', '.png'))
    np.testing.assert_array_equal(pixels, rgb)
    assert size == (70, 48)
    pixels, _ = CompressedImageDecoder(MODEL_SIZE)(compressed(rgb, quality=95))
    assert pixels.shape == rgb.shape and pixels.dtype == np.uint8
    assert np.abs(pixels.astype(int) - rgb).mean() < 4


def test_mono_png_is_grey_in_three_channels():
    grey = pattern(30, 40)[..., 1]
    ok, data = cv2.imencode('.png', grey)
    message = SimpleNamespace(format='mono8; png compressed mono8', data=data.tobytes())
    pixels, _ = CompressedImageDecoder(MODEL_SIZE)(message)
    np.testing.assert_array_equal(pixels, np.repeat(grey[..., None], 3, axis=2))


@pytest.mark.parametrize('height, width, scale', [(480, 640, 4), (720, 1280, 8), (100, 100, 1),
                                                  (128, 130, 2)])
def test_jpeg_is_decoded_at_the_smallest_scale_that_keeps_the_model_size(height, width, scale):
    rgb = pattern(height, width)
    decode = CompressedImageDecoder(MODEL_SIZE)
    first, size = decode(compressed(rgb))
    assert first.shape[:2] == (height, width) and decode.scale == 1   # size unknown: in full
    second, size_again = decode(compressed(rgb))
    assert decode.scale == scale and size == size_again == (width, height)
    assert second.shape[:2] == (-(-height // scale), -(-width // scale))
    assert min(second.shape[:2]) >= 64
    # what the model sees: reduced decoding then area resize, against full decoding then resize
    model_input = cv2.resize(second, MODEL_SIZE, interpolation=cv2.INTER_AREA)
    reference = cv2.resize(first, MODEL_SIZE, interpolation=cv2.INTER_AREA)
    assert np.abs(model_input.astype(int) - reference).mean() < 3


def test_a_camera_that_changes_size_is_decoded_in_full_once_then_reduced_again():
    decode = CompressedImageDecoder(MODEL_SIZE)
    for _ in range(2):
        decode(compressed(pattern(720, 1280)))
    assert decode.scale == 8
    pixels, size = decode(compressed(pattern(480, 640)))
    assert size == (640, 480) and pixels.shape[:2] == (480, 640) and decode.scale == 1
    pixels, size = decode(compressed(pattern(480, 640)))
    assert size == (640, 480) and pixels.shape[:2] == (120, 160) and decode.scale == 4
    pixels, size = decode(compressed(pattern(60, 80)))        # smaller than the model: in full
    assert size == (80, 60) and pixels.shape[:2] == (60, 80)


def bad_messages():
    good = compressed(pattern(64, 64))
    ok, png = cv2.imencode('.png', pattern(64, 64))
    return {
        'empty': (SimpleNamespace(format='jpeg', data=b''), 'empty jpeg payload'),
        'truncated jpeg': (SimpleNamespace(format='jpeg', data=good.data[:len(good.data) // 2]),
                           'corrupt or truncated jpeg'),
        'corrupt jpeg': (SimpleNamespace(format='jpeg', data=good.data[:3] + bytes(2000)),
                         'corrupt or truncated jpeg'),
        'truncated png': (SimpleNamespace(format='png', data=png.tobytes()[:100]),
                          'corrupt or truncated png'),
        'png bytes called jpeg': (SimpleNamespace(format='rgb8; jpeg compressed bgr8',
                                                  data=png.tobytes()), 'are not a jpeg file'),
        'garbage': (SimpleNamespace(format='png', data=b'hello world'), 'are not a png file'),
        'unknown format': (SimpleNamespace(format='webp', data=good.data), 'webp'),
    }


@pytest.mark.parametrize('case', bad_messages())
def test_bad_payloads_are_refused_with_the_reason(case):
    message, reason = bad_messages()[case]
    decode = CompressedImageDecoder(MODEL_SIZE)
    with pytest.raises(CompressedImageError, match=reason) as raised:
        decode(message)
    assert isinstance(raised.value, ImageConversionError)   # the node's one "rejected" path
