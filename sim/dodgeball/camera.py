"""The robot's head camera as a pinhole model, in the conventions of ROS ``CameraInfo``.

The renderer draws with an OpenGL frustum built from the same numbers; this module is the
pure-numpy side of that camera (intrinsics, pose, projection, depth), so labels and tests
need no renderer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OPTICAL_FRAME_ID = 'camera_optical_frame'


@dataclass(frozen=True)
class PinholeCamera:
    """A camera at ``position_m`` looking along world +x, pitched by ``pitch_deg`` (up > 0)."""

    width: int
    height: int
    vertical_fov_deg: float
    near_m: float
    far_m: float
    position_m: tuple[float, float, float]
    pitch_deg: float

    def intrinsics(self) -> np.ndarray:
        """3x3 K of the rendered images, pixel centres at integer coordinates (ROS convention).

        TinyRenderer samples pixel (column i, row j counted from the bottom) at the corner
        point (i, j) of the OpenGL viewport and the image rows are then flipped, so the
        optical axis lands on column W/2 and row H/2 - 1, not on the image centre.
        """
        focal = (self.height / 2) / np.tan(np.radians(self.vertical_fov_deg) / 2)
        return np.array([[focal, 0.0, self.width / 2],
                         [0.0, focal, self.height / 2 - 1],
                         [0.0, 0.0, 1.0]])

    def world_from_optical(self) -> np.ndarray:
        """3x3 rotation whose columns are the optical axes (x right, y down, z forward)."""
        pitch = np.radians(self.pitch_deg)
        forward = np.array([np.cos(pitch), 0.0, np.sin(pitch)])
        right = np.array([0.0, -1.0, 0.0])
        down = np.cross(forward, right)
        return np.column_stack([right, down, forward])

    def look_at_target(self) -> np.ndarray:
        """A point 1 m straight ahead of the camera (for a look-at view matrix)."""
        return np.asarray(self.position_m) + self.world_from_optical()[:, 2]

    def up_vector(self) -> np.ndarray:
        """The image's up direction in the world frame."""
        return -self.world_from_optical()[:, 1]

    def project(self, points_m: np.ndarray) -> np.ndarray:
        """(N, 2) pixel coordinates (u right, v down) of (N, 3) world points in front of it."""
        offsets = np.atleast_2d(points_m) - np.asarray(self.position_m)
        in_optical = offsets @ self.world_from_optical()
        homogeneous = in_optical @ self.intrinsics().T
        return homogeneous[:, :2] / homogeneous[:, 2:3]

    def metric_depth(self, zbuffer: np.ndarray) -> np.ndarray:
        """Distance along the optical axis (m) from an OpenGL [0, 1] depth buffer."""
        near, far = self.near_m, self.far_m
        return far * near / (far - (far - near) * zbuffer)

    def camera_info(self) -> dict:
        """Intrinsics and pose for the dataset manifest and the bag's CameraInfo."""
        return {'width': self.width, 'height': self.height, 'frame_id': OPTICAL_FRAME_ID,
                'k': self.intrinsics().tolist(), 'position_m': list(self.position_m),
                'world_from_optical': self.world_from_optical().tolist()}
