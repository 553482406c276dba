"""Throws: where a ball starts, what it is aimed at, and the launch velocity that gets it there.

The aim is chosen analytically, the launch velocity by a drag-free ballistic solve (the ball
flies without damping in the simulation too); whether the ball then really touches the
robot is left to the physics, which makes the label.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from sim.dodgeball.config import ThrowConfig
from sim.dodgeball.robot import ROBOT, RobotBody

# Aimed hits stay within this share of the torso radius of its axis, so they do not graze.
HIT_OFFSET_FRACTION = 0.6


class AimKind(enum.Enum):
    """What a throw is aimed at."""

    HIT = 'hit'              # a point on the torso
    NEAR_MISS = 'near_miss'  # just outside the torso silhouette
    WIDE_MISS = 'wide_miss'  # well clear of the robot


@dataclass(frozen=True)
class Throw:
    """A ball's initial state and what it was aimed at."""

    start_m: np.ndarray
    velocity_mps: np.ndarray
    spin_radps: np.ndarray
    radius_m: float
    aim_offset_m: float
    aimed_at_robot: bool

    @property
    def speed_mps(self) -> float:
        """Launch speed."""
        return float(np.linalg.norm(self.velocity_mps))


def launch_velocity(start_m: np.ndarray, target_m: np.ndarray, flight_time_s: float,
                    gravity_mps2: float) -> np.ndarray:
    """Velocity at ``start_m`` that reaches ``target_m`` after ``flight_time_s`` under gravity."""
    rise_for_gravity = np.array([0.0, 0.0, 0.5 * gravity_mps2 * flight_time_s])
    return (np.asarray(target_m) - np.asarray(start_m)) / flight_time_s + rise_for_gravity


def aim_point(start_m: np.ndarray, aim_height_m: float, aim_offset_m: float) -> np.ndarray:
    """Where a flight from ``start_m`` should pass so as to miss the torso axis by the offset.

    Seen from above the flight is a straight line; the returned point, at ``aim_height_m``,
    is that line's closest approach to the torso axis, ``|aim_offset_m|`` away from it.
    Positive offsets pass on the thrower's left (the robot's right for a throw from
    straight ahead); 0 aims at the axis.
    """
    to_axis = -np.asarray(start_m[:2], dtype=float)
    distance = np.linalg.norm(to_axis)
    towards_axis = to_axis / distance
    across = np.array([-towards_axis[1], towards_axis[0]])
    # The line leaves the start at angle asin(offset / distance) from the axis direction.
    sin_angle = aim_offset_m / distance
    cos_angle = np.sqrt(1.0 - sin_angle**2)
    closest = aim_offset_m * (cos_angle * across - sin_angle * towards_axis)
    return np.array([closest[0], closest[1], aim_height_m])


def aimed_throw(start_m, aim_height_m: float, aim_offset_m: float, flight_time_s: float,
                radius_m: float, gravity_mps2: float, *, aimed_at_robot: bool,
                spin_radps=(0.0, 0.0, 0.0)) -> Throw:
    """A throw from ``start_m`` whose centre passes the aim point after ``flight_time_s``."""
    start_m = np.asarray(start_m, dtype=float)
    target = aim_point(start_m, aim_height_m, aim_offset_m)
    return Throw(start_m=start_m,
                 velocity_mps=launch_velocity(start_m, target, flight_time_s, gravity_mps2),
                 spin_radps=np.asarray(spin_radps, dtype=float), radius_m=radius_m,
                 aim_offset_m=aim_offset_m, aimed_at_robot=aimed_at_robot)


def sample_aim_kind(rng: np.random.Generator, config: ThrowConfig) -> AimKind:
    """Hit, near miss or wide miss, in the configured shares."""
    draw = rng.random()
    if draw < config.hit_share:
        return AimKind.HIT
    if draw < config.hit_share + config.near_miss_share:
        return AimKind.NEAR_MISS
    return AimKind.WIDE_MISS


def sample_aim_offset(rng: np.random.Generator, kind: AimKind, config: ThrowConfig,
                      radius_m: float, robot: RobotBody = ROBOT) -> float:
    """Signed aim offset from the torso axis for an aim ``kind``."""
    if kind is AimKind.HIT:
        return rng.uniform(-1.0, 1.0) * HIT_OFFSET_FRACTION * robot.torso_radius_m
    side = rng.choice((-1.0, 1.0))
    if kind is AimKind.NEAR_MISS:
        clearance = rng.uniform(*config.near_miss_clearance_m)
        return side * (robot.torso_radius_m + radius_m + clearance)
    return side * rng.uniform(*config.wide_miss_offset_m)


def sample_throw(rng: np.random.Generator, config: ThrowConfig, gravity_mps2: float,
                 kind: AimKind | None = None) -> Throw:
    """A random throw from ahead of the robot; ``kind`` forces the aim (e.g. for distractors)."""
    kind = kind or sample_aim_kind(rng, config)
    radius = rng.uniform(*config.ball_radius_m)
    start = np.array([rng.uniform(*config.distance_m), rng.uniform(*config.lateral_m),
                      rng.uniform(*config.release_height_m)])
    flight_time = rng.uniform(*config.flight_time_s)
    aim_height = rng.uniform(*config.aim_height_m)
    offset = sample_aim_offset(rng, kind, config, radius)
    spin_axis = rng.normal(size=3)
    spin = spin_axis / np.linalg.norm(spin_axis) * rng.uniform(0.0, config.spin_radps)
    return aimed_throw(start, aim_height, offset, flight_time, radius, gravity_mps2,
                       aimed_at_robot=kind is AimKind.HIT, spin_radps=spin)
