"""The tactile node's logic, without ROS: parameters, input checks, sample pairing, model
stepping, statistics.

A **sample** is one ``/tactile/raw`` array (21 values: electrodes 0..18, PDC, PAC; see
:mod:`rnn_perception.data.tactile_dataset`) and the object's current pose (``/object/pose``,
``geometry_msgs/PoseStamped``), the model's two inputs (see :mod:`rnn_perception.models.tactile`
for why the pose is one). The tactile message has no header, so the two are paired by arrival,
as the tactile bags publish them (and as a driver should): the tactile array of an instant,
then its pose. :class:`SamplePairer` steps a sample when a pose arrives after a tactile array;
a pose without one, or a tactile array superseded before its pose came, is counted as
*unpaired* and dropped, so a message lost on either stream costs one sample and the next pair
lines up again. The pose's header stamp is the sample's time (the node clock when it is zero)
and the stamp of the predicted poses.

Per message (:meth:`TactileRuntime.on_tactile` / :meth:`TactileRuntime.on_pose`):

1. **Readable?** A tactile array of the wrong length, empty, with NaN/inf values or values
   beyond :data:`TACTILE_LIMIT`, or a pose with non-finite values, a position beyond
   :data:`POSE_LIMIT_M` or a zero quaternion, is *rejected*: counted, its reason kept for the
   throttled warning, and the sample it belonged to is dropped (a half-made sample is
   cleared). The recurrent state is left alone, as the collision node leaves it on a rejected
   frame: the next good sample is answered as if the bad message had never come. An outage
   long enough to matter resets the state through the stamp rule below.
2. **Reset?** The state goes back to zeros on a sample stamp gap over ``reset_gap_s`` or on
   stamps going backwards (:class:`~rnn_perception.runtime.common.ResetPolicy`), and on the
   node's ``~/reset`` service.
3. **Step.** One ``model.step`` with the carried state, in ``torch.inference_mode``: the next
   ``horizon`` poses ``(H, 4)`` (x, y, z, angle about the grasp axis y). If the GPU fails
   (out of memory, a CUDA error), the model moves to the CPU for good, the state resets and the
   sample is answered there (:class:`~rnn_perception.runtime.common.CpuFallback`).
"""
from __future__ import annotations

import enum
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from ..data.tactile_dataset import TACTILE_FIELDS, angle_quaternion, quaternion_angle
from ..models.tactile import TactilePredictor, TactileState, load_tactile_model
from ..models.weights_file import ModelFileError, checked_weights_path
from ..training.utils import select_device
from .common import (DIAGNOSTIC_OK, DIAGNOSTIC_WARN, DIAGNOSTICS_PERIOD, CpuFallback, DiagnosticReport, LatencyStats,
                     ParameterSpec, ResetPolicy, finite_above, format_ms, model_parameters, parameter_checker,
                     settings_class, shipped_model_path)

NUM_TACTILE = len(TACTILE_FIELDS)
INPUT_SIZE = (NUM_TACTILE, 1)      # what ResetPolicy compares: fixed, only stamps can reset
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


def default_weights_path() -> Path:
    """The shipped default tactile model, inside the installed package."""
    return shipped_model_path('tactile.safetensors')


# ------------------------------------------------------------------------------------ parameters
def _frame_id(value: str) -> Optional[str]:
    return None if value.strip() else 'must not be empty'


PARAMETERS: Tuple[ParameterSpec, ...] = (
    *model_parameters('tactile', '1 is fastest for one small sample per step'),
    ParameterSpec('frame_id', 'gripper', 'frame_id of the published PoseArray (the frame of the input poses)',
                  _frame_id),
    ParameterSpec('reset_gap_s', 0.1,
                  'reset the recurrent state when consecutive sample stamps are further apart (s)',
                  finite_above(0.0, inclusive=False)),
    DIAGNOSTICS_PERIOD,
)
# Why ``value`` is not acceptable for parameter ``name``, or ``None`` when it is.
parameter_problem = parameter_checker(PARAMETERS)


TactileSettings = settings_class('TactileSettings', PARAMETERS, __name__)


# ---------------------------------------------------------------------------------------- input
class BadInput(ValueError):
    """A message the model cannot use; the text says why."""


def tactile_values(message) -> np.ndarray:
    """``std_msgs/Float32MultiArray`` (anything with ``data``) -> the 21 values, or :class:`BadInput`.

    The layout, where there is one, is honoured: ``data_offset`` values are skipped, and a first
    dimension whose label lists the fields (comma-separated, as ``sim tactile --bag`` writes)
    must list :data:`TACTILE_FIELDS` in that order: a sensor driver with another order is refused
    rather than misread. An empty layout or a plain label (``"taxels"``) means the documented order.
    """
    layout = getattr(message, 'layout', None)
    values = np.asarray(message.data, dtype=np.float32).reshape(-1)
    if layout is not None:
        values = values[layout.data_offset:]
        labels = tuple(layout.dim[0].label.split(',')) if layout.dim else ()
        if len(labels) > 1 and labels != TACTILE_FIELDS:
            raise BadInput(f'tactile array fields {",".join(labels)} are not the expected {",".join(TACTILE_FIELDS)}')
    if values.size != NUM_TACTILE:
        raise BadInput(f'tactile array holds {values.size} values, expected {NUM_TACTILE} '
                       f'({",".join(TACTILE_FIELDS)})')
    if not np.isfinite(values).all():
        raise BadInput(f'tactile array holds non-finite values at {np.flatnonzero(~np.isfinite(values)).tolist()}')
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


def pose_fields(pose: Sequence[float]) -> Tuple[Tuple[float, float, float], Tuple[float, float, float, float]]:
    """``(x, y, z, angle)`` -> (position, orientation quaternion (x, y, z, w)) for a ``geometry_msgs/Pose``."""
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


# ------------------------------------------------------------------------------- model stepping
def load_predictor(weights: str, device_name: str) -> Tuple[TactilePredictor, Dict[str, Any], Path, torch.device]:
    """Load the weights (``''`` = the shipped default) onto the device the parameter names.

    Raises :class:`ModelFileError` naming the file and the problem (missing, not a readable
    regular file of sane size, corrupt, not a tactile model, weights and metadata disagree,
    unusable metadata), and
    ``DeviceUnavailableError`` / ``ValueError`` for the device.
    """
    path = checked_weights_path(weights or default_weights_path())   # ~ expanded, resolved, checked
    device = select_device(device_name)
    model, metadata = load_tactile_model(path, device)
    rate = metadata.get('rate_hz')
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0 < rate < 100_000:
        raise ModelFileError(f'{path}: metadata rate_hz {rate!r} is not a sample rate')
    if metadata.get('tactile_fields') != list(TACTILE_FIELDS):
        raise ModelFileError(f'{path}: metadata tactile_fields {metadata.get("tactile_fields")!r} are not the '
                             f'{NUM_TACTILE} fields of /tactile/raw')
    return model, metadata, path, device


class Outcome(enum.Enum):
    PROCESSED = 'processed'       # a sample was stepped: ``poses`` holds the prediction
    WAITING = 'waiting'           # a tactile array: waiting for its pose
    REJECTED = 'rejected'         # bad input: dropped with its sample, state kept


@dataclass(frozen=True)
class StepResult:
    """What became of one message; ``poses (H, 4)`` and ``stamp_ns`` only when a sample was stepped."""

    outcome: Outcome
    stamp_ns: int = 0
    poses: Optional[np.ndarray] = None
    reset_reason: Optional[str] = None
    error: Optional[str] = None
    device_failure: Optional[str] = None    # this sample's step made the model fall back to the CPU


@dataclass
class SampleCounters:
    """Messages and samples since start, by what became of them."""

    tactile_received: int = 0
    poses_received: int = 0
    processed: int = 0     # samples stepped
    rejected: int = 0      # bad messages
    resets: int = 0        # recurrent state resets, any cause


class TactileRuntime:
    """The tactile node's work on each message, and its statistics (see the module docstring)."""

    def __init__(self, model: TactilePredictor, metadata: Dict[str, Any], device: torch.device,
                 settings: TactileSettings):
        self.model = model
        self.compute = CpuFallback(model, device)
        self.rate_hz = float(metadata['rate_hz'])
        self.horizon = model.config.horizon
        self.settings = settings
        self.counters = SampleCounters()
        self.latency = LatencyStats()
        self.last_reset_reason = 'none yet'
        self.last_rejection = 'none'
        self.pairer = SamplePairer()
        self._resets = ResetPolicy(settings.reset_gap_s)
        self._state: Optional[TactileState] = None

    def configure(self, settings: TactileSettings) -> None:
        """Apply new parameter values; the recurrent state is kept."""
        self.settings = settings
        self._resets.reset_gap_s = settings.reset_gap_s

    @property
    def device(self) -> torch.device:
        """Where the model runs now (the CPU after a GPU failure)."""
        return self.compute.device

    @property
    def state(self) -> Optional[TactileState]:
        """The carried state after the last sample (``None`` right after a reset)."""
        return self._state

    def reset(self, reason: str) -> None:
        """Zero the recurrent state before the next sample."""
        self._state = None
        self.counters.resets += 1
        self.last_reset_reason = reason

    def on_tactile(self, message, now_s: float) -> StepResult:
        """A ``std_msgs/Float32MultiArray`` received at node time ``now_s``."""
        self.counters.tactile_received += 1
        try:
            values = tactile_values(message)
        except BadInput as error:
            return self._reject(error)
        self.pairer.add_tactile(values)
        return StepResult(Outcome.WAITING)

    def on_pose(self, message, now_s: float) -> StepResult:
        """A ``geometry_msgs/PoseStamped`` received at node time ``now_s``."""
        started = time.perf_counter()
        self.counters.poses_received += 1
        try:
            stamp_ns, pose = pose_values(message)
        except BadInput as error:
            return self._reject(error)
        return self._step(self.pairer.add_pose(stamp_ns or round(now_s * 1e9), pose), started)

    def _reject(self, error: BadInput) -> StepResult:
        self.counters.rejected += 1
        self.last_rejection = str(error)
        self.pairer.clear()
        return StepResult(Outcome.REJECTED, error=str(error))

    def _step(self, sample: Optional[Sample], started: float) -> StepResult:
        if sample is None:
            return StepResult(Outcome.WAITING)
        reset_reason = self._resets.check(sample.stamp_ns * 1e-9, INPUT_SIZE)
        if reset_reason is not None:
            self.reset(reset_reason)
        poses, device_failure = self.compute.run(lambda device: self._step_on(sample, device), self.reset)
        self.counters.processed += 1
        self.latency.add(time.perf_counter() - started)
        return StepResult(Outcome.PROCESSED, sample.stamp_ns, poses, device_failure or reset_reason,
                          device_failure=device_failure)

    def _step_on(self, sample: Sample, device: torch.device) -> np.ndarray:
        """Step the model once with the carried state: the next ``horizon`` poses ``(H, 4)``."""
        with torch.inference_mode():
            predicted, self._state = self.model.step(torch.from_numpy(sample.tactile).to(device)[None],
                                                     torch.from_numpy(sample.pose).to(device)[None], self._state)
            return predicted[0].cpu().numpy()


class TactileDiagnostics:
    """Periodic reports on a :class:`TactileRuntime`: the sample rate and what went wrong since
    the previous report (rejected or unpaired messages)."""

    def __init__(self, runtime: TactileRuntime):
        self._runtime = runtime
        self._last_time_s: Optional[float] = None
        self._last = (SampleCounters(), 0)

    def report(self, now_s: float, warnings: Sequence[str] = (),
               extra_values: Sequence[Tuple[str, str]] = ()) -> DiagnosticReport:
        """The report at monotonic time ``now_s``, with the caller's ``warnings``."""
        runtime = self._runtime
        counters, unpaired = replace(runtime.counters), runtime.pairer.unpaired
        last, last_unpaired = self._last
        elapsed = None if self._last_time_s is None else now_s - self._last_time_s
        rate = (counters.processed - last.processed) / elapsed if elapsed else 0.0
        self._last_time_s, self._last = now_s, (counters, unpaired)
        warnings = list(warnings)
        if counters.rejected > last.rejected:
            warnings.append(f'{counters.rejected - last.rejected} message(s) rejected since the last report '
                            f'(last: {runtime.last_rejection})')
        if unpaired > last_unpaired:
            warnings.append(f'{unpaired - last_unpaired} message(s) without a partner on the other stream '
                            'since the last report (is /object/pose published with every tactile sample?)')
        if runtime.compute.warning():
            warnings.append(runtime.compute.warning())
        values = [
            ('rate_hz', f'{rate:.2f}'),
            ('latency_p50_ms', format_ms(runtime.latency.percentile_ms(50))),
            ('latency_p99_ms', format_ms(runtime.latency.percentile_ms(99))),
            ('tactile_received', str(counters.tactile_received)),
            ('poses_received', str(counters.poses_received)),
            ('samples_processed', str(counters.processed)),
            ('messages_rejected', str(counters.rejected)),
            ('messages_unpaired', str(unpaired)),
            ('state_resets', str(counters.resets)),
            ('last_reset_reason', runtime.last_reset_reason),
            ('last_rejection', runtime.last_rejection),
            ('model_rate_hz', f'{runtime.rate_hz:g}'),
            ('horizon', str(runtime.horizon)),
            ('device', str(runtime.device)),
            ('device_fallback', runtime.compute.failure or 'none'),
            *extra_values,
        ]
        if warnings:
            return DiagnosticReport(DIAGNOSTIC_WARN, '; '.join(warnings), values)
        return DiagnosticReport(DIAGNOSTIC_OK, f'{rate:.1f} samples/s', values)
