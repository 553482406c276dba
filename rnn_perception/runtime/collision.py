"""The collision node's work on one camera frame, without ROS, and its frame counters.

Its parameters are in :mod:`.collision_parameters`, the frame policies in :mod:`.frame_policy`,
its diagnostics in :mod:`.collision_diagnostics` and the debug picture in
:mod:`.activation_mosaic`.

One camera frame goes through :meth:`CollisionRuntime.process`:

1. **Stale?** A frame older than ``max_frame_age_s`` against the node's clock is dropped and
   counted (:class:`StalenessCheck`; the rule for clocks that cannot be compared is there).
2. **Readable?** The image is converted to RGB: a raw ``sensor_msgs/Image`` by
   :mod:`rnn_perception.data.image_conversion`, a ``sensor_msgs/CompressedImage`` (parameter
   ``image_transport`` ``compressed``) by :mod:`rnn_perception.data.compressed_image`, at the
   smallest JPEG scale that keeps the model's input size. Garbage is dropped and counted with its
   reason, the recurrent state is left alone, and the next good frame is answered.
3. **Reset?** The recurrent state goes back to zeros on a stamp gap over ``reset_gap_s``, on
   stamps going backwards (a bag that loops) and on a resolution change (:class:`ResetPolicy`);
   the node adds a ``~/reset`` service.
4. **Subsample?** Frames faster than the model's training rate are thinned to it
   (:class:`FrameSubsampler`).
5. **Step.** The frame is resized to the model's input (``resize_frames``, as in training and
   evaluation) and the model runs **one** step with the carried state, never a window of frames
   again, on the backend the ``backend`` parameter names
   (:mod:`rnn_perception.models.step_engine`): ``torch`` steps the model's frozen snapshot
   (``CollisionPredictor.frozen``: constants folded, convolutions fused), ``onnxruntime`` the
   exported step graph; both answer alike (within 1e-5).
6. **Alert.** The probability goes through :class:`AlertHysteresis` for the boolean alert.

If the GPU fails during a step (out of memory, a CUDA or execution provider error), the engine
moves to the CPU for good, the state resets and the frame is answered there
(:meth:`~rnn_perception.models.step_engine.StepEngine.run`).

Frames without a stamp (zero) are timed by the node clock instead.
"""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from ..data.camera_frames import frame_reader
from ..data.image_conversion import ImageConversionError
from ..models.collision import (default_weights_path, load_collision_model, model_threshold,
                                resize_frames)
from ..models.engines import start_engine
from ..models.loading import load_model, LoadedModel
from .collision_parameters import CollisionSettings, USE_MODEL_THRESHOLD
from .diagnostics import LatencyStats
from .frame_policy import AlertHysteresis, FrameSubsampler, StalenessCheck
from .parameters import engine_options
from .reset_policy import ResetPolicy, stamp_seconds


@dataclass
class FrameCounters:
    """Frames since start, by what became of them."""

    received: int = 0
    processed: int = 0
    subsampled: int = 0    # skipped to match the model's frame rate
    stale: int = 0         # older than max_frame_age_s
    rejected: int = 0      # unreadable images
    resets: int = 0        # recurrent state resets, any cause


def load_predictor(weights: str, device_name: str) -> LoadedModel:
    """The collision model the ``weights`` (``''`` = the shipped default) and ``device``
    parameters name (:func:`~rnn_perception.models.loading.load_model`)."""
    return load_model(weights, device_name, default_weights_path(), load_collision_model)


class Outcome(enum.Enum):
    PROCESSED = 'processed'
    SUBSAMPLED = 'subsampled'
    STALE = 'stale'
    REJECTED = 'rejected'


@dataclass(frozen=True)
class FrameResult:
    """What became of one frame; ``probability``/``alert`` only when it was processed."""

    outcome: Outcome
    stamp_s: float
    probability: Optional[float] = None
    alert: bool = False
    reset_reason: Optional[str] = None
    error: Optional[str] = None
    device_failure: Optional[str] = None    # this frame's step made the model fall back to the CPU


class CollisionRuntime:
    """The collision node's work on one frame, and its statistics (see the module docstring)."""

    def __init__(self, loaded: LoadedModel, settings: CollisionSettings):
        self.model = loaded.model
        # raises EngineStartError when the backend cannot start as the settings ask
        self.engine = start_engine('collision', loaded, engine_options(settings))
        self.model_fps = float(loaded.metadata['fps'])
        self.model_threshold = model_threshold(loaded.metadata)
        self.counters = FrameCounters()
        self.latency = LatencyStats()
        self.last_reset_reason = 'none yet'
        self.last_rejection = 'none'
        self.settings = settings
        # the transport is read-only: one reader for the node's life
        self.read_frame = frame_reader(settings.image_transport, self.model.config.image_size)
        self._resets = ResetPolicy(settings.reset_gap_s)
        self._subsampler = FrameSubsampler(self.model_fps, settings.subsample_to_model_rate)
        self.staleness = StalenessCheck(settings.max_frame_age_s)
        self.alert = AlertHysteresis(self._alert_threshold(settings), settings.alert_hysteresis)

    def _alert_threshold(self, settings: CollisionSettings) -> float:
        if settings.alert_on_threshold == USE_MODEL_THRESHOLD:
            return self.model_threshold
        return settings.alert_on_threshold

    def configure(self, settings: CollisionSettings) -> None:
        """Apply new parameter values; the recurrent state, the alert and the timeline are kept."""
        self.settings = settings
        self._resets.reset_gap_s = settings.reset_gap_s
        self._subsampler.enabled = settings.subsample_to_model_rate
        self.staleness.max_frame_age_s = settings.max_frame_age_s
        self.alert.set_thresholds(self._alert_threshold(settings), settings.alert_hysteresis)

    @property
    def device(self) -> str:
        """Where the model runs now (the CPU after a GPU failure)."""
        return self.engine.device

    @property
    def state(self):
        """The ConvLSTM state after the last processed frame, in the backend's form (``None``
        right after a reset)."""
        return self.engine.state

    @property
    def input_rate_hz(self) -> Optional[float]:
        return self._subsampler.input_rate_hz

    def recurrent_state_arrays(self) -> Optional[List[np.ndarray]]:
        """Each ConvLSTM layer's ``h`` and ``c`` of the carried state (what the debug mosaic
        shows; the previous frame of a ``frame_difference`` model left out), ``None`` before
        the first frame."""
        arrays = self.engine.state_arrays()
        return None if arrays is None else arrays[:2 * len(self.model.recurrent)]

    def slow_camera_warning(self) -> Optional[str]:
        return self._subsampler.slow_camera_warning()

    def reset(self, reason: str) -> None:
        """Zero the recurrent state (and clear the alert) before the next frame."""
        self.engine.reset()
        self._subsampler.restart()
        self.alert.active = False
        self.counters.resets += 1
        self.last_reset_reason = reason

    def process(self, message, now_s: float) -> FrameResult:
        """One ``sensor_msgs/msg/Image`` or, with the compressed transport, one
        ``sensor_msgs/msg/CompressedImage`` (any object with its fields) received at node time
        ``now_s`` -> its :class:`FrameResult`."""
        started = time.perf_counter()
        self.counters.received += 1
        stamp_s = stamp_seconds(message) or now_s
        if self.staleness.is_stale(stamp_s, now_s):
            self.counters.stale += 1
            return FrameResult(Outcome.STALE, stamp_s)
        try:
            rgb, size = self.read_frame(message)
        except ImageConversionError as error:
            self.counters.rejected += 1
            self.last_rejection = str(error)
            return FrameResult(Outcome.REJECTED, stamp_s, error=str(error))
        reset_reason = self._resets.check(stamp_s, size)
        if reset_reason is not None:
            self.reset(reset_reason)
        if not self._subsampler.accept(stamp_s):
            self.counters.subsampled += 1
            return FrameResult(Outcome.SUBSAMPLED, stamp_s, reset_reason=reset_reason)
        frame = resize_frames(rgb[None], self.model.config.image_size)   # (1, h, w, 3)
        output, device_failure = self.engine.run((frame,), self.reset)
        probability = float(output)
        self.counters.processed += 1
        self.latency.add(time.perf_counter() - started)
        return FrameResult(Outcome.PROCESSED, stamp_s, probability, self.alert.update(probability),
                           device_failure or reset_reason, device_failure=device_failure)
