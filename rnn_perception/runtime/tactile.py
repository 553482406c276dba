"""The tactile node's work on its two input streams, without ROS, and its sample counters.

Its parameters are in :mod:`.tactile_parameters`, the input checks and the pairing in
:mod:`.tactile_input`, its diagnostics in :mod:`.tactile_diagnostics`.

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
   stamps going backwards (:class:`~rnn_perception.runtime.reset_policy.ResetPolicy`), and on the
   node's ``~/reset`` service.
3. **Step.** One step with the carried state, on the backend the ``backend`` parameter names
   (``torch``: ``TactilePredictor.step``; ``onnxruntime``: the exported step graph; see
   :mod:`rnn_perception.models.step_engine`): the next ``horizon`` poses ``(H, 4)`` (x, y, z,
   angle about the grasp axis y). If the GPU fails (out of memory, a CUDA or execution provider
   error), the engine moves to the CPU for good, the state resets and the sample is answered
   there (:meth:`~rnn_perception.models.step_engine.StepEngine.run`).
"""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..models.engines import start_engine
from ..models.loading import load_model, LoadedModel
from ..models.tactile import default_weights_path, load_tactile_model
from .diagnostics import LatencyStats
from .reset_policy import ResetPolicy
from .tactile_input import BadInput, NUM_TACTILE, pose_values, Sample, SamplePairer, tactile_values
from .parameters import engine_options
from .tactile_parameters import TactileSettings

INPUT_SIZE = (NUM_TACTILE, 1)      # what ResetPolicy compares: fixed, only stamps can reset


def load_predictor(weights: str, device_name: str) -> LoadedModel:
    """The tactile model the ``weights`` (``''`` = the shipped default) and ``device``
    parameters name (:func:`~rnn_perception.models.loading.load_model`)."""
    return load_model(weights, device_name, default_weights_path(), load_tactile_model)


class Outcome(enum.Enum):
    PROCESSED = 'processed'       # a sample was stepped: ``poses`` holds the prediction
    WAITING = 'waiting'           # a tactile array: waiting for its pose
    REJECTED = 'rejected'         # bad input: dropped with its sample, state kept


@dataclass(frozen=True)
class StepResult:
    """What became of one message; ``poses (H, 4)`` and ``stamp_ns`` only when a sample was
    stepped."""

    outcome: Outcome
    stamp_ns: int = 0
    poses: Optional[np.ndarray] = None
    reset_reason: Optional[str] = None
    error: Optional[str] = None
    device_failure: Optional[str] = None  # this sample's step made the model fall back to the CPU


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

    def __init__(self, loaded: LoadedModel, settings: TactileSettings):
        self.model = loaded.model
        # raises EngineStartError when the backend cannot start as the settings ask
        self.engine = start_engine('tactile', loaded, engine_options(settings))
        self.rate_hz = float(loaded.metadata['rate_hz'])
        self.horizon = self.model.config.horizon
        self.settings = settings
        self.counters = SampleCounters()
        self.latency = LatencyStats()
        self.last_reset_reason = 'none yet'
        self.last_rejection = 'none'
        self.pairer = SamplePairer()
        self._resets = ResetPolicy(settings.reset_gap_s)

    def configure(self, settings: TactileSettings) -> None:
        """Apply new parameter values; the recurrent state is kept."""
        self.settings = settings
        self._resets.reset_gap_s = settings.reset_gap_s

    @property
    def device(self) -> str:
        """Where the model runs now (the CPU after a GPU failure)."""
        return self.engine.device

    @property
    def state(self):
        """The carried state after the last sample, in the backend's form (``None`` right after
        a reset)."""
        return self.engine.state

    def reset(self, reason: str) -> None:
        """Zero the recurrent state before the next sample."""
        self.engine.reset()
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
        poses, device_failure = self.engine.run(
            (sample.tactile[None], sample.pose[None]), self.reset)
        self.counters.processed += 1
        self.latency.add(time.perf_counter() - started)
        return StepResult(
            Outcome.PROCESSED,
            sample.stamp_ns,
            poses,
            device_failure or reset_reason,
            device_failure=device_failure,
        )
