"""Hypothesis strategies for the nodes' inputs, good and malformed, as real ROS messages
(``sensor_msgs/Image``, ``std_msgs/Float32MultiArray``, ``geometry_msgs/PoseStamped``).

Every *bad* message is bad by construction (one defect the nodes must refuse, whatever else is
random); every *good* one must be answered. Streams interleave the two; ``expected_*`` say
which good inputs a node must answer, so a test can compare with a fresh runtime fed only those.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Dict, List, Sequence, Tuple

import numpy as np
from hypothesis import strategies as st

from rnn_perception.data.tactile_dataset import angle_quaternion
from rnn_perception.data.image_conversion import (
    MAX_IMAGE_PIXELS,
    SUPPORTED_ENCODINGS,
    WIDE_ENCODINGS,
)
from rnn_perception.runtime.tactile_input import NUM_TACTILE, POSE_LIMIT_M, TACTILE_LIMIT

FPS = 30.0                          # the shipped collision model's rate: good frames are all kept
GOOD_SIZE = 12                      # good frames: small, one resolution (no resolution resets)
SAMPLE_PERIOD_NS = 10_000_000       # 100 Hz tactile samples
UINT32 = 2**32 - 1
FLOAT32_MAX = float(np.finfo(np.float32).max)

# ------------------------------------------------------------------------------------ images
# Real encodings this node does not read, near misses of the ones it does, and junk.
UNSUPPORTED_ENCODINGS = sorted(WIDE_ENCODINGS) + [
    'yuv422',
    'yuv422_yuy2',
    'nv21',
    'bayer_rggb8',
    'bayer_bggr16',
    'RGB8',
    'rgb8 ',
    ' mono8',
    'jpeg',
    '8UC3',
    '',
]
encodings = st.sampled_from(sorted(SUPPORTED_ENCODINGS))
bad_encodings = st.one_of(st.sampled_from(UNSUPPORTED_ENCODINGS), st.text(max_size=12)).filter(
    lambda text: text not in SUPPORTED_ENCODINGS)
stamps = st.tuples(st.integers(0, 2**31 - 1), st.integers(0, 999_999_999))


def image(height: int, width: int, encoding: str, step: int, data: bytes, is_bigendian: int = 0,
          stamp: Tuple[int, int] = (0, 0)):
    from sensor_msgs.msg import Image

    message = Image(
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=is_bigendian,
        step=step,
        data=data,
    )
    message.header.stamp.sec, message.header.stamp.nanosec = stamp
    return message


def channels(encoding: str) -> int:
    return SUPPORTED_ENCODINGS[encoding][0]


@st.composite
def good_images(draw):
    """A readable ``GOOD_SIZE`` square frame: any supported encoding, row padding, either
    endianness flag (meaningless for 8-bit data), random pixels. Unstamped: the caller
    stamps it."""
    encoding = draw(encodings)
    step = GOOD_SIZE * channels(encoding) + draw(st.integers(0, 5))
    rows = SUPPORTED_ENCODINGS[encoding].rows(GOOD_SIZE)     # nv21, nv24: more than height
    return image(GOOD_SIZE, GOOD_SIZE, encoding, step, draw(st.binary(min_size=rows * step,
                                                                      max_size=rows * step)),
                 draw(st.sampled_from([0, 1])))


@st.composite
def bad_images(draw):
    """An image with one defect the converter must refuse; everything else random."""
    defect = draw(st.sampled_from(['encoding', 'empty', 'huge', 'short step', 'short data']))
    encoding = draw(bad_encodings) if defect == 'encoding' else draw(encodings)
    height, width = draw(st.integers(1, 16)), draw(st.integers(1, 16))
    if defect == 'empty':
        height, width = draw(
            st.sampled_from([(0, width), (height, 0), (0, 0), (0, UINT32), (UINT32, 0)])
        )
    elif defect == 'huge':     # claims gigabytes: refused before anything is allocated
        height = draw(st.integers(MAX_IMAGE_PIXELS // 16 + 1, UINT32))
        width = draw(st.integers(max(16, -(-(MAX_IMAGE_PIXELS + 1) // height)), UINT32))
    row = width * channels(encoding) if encoding in SUPPORTED_ENCODINGS else width
    if defect == 'short step':
        step = draw(st.integers(0, max(0, row - 1)))
    else:
        step = min(UINT32, row + draw(st.integers(0, 4)))
    need = height * step
    if defect == 'short data':
        size = draw(st.integers(0, need - 1))
    elif defect == 'encoding':      # a whole image: only its encoding is wrong
        size = need
    else:
        size = draw(st.integers(0, 64))
    return image(height, width, encoding, step, draw(st.binary(min_size=size, max_size=size)),
                 draw(st.integers(0, 255)), draw(stamps))


def stamp_image(message, index: int):
    """Stamp good frame ``index`` of a stream at ``1 s + index / FPS``."""
    message.header.stamp.sec, message.header.stamp.nanosec = divmod(
        round((1.0 + index / FPS) * 1e9), 10**9
    )
    return message


# Runs of garbage between good frames; the stream ends on a good frame.
image_streams = st.lists(
    st.tuples(st.lists(bad_images(), max_size=4), good_images()), min_size=1, max_size=5
)


# ----------------------------------------------------------------------------------- tactile
def tactile(values: Sequence[float]):
    from std_msgs.msg import Float32MultiArray

    return Float32MultiArray(data=[float(value) for value in values])


good_tactile_values = st.lists(
    st.floats(0.0, 4095.0, width=32), min_size=NUM_TACTILE, max_size=NUM_TACTILE
)
huge = st.floats(TACTILE_LIMIT, FLOAT32_MAX, exclude_min=True, width=32).flatmap(
    lambda value: st.sampled_from([value, -value]))
poison = st.one_of(st.just(math.nan), st.just(math.inf), st.just(-math.inf), huge)


@st.composite
def bad_tactile(draw):
    """A tactile array of the wrong length (any values), or of the right one with NaN, inf or a
    value beyond ``TACTILE_LIMIT`` somewhere."""
    if draw(st.booleans()):
        length = draw(st.integers(0, 3 * NUM_TACTILE).filter(lambda n: n != NUM_TACTILE))
        values = draw(
            st.lists(st.one_of(st.floats(width=32), poison), min_size=length, max_size=length)
        )
    else:
        values = draw(good_tactile_values)
        for index in draw(st.lists(st.integers(0, NUM_TACTILE - 1), min_size=1, max_size=5)):
            values[index] = draw(poison)
    return tactile(values)


def pose(stamp_ns: int, position: Sequence[float], quaternion: Sequence[float]):
    from geometry_msgs.msg import PoseStamped

    message = PoseStamped()
    message.header.stamp.sec, message.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    p, q = message.pose.position, message.pose.orientation
    p.x, p.y, p.z = (float(value) for value in position)
    q.x, q.y, q.z, q.w = (float(value) for value in quaternion)
    return message


good_poses = st.tuples(
    st.lists(st.floats(-0.2, 0.2), min_size=3, max_size=3), st.floats(-math.pi, math.pi)
)


@st.composite
def bad_poses(draw):
    """A pose with NaN/inf anywhere, a position beyond ``POSE_LIMIT_M`` or a zero quaternion."""
    position = draw(st.lists(st.floats(-0.2, 0.2), min_size=3, max_size=3))
    quaternion = list(angle_quaternion(draw(st.floats(-math.pi, math.pi))))
    defect = draw(st.sampled_from(['non-finite', 'far', 'zero quaternion']))
    if defect == 'non-finite':
        fields = position + quaternion
        fields[draw(st.integers(0, 6))] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        position, quaternion = fields[:3], fields[3:]
    elif defect == 'far':
        value = draw(st.floats(POSE_LIMIT_M, 1e308, exclude_min=True))
        position[draw(st.integers(0, 2))] = draw(st.sampled_from([value, -value]))
    else:
        quaternion = draw(st.lists(st.floats(-1e-4, 1e-4), min_size=4, max_size=4))
    return pose(draw(st.integers(0, (2**31 - 1) * 1_000_000_000)), position, quaternion)


bad_tactile_messages = st.one_of(bad_tactile(), bad_poses())


@dataclass
class TactileSample:
    """One good sample of a stream and the garbage around it: ``before`` comes ahead of its
    tactile array, ``between`` between the array and its pose. A message between the two breaks
    the pair: the sample is dropped (see ``SamplePairer``)."""

    tactile: list
    pose: Tuple[list, float]
    before: list
    between: list

    def good(self, index: int) -> List[Tuple[str, object, bool]]:
        """(``'tactile'``, array, False), (``'pose'``, pose, False): the sample, stamped
        ``1 s + index`` sample periods."""
        position, angle = self.pose
        return [
            ('tactile', tactile(self.tactile), False),
            (
                'pose',
                pose(1_000_000_000 + index * SAMPLE_PERIOD_NS, position, angle_quaternion(angle)),
                False,
            ),
        ]

    def messages(self, index: int) -> List[Tuple[str, object, bool]]:
        """(kind, message, is bad) of all the sample's messages, garbage included, in arrival
        order."""
        good = self.good(index)
        return [*map(bad_item, self.before), good[0], *map(bad_item, self.between), good[1]]

    @property
    def intact(self) -> bool:
        return not self.between


def bad_item(message) -> Tuple[str, object, bool]:
    return ('tactile' if hasattr(message, 'data') else 'pose'), message, True


tactile_streams = st.lists(
    st.builds(
        TactileSample,
        good_tactile_values,
        good_poses,
        st.lists(bad_tactile_messages, max_size=3),
        st.lists(bad_tactile_messages, max_size=1),
    ),
    min_size=1,
    max_size=6,
)


def stream_messages(samples: Sequence[TactileSample]) -> List[Tuple[str, object, bool]]:
    return [item for index, sample in enumerate(samples) for item in sample.messages(index)]


def bad_count(samples: Sequence[TactileSample]) -> int:
    return sum(len(sample.before) + len(sample.between) for sample in samples)


def intact_messages(samples: Sequence[TactileSample]) -> List[Tuple[str, object, bool]]:
    """The good history: the messages of the intact samples, in order."""
    return [
        item
        for index, sample in enumerate(samples)
        if sample.intact
        for item in sample.good(index)
    ]


# ------------------------------------------------------------------------------------ oracles
@cache
def shipped_model(kind: str) -> tuple:
    """The loaded (``LoadedModel``) shipped ``'collision'`` or ``'tactile'`` model on the
    CPU, loaded once: every fresh runtime of a test run shares it. One torch thread, as the
    nodes run (``cpu_threads``): more only wait on each other on a busy machine."""
    from importlib import import_module

    import torch

    torch.set_num_threads(1)
    return import_module(f'rnn_perception.runtime.{kind}').load_predictor('', 'cpu')


def collision_runtime():
    """A fresh collision runtime on the shipped model, the age check off (any stamp is as good)."""
    from rnn_perception.runtime.collision import CollisionRuntime
    from rnn_perception.runtime.collision_parameters import CollisionSettings

    return CollisionRuntime(shipped_model('collision'), CollisionSettings(max_frame_age_s=0.0))


def tactile_runtime():
    from rnn_perception.runtime.tactile import TactileRuntime
    from rnn_perception.runtime.tactile_parameters import TactileSettings

    return TactileRuntime(shipped_model('tactile'), TactileSettings())


def feed_tactile(runtime, kind: str, message):
    return (runtime.on_tactile if kind == 'tactile' else runtime.on_pose)(message, 1.0)


def tactile_reference(samples: Sequence[TactileSample]) -> Dict[int, np.ndarray]:
    """Stamp (ns) -> poses ``(H, 4)`` of a fresh runtime fed the intact samples only."""
    from rnn_perception.runtime.tactile import Outcome

    reference = tactile_runtime()
    results = [
        feed_tactile(reference, kind, message) for kind, message, _ in intact_messages(samples)
    ]
    return {r.stamp_ns: r.poses for r in results if r.outcome is Outcome.PROCESSED}


def stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def assert_pose_array_close(array, expected: np.ndarray) -> None:
    """A published ``PoseArray`` holds the finite poses ``expected (H, 4)``. The angle travels as
    a quaternion: float32 rounding of it only, and angles beyond pi come back wrapped."""
    from rnn_perception.data.tactile_bag import pose_vector

    poses = np.stack([pose_vector(pose) for pose in array.poses]).astype(np.float64)
    assert np.isfinite(poses).all()
    difference = poses - expected
    difference[:, 3] = (difference[:, 3] + np.pi) % (2 * np.pi) - np.pi
    np.testing.assert_allclose(difference, 0.0, rtol=0, atol=1e-5)
