"""Camera effects (``rnn_perception.data.sensor_effects``) do what a camera does, checked against
OpenCV's own operations, and random cameras are reproducible from their seed."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from rnn_perception.data.sensor_effects import (HELD_OUT_EFFECTS, jpeg_round_trip,
                                                motion_blur_kernel, SensorEffects,
                                                TRAINING_EFFECTS)


@pytest.fixture
def frames():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (4, 24, 32, 3), dtype=np.uint8)


def test_the_default_camera_changes_nothing_and_returns_a_copy(frames):
    out = SensorEffects().apply(frames, np.random.default_rng(0))
    np.testing.assert_array_equal(out, frames)
    assert out is not frames


def test_exposure_scales_brightness_then_applies_the_tone_curve(frames):
    out = SensorEffects(gain=0.5, gamma=2.0).apply(frames, np.random.default_rng(0))
    expected = 255 * (np.clip(frames / 255 * 0.5, 0, 1) ** 2.0)
    assert np.abs(out - expected).max() <= 0.5 + 1e-6


def test_motion_blur_is_a_normalised_line(frames):
    kernel = motion_blur_kernel(5, 0.0)
    assert kernel.sum() == pytest.approx(1.0) and (kernel[2] > 0).all() and kernel[0].sum() == 0
    out = SensorEffects(blur_px=5).apply(frames, np.random.default_rng(0))
    expected = cv2.blur(frames[0], (5, 1), borderType=cv2.BORDER_REFLECT)
    assert np.abs(out[0].astype(int) - expected).max() <= 1


def test_noise_has_the_asked_spread_and_is_reproducible():
    grey = np.full((8, 64, 64, 3), 128, np.uint8)
    first = SensorEffects(noise_sigma=10.0).apply(grey, np.random.default_rng(3))
    again = SensorEffects(noise_sigma=10.0).apply(grey, np.random.default_rng(3))
    np.testing.assert_array_equal(first, again)
    assert (first.astype(float) - 128).std() == pytest.approx(10.0, rel=0.05)
    assert abs((first.astype(float) - 128).mean()) < 0.2


def test_mono_and_jpeg_match_opencv(frames):
    mono = SensorEffects(mono=True).apply(frames, np.random.default_rng(0))
    grey = np.stack([cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in frames])
    assert np.abs(mono[..., 0].astype(int) - grey).max() <= 1
    assert (mono[..., 0] == mono[..., 2]).all()
    jpeg = SensorEffects(jpeg_quality=40).apply(frames, np.random.default_rng(0))
    ok, data = cv2.imencode('.jpg', cv2.cvtColor(frames[1], cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, 40])
    expected = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(jpeg[1], expected)
    np.testing.assert_array_equal(jpeg_round_trip(frames[1], 40), expected)


@pytest.mark.parametrize('ranges', [TRAINING_EFFECTS, HELD_OUT_EFFECTS])
def test_random_cameras_stay_in_their_ranges_and_repeat_from_the_seed(ranges):
    cameras = [ranges.sample(np.random.default_rng(seed)) for seed in range(200)]
    assert cameras[7] == ranges.sample(np.random.default_rng(7))
    for camera in cameras:
        assert ranges.gain[0] <= camera.gain <= ranges.gain[1]
        assert camera.blur_px == 0 or ranges.blur_px[0] <= camera.blur_px <= ranges.blur_px[1]
        assert camera.jpeg_quality is None or (
            ranges.jpeg_quality[0] <= camera.jpeg_quality <= ranges.jpeg_quality[1])
    share = np.mean([camera.jpeg_quality is not None for camera in cameras])
    assert share == pytest.approx(ranges.jpeg_probability, abs=0.1)
