"""One grasp → one episode: sample the bar and the grip schedule, run the physics, sense.

Timeline: sample k has stamp k / rate_hz. Its pose is the bar's at that instant; its tactile
values come from the ``steps_per_sample`` physics steps of the period that ends there (for
sample 0 the period before t = 0, when the grip holds at its initial value).
"""
from __future__ import annotations

import math

import numpy as np

from rnn_perception.data.tactile_dataset import TactileEpisode
from sim.pipeline import episode_rng
from sim.tactile.config import EpisodeConfig, ObjectConfig, TactileConfig
from sim.tactile.grip import GripSchedule, sample_grip_schedule
from sim.tactile.physics import GraspDynamics, GraspObject, critical_grip
from sim.tactile.sensor import ContactTrace, sensor_offsets, tactile_samples


def sample_object(rng: np.random.Generator, config: ObjectConfig) -> tuple[GraspObject, float]:
    """A random bar and contact, and its initial angle (rad)."""
    length = float(rng.uniform(*config.length_m))
    mu_static = float(rng.uniform(*config.mu_static))
    obj = GraspObject(
        mass_kg=float(rng.uniform(*config.mass_kg)), length_m=length,
        height_m=float(rng.uniform(*config.height_m)),
        grasp_offset_m=length * float(rng.uniform(*config.grasp_offset_share)),
        mu_static=mu_static, mu_kinetic=mu_static * float(rng.uniform(*config.kinetic_ratio)),
        patch_radius_ref_m=float(rng.uniform(*config.patch_radius_m)),
        grip_ref_n=config.grip_ref_n, damping_linear=config.damping_linear,
        damping_angular=config.damping_angular)
    return obj, math.radians(float(rng.uniform(*config.initial_angle_deg)))


def run_grasp(obj: GraspObject, angle: float, grip: GripSchedule, episode: EpisodeConfig):
    """Simulate the grasp; return per-sample poses, per-step contact trace and slide."""
    steps = episode.steps_per_sample
    num_samples = episode.num_samples
    dt = 1.0 / (episode.rate_hz * steps)
    dynamics = GraspDynamics(obj, episode.gravity_mps2, dt, angle)
    n_steps = num_samples * steps
    times = (np.arange(n_steps) + 1 - steps) * dt  # step j ends at times[j]
    grip_n = grip.at(times)
    wrench, twist = np.zeros((n_steps, 3)), np.zeros((n_steps, 3))
    sticking, load = np.zeros(n_steps, dtype=bool), np.zeros(n_steps)
    poses = np.zeros((num_samples, 4))
    start = dynamics.contact_on_bar()
    max_slide = 0.0
    reflexed = False
    for j in range(n_steps):
        result = dynamics.step(float(grip_n[j]))
        if not result.sticking and not reflexed and times[j] > 0:
            grip_n = grip.reflex_grip(times, grip_n, float(times[j]))
            reflexed = True
        wrench[j], twist[j] = result.wrench, result.slip_twist
        sticking[j], load[j] = result.sticking, result.utilisation
        if (j + 1) % steps == 0:
            poses[j // steps] = dynamics.x, 0.0, dynamics.z, dynamics.angle
            along, across = dynamics.contact_on_bar()
            max_slide = max(max_slide, math.hypot(along - start[0], across - start[1]))
    trace = ContactTrace(grip_n=grip_n, wrench=wrench, slip_twist=twist, sticking=sticking,
                         utilisation=load, patch_radius_m=np.array(
                             [obj.patch_radius(f) for f in grip_n]))
    return poses, trace, times, max_slide


class EpisodeSimulator:
    """Makes episode ``i`` from the config and ``i`` alone, whichever process calls it.

    Episode ``i`` draws everything (bar, schedule, sensor offsets, noise) from
    :func:`sim.pipeline.episode_rng` of the seed and ``i``, in a fixed order.
    """

    def __init__(self, config: TactileConfig):
        self._config = config

    def __call__(self, index: int) -> TactileEpisode:
        config, episode = self._config, self._config.episode
        rng = episode_rng(config.seed, index)
        obj, angle = sample_object(rng, config.object)
        gravity = episode.gravity_mps2
        critical = critical_grip(obj, gravity, angle, obj.mu_static)
        weight_hold = obj.mass_kg * gravity / (2 * obj.mu_kinetic)
        grip = sample_grip_schedule(rng, config.grip, critical, weight_hold, episode.duration_s)
        offsets = sensor_offsets(rng, config.sensor)
        poses, trace, times, max_slide = run_grasp(obj, angle, grip, episode)
        steps = episode.steps_per_sample
        tactile = tactile_samples(trace, config.sensor, steps, 1.0 / (episode.rate_hz * steps),
                                  offsets, rng)
        slipping = ~trace.sticking.reshape(-1, steps).all(axis=1)
        slip_steps = np.flatnonzero(~trace.sticking)
        return TactileEpisode(
            index=index, stamp_s=np.arange(episode.num_samples) / episode.rate_hz,
            tactile=tactile, pose=poses, grip_force_n=trace.grip_n[steps - 1::steps],
            slipping=slipping, slipped=bool(slip_steps.size),
            slip_onset_s=float(times[slip_steps[0]]) if slip_steps.size else math.inf,
            mass_kg=obj.mass_kg, length_m=obj.length_m, height_m=obj.height_m,
            grasp_offset_m=obj.grasp_offset_m, mu_static=obj.mu_static,
            mu_kinetic=obj.mu_kinetic, patch_radius_m=obj.patch_radius_ref_m,
            initial_angle_rad=angle, critical_grip_n=critical, grip_kind=grip.kind,
            max_slide_m=max_slide)

    def close(self) -> None:
        """Nothing to release (the dodgeball simulator's pybullet needs it)."""
