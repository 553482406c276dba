"""What the geometric collision predictors (the trajectory oracle, the classical baseline) know
about the dodgeball world, read from a dataset's manifest: the head camera, the robot's
collision volume, gravity and the range of ball sizes.

The package never imports the simulator (``sim/``), so this is the evaluation's own reading of
what the simulator wrote into ``manifest.json`` (see :mod:`rnn_perception.data.dodgeball_dataset`):
``camera_info`` for the camera, ``parameters`` for the robot, the physics and the throws. The
camera is the nominal one: a randomised scene jitters each episode's camera, and a predictor that
only knows its calibration does not know that jitter.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Tuple

import numpy as np

from .robot_volume import RobotVolume


@dataclass(frozen=True)
class PinholeView:
    """A calibrated pinhole camera: ``k`` (3x3 intrinsics, ROS convention, pixel centres at
    integer coordinates), the optical centre in the world and the rotation whose columns are the
    optical axes (x right, y down, z forward) in the world frame."""

    k: np.ndarray
    position_m: np.ndarray
    world_from_optical: np.ndarray
    width: int
    height: int

    @classmethod
    def from_camera_info(cls, info: Mapping) -> 'PinholeView':
        """The camera of a manifest's ``camera_info``."""
        return cls(k=np.asarray(info['k'], dtype=float),
                   position_m=np.asarray(info['position_m'], dtype=float),
                   world_from_optical=np.asarray(info['world_from_optical'], dtype=float),
                   width=int(info['width']), height=int(info['height']))

    @property
    def focal_px(self) -> float:
        """The focal length in pixels (square pixels)."""
        return float(self.k[0, 0])

    def to_optical(self, points_m: np.ndarray) -> np.ndarray:
        """(..., 3) world points in the optical frame (z: depth along the optical axis)."""
        return (np.asarray(points_m, dtype=float) - self.position_m) @ self.world_from_optical

    def project(self, points_m: np.ndarray) -> np.ndarray:
        """(..., 2) pixel coordinates (u right, v down) of (..., 3) world points; points behind
        the camera give meaningless pixels (check :meth:`sees`)."""
        optical = self.to_optical(points_m)
        homogeneous = optical @ self.k.T
        return homogeneous[..., :2] / homogeneous[..., 2:3]

    def sees(self, points_m: np.ndarray) -> np.ndarray:
        """Whether each world point is in front of the camera and projects inside the image."""
        depth = self.to_optical(points_m)[..., 2]
        with np.errstate(divide='ignore', invalid='ignore'):
            pixels = self.project(points_m)
        inside = ((pixels[..., 0] >= -0.5) & (pixels[..., 0] <= self.width - 0.5)
                  & (pixels[..., 1] >= -0.5) & (pixels[..., 1] <= self.height - 0.5))
        return (depth > 0) & inside

    def rays(self, pixels: np.ndarray) -> np.ndarray:
        """(..., 3) unit directions in the world frame of the rays through (..., 2) pixels."""
        pixels = np.asarray(pixels, dtype=float)
        homogeneous = np.concatenate([pixels, np.ones(pixels.shape[:-1] + (1,))], axis=-1)
        optical = homogeneous @ np.linalg.inv(self.k).T
        optical /= np.linalg.norm(optical, axis=-1, keepdims=True)
        return optical @ self.world_from_optical.T


@dataclass(frozen=True)
class DodgeballScene:
    """The camera, the robot, gravity, the camera rate and the ball sizes of a dataset."""

    camera: PinholeView
    robot: RobotVolume
    gravity_mps2: float
    fps: float
    ball_radius_range_m: Tuple[float, float]

    @classmethod
    def from_manifest(cls, manifest: Mapping) -> 'DodgeballScene':
        """The scene a dodgeball dataset's ``manifest.json`` describes."""
        parameters = manifest['parameters']
        low, high = parameters['throw']['ball_radius_m']
        return cls(camera=PinholeView.from_camera_info(manifest['camera_info']),
                   robot=RobotVolume(**parameters['robot']),
                   gravity_mps2=float(parameters['physics']['gravity_mps2']),
                   fps=float(manifest['fps']), ball_radius_range_m=(float(low), float(high)))
