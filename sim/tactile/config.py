"""Parameters of the tactile slip simulator (defaults: ``config/tactile_sim.yaml``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sim.config import SimulatorConfig, load_config

DEFAULTS_PATH = Path(__file__).resolve().parents[2] / 'config' / 'tactile_sim.yaml'

Range = tuple[float, float]


@dataclass(frozen=True)
class EpisodeConfig:
    """Timing and the world."""

    duration_s: float
    rate_hz: float
    physics_hz: float
    gravity_mps2: float
    frame_id: str

    @property
    def steps_per_sample(self) -> int:
        """Whole physics steps per sensor sample."""
        return max(1, round(self.physics_hz / self.rate_hz))

    @property
    def num_samples(self) -> int:
        """Sensor samples per episode (the first at t = 0)."""
        return int(round(self.duration_s * self.rate_hz))


@dataclass(frozen=True)
class ObjectConfig:
    """How the grasped bar and its contact are sampled."""

    mass_kg: Range
    length_m: Range
    height_m: Range
    grasp_offset_share: Range
    initial_angle_deg: Range
    mu_static: Range
    kinetic_ratio: Range
    patch_radius_m: Range
    grip_ref_n: float
    damping_linear: float
    damping_angular: float


@dataclass(frozen=True)
class GripConfig:
    """How grip-force schedules are sampled (see ``sim.tactile.grip``)."""

    initial_safety: Range
    release_probability: float
    release_start_s: Range
    release_ramp_s: Range
    release_level: Range
    dwell_s: Range
    regrip_probability: float
    regrip_ramp_s: Range
    regrip_level: Range
    squeeze_level: Range
    reflex_probability: float
    reflex_delay_s: Range
    weight_margin: float
    tremor: float


@dataclass(frozen=True)
class SensorConfig:
    """The BioTac-like sensor model (see ``sim.tactile.sensor``)."""

    skin_shear_modulus_pa: float
    skin_spread_m: float
    shear_shift: float
    electrode_baseline: float
    electrode_pressure_gain: float
    electrode_stretch_gain: float
    electrode_offset_std: float
    electrode_noise_std: float
    pdc_baseline: float
    pdc_gain: float
    pdc_offset_std: float
    pdc_noise_std: float
    pac_slip_gain: float
    pac_incipient_gain: float
    pac_burst: float
    pac_grip_gain: float
    pac_floor: float
    pac_resonance_hz: float


@dataclass(frozen=True)
class TactileConfig(SimulatorConfig):
    """Everything ``python -m sim tactile`` needs."""

    episode: EpisodeConfig
    object: ObjectConfig
    grip: GripConfig
    sensor: SensorConfig

    def _checks(self):
        episode, obj, grip, sensor = self.episode, self.object, self.grip, self.sensor
        yield from super()._checks()
        yield episode.rate_hz > 0, f'rate_hz must be positive, got {episode.rate_hz}'
        yield episode.physics_hz >= episode.rate_hz, (
            f'physics_hz ({episode.physics_hz}) cannot be below rate_hz ({episode.rate_hz})')
        yield episode.duration_s * episode.rate_hz >= 2, (
            'duration_s must hold at least 2 samples at rate_hz, got '
            f'{episode.duration_s} s at {episode.rate_hz} Hz')
        yield (
            episode.duration_s <= 600,
            f'duration_s must be at most 600, got {episode.duration_s}',
        )
        yield episode.gravity_mps2 > 0, 'gravity_mps2 must be positive'
        yield bool(episode.frame_id), 'frame_id must not be empty'
        for name in ('mass_kg', 'length_m', 'height_m', 'grasp_offset_share', 'mu_static',
                     'kinetic_ratio', 'patch_radius_m'):
            low, high = getattr(obj, name)
            yield 0 < low <= high, (
                f'object.{name} must be a range 0 < low <= high, got {[low, high]}')
        yield obj.grasp_offset_share[1] <= 0.5, 'object.grasp_offset_share must not exceed 0.5'
        yield obj.kinetic_ratio[1] <= 1, 'object.kinetic_ratio must not exceed 1'
        low, high = obj.initial_angle_deg
        yield -90 < low <= high < 90, 'object.initial_angle_deg must be a range inside (-90, 90)'
        yield obj.grip_ref_n > 0, 'object.grip_ref_n must be positive'
        yield obj.damping_linear >= 0 and obj.damping_angular >= 0, (
            'object damping must be non-negative')
        for name in ('initial_safety', 'release_start_s', 'release_ramp_s', 'release_level',
                     'dwell_s', 'regrip_ramp_s', 'regrip_level', 'squeeze_level',
                     'reflex_delay_s'):
            low, high = getattr(grip, name)
            yield (
                0 < low <= high,
                f'grip.{name} must be a range 0 < low <= high, got {[low, high]}',
            )
        yield all(0 <= p <= 1 for p in (grip.release_probability, grip.regrip_probability,
                                        grip.reflex_probability)), (
            'grip probabilities must be in [0, 1]')
        yield grip.weight_margin >= 1, 'grip.weight_margin must be at least 1'
        yield 0 <= grip.tremor < 0.5, 'grip.tremor must be in [0, 0.5)'
        yield 0 < sensor.pac_resonance_hz < episode.physics_hz / 2, (
            'sensor.pac_resonance_hz must be in (0, physics_hz / 2)')
        yield sensor.skin_shear_modulus_pa > 0 and sensor.skin_spread_m > 0, (
            'sensor skin parameters must be positive')
        stds = ('electrode_offset_std', 'electrode_noise_std', 'pdc_offset_std', 'pdc_noise_std',
                'pac_floor')
        yield all(getattr(sensor, name) >= 0 for name in stds), (
            'sensor offsets, noise and floor must be non-negative')


def load_tactile_config(config_path: str | Path | None = None,
                        overrides: dict | None = None) -> TactileConfig:
    """Defaults, then the YAML file at ``config_path``, then ``overrides``; validated."""
    return load_config(TactileConfig, DEFAULTS_PATH, config_path, overrides)
