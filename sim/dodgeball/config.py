"""Parameters of the dodgeball simulator (defaults: ``config/dodgeball_sim.yaml``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sim.config import SimulatorConfig, load_config
from sim.dodgeball.randomisation import SCENE_PRESETS

DEFAULTS_PATH = Path(__file__).resolve().parents[2] / 'config' / 'dodgeball_sim.yaml'

Range = tuple[float, float]


@dataclass(frozen=True)
class CameraConfig:
    """The head camera and its renderer."""

    image_size: int
    fps: float
    depth: bool
    vertical_fov_deg: float
    pitch_deg: float
    near_m: float
    far_m: float
    shadows: bool


BAG_IMAGE_FORMATS = ('raw', 'jpeg', 'png')


@dataclass(frozen=True)
class RandomisationConfig:
    """Domain randomisation of the scene (see ``sim.dodgeball.randomisation``)."""

    scene: str


@dataclass(frozen=True)
class BagCameraConfig:
    """How the bag records the camera: its message and, optionally, its own resolution."""

    image: str
    resolution: tuple[int, int] | None       # (width, height); None: the dataset's frames
    jpeg_quality: int


@dataclass(frozen=True)
class PhysicsConfig:
    """Physics stepping and ball dynamics."""

    physics_hz: float
    gravity_mps2: float
    ball_mass_kg: float
    ball_restitution: float

    def steps_per_frame(self, fps: float) -> int:
        """Whole physics steps between camera frames, so frames fall on physics steps."""
        return max(1, round(self.physics_hz / fps))


@dataclass(frozen=True)
class ThrowConfig:
    """How throws are sampled (see ``sim.dodgeball.throws``)."""

    distance_m: Range
    lateral_m: Range
    release_height_m: Range
    flight_time_s: Range
    ball_radius_m: Range
    spin_radps: float
    aim_height_m: Range
    hit_share: float
    near_miss_share: float
    near_miss_clearance_m: Range
    wide_miss_offset_m: Range
    distractor_probability: float


@dataclass(frozen=True)
class EpisodeConfig:
    """When an episode stops."""

    tail_after_contact_s: float
    max_duration_s: float
    passed_margin_m: float


@dataclass(frozen=True)
class DodgeballConfig(SimulatorConfig):
    """Everything ``python -m sim dodgeball`` needs."""

    camera: CameraConfig
    randomisation: RandomisationConfig
    bag_camera: BagCameraConfig
    physics: PhysicsConfig
    throw: ThrowConfig
    episode: EpisodeConfig

    def dataset_parameters(self) -> dict:
        """As every simulator's, less the bag's camera, which only shapes the bag."""
        parameters = super().dataset_parameters()
        del parameters['bag_camera']
        return parameters

    def _checks(self):
        camera, physics, throw, episode = self.camera, self.physics, self.throw, self.episode
        yield from super()._checks()
        yield 8 <= camera.image_size <= 1024, (
            f'image size must be between 8 and 1024 pixels, got {camera.image_size}')
        yield camera.fps > 0, f'fps must be positive, got {camera.fps}'
        yield camera.fps <= physics.physics_hz, (
            f'fps ({camera.fps}) cannot exceed physics_hz ({physics.physics_hz})')
        yield 0 < camera.vertical_fov_deg < 180, (
            f'vertical_fov_deg must be in (0, 180), got {camera.vertical_fov_deg}')
        yield 0 < camera.near_m < camera.far_m, 'camera needs 0 < near_m < far_m'
        yield self.randomisation.scene in SCENE_PRESETS, (
            f'randomisation.scene must be one of {", ".join(SCENE_PRESETS)}, '
            f'got {self.randomisation.scene!r}')
        bag_camera = self.bag_camera
        yield bag_camera.image in BAG_IMAGE_FORMATS, (
            f'bag_camera.image must be one of {", ".join(BAG_IMAGE_FORMATS)}, '
            f'got {bag_camera.image!r}')
        yield bag_camera.resolution is None or all(
            8 <= side <= 4096 for side in bag_camera.resolution), (
            f'bag_camera.resolution sides must be between 8 and 4096 pixels, '
            f'got {bag_camera.resolution}')
        yield 1 <= bag_camera.jpeg_quality <= 100, (
            f'bag_camera.jpeg_quality must be in 1..100, got {bag_camera.jpeg_quality}')
        yield physics.gravity_mps2 > 0, 'gravity_mps2 must be positive'
        yield physics.ball_mass_kg > 0, 'ball_mass_kg must be positive'
        yield 0 <= physics.ball_restitution <= 1, 'ball_restitution must be in [0, 1]'
        for name in ('distance_m', 'release_height_m', 'flight_time_s', 'ball_radius_m',
                     'near_miss_clearance_m', 'wide_miss_offset_m', 'aim_height_m'):
            low, high = getattr(throw, name)
            yield 0 < low <= high, (
                f'throw.{name} must be a range 0 < low <= high, got {[low, high]}')
        yield throw.lateral_m[0] <= throw.lateral_m[1], 'throw.lateral_m must have low <= high'
        yield throw.spin_radps >= 0, 'throw.spin_radps must be non-negative'
        shares = (throw.hit_share, throw.near_miss_share, throw.distractor_probability)
        yield all(0 <= share <= 1 for share in shares), (
            'throw shares and probabilities must be in [0, 1]')
        yield throw.hit_share + throw.near_miss_share <= 1, (
            'throw.hit_share + throw.near_miss_share must not exceed 1')
        yield episode.tail_after_contact_s >= 0, (
            'episode.tail_after_contact_s must be non-negative')
        yield episode.max_duration_s > 0, 'episode.max_duration_s must be positive'
        yield episode.passed_margin_m >= 0, 'episode.passed_margin_m must be non-negative'


def load_dodgeball_config(config_path: str | Path | None = None,
                          overrides: dict | None = None) -> DodgeballConfig:
    """Defaults, then the YAML file at ``config_path``, then ``overrides``; validated."""
    return load_config(DodgeballConfig, DEFAULTS_PATH, config_path, overrides)
