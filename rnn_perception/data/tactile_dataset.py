"""The tactile slip dataset: on-disk format (schema version 1), writer and reader.

Made by ``python -m sim tactile``; read here with numpy and json only, so training and
runtime code load it without the simulator. Directory layout, the bookkeeping arrays
(``episode_index``, ``frame_index``, ``episode_offsets``) and the checks of the reader:
:mod:`rnn_perception.data.shards`. A *frame* is one sensor sample (default 100 Hz).

Coordinates: gripper frame, origin between the fingertips, y along the grasp axis (finger to
finger), z up, x along the bar when it is held level; metres and radians. The object's pose
is its centre (x, y, z; y = 0: the bar stays between the pads) and its angle about the grasp
axis y (0 = level, positive = far end down), i.e. the orientation quaternion
(x, y, z, w) = (0, sin(angle/2), 0, cos(angle/2)).

Shard arrays (N frames, E episodes in the shard):

=====================  ==============  =======================================================
name                   dtype, shape    meaning
=====================  ==============  =======================================================
stamp_s                float64 N       time since the episode start, ``frame_index / rate_hz``
tactile                float32 N,21    :data:`TACTILE_FIELDS`: electrodes 0..18, PDC, PAC
                                       (BioTac-like counts; electrodes and PDC averaged over
                                       the sample period ending at ``stamp_s``, PAC the RMS
                                       of the vibration over it)
pose                   float32 N,4     :data:`POSE_FIELDS`: object centre x, y, z (m) and
                                       angle about the grasp axis (rad) at ``stamp_s``
grip_force_n           float32 N       grip force at ``stamp_s`` (ground truth, N)
slipping               bool N          the contact slipped during the sample period
slipped                bool E          the contact slipped at least once
slip_onset_s           float64 E       time of the first slip, ``+inf`` without one
mass_kg, length_m,     float32 E       the bar and its contact (see ``sim/tactile/physics.py``)
height_m,
grasp_offset_m,
mu_static, mu_kinetic,
patch_radius_m
initial_angle_rad      float32 E       angle at the start
critical_grip_n        float32 E       smallest grip that holds the bar at its initial angle
grip_kind              int8 E          0: hold and squeeze only, 1: at least one release ramp
max_slide_m            float32 E       how far the contact point wandered on the bar
=====================  ==============  =======================================================

``manifest.json`` holds ``schema_version`` (1), ``kind`` (``"tactile"``), ``seed``,
``rate_hz``, ``frame_id``, ``tactile_fields``, ``pose_fields``, ``num_episodes``,
``num_frames``, ``num_slipped``, ``slip_ratio``, ``parameters`` (everything that shaped the
data) and ``shards`` (``file``, ``first_episode``, ``episodes``, ``frames``, ``slipped``).
Same seed and parameters → byte-identical files.

rosbag2 export (one bag, all episodes one after another on the sim clock, separated by a
gap so stamp-gap resets fire), one message per topic and frame, all with the same bag time:

* :data:`TACTILE_TOPIC`, ``std_msgs/msg/Float32MultiArray``: ``data`` = the 21 values of
  ``tactile`` in :data:`TACTILE_FIELDS` order (electrodes 0..18, PDC, PAC); ``layout.dim``
  is one dimension, label ``"e0,e1,...,e18,pdc,pac"`` (the field names), size 21, stride 21,
  ``data_offset`` 0. The message has no header: its time is the bag time.
* :data:`POSE_TOPIC`, ``geometry_msgs/msg/PoseStamped``: the ground-truth ``pose``, header
  stamp = the bag time of the tactile message of the same frame, frame id from the manifest.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnn_perception.data.shards import (  # noqa: F401  (DatasetError: this format's error too)
    DatasetError, ShardedDataset, manifest_counts, shard_arrays, shard_entry, write_npz)

SCHEMA_VERSION = 1
KIND = 'tactile'

TACTILE_TOPIC = '/tactile/raw'
POSE_TOPIC = '/object/pose'
NUM_ELECTRODES = 19
TACTILE_FIELDS = tuple(f'e{i}' for i in range(NUM_ELECTRODES)) + ('pdc', 'pac')
PDC_INDEX, PAC_INDEX = NUM_ELECTRODES, NUM_ELECTRODES + 1
POSE_FIELDS = ('x', 'y', 'z', 'angle_rad')

# Stored dtype of each per-frame and per-episode TactileEpisode field.
FRAME_DTYPES = {'stamp_s': np.float64, 'tactile': np.float32, 'pose': np.float32,
                'grip_force_n': np.float32, 'slipping': np.bool_}
EPISODE_DTYPES = {'slipped': np.bool_, 'slip_onset_s': np.float64, 'mass_kg': np.float32,
                  'length_m': np.float32, 'height_m': np.float32, 'grasp_offset_m': np.float32,
                  'mu_static': np.float32, 'mu_kinetic': np.float32,
                  'patch_radius_m': np.float32, 'initial_angle_rad': np.float32,
                  'critical_grip_n': np.float32, 'grip_kind': np.int8,
                  'max_slide_m': np.float32}


@dataclass
class TactileEpisode:
    """One grasp: per-frame arrays (first axis = frame) and per-episode parameters."""

    index: int
    stamp_s: np.ndarray
    tactile: np.ndarray
    pose: np.ndarray
    grip_force_n: np.ndarray
    slipping: np.ndarray
    slipped: bool
    slip_onset_s: float
    mass_kg: float
    length_m: float
    height_m: float
    grasp_offset_m: float
    mu_static: float
    mu_kinetic: float
    patch_radius_m: float
    initial_angle_rad: float
    critical_grip_n: float
    grip_kind: int
    max_slide_m: float

    @property
    def num_frames(self) -> int:
        """Number of sensor samples."""
        return len(self.stamp_s)

    @property
    def angle_rad(self) -> np.ndarray:
        """The object's angle about the grasp axis per frame."""
        return self.pose[:, 3]


def angle_quaternion(angle_rad: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a rotation by ``angle_rad`` about the grasp axis y."""
    return 0.0, math.sin(angle_rad / 2), 0.0, math.cos(angle_rad / 2)


def quaternion_angle(x: float, y: float, z: float, w: float) -> float:
    """The angle about y of a quaternion made by :func:`angle_quaternion`, in (-π, π]."""
    return 2.0 * math.atan2(y, w) if w >= 0 else 2.0 * math.atan2(-y, -w)


def write_shard(path: Path, episodes: Sequence[TactileEpisode]) -> dict:
    """Write ``episodes`` (consecutive, in order) as one shard; return its manifest entry."""
    arrays = shard_arrays(episodes, FRAME_DTYPES, EPISODE_DTYPES)
    write_npz(path, arrays)
    return {**shard_entry(path, arrays, episodes[0].index),
            'slipped': int(arrays['slipped'].sum())}


def slip_totals(shards: Sequence[dict]) -> dict:
    """``num_slipped`` and ``slip_ratio`` of shard entries (a manifest's, or several's)."""
    episodes = manifest_counts(shards)['num_episodes']
    num_slipped = sum(shard['slipped'] for shard in shards)
    return {'num_slipped': num_slipped,
            'slip_ratio': num_slipped / episodes if episodes else 0.0}


def build_manifest(shards: Sequence[dict], *, seed: int, rate_hz: float, frame_id: str,
                   parameters: dict) -> dict:
    """The manifest for written ``shards`` (their :func:`write_shard` entries)."""
    return {
        'schema_version': SCHEMA_VERSION, 'kind': KIND, 'seed': seed, 'rate_hz': rate_hz,
        'frame_id': frame_id, 'tactile_fields': list(TACTILE_FIELDS),
        'pose_fields': list(POSE_FIELDS), **manifest_counts(shards), **slip_totals(shards),
        'parameters': parameters, 'shards': list(shards),
    }


class TactileDataset(ShardedDataset):
    """A verified tactile dataset (one directory or several); shards are read lazily, one at
    a time."""

    KIND = KIND
    SCHEMA_VERSION = SCHEMA_VERSION
    FRAME_DTYPES = FRAME_DTYPES
    EPISODE_DTYPES = EPISODE_DTYPES
    totals = staticmethod(slip_totals)

    @property
    def rate_hz(self) -> float:
        """Sensor sample rate (Hz)."""
        return self.manifest['rate_hz']

    @property
    def slip_ratio(self) -> float:
        """Share of episodes in which the grasp slipped."""
        return self.manifest['slip_ratio']

    @property
    def frame_id(self) -> str:
        """Frame of the poses (the gripper)."""
        return self.manifest['frame_id']

    def make_episode(self, fields: dict) -> TactileEpisode:
        """One episode from its stored fields."""
        return TactileEpisode(**fields)


def load_tactile_dataset(roots: str | Path | Sequence[str | Path]) -> TactileDataset:
    """Open the dataset at ``roots`` (one directory, or several read as one) after checking
    its manifests (see :meth:`~rnn_perception.data.shards.ShardedDataset.open`).

    Raises:
        DatasetError: no manifest (missing, or an interrupted generation), another schema
            version or kind, missing shards, counts that do not add up; directories that are
            not parts of one run, or that share episodes.
    """
    return TactileDataset.open(roots)
