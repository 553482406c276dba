"""rosbag2 helpers shared by the simulators, ``eval --bag`` and the bag player.

Everything here uses the pure-Python ``rosbags`` library (no ROS install, no pybullet), so
runtime code may import it. Messages are built and decoded with the ROS 2 Kilted typestore,
the distribution the package's ``rclpy`` wheels come from, so ``ros2 bag play`` matches the
type hashes recorded in the bag.

Writing: :func:`open_bag_writer` stages the bag under a hidden sibling directory and renames
it into place only when it closed cleanly, so an interrupted run never leaves a bag that looks
complete. :func:`staged_path` is that mechanism on its own, for any file or directory output.

Simulated episodes go into one bag one after another on the sim clock
(:class:`EpisodeTimeline`), a gap apart, so a node that resets its recurrent state on a stamp
gap starts every episode fresh.

Reading: :func:`read_bag` yields :class:`BagMessage` (topic, bag stamp, decoded message) in
storage order; :func:`image_to_rgb` turns ``sensor_msgs/msg/Image`` back into numpy.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

IMAGE_MSGTYPE = 'sensor_msgs/msg/Image'
CAMERA_INFO_MSGTYPE = 'sensor_msgs/msg/CameraInfo'
LABELLED_ARRAY_MSGTYPE = 'std_msgs/msg/Float32MultiArray'
POSE_STAMPED_MSGTYPE = 'geometry_msgs/msg/PoseStamped'

STORAGE_PLUGINS = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}

_NS_PER_S = 1_000_000_000

# Sim time 0 means "clock not started" to ROS nodes using sim time, so bags start at 1 s.
BAG_CLOCK_START_NS = 1_000_000_000


class BagError(Exception):
    """A bag (or other staged output) cannot be written or read as asked."""


@cache
def typestore():
    """The ROS 2 Kilted typestore (built once; building it takes ~0.1 s)."""
    return get_typestore(Stores.ROS2_KILTED)


@contextmanager
def staged_path(final_path: str | os.PathLike) -> Iterator[Path]:
    """Yield a not-yet-existing path to build an output at; move it to ``final_path`` on success.

    The output is built as ``<parent>/.<name>.partial-XXXX/<name>`` and renamed to
    ``final_path`` when the ``with`` block ends without an exception; on any exception,
    Ctrl-C included, the hidden staging directory is removed. The staging directory sits next
    to the target so the final rename stays on one filesystem (atomic). Refuses up front if
    the target exists or its parent is not a writable directory.
    """
    final_path = Path(final_path)
    parent = final_path.parent
    if final_path.exists() or final_path.is_symlink():
        raise BagError(f'{final_path} already exists; remove it or choose another path')
    if not parent.is_dir():
        raise BagError(f'cannot create {final_path}: {parent} is not an existing directory')
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BagError(f'cannot create {final_path}: {parent} is not writable')
    staging_dir = Path(tempfile.mkdtemp(prefix=f'.{final_path.name}.partial-', dir=parent))
    try:
        yield staging_dir / final_path.name
        os.rename(staging_dir / final_path.name, final_path)
    finally:
        shutil.rmtree(staging_dir, ignore_errors=True)


def storage_plugin(storage: str) -> StoragePlugin:
    """The rosbags storage plugin for a storage name (``mcap`` or ``sqlite3``)."""
    try:
        return STORAGE_PLUGINS[storage]
    except KeyError:
        choices = ', '.join(STORAGE_PLUGINS)
        raise BagError(f'unknown bag storage {storage!r} (choose from {choices})') from None


class BagWriter:
    """Serialises messages onto topics of an open rosbags ``Writer``."""

    def __init__(self, writer: Writer):
        self._writer = writer
        self._connections = {}

    def add_topic(self, topic: str, msgtype: str) -> None:
        """Declare ``topic`` carrying ``msgtype`` (each topic once)."""
        self._connections[topic] = self._writer.add_connection(
            topic, msgtype, typestore=typestore())

    def write(self, topic: str, stamp_ns: int, message) -> None:
        """Write ``message`` on a declared ``topic`` with bag receive time ``stamp_ns``."""
        connection = self._connections[topic]
        data = typestore().serialize_cdr(message, connection.msgtype)
        self._writer.write(connection, stamp_ns, data)


@contextmanager
def open_bag_writer(path: str | os.PathLike, storage: str = 'mcap') -> Iterator[BagWriter]:
    """Open a new rosbag2 at ``path`` (mcap or sqlite3), staged until it closes cleanly."""
    plugin = storage_plugin(storage)
    with staged_path(path) as staging, Writer(
            staging, version=Writer.VERSION_LATEST, storage_plugin=plugin) as writer:
        yield BagWriter(writer)


class EpisodeTimeline:
    """Places episodes on a bag's clock one after another, ``gap_s`` apart, from 1 s on."""

    def __init__(self, gap_s: float):
        self._gap_ns = round(gap_s * _NS_PER_S)
        self._episode_start_ns = BAG_CLOCK_START_NS

    def place(self, stamp_s: Sequence[float]) -> list[int]:
        """Bag stamps (ns) of an episode's sample times (s since its start); the next
        episode starts one gap after the last of them."""
        stamps_ns = [self._episode_start_ns + round(float(t) * _NS_PER_S) for t in stamp_s]
        self._episode_start_ns = stamps_ns[-1] + self._gap_ns
        return stamps_ns


def header(stamp_ns: int, frame_id: str):
    """A ``std_msgs/msg/Header`` for a stamp in integer nanoseconds."""
    types = typestore().types
    sec, nanosec = divmod(int(stamp_ns), _NS_PER_S)
    return types['std_msgs/msg/Header'](
        stamp=types['builtin_interfaces/msg/Time'](sec=sec, nanosec=nanosec), frame_id=frame_id)


def stamp_to_ns(stamp) -> int:
    """Integer nanoseconds of a ``builtin_interfaces/msg/Time``."""
    return stamp.sec * _NS_PER_S + stamp.nanosec


def rgb_image_message(rgb: np.ndarray, stamp_ns: int, frame_id: str):
    """A ``sensor_msgs/msg/Image`` (``rgb8``) holding an (H, W, 3) uint8 array."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise BagError(f'expected an (H, W, 3) uint8 RGB image, got {rgb.dtype} {rgb.shape}')
    height, width, _ = rgb.shape
    return typestore().types[IMAGE_MSGTYPE](
        header=header(stamp_ns, frame_id), height=height, width=width, encoding='rgb8',
        is_bigendian=0, step=width * 3, data=np.ascontiguousarray(rgb).reshape(-1))


def camera_info_message(width: int, height: int, k: np.ndarray, stamp_ns: int, frame_id: str):
    """A ``sensor_msgs/msg/CameraInfo`` for an undistorted pinhole camera with matrix ``k``."""
    types = typestore().types
    k = np.asarray(k, dtype=np.float64).reshape(3, 3)
    projection = np.hstack([k, np.zeros((3, 1))])
    return types[CAMERA_INFO_MSGTYPE](
        header=header(stamp_ns, frame_id), height=height, width=width,
        distortion_model='plumb_bob', d=np.zeros(5), k=k.reshape(-1), r=np.eye(3).reshape(-1),
        p=projection.reshape(-1), binning_x=0, binning_y=0,
        roi=types['sensor_msgs/msg/RegionOfInterest'](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


def pose_stamped_message(position: Sequence[float], quaternion_xyzw: Sequence[float],
                         stamp_ns: int, frame_id: str):
    """A ``geometry_msgs/msg/PoseStamped``: position (x, y, z), orientation (x, y, z, w)."""
    types = typestore().types
    x, y, z = (float(value) for value in position)
    qx, qy, qz, qw = (float(value) for value in quaternion_xyzw)
    return types[POSE_STAMPED_MSGTYPE](
        header=header(stamp_ns, frame_id), pose=types['geometry_msgs/msg/Pose'](
            position=types['geometry_msgs/msg/Point'](x=x, y=y, z=z),
            orientation=types['geometry_msgs/msg/Quaternion'](x=qx, y=qy, z=qz, w=qw)))


def labelled_array_message(values: Sequence[float], labels: Sequence[str]):
    """A ``std_msgs/msg/Float32MultiArray`` whose one layout dimension names its fields.

    The dimension label is the comma-separated field names, so a reader needs no side
    channel to know which number is which (see :func:`labelled_array_fields`).
    """
    types = typestore().types
    if len(values) != len(labels):
        raise BagError(f'{len(values)} values for {len(labels)} labels')
    dimension = types['std_msgs/msg/MultiArrayDimension'](
        label=','.join(labels), size=len(labels), stride=len(labels))
    return types[LABELLED_ARRAY_MSGTYPE](
        layout=types['std_msgs/msg/MultiArrayLayout'](dim=[dimension], data_offset=0),
        data=np.asarray(values, dtype=np.float32))


def labelled_array_fields(message) -> dict[str, float]:
    """Field name → value of a message made by :func:`labelled_array_message`."""
    labels = message.layout.dim[0].label.split(',')
    return dict(zip(labels, message.data.tolist(), strict=True))


def image_to_rgb(message) -> np.ndarray:
    """(H, W, 3) uint8 RGB array of an ``rgb8`` or ``bgr8`` ``sensor_msgs/msg/Image``."""
    if message.encoding not in ('rgb8', 'bgr8'):
        raise BagError(f'unsupported image encoding {message.encoding!r} (need rgb8 or bgr8)')
    rows = np.asarray(message.data, dtype=np.uint8).reshape(message.height, message.step)
    pixels = rows[:, :message.width * 3].reshape(message.height, message.width, 3)
    return pixels[..., ::-1].copy() if message.encoding == 'bgr8' else pixels.copy()


@dataclass(frozen=True)
class BagMessage:
    """One decoded message: its topic, type, bag receive time (ns) and the message itself."""

    topic: str
    msgtype: str
    stamp_ns: int
    message: object


def read_bag(path: str | os.PathLike, topics: Sequence[str] | None = None) -> Iterator[BagMessage]:
    """Decode the messages of a rosbag2 (any storage), optionally only on ``topics``."""
    path = Path(path)
    if not (path / 'metadata.yaml').is_file():
        raise BagError(f'{path} is not a rosbag2 directory (no metadata.yaml)')
    with Reader(path) as reader:
        connections = [c for c in reader.connections if topics is None or c.topic in topics]
        for connection, stamp_ns, data in reader.messages(connections=connections):
            message = typestore().deserialize_cdr(data, connection.msgtype)
            yield BagMessage(connection.topic, connection.msgtype, stamp_ns, message)
