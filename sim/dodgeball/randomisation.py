"""Domain randomisation of the dodgeball scene: how far an episode's world strays from the plain
one (flat colours, white light, nothing but the robot), so that a model trained on it survives
real rooms and real cameras.

Presets (``randomisation.scene`` in the config, ``--randomise``):

* ``plain``: today's scene; draws nothing, so plain datasets are byte-identical to before;
* ``train``: procedural floor and backdrop textures (checker, stripes, value noise), tinted
  light of any direction, clutter (boxes and cylinders beside the throwing lane), and the head
  camera's height, pitch and field of view jittered per episode;
* ``held_out``: for evaluation only: texture families (bricks, dots, waves) and strongly
  coloured light that ``train`` never uses, more clutter, larger camera jitter.

What a camera does to the image (exposure, blur, noise, JPEG) is not here: it is
``rnn_perception.data.sensor_effects``, applied by the trainer per epoch.

An episode's randomisation draws from its own stream, ``SeedSequence(seed, spawn_key=(index,
RANDOMISATION_STREAM))``, so it never shifts the throws and colours ``sample_look`` draws. The
clutter is solid: the rare ball that hits it (9 in 1000 throws of seed 1) bounces off, and its
label is what physics then makes of it.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Callable

import numpy as np

PLAIN, TRAIN, HELD_OUT = 'plain', 'train', 'held_out'
RANDOMISATION_STREAM = 1
TEXTURE_SIZE = 128

Range = tuple[float, float]


@dataclass(frozen=True)
class Clutter:
    """A static box or upright cylinder standing on the floor (half extents x, y, z; a
    cylinder's radius is the larger of x and y)."""

    position_m: tuple[float, float]
    half_extents_m: tuple[float, float, float]
    cylinder: bool
    rgba: tuple[float, ...]


@dataclass(frozen=True)
class SceneVariation:
    """What one episode's randomisation changes; ``None`` textures keep flat colours."""

    floor_texture: np.ndarray | None        # (S, S, 3) uint8 RGB
    backdrop_texture: np.ndarray | None
    light_rgb: tuple[float, float, float]
    clutter: tuple[Clutter, ...]
    camera_height_offset_m: float
    camera_pitch_offset_deg: float
    camera_fov_offset_deg: float


PLAIN_VARIATION = SceneVariation(None, None, (1.0, 1.0, 1.0), (), 0.0, 0.0, 0.0)


# ----------------------------------------------------------------------------------- textures
def _two_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    hue = rng.random()
    first = colorsys.hsv_to_rgb(hue, rng.uniform(0.0, 0.6), rng.uniform(0.3, 0.95))
    second = colorsys.hsv_to_rgb((hue + rng.uniform(-0.2, 0.2)) % 1.0, rng.uniform(0.0, 0.6),
                                 rng.uniform(0.3, 0.95))
    return np.array(first) * 255, np.array(second) * 255


def _blend(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    first, second = _two_colours(rng)
    return (mask[..., None] * first + (1 - mask[..., None]) * second).astype(np.uint8)


def _grid() -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinates in [0, 1) of a texture's pixels."""
    rows, columns = np.mgrid[0:TEXTURE_SIZE, 0:TEXTURE_SIZE] / TEXTURE_SIZE
    return rows, columns


def checker(rng: np.random.Generator) -> np.ndarray:
    rows, columns = _grid()
    cells = int(rng.integers(2, 9))
    return _blend(((rows * cells).astype(int) + (columns * cells).astype(int)) % 2 * 1.0, rng)


def stripes(rng: np.random.Generator) -> np.ndarray:
    rows, columns = _grid()
    angle, count = rng.uniform(0, np.pi), int(rng.integers(3, 12))
    phase = rows * np.cos(angle) + columns * np.sin(angle)
    return _blend((np.sin(2 * np.pi * count * phase) > 0) * 1.0, rng)


def value_noise(rng: np.random.Generator) -> np.ndarray:
    import cv2

    coarse = rng.random((int(rng.integers(4, 17)),) * 2).astype(np.float32)
    smooth = cv2.resize(coarse, (TEXTURE_SIZE, TEXTURE_SIZE), interpolation=cv2.INTER_CUBIC)
    return _blend(np.clip(smooth, 0, 1), rng)


def bricks(rng: np.random.Generator) -> np.ndarray:
    rows, columns = _grid()
    courses = int(rng.integers(4, 10))
    row = (rows * courses).astype(int)
    shifted = columns * courses / 2 + 0.5 * (row % 2)
    mortar = ((rows * courses) % 1 < 0.12) | (shifted % 1 < 0.06)
    return _blend(mortar * 1.0, rng)


def dots(rng: np.random.Generator) -> np.ndarray:
    rows, columns = _grid()
    count = int(rng.integers(3, 9))
    distance = np.hypot((rows * count) % 1 - 0.5, (columns * count) % 1 - 0.5)
    return _blend((distance < rng.uniform(0.15, 0.4)) * 1.0, rng)


def waves(rng: np.random.Generator) -> np.ndarray:
    rows, columns = _grid()
    count = rng.uniform(2, 6)
    return _blend(0.5 + 0.5 * np.sin(2 * np.pi * count * (rows + 0.15 * np.sin(
        2 * np.pi * 3 * columns))), rng)


Texture = Callable[[np.random.Generator], np.ndarray]


# ------------------------------------------------------------------------------------ presets
@dataclass(frozen=True)
class RandomisationPreset:
    """The ranges one preset draws from."""

    textures: tuple[Texture, ...]
    texture_probability: float
    light_saturation: Range
    clutter_count: tuple[int, int]
    camera_height_m: float          # +- jitter
    camera_pitch_deg: float
    camera_fov_deg: float

    def sample(self, rng: np.random.Generator) -> SceneVariation:
        """One episode's variation."""
        def texture() -> np.ndarray | None:
            if rng.random() >= self.texture_probability:
                return None
            return self.textures[int(rng.integers(len(self.textures)))](rng)

        light = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*self.light_saturation), 1.0)
        return SceneVariation(
            floor_texture=texture(), backdrop_texture=texture(),
            light_rgb=tuple(map(float, light)),
            clutter=tuple(_clutter(rng) for _ in range(
                int(rng.integers(self.clutter_count[0], self.clutter_count[1] + 1)))),
            camera_height_offset_m=float(rng.uniform(-1, 1) * self.camera_height_m),
            camera_pitch_offset_deg=float(rng.uniform(-1, 1) * self.camera_pitch_deg),
            camera_fov_offset_deg=float(rng.uniform(-1, 1) * self.camera_fov_deg))


def _clutter(rng: np.random.Generator) -> Clutter:
    """An object beside the throwing lane (|y| >= 1.2 m) or in front of the backdrop."""
    side = rng.choice([-1.0, 1.0])
    position = (float(rng.uniform(1.0, 9.0)), float(side * rng.uniform(1.2, 4.0)))
    if rng.random() < 0.25:
        position = (float(rng.uniform(9.5, 11.0)), float(rng.uniform(-4.0, 4.0)))
    colour = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.0, 0.8), rng.uniform(0.2, 0.9))
    return Clutter(position, (float(rng.uniform(0.1, 0.5)), float(rng.uniform(0.1, 0.5)),
                              float(rng.uniform(0.1, 0.8))),
                   bool(rng.random() < 0.5), (*map(float, colour), 1.0))


PRESETS = {
    TRAIN: RandomisationPreset(
        textures=(checker, stripes, value_noise), texture_probability=0.7,
        light_saturation=(0.0, 0.3), clutter_count=(0, 4),
        camera_height_m=0.05, camera_pitch_deg=4.0, camera_fov_deg=6.0),
    HELD_OUT: RandomisationPreset(
        textures=(bricks, dots, waves), texture_probability=0.9,
        light_saturation=(0.3, 0.6), clutter_count=(2, 6),
        camera_height_m=0.08, camera_pitch_deg=6.0, camera_fov_deg=8.0),
}
SCENE_PRESETS = (PLAIN, *PRESETS)


def sample_variation(preset: str, seed: int, index: int) -> SceneVariation:
    """Episode ``index``'s variation under ``preset`` (nothing drawn for ``plain``)."""
    if preset == PLAIN:
        return PLAIN_VARIATION
    stream = np.random.SeedSequence(seed, spawn_key=(index, RANDOMISATION_STREAM))
    return PRESETS[preset].sample(np.random.default_rng(stream))
