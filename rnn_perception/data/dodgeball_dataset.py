"""The dodgeball collision dataset: on-disk format (schema version 1), writer and reader.

Made by ``python -m sim dodgeball`` (PyBullet); read here with numpy and json only, so
training and runtime code can load it without pybullet.

Coordinates: world frame = robot base frame, origin on the floor under the robot, x forward
(towards the thrower), y left, z up, metres. The camera pose is in the manifest.

Directory layout, bookkeeping arrays and the checking reader: :mod:`rnn_perception.data.shards`.

Shard arrays (N frames, E episodes in the shard, episodes stored one after another):

=====================  ==============  =======================================================
name                   dtype, shape    meaning
=====================  ==============  =======================================================
frames                 uint8 N,H,W,3   RGB camera image
depth (optional)       float16 N,H,W   metric depth along the optical axis (m), far plane
                                       where nothing was hit
episode_index          int64 N         global episode number of the frame
frame_index            int32 N         frame number within its episode (0, 1, ...)
stamp_s                float64 N       sim time since the throw, ``frame_index / fps``
time_to_contact_s      float64 N       ``contact_time_s - stamp_s``: positive before the
                                       ball touches the robot, negative after it, ``+inf``
                                       in every frame of an episode without contact
ball_position          float32 N,3     thrown ball centre, world frame (m)
ball_velocity          float32 N,3     thrown ball linear velocity, world frame (m/s)
episode_offsets        int64 E+1       episode e is frames ``[offsets[e], offsets[e+1])``
hit                    bool E          the thrown ball touched the robot (physics contact)
contact_time_s         float64 E       sim time of the first contact, ``+inf`` without one
ball_radius_m          float32 E       thrown ball radius
launch_speed_mps       float32 E       thrown ball speed at release
aim_offset_m           float32 E       signed aim point offset from the torso axis,
                                       across the line of flight (what was aimed at, not
                                       the label: physics decides ``hit``)
aimed_at_robot         bool E          the aim point was on the torso
has_distractor         bool E          a second, missing ball was in flight too
=====================  ==============  =======================================================

``manifest.json`` holds ``schema_version`` (1), ``kind`` (``"dodgeball"``), ``seed``,
``fps``, ``has_depth``, ``num_episodes``, ``num_frames``, ``num_hits``, ``hit_ratio``,
``camera_info`` (``width``, ``height``, ``k`` 3x3 row-major intrinsics of the images as
rendered, pixel centres at integer coordinates as in ROS, ``frame_id``, ``position_m`` and
``world_from_optical`` 3x3: the optical frame's axes, x right / y down / z forward, in the
world frame), ``parameters``
(everything that shaped the data) and ``shards`` (``file``, ``first_episode``,
``episodes``, ``frames``, ``hits``). Same seed and parameters → byte-identical files.

rosbag2 export (one bag, all episodes one after another on the sim clock, separated by a
gap so stamp-gap resets fire): :data:`IMAGE_TOPIC` (``sensor_msgs/msg/Image``, rgb8),
:data:`CAMERA_INFO_TOPIC` (``sensor_msgs/msg/CameraInfo``) and :data:`GROUND_TRUTH_TOPIC`
(``std_msgs/msg/Float32MultiArray``, fields :data:`GROUND_TRUTH_FIELDS` named in its layout
label), all three with the same bag time and header stamp per frame. The ground truth is a
standard message so any ROS 2 install decodes it without a custom interface package; it has
no header, so it is matched to its image by bag time.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnn_perception.data.shards import (  # noqa: F401  (re-exported: the format's names)
    MANIFEST_NAME, DatasetError, ShardedDataset, manifest_counts, read_manifest, shard_arrays,
    shard_entry, shard_file_name, write_manifest, write_npz)

SCHEMA_VERSION = 1
KIND = 'dodgeball'

IMAGE_TOPIC = '/camera/image_raw'
CAMERA_INFO_TOPIC = '/camera/camera_info'
GROUND_TRUTH_TOPIC = '/dodgeball/ground_truth'
# Ground truth per frame in the bag: episode and frame numbers, time since the throw, the
# episode's hit label (1.0 / 0.0), time to contact (+inf without contact), ball position and
# velocity in the world frame: the same values as the dataset arrays of that frame.
GROUND_TRUTH_FIELDS = (
    'episode', 'frame', 'episode_time_s', 'hit', 'time_to_contact_s',
    'px', 'py', 'pz', 'vx', 'vy', 'vz')

# Stored dtype of each per-frame and per-episode DodgeballEpisode field.
FRAME_DTYPES = {'frames': np.uint8, 'depth': np.float16, 'stamp_s': np.float64,
                'time_to_contact_s': np.float64, 'ball_position': np.float32,
                'ball_velocity': np.float32}
EPISODE_DTYPES = {'hit': np.bool_, 'contact_time_s': np.float64, 'ball_radius_m': np.float32,
                  'launch_speed_mps': np.float32, 'aim_offset_m': np.float32,
                  'aimed_at_robot': np.bool_, 'has_distractor': np.bool_}


@dataclass
class DodgeballEpisode:
    """One throw: per-frame arrays (first axis = frame) and per-episode labels."""

    index: int
    frames: np.ndarray
    depth: np.ndarray | None
    stamp_s: np.ndarray
    time_to_contact_s: np.ndarray
    ball_position: np.ndarray
    ball_velocity: np.ndarray
    hit: bool
    contact_time_s: float
    ball_radius_m: float
    launch_speed_mps: float
    aim_offset_m: float
    aimed_at_robot: bool
    has_distractor: bool
    # The simulator's frames of a bag camera with its own resolution (python -m sim dodgeball
    # --bag-resolution); never stored in shards, None when read back.
    bag_frames: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        """Number of camera frames."""
        return len(self.frames)


def write_shard(path: Path, episodes: Sequence[DodgeballEpisode]) -> dict:
    """Write ``episodes`` (consecutive, in order) as one shard; return its manifest entry."""
    arrays = shard_arrays(episodes, FRAME_DTYPES, EPISODE_DTYPES)
    write_npz(path, arrays)
    return {**shard_entry(path, arrays, episodes[0].index), 'hits': int(arrays['hit'].sum())}


def hit_totals(shards: Sequence[dict]) -> dict:
    """``num_hits`` and ``hit_ratio`` of shard entries (a manifest's, or several's)."""
    episodes = manifest_counts(shards)['num_episodes']
    num_hits = sum(shard['hits'] for shard in shards)
    return {'num_hits': num_hits, 'hit_ratio': num_hits / episodes if episodes else 0.0}


def build_manifest(shards: Sequence[dict], *, seed: int, fps: float, has_depth: bool,
                   camera_info: dict, parameters: dict) -> dict:
    """The manifest for written ``shards`` (their :func:`write_shard` entries)."""
    return {
        'schema_version': SCHEMA_VERSION, 'kind': KIND, 'seed': seed, 'fps': fps,
        'has_depth': has_depth, **manifest_counts(shards), **hit_totals(shards),
        'camera_info': camera_info, 'parameters': parameters, 'shards': list(shards),
    }


class DodgeballDataset(ShardedDataset):
    """A verified dodgeball dataset (one directory or several); shards are read lazily, one
    at a time."""

    KIND = KIND
    SCHEMA_VERSION = SCHEMA_VERSION
    FRAME_DTYPES = FRAME_DTYPES
    EPISODE_DTYPES = EPISODE_DTYPES
    totals = staticmethod(hit_totals)

    @property
    def hit_ratio(self) -> float:
        """Share of episodes whose ball touched the robot."""
        return self.manifest['hit_ratio']

    @property
    def fps(self) -> float:
        """Camera rate (Hz)."""
        return self.manifest['fps']

    @property
    def camera_info(self) -> dict:
        """Intrinsics and pose of the camera (see the module docstring)."""
        return self.manifest['camera_info']

    def make_episode(self, fields: dict) -> DodgeballEpisode:
        """One episode from its stored fields."""
        return DodgeballEpisode(**fields)


def load_dodgeball_dataset(roots: str | Path | Sequence[str | Path]) -> DodgeballDataset:
    """Open the dataset at ``roots`` (one directory, or several read as one) after checking
    its manifests (schema, counts, shard files; for several, see
    :meth:`~rnn_perception.data.shards.ShardedDataset.open`).

    Raises:
        DatasetError: no manifest (missing, or an interrupted generation), another schema
            version or kind, missing shards, counts that do not add up; directories that are
            not parts of one run, or that share episodes.
    """
    return DodgeballDataset.open(roots)
