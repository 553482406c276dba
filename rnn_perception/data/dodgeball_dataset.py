"""The dodgeball collision dataset: on-disk format (schema version 1), writer and reader.

Made by ``python -m sim dodgeball`` (PyBullet); read here with numpy and json only, so
training and runtime code can load it without pybullet.

Coordinates: world frame = robot base frame, origin on the floor under the robot, x forward
(towards the thrower), y left, z up, metres. The camera pose is in the manifest.

Directory layout::

    DIR/manifest.json        written last: a directory without it is incomplete
    DIR/shard_00000.npz      whole episodes, in episode order (zip of .npy, deflated)
    DIR/shard_00001.npz      ...

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

import json
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCHEMA_VERSION = 1
KIND = 'dodgeball'
MANIFEST_NAME = 'manifest.json'

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

# A fixed zip timestamp makes shards byte-identical between runs (np.savez stamps "now").
_ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)


class DatasetError(Exception):
    """A dodgeball dataset is missing, incomplete or not of this schema."""


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

    @property
    def num_frames(self) -> int:
        """Number of camera frames."""
        return len(self.frames)


def shard_file_name(shard_number: int) -> str:
    """File name of shard ``shard_number``."""
    return f'shard_{shard_number:05d}.npz'


def write_shard(path: Path, episodes: Sequence[DodgeballEpisode]) -> dict:
    """Write ``episodes`` (consecutive, in order) as one shard; return its manifest entry."""
    arrays = _shard_arrays(episodes)
    with zipfile.ZipFile(path, 'w', compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f'{name}.npy', date_time=_ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, 'w', force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
    return {'file': path.name, 'first_episode': episodes[0].index, 'episodes': len(episodes),
            'frames': int(arrays['episode_offsets'][-1]), 'hits': int(arrays['hit'].sum())}


def _shard_arrays(episodes: Sequence[DodgeballEpisode]) -> dict[str, np.ndarray]:
    """Flatten episodes into the shard arrays of the schema."""
    lengths = [episode.num_frames for episode in episodes]
    arrays = {
        'episode_index': np.repeat([e.index for e in episodes], lengths).astype(np.int64),
        'frame_index': np.concatenate([np.arange(n, dtype=np.int32) for n in lengths]),
        'episode_offsets': np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
    }
    for name, dtype in FRAME_DTYPES.items():
        if getattr(episodes[0], name) is not None:  # depth is optional
            arrays[name] = np.concatenate([getattr(e, name) for e in episodes]).astype(dtype)
    for name, dtype in EPISODE_DTYPES.items():
        arrays[name] = np.array([getattr(e, name) for e in episodes], dtype=dtype)
    return arrays


def build_manifest(shards: Sequence[dict], *, seed: int, fps: float, has_depth: bool,
                   camera_info: dict, parameters: dict) -> dict:
    """The manifest for written ``shards`` (their :func:`write_shard` entries)."""
    num_episodes = sum(shard['episodes'] for shard in shards)
    num_hits = sum(shard['hits'] for shard in shards)
    return {
        'schema_version': SCHEMA_VERSION, 'kind': KIND, 'seed': seed, 'fps': fps,
        'has_depth': has_depth, 'num_episodes': num_episodes,
        'num_frames': sum(shard['frames'] for shard in shards), 'num_hits': num_hits,
        'hit_ratio': num_hits / num_episodes if num_episodes else 0.0,
        'camera_info': camera_info, 'parameters': parameters, 'shards': list(shards),
    }


def write_manifest(root: Path, manifest: dict) -> None:
    """Write ``manifest.json``; call it last, it is what marks the dataset complete."""
    text = json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False)
    (root / MANIFEST_NAME).write_text(text + '\n', encoding='utf-8')


class DodgeballDataset:
    """A verified dodgeball dataset directory; shards are read lazily, one at a time."""

    def __init__(self, root: Path, manifest: dict):
        self.root = root
        self.manifest = manifest

    @property
    def num_episodes(self) -> int:
        """Number of episodes."""
        return self.manifest['num_episodes']

    @property
    def num_frames(self) -> int:
        """Number of frames over all episodes."""
        return self.manifest['num_frames']

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

    def __len__(self) -> int:
        return self.num_episodes

    def episodes(self) -> Iterator[DodgeballEpisode]:
        """All episodes in order."""
        for shard in self.manifest['shards']:
            yield from _split_episodes(self._load_shard(shard))

    def arrays(self) -> dict[str, np.ndarray]:
        """All shards concatenated (``episode_offsets`` then index the whole dataset)."""
        shards = [self._load_shard(shard) for shard in self.manifest['shards']]
        merged = {name: np.concatenate([shard[name] for shard in shards])
                  for name in shards[0] if name != 'episode_offsets'}
        lengths = np.concatenate([np.diff(shard['episode_offsets']) for shard in shards])
        merged['episode_offsets'] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return merged

    def _load_shard(self, entry: dict) -> dict[str, np.ndarray]:
        """Read one shard and check it holds what the manifest says."""
        path = self.root / entry['file']
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            raise DatasetError(f'{path}: unreadable shard ({error})') from error
        expected = {'episode_offsets': entry['episodes'] + 1, 'frames': entry['frames']}
        for name, length in expected.items():
            if name not in arrays or len(arrays[name]) != length:
                raise DatasetError(f'{path}: {name} does not match the manifest (corrupt shard?)')
        if arrays['episode_offsets'][-1] != entry['frames']:
            raise DatasetError(f'{path}: episode offsets do not cover its frames (corrupt shard?)')
        return arrays


def _split_episodes(arrays: dict[str, np.ndarray]) -> Iterator[DodgeballEpisode]:
    """Cut a shard's flat arrays back into episodes."""
    offsets = arrays['episode_offsets']
    for e, (start, stop) in enumerate(zip(offsets[:-1], offsets[1:])):
        per_frame = {name: arrays[name][start:stop] if name in arrays else None
                     for name in FRAME_DTYPES}
        per_episode = {name: arrays[name][e].item() for name in EPISODE_DTYPES}
        yield DodgeballEpisode(index=int(arrays['episode_index'][start]),
                               **per_frame, **per_episode)


def load_dodgeball_dataset(root: str | Path) -> DodgeballDataset:
    """Open the dataset at ``root`` after checking its manifest (schema, counts, shard files).

    Raises:
        DatasetError: no manifest (missing, or an interrupted generation), another schema
            version or kind, missing shards, or counts that do not add up.
    """
    root = Path(root)
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        raise DatasetError(f'{root}: no {MANIFEST_NAME}; not a dataset, or an incomplete one')
    try:
        manifest = json.loads(manifest_path.read_text(encoding='utf-8'))
    except (OSError, ValueError) as error:
        raise DatasetError(f'{manifest_path}: unreadable manifest ({error})') from error
    _check_manifest(root, manifest)
    return DodgeballDataset(root, manifest)


def _check_manifest(root: Path, manifest: dict) -> None:
    """Raise DatasetError unless the manifest is schema 1 and agrees with the shard files."""
    if manifest.get('kind') != KIND or manifest.get('schema_version') != SCHEMA_VERSION:
        raise DatasetError(
            f'{root}: expected a {KIND} dataset of schema version {SCHEMA_VERSION}, found '
            f'kind {manifest.get("kind")!r} version {manifest.get("schema_version")!r}')
    shards = manifest.get('shards', [])
    for field, count_key in (('episodes', 'num_episodes'), ('frames', 'num_frames')):
        if sum(shard[field] for shard in shards) != manifest.get(count_key):
            raise DatasetError(f'{root}: shard {field} do not add up to {count_key}')
    missing = [shard['file'] for shard in shards if not (root / shard['file']).is_file()]
    if missing:
        raise DatasetError(f'{root}: missing shard files {", ".join(missing)}')
