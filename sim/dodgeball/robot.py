"""The robot being thrown at: fixed at the world origin, facing +x."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RobotBody:
    """A cylinder base, a cylinder torso and a sphere head, all one static body.

    Heights are of the shapes' bottoms/tops/centres above the floor. The camera sits just in
    front of the head so it never sees the inside of the head sphere.
    """

    base_radius_m: float = 0.24
    base_height_m: float = 0.3
    torso_radius_m: float = 0.2
    torso_top_m: float = 1.2
    head_radius_m: float = 0.14
    head_centre_height_m: float = 1.36

    @property
    def camera_position_m(self) -> tuple[float, float, float]:
        """Camera centre: 1 cm in front of the head surface, at head-centre height."""
        return (self.head_radius_m + 0.01, 0.0, self.head_centre_height_m)


ROBOT = RobotBody()
