"""What a real camera does to a frame that a renderer does not: exposure, motion blur, sensor
noise, JPEG compression, a mono sensor. One :class:`SensorEffects` is one camera's setting for a
whole episode (a camera does not change its exposure or codec from frame to frame); it is applied
in a camera's order: exposure (gain, then gamma) -> motion blur -> noise -> mono -> JPEG.

Used to train a model that survives real cameras (random effects per episode,
:class:`EffectRanges`), to make evaluation sets with effects never used in training, and to
measure robustness (one effect at a time).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np

from .compressed_image import encode, JPEG

Range = Tuple[float, float]


@dataclass(frozen=True)
class SensorEffects:
    """One camera's effects; the defaults change nothing."""

    gain: float = 1.0                    # exposure: brightness x gain (clipped)
    gamma: float = 1.0                   # tone curve: out = in ** gamma, in [0, 1]
    blur_px: int = 0                     # motion blur: a line kernel this many pixels long
    blur_angle_deg: float = 0.0          # ... at this angle (0 = horizontal)
    noise_sigma: float = 0.0             # Gaussian noise, 8-bit levels
    mono: bool = False                   # a mono8 sensor: grey copied to the three channels
    jpeg_quality: Optional[int] = None   # JPEG-compressed at this quality (1-100)

    def apply(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``(T, H, W, 3)`` uint8 RGB -> the same frames as this camera would deliver them (a
        new array; ``rng`` draws the noise)."""
        out = frames
        if self.gain != 1.0 or self.gamma != 1.0:
            levels = np.arange(256, dtype=np.float32) / 255.0
            curve = 255.0 * np.clip(levels * self.gain, 0.0, 1.0) ** self.gamma
            out = np.rint(curve).astype(np.uint8)[out]          # one lookup per pixel
        if self.blur_px > 1:
            kernel = motion_blur_kernel(self.blur_px, self.blur_angle_deg)
            out = np.stack([cv2.filter2D(frame, -1, kernel, borderType=cv2.BORDER_REFLECT)
                            for frame in out])
        if self.noise_sigma > 0:
            # OpenCV's generator, seeded from rng: several times faster than numpy's normals
            cv2.setRNGSeed(int(rng.integers(2**31)))
            noise = np.empty(out.shape, np.int16)
            cv2.randn(noise.reshape(-1, out.shape[-2] * out.shape[-1]), 0.0, self.noise_sigma)
            out = np.clip(out + noise, 0, 255).astype(np.uint8)
        if self.mono:
            grey = np.rint(out @ np.array([0.299, 0.587, 0.114], np.float32))
            out = np.repeat(grey.astype(np.uint8)[..., None], 3, axis=-1)
        if self.jpeg_quality is not None:
            out = np.stack([jpeg_round_trip(frame, self.jpeg_quality) for frame in out])
        return out if out is not frames else frames.copy()


def motion_blur_kernel(length: int, angle_deg: float) -> np.ndarray:
    """A normalised ``length`` x ``length`` kernel: a line through the centre at ``angle_deg``."""
    kernel = np.zeros((length, length), np.float32)
    centre = (length - 1) / 2
    direction = np.array([np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))])
    for t in np.linspace(-centre, centre, 2 * length):
        column, row = np.rint(centre + t * direction).astype(int)
        kernel[row, column] = 1.0
    return kernel / kernel.sum()


def jpeg_round_trip(rgb: np.ndarray, quality: int) -> np.ndarray:
    """``rgb`` encoded as JPEG at ``quality`` as a camera's compressed stream carries it, and
    decoded again (OpenCV's libjpeg)."""
    _, data = encode(rgb, JPEG, int(quality))
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@dataclass(frozen=True)
class EffectRanges:
    """Where random cameras' effects are drawn from (uniformly; each effect on with its
    probability)."""

    gain: Range
    gamma: Range
    blur_probability: float
    blur_px: Tuple[int, int]
    noise_sigma: Range
    mono_probability: float
    jpeg_probability: float
    jpeg_quality: Tuple[int, int]

    def sample(self, rng: np.random.Generator) -> SensorEffects:
        """One random camera."""
        blur = rng.random() < self.blur_probability
        jpeg = rng.random() < self.jpeg_probability
        return SensorEffects(
            gain=float(rng.uniform(*self.gain)), gamma=float(rng.uniform(*self.gamma)),
            blur_px=int(rng.integers(self.blur_px[0], self.blur_px[1] + 1)) if blur else 0,
            blur_angle_deg=float(rng.uniform(0.0, 180.0)),
            noise_sigma=float(rng.uniform(*self.noise_sigma)),
            mono=bool(rng.random() < self.mono_probability),
            jpeg_quality=int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
            if jpeg else None)


# Training: the everyday range of a robot's camera.
TRAINING_EFFECTS = EffectRanges(
    gain=(0.6, 1.5), gamma=(0.8, 1.25), blur_probability=0.3, blur_px=(2, 5),
    noise_sigma=(0.0, 12.0), mono_probability=0.1, jpeg_probability=0.5, jpeg_quality=(25, 95))
# Held out for evaluation only: harsher than anything in training.
HELD_OUT_EFFECTS = EffectRanges(
    gain=(0.45, 1.7), gamma=(0.7, 1.4), blur_probability=0.5, blur_px=(4, 7),
    noise_sigma=(8.0, 18.0), mono_probability=0.2, jpeg_probability=0.7, jpeg_quality=(15, 40))
