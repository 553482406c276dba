r"""A BioTac-like fingertip: 19 electrodes, static pressure PDC, dynamic pressure PAC (counts).

The sensor sits on one finger; its pad lies in the gripper's x-z plane with the contact centre
C at the origin. It sees the contact through the skin, step by step of the physics
(``physics.StepResult``), and reports one sample per sensor period: electrodes and PDC
averaged over the period, PAC as the RMS of the vibration over it (what slip detectors make of
the BioTac's 2.2 kHz PAC stream). Every value is in BioTac-like 12-bit counts.

Contact mechanics (per finger: half the grip F/2, half the friction wrench)
---------------------------------------------------------------------------
* patch radius a = a_ref (F / F_ref)^{1/3} (Hertz, as in ``physics``);
* tangential skin displacement δ = (f / 2) / k_t with Mindlin's stiffness k_t = 8 G a, and
  twist φ = (τ / 2) / k_φ with Lubkin's k_φ = (16/3) G a³ (G: ``skin_shear_modulus_pa``).
  As the grip falls, a shrinks and the same load twists the skin more (φ ∝ 1/F): the shear
  distribution shifts well before the bar moves;
* the pressure distribution is a Gaussian of width s_p² = (a/2)² + s_skin² carrying F/2,
  centred at c = κ δ (shear pushes the pressure centroid along, κ = ``shear_shift``).

Electrode i at e_i (three hexagonal rings: 1 + 6 + 12, 4.5 mm apart) with a fixed
sensitivity direction n_i (its radial direction turned 45°, standing for the curved core):

    E_i = E_0 + o_i + g_p p(e_i) [kPa] + g_s (n_i · u(e_i)) [mm] w_i + noise,
    u(e) = δ + φ ŷ × (e - c) = δ + φ ((e - c)_z, -(e - c)_x),
    w_i = exp(-|e_i - c|² / 2 (a + 3 mm)²)

PDC = P_0 + o_pdc + g_pdc F + noise (the fluid pressure follows the grip).

PAC: a skin resonance (``pac_resonance_hz``, damping ratio 0.15) driven by white noise of
amplitude

    A = g_slip (|v_C| + a |ω|)                      gross slip: speed at the patch edge
      + g_inc max(0, dS/dt),  S = 1 - (1 - ρ)^{2/3}  incipient slip: Cattaneo–Mindlin micro-slip
                                                      annulus, ρ = load / static limit (≤ 1)
      + g_grip |dF/dt|                              actuator vibration while the grip changes

plus a kick of ``pac_burst`` (times 1 + slip speed / 5 cm/s on re-stick) at every stick↔slip
transition; PAC = sqrt(floor² + mean(x²)) over each period. As the grip ramps down, S grows
ever faster towards ρ = 1, so PAC rises *before* gross slip.

Per-sensor offsets o (per episode) and noise are Gaussian (``*_offset_std``, ``*_noise_std``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

from sim.tactile.config import SensorConfig

NUM_ELECTRODES = 19
ELECTRODE_SPACING_M = 0.0045
_RESONANCE_DAMPING = 0.15
_STRETCH_REACH_M = 0.003


@cache
def electrode_layout() -> tuple[np.ndarray, np.ndarray]:
    """Electrode positions (19, 2) in metres in the pad's (x, z) and unit directions (19, 2)."""
    positions = [(0.0, 0.0)]
    for ring in (1, 2):  # hexagonal rings: 6 and 12 electrodes
        corners = [np.array([math.cos(k * math.pi / 3), math.sin(k * math.pi / 3)])
                   for k in range(6)]
        for k in range(6):
            for j in range(ring):
                point = (ring * corners[k] + j * (corners[(k + 1) % 6] - corners[k]))
                positions.append(tuple(point * ELECTRODE_SPACING_M))
    positions = np.array(positions)
    angles = np.arctan2(positions[:, 1], positions[:, 0]) + math.pi / 4
    angles[0] = math.pi / 4
    return positions, np.stack([np.cos(angles), np.sin(angles)], axis=1)


@dataclass
class ContactTrace:
    """Per physics step: what the contact did (arrays of length n_steps)."""

    grip_n: np.ndarray
    wrench: np.ndarray        # (n, 3) f_x, f_z, τ on the bar, both fingers together
    slip_twist: np.ndarray    # (n, 3) v_C,x, v_C,z, ω
    sticking: np.ndarray      # (n,) bool
    utilisation: np.ndarray   # (n,) holding wrench / static ellipse
    patch_radius_m: np.ndarray


@cache
def _resonator(resonance_hz: float, time_step: float) -> np.ndarray:
    """Impulse response of the skin resonance (a two-pole filter), scaled to unit noise gain.

    Cut where it has decayed below 1e-9 of its start, so convolving with it is the filter.
    """
    angle = 2 * math.pi * resonance_hz * time_step
    radius = math.exp(-_RESONANCE_DAMPING * angle)
    length = int(math.ceil(math.log(1e-9) / math.log(radius))) + 2
    impulse = radius ** np.arange(length) * np.sin(angle * (np.arange(length) + 1)) / math.sin(
        angle)  # h[k] of 1 / (1 - 2 r cos(angle) z^-1 + r^2 z^-2)
    return impulse / math.sqrt(float(np.sum(impulse ** 2)))


def sensor_offsets(rng: np.random.Generator, config: SensorConfig) -> np.ndarray:
    """Per-sensor offsets of the 19 electrodes and PDC (PAC is AC-coupled: none)."""
    return np.r_[config.electrode_offset_std * rng.standard_normal(NUM_ELECTRODES),
                 config.pdc_offset_std * rng.standard_normal(), 0.0]


def pac_drive(trace: ContactTrace, config: SensorConfig, time_step: float) -> np.ndarray:
    """The vibration amplitude A per physics step (see the module docstring)."""
    v_x, v_z, omega = trace.slip_twist.T
    slip_speed = np.hypot(v_x, v_z) + trace.patch_radius_m * np.abs(omega)
    slip_speed[trace.sticking] = 0.0
    load = np.clip(trace.utilisation, 0.0, 1.0)
    annulus = 1.0 - (1.0 - load) ** (2.0 / 3.0)
    annulus_rate = np.maximum(np.diff(annulus, prepend=annulus[0]), 0.0) / time_step
    annulus_rate[~trace.sticking] = 0.0
    grip_rate = np.abs(np.diff(trace.grip_n, prepend=trace.grip_n[0])) / time_step
    return (config.pac_slip_gain * slip_speed + config.pac_incipient_gain * annulus_rate
            + config.pac_grip_gain * grip_rate)


def pac_kicks(trace: ContactTrace, config: SensorConfig) -> np.ndarray:
    """Kick amplitude per step: one at every stick↔slip transition."""
    kicks = np.zeros(len(trace.sticking))
    previous = np.r_[trace.sticking[0], trace.sticking[:-1]]
    changed = previous != trace.sticking
    v_x, v_z, omega = trace.slip_twist.T
    speed_before = np.r_[0.0, (np.hypot(v_x, v_z) + trace.patch_radius_m * np.abs(omega))[:-1]]
    restick = changed & trace.sticking
    kicks[changed] = config.pac_burst
    kicks[restick] *= 1.0 + speed_before[restick] / 0.05
    return kicks


def tactile_samples(trace: ContactTrace, config: SensorConfig, steps_per_sample: int,
                    time_step: float, offsets: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
    """(T, 21) float32 samples: electrodes 0..18, PDC, PAC; T = n_steps / steps_per_sample."""
    n_steps = len(trace.grip_n)
    num_samples = n_steps // steps_per_sample
    grip = trace.grip_n
    a = trace.patch_radius_m
    modulus = config.skin_shear_modulus_pa
    shear = 0.5 * trace.wrench[:, :2] / (8.0 * modulus * a)[:, None]          # δ (m)
    twist = 0.5 * trace.wrench[:, 2] / (16.0 / 3.0 * modulus * a ** 3)        # φ (rad)
    centre = config.shear_shift * shear
    positions, directions = electrode_layout()
    rel = positions[None, :, :] - centre[:, None, :]                          # (n, 19, 2)
    dist2 = np.sum(rel ** 2, axis=2)
    spread2 = (a / 2) ** 2 + config.skin_spread_m ** 2
    pressure_kpa = (0.5 * grip / (2 * math.pi * spread2))[:, None] * np.exp(
        -dist2 / (2 * spread2[:, None])) / 1000.0
    displacement = shear[:, None, :] + twist[:, None, None] * np.stack(
        [rel[..., 1], -rel[..., 0]], axis=2)
    stretch_mm = 1000.0 * np.sum(displacement * directions[None], axis=2) * np.exp(
        -dist2 / (2 * ((a + _STRETCH_REACH_M) ** 2))[:, None])
    electrodes = (config.electrode_pressure_gain * pressure_kpa
                  + config.electrode_stretch_gain * stretch_mm)
    excitation = pac_drive(trace, config, time_step) * rng.standard_normal(n_steps)
    excitation += pac_kicks(trace, config) * rng.choice([-1.0, 1.0], n_steps)
    vibration = np.convolve(excitation, _resonator(config.pac_resonance_hz, time_step))[:n_steps]

    def per_sample(values: np.ndarray) -> np.ndarray:
        return values[:num_samples * steps_per_sample].reshape(
            num_samples, steps_per_sample, *values.shape[1:]).mean(axis=1)

    samples = np.empty((num_samples, NUM_ELECTRODES + 2))
    samples[:, :NUM_ELECTRODES] = config.electrode_baseline + per_sample(electrodes)
    samples[:, NUM_ELECTRODES] = config.pdc_baseline + config.pdc_gain * per_sample(grip)
    samples[:, NUM_ELECTRODES + 1] = np.sqrt(config.pac_floor ** 2 + per_sample(vibration ** 2))
    noise_std = np.r_[np.full(NUM_ELECTRODES, config.electrode_noise_std), config.pdc_noise_std,
                      0.0]
    samples += offsets + noise_std * rng.standard_normal(samples.shape)
    return samples.astype(np.float32)
