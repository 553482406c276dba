"""The tactile node's inputs: the checks that refuse an unusable tactile array or pose
(:class:`BadInput`, with the reason) and the pairing of the two streams into samples
(:class:`SamplePairer`; see :mod:`.tactile` for the rule)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from ..data.tactile_dataset import angle_quaternion, quaternion_angle, TACTILE_FIELDS


NUM_TACTILE = len(TACTILE_FIELDS)


# Largest magnitude of a tactile value. Sensors report ADC counts (a BioTac's are 12-bit,
# 0..4095); 1e6 admits any 20-bit converter. The head is linear in the standardised inputs, so
# values near float32's limit (3.4e38) only just stay finite through the shipped model, and
# would overflow to inf (and stay in the state) with larger weights: the bound keeps every
# model decades clear of that.
TACTILE_LIMIT = 1e6


# Largest magnitude of a pose coordinate (m). The object is in the hand (positions of
# centimetres in the gripper frame); 10 km admits any map frame. A finite float64 beyond
# float32's range becomes inf, and 1e38 m already overflows the velocity term (over its std
# floor of 1e-6 m): either gives non-finite poses from then on.
POSE_LIMIT_M = 1e4


class BadInput(ValueError):
    """A message the model cannot use; the text says why."""


def tactile_values(message) -> np.ndarray:
    """``std_msgs/Float32MultiArray`` (anything with ``data``) -> the 21 values, or
    :class:`BadInput`.

    The layout, where there is one, is honoured: ``data_offset`` values are skipped, and a first
    dimension whose label lists the fields (comma-separated, as ``sim tactile --bag`` writes)
    must list :data:`TACTILE_FIELDS` in that order: a sensor driver with another order is refused
    rather than misread. An empty layout or a plain label (``"taxels"``) means the documented
    order.
    """
    layout = getattr(message, 'layout', None)
    values = np.asarray(message.data, dtype=np.float32).reshape(-1)
    if layout is not None:
        values = values[layout.data_offset:]
        labels = tuple(layout.dim[0].label.split(',')) if layout.dim else ()
        if len(labels) > 1 and labels != TACTILE_FIELDS:
            raise BadInput(
                f'tactile array fields {",".join(labels)} are not the expected '
                f'{",".join(TACTILE_FIELDS)}'
            )
    if values.size != NUM_TACTILE:
        raise BadInput(f'tactile array holds {values.size} values, expected {NUM_TACTILE} '
                       f'({",".join(TACTILE_FIELDS)})')
    if not np.isfinite(values).all():
        raise BadInput(
            'tactile array holds non-finite values at '
            f'{np.flatnonzero(~np.isfinite(values)).tolist()}'
        )
    if (np.abs(values) > TACTILE_LIMIT).any():
        raise BadInput(f'tactile array holds values beyond +-{TACTILE_LIMIT:g} at '
                       f'{np.flatnonzero(np.abs(values) > TACTILE_LIMIT).tolist()}')
    return values


def pose_values(message) -> Tuple[int, np.ndarray]:
    """``geometry_msgs/PoseStamped`` -> (header stamp in ns, ``(x, y, z, angle about y)``), or
    :class:`BadInput`. The angle is the quaternion's rotation about the grasp axis."""
    stamp = message.header.stamp
    p, q = message.pose.position, message.pose.orientation
    values = (p.x, p.y, p.z, q.x, q.y, q.z, q.w)
    if not all(math.isfinite(value) for value in values):
        raise BadInput('pose holds non-finite values')
    if max(abs(p.x), abs(p.y), abs(p.z)) > POSE_LIMIT_M:
        raise BadInput(f'pose position ({p.x:g}, {p.y:g}, {p.z:g}) is beyond +-{POSE_LIMIT_M:g} m')
    if q.x * q.x + q.y * q.y + q.z * q.z + q.w * q.w < 1e-6:
        raise BadInput('pose orientation is a zero quaternion')
    return stamp.sec * 1_000_000_000 + stamp.nanosec, np.array(
        [p.x, p.y, p.z, quaternion_angle(q.x, q.y, q.z, q.w)], np.float32)


def pose_fields(
    pose: Sequence[float],
) -> Tuple[Tuple[float, float, float], Tuple[float, float, float, float]]:
    """``(x, y, z, angle)`` -> (position, orientation quaternion (x, y, z, w)) for a
    ``geometry_msgs/Pose``."""
    x, y, z, angle = (float(value) for value in pose)
    return (x, y, z), angle_quaternion(angle)


@dataclass(frozen=True)
class Sample:
    """The model's input for one step: tactile values, pose and the pose's stamp (ns)."""

    stamp_ns: int
    tactile: np.ndarray
    pose: np.ndarray


class SamplePairer:
    """Makes samples: a pose closes the sample of the tactile array that came before it (see the
    module docstring). A pose without one, or a tactile array superseded before its pose came,
    is counted in :attr:`unpaired` and dropped; the next tactile array and pose pair up again."""

    def __init__(self):
        self._tactile: Optional[np.ndarray] = None
        self.unpaired = 0

    def clear(self) -> None:
        """Forget a half-made sample (the stream broke)."""
        self._tactile = None

    def add_tactile(self, values: np.ndarray) -> None:
        self.unpaired += self._tactile is not None
        self._tactile = values

    def add_pose(self, stamp_ns: int, pose: np.ndarray) -> Optional[Sample]:
        tactile, self._tactile = self._tactile, None
        if tactile is None:
            self.unpaired += 1
            return None
        return Sample(stamp_ns, tactile, pose)
