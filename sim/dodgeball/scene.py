"""Per-episode appearance: colours and lighting, drawn at random so that no single pixel
value gives the ball (or the label) away."""
from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

ROBOT_RGBA = (0.55, 0.57, 0.6, 1.0)


@dataclass(frozen=True)
class SceneLook:
    """Colours (RGBA in [0, 1]) and the light of one episode."""

    floor_rgba: tuple[float, ...]
    backdrop_rgba: tuple[float, ...]
    ball_rgba: tuple[float, ...]
    distractor_rgba: tuple[float, ...]
    light_direction: tuple[float, ...]
    light_ambient: float
    light_diffuse: float


def random_rgba(rng: np.random.Generator, saturation: tuple[float, float],
                value: tuple[float, float]) -> tuple[float, ...]:
    """An opaque colour of any hue with saturation and value drawn from the given ranges."""
    rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*saturation), rng.uniform(*value))
    return (*map(float, rgb), 1.0)


def sample_look(rng: np.random.Generator) -> SceneLook:
    """A random look: muted floor and backdrop, a bright ball of any hue, light from above."""
    light = np.array([rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0.5, 2.0)])
    return SceneLook(
        floor_rgba=random_rgba(rng, saturation=(0.0, 0.5), value=(0.4, 1.0)),
        backdrop_rgba=random_rgba(rng, saturation=(0.0, 0.6), value=(0.2, 0.9)),
        ball_rgba=random_rgba(rng, saturation=(0.4, 1.0), value=(0.5, 1.0)),
        distractor_rgba=random_rgba(rng, saturation=(0.4, 1.0), value=(0.5, 1.0)),
        light_direction=tuple(map(float, light / np.linalg.norm(light))),
        light_ambient=float(rng.uniform(0.3, 0.7)),
        light_diffuse=float(rng.uniform(0.3, 0.7)),
    )
