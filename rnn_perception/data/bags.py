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
storage order, optionally checking the message type of each topic it reads.

A bag is untrusted input. Every way reading one fails becomes one :class:`BagError` line naming
the bag and the problem, here and nowhere else (:func:`open_bag`, :func:`bag_records`,
:func:`decode_message`); the commands print that line. What ``rosbags`` itself does, for the
record: a path without ``metadata.yaml`` (missing, empty or not a bag) -> ``ReaderError`` from
``Reader()``; unparsable YAML -> ``ReaderError`` (it parses with ``YAML(typ='safe')``); a truncated
mcap -> ``ReaderError`` ('File end magic is invalid') on open; a truncated or corrupt sqlite3
file, or one missing its tables -> ``ReaderError`` on open; a corrupt mcap chunk -> whatever its
parser trips on (seen: ``OverflowError``) while iterating; a message that is not valid CDR ->
``SerdeError``; a type not in the typestore -> ``KeyError``. A topic recorded with another type
than the reader expects decodes fine as that type: only :func:`read_bag`'s type check catches it.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.interfaces import Connection
from rosbags.typesys import Stores, get_typestore

from .compressed_image import encode

IMAGE_MSGTYPE = 'sensor_msgs/msg/Image'
COMPRESSED_IMAGE_MSGTYPE = 'sensor_msgs/msg/CompressedImage'
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


def compressed_image_message(rgb: np.ndarray, codec: str, jpeg_quality: int, stamp_ns: int,
                             frame_id: str):
    """A ``sensor_msgs/msg/CompressedImage`` of an (H, W, 3) uint8 RGB array, encoded as
    ``compressed_image_transport`` does (``codec``: ``'jpeg'`` or ``'png'``)."""
    image_format, data = encode(rgb, codec, jpeg_quality)
    return typestore().types[COMPRESSED_IMAGE_MSGTYPE](
        header=header(stamp_ns, frame_id), format=image_format, data=data)


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
    labels = message.layout.dim[0].label.split(',') if message.layout.dim else []
    values = message.data.tolist()
    if len(labels) != len(values):
        raise BagError(f'a labelled array has {len(labels)} field names for {len(values)} values')
    return dict(zip(labels, values))


@dataclass(frozen=True)
class BagMessage:
    """One decoded message: its topic, type, bag receive time (ns) and the message itself."""

    topic: str
    msgtype: str
    stamp_ns: int
    message: object


def one_line(error: Exception) -> str:
    """An exception's message on one line (rosbags' and rclpy's may span several)."""
    return ' '.join(str(error).split()) or type(error).__name__


def open_bag(path: str | os.PathLike) -> Reader:
    """An open rosbags ``Reader`` of the rosbag2 directory ``path`` (close it when done), or
    :class:`BagError` saying what is wrong with it."""
    path = Path(path)
    if not path.exists():
        raise BagError(f'bag {path} not found')
    if not (path / 'metadata.yaml').is_file():
        raise BagError(f'{path} is not a rosbag2 directory (no metadata.yaml)')
    try:
        reader = Reader(path)
        reader.open()
    except Exception as error:  # noqa: BLE001 - rosbags' parsers raise whatever a
        # corrupt byte leads to
        raise BagError(f'{path}: cannot read the bag ({one_line(error)})') from None
    return reader


def topic_types(reader: Reader) -> dict[str, set[str]]:
    """Topic -> its message types (one, in a sane bag) of every topic of an open bag."""
    topics: dict[str, set[str]] = {}
    for connection in reader.connections:
        topics.setdefault(connection.topic, set()).add(connection.msgtype)
    return topics


def bag_topics(path: str | os.PathLike) -> dict[str, set[str]]:
    """:func:`topic_types` of the rosbag2 at ``path`` (:class:`BagError` for a bad bag)."""
    reader = open_bag(path)
    try:
        return topic_types(reader)
    finally:
        reader.close()


def bag_records(
    reader: Reader, connections: Sequence[Connection]
) -> Iterator[tuple[Connection, int, bytes]]:
    """``reader.messages(connections)``: (connection, bag stamp ns, raw CDR bytes) in storage
    order, with a corrupt storage file raising :class:`BagError`."""
    records = reader.messages(connections=connections)
    while True:
        try:
            record = next(records)
        except StopIteration:
            return
        except Exception as error:  # noqa: BLE001 - as in open_bag: a corrupt chunk
            # raises anything
            raise BagError(f'{reader.path}: the bag is corrupt ({one_line(error)})') from None
        yield record


def decode_message(path: str | os.PathLike, connection: Connection, stamp_ns: int, data: bytes):
    """The message of one record (Kilted typestore); :class:`BagError` when it is no valid CDR of
    its type."""
    try:
        return typestore().deserialize_cdr(data, connection.msgtype)
    except Exception as error:  # noqa: BLE001 - SerdeError, or anything a hostile
        # length field leads to
        raise BagError(
            f'{path}: corrupt {connection.topic} message at bag time {stamp_ns / 1e9:.3f} s '
            f'({one_line(error)})'
        ) from None


def read_bag(path: str | os.PathLike,
             topics: Sequence[str] | Mapping[str, str] | None = None) -> Iterator[BagMessage]:
    """Decode the messages of a rosbag2 (any storage), optionally only on ``topics``; a mapping
    ``topic -> message type`` also refuses a bag recording one of them with another type.
    Every problem with the bag raises :class:`BagError` (see the module docstring)."""
    reader = open_bag(path)
    try:
        connections = [c for c in reader.connections if topics is None or c.topic in topics]
        for connection in connections:
            wanted = topics.get(connection.topic) if isinstance(topics, Mapping) else None
            if wanted is not None and connection.msgtype != wanted:
                raise BagError(f'{path}: {connection.topic} carries {connection.msgtype}, '
                               f'not the {wanted} expected there')
            if connection.msgtype not in typestore().types:
                raise BagError(f'{path}: {connection.topic} carries {connection.msgtype}, '
                               'a message type unknown here')
        for connection, stamp_ns, data in bag_records(reader, connections):
            yield BagMessage(connection.topic, connection.msgtype, stamp_ns,
                             decode_message(path, connection, stamp_ns, data))
    finally:
        reader.close()
