"""The robot's collision volume, and whether a ball on a ballistic flight touches it.

The simulator's robot (``sim/dodgeball/robot.py``) is one static body at the world origin: a
cylinder base from the floor up, a cylinder torso on it and a sphere head, all about the z axis.
The simulator labels a throw a hit when physics reports a contact between the ball and that body
before the ball lands; a drag-free flight touches it when the ball's centre comes within the
ball's radius of one of the three shapes before the centre is down to one radius above the
floor. This module decides that for many flights at once (numpy, vectorised over samples),
which is what turns a distribution over trajectories into a hit probability.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Points at which a flight is checked while it is within reach of the robot's axis. Over the
# widest crossing (the base's diameter plus the largest ball's) they are about 1.2 cm apart;
# the clearance of a curved surface changes only to second order between them.
CROSSING_SAMPLES = 64


@dataclass(frozen=True)
class RobotVolume:
    """The robot's three shapes, as the simulator's ``RobotBody`` (field names and metres)."""

    base_radius_m: float
    base_height_m: float
    torso_radius_m: float
    torso_top_m: float
    head_radius_m: float
    head_centre_height_m: float

    @property
    def reach_m(self) -> float:
        """Largest horizontal distance of the robot's surface from its axis."""
        return max(self.base_radius_m, self.torso_radius_m, self.head_radius_m)

    def distance(self, points_m: np.ndarray) -> np.ndarray:
        """(...) distance of (..., 3) points to the robot's surface (0 inside it)."""
        points_m = np.asarray(points_m, dtype=float)
        radial = np.hypot(points_m[..., 0], points_m[..., 1])
        height = points_m[..., 2]
        base = _cylinder_distance(radial, height, self.base_radius_m, 0.0, self.base_height_m)
        torso = _cylinder_distance(radial, height, self.torso_radius_m, self.base_height_m,
                                   self.torso_top_m)
        head = np.maximum(np.hypot(radial, height - self.head_centre_height_m)
                          - self.head_radius_m, 0.0)
        return np.minimum(np.minimum(base, torso), head)

    def hits(self, start_m: np.ndarray, velocity_mps: np.ndarray, radius_m,
             gravity_mps2: float) -> np.ndarray:
        """Whether balls of ``radius_m`` flying from ``start_m`` (..., 3) at ``velocity_mps``
        (..., 3) at time 0, drag-free under ``gravity_mps2``, touch the robot at a time >= 0
        before they land."""
        start_m = np.asarray(start_m, dtype=float)
        velocity_mps = np.asarray(velocity_mps, dtype=float)
        radius_m = np.broadcast_to(np.asarray(radius_m, dtype=float), start_m.shape[:-1])
        # Seen from above the flight is a straight line: find when it is within reach.
        across, along = start_m[..., :2], velocity_mps[..., :2]
        speed2 = np.maximum(np.sum(along * along, axis=-1), 1e-12)
        closest_s = -np.sum(across * along, axis=-1) / speed2
        miss2 = np.sum((across + along * closest_s[..., None]) ** 2, axis=-1)
        reach2 = (self.reach_m + radius_m) ** 2
        half_window_s = np.sqrt(np.maximum(reach2 - miss2, 0.0) / speed2)
        times = (closest_s[..., None]
                 + half_window_s[..., None] * np.linspace(-1.0, 1.0, CROSSING_SAMPLES))
        times = np.maximum(times, 0.0)
        points = (start_m[..., None, :] + velocity_mps[..., None, :] * times[..., None])
        points[..., 2] -= 0.5 * gravity_mps2 * times ** 2
        flying = times <= _landing_time_s(start_m[..., 2], velocity_mps[..., 2], radius_m,
                                          gravity_mps2)[..., None]
        touching = self.distance(points) <= radius_m[..., None]
        return (miss2 < reach2) & np.any(touching & flying, axis=-1)


def _cylinder_distance(radial: np.ndarray, height: np.ndarray, radius: float, bottom: float,
                       top: float) -> np.ndarray:
    """Distance to a solid upright cylinder about the z axis, from radial distance and
    height."""
    outside = np.maximum(radial - radius, 0.0)
    above_or_below = np.maximum(np.maximum(bottom - height, height - top), 0.0)
    return np.hypot(outside, above_or_below)


def _landing_time_s(height_m: np.ndarray, climb_mps: np.ndarray, radius_m: np.ndarray,
                    gravity_mps2: float) -> np.ndarray:
    """When a centre at ``height_m`` rising at ``climb_mps`` comes down to one radius above the
    floor (0 if it is already there)."""
    above = np.maximum(height_m - radius_m, 0.0)
    return (climb_mps + np.sqrt(climb_mps ** 2 + 2.0 * gravity_mps2 * above)) / gravity_mps2
