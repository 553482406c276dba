"""The collision node's logic, without ROS: parameters, per-frame policy, model stepping, statistics.

One camera frame goes through :meth:`CollisionRuntime.process`:

1. **Stale?** A frame older than ``max_frame_age_s`` against the node's clock is dropped and
   counted (:class:`StalenessCheck`; the rule for clocks that cannot be compared is there).
2. **Readable?** The image is converted to RGB (:mod:`rnn_perception.ros.image_conversion`);
   garbage is dropped and counted with its reason, and the next good frame is answered.
3. **Reset?** The recurrent state goes back to zeros on a stamp gap over ``reset_gap_s``, on
   stamps going backwards (a bag that loops) and on a resolution change (:class:`ResetPolicy`);
   the node adds a ``~/reset`` service.
4. **Subsample?** Frames faster than the model's training rate are thinned to it
   (:class:`FrameSubsampler`).
5. **Step.** The frame is resized to the model's input (``resize_frames``, as in training and
   evaluation) and the model runs **one** ``step`` with the carried state, in
   ``torch.inference_mode``; never a window of frames again. It steps the model's frozen
   snapshot (``CollisionPredictor.frozen``: constants folded, convolutions fused).
6. **Alert.** The probability goes through :class:`AlertHysteresis` for the boolean alert.

If the GPU fails during a step (out of memory, a CUDA error), the model moves to the CPU for
good, the state resets and the frame is answered there (:class:`~.common.CpuFallback`).

Frames without a stamp (zero) are timed by the node clock instead.
"""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..models.collision import (CollisionPredictor, ModelFileError, frames_to_tensor, load_collision_model,
                                resize_frames)
from ..models.weights_file import checked_weights_path
from ..ros.image_conversion import ImageConversionError, image_to_rgb
from ..training.utils import select_device
from .common import (  # noqa: F401  (re-exported: the collision node's interface)
    DIAGNOSTIC_OK, DIAGNOSTIC_WARN, DIAGNOSTICS_PERIOD, LATENCY_WINDOW, CpuFallback, DiagnosticReport, LatencyStats,
    ParameterSpec, ResetPolicy, Settings, at_least_one, check_parameter, finite_above, format_ms, model_parameters,
    one_of, parameter_checker, settings_class, shipped_model_path, stamp_seconds)

DEFAULT_THRESHOLD = 0.5                # when the weights' metadata has none
RELIABILITY_CHOICES = ('auto', 'reliable', 'best_effort')
# A frame this far from the clock (either way) was stamped on another time base, e.g. a bag's
# sim time seen by a node on wall time: its age means nothing, so it is never called stale.
CLOCK_MISMATCH_S = 3600.0
# A frame is kept by the subsampler once this fraction of the model's frame period has passed
# since the last kept one: a 60 Hz camera is halved for a 30 Hz model, camera jitter is tolerated.
SUBSAMPLE_PERIOD_FRACTION = 0.75
# The camera is called slower than the model's rate below this fraction of it.
SLOW_CAMERA_FRACTION = 0.8


def default_weights_path() -> Path:
    """The shipped default model, inside the installed package."""
    return shipped_model_path('collision.safetensors')


# ------------------------------------------------------------------------------------ parameters
def _threshold_or_model(value: float) -> Optional[str]:
    if value == -1.0 or 0.0 <= value <= 1.0:
        return None
    return "must be in [0, 1], or -1 for the weights' own threshold"


def _hysteresis(value: float) -> Optional[str]:
    return None if 0.0 <= value < 1.0 else 'must be in [0, 1)'


PARAMETERS: Tuple[ParameterSpec, ...] = (
    *model_parameters('collision', '1 is fastest for one small frame per step, more threads only wait '
                                   'on each other (and on a busy CPU wreck the tail latency)'),
    ParameterSpec('image_qos', 'auto',
                  "image subscription reliability: auto (match the camera's publishers), reliable "
                  'or best_effort',
                  one_of(RELIABILITY_CHOICES)),
    ParameterSpec('image_queue_depth', 1,
                  'keep-last depth of the image subscription: 1 = always act on the newest frame (a live '
                  'camera: a frame that waits is stale); more = step every frame of a burst, e.g. when '
                  'replaying a bag to evaluate (a player that falls behind publishes frames back to back)',
                  at_least_one, read_only=True),
    ParameterSpec('reset_gap_s', 0.5,
                  'reset the recurrent state when consecutive frame stamps are further apart (s)',
                  finite_above(0.0, inclusive=False)),
    ParameterSpec('max_frame_age_s', 0.5,
                  'drop frames older than this against the node clock (s); 0 = never; frames '
                  'stamped on another time base (over an hour off) are never called stale',
                  finite_above(0.0, inclusive=True)),
    ParameterSpec('subsample_to_model_rate', True,
                  "thin frames faster than the weights' training rate down to it (else use all)"),
    ParameterSpec('alert_on_threshold', -1.0,
                  "probability at which the alert turns on; -1 = the weights' calibrated threshold",
                  _threshold_or_model),
    ParameterSpec('alert_hysteresis', 0.1,
                  'the alert turns off only once the probability drops below '
                  'alert_on_threshold - alert_hysteresis', _hysteresis),
    ParameterSpec('no_frame_warning_s', 5.0,
                  'warn when a publisher is matched but no frame arrived for this long (s)',
                  finite_above(0.0, inclusive=False)),
    DIAGNOSTICS_PERIOD,
)
# Why ``value`` is not acceptable for parameter ``name``, or ``None`` when it is.
parameter_problem = parameter_checker(PARAMETERS)


CollisionSettings = settings_class('CollisionSettings', PARAMETERS, __name__)


# -------------------------------------------------------------------------------- frame policy
class FrameSubsampler:
    """Frame-rate policy against the model's training rate ``model_fps``.

    *Faster* cameras are subsampled (when ``enabled``): a frame is kept once
    :data:`SUBSAMPLE_PERIOD_FRACTION` of the model's frame period has passed since the last kept
    frame, so 60 Hz becomes 30 Hz and the ConvLSTM sees motion at the speed it learnt. *Slower*
    cameras cannot be helped (frames cannot be invented): :meth:`slow_camera_warning` says so.
    """

    def __init__(self, model_fps: float, enabled: bool):
        self.model_fps = model_fps
        self.enabled = enabled
        self.input_rate_hz: Optional[float] = None   # smoothed rate of the incoming stamps
        self._last_kept_s: Optional[float] = None
        self._last_seen_s: Optional[float] = None

    def restart(self) -> None:
        """Forget the last kept frame (after a state reset the next frame is always kept)."""
        self._last_kept_s = self._last_seen_s = None

    def accept(self, stamp_s: float) -> bool:
        """Whether to step the frame stamped ``stamp_s``."""
        if self._last_seen_s is not None and stamp_s > self._last_seen_s:
            rate = 1.0 / (stamp_s - self._last_seen_s)
            self.input_rate_hz = rate if self.input_rate_hz is None else 0.9 * self.input_rate_hz + 0.1 * rate
        self._last_seen_s = stamp_s
        if (self.enabled and self._last_kept_s is not None
                and stamp_s - self._last_kept_s < SUBSAMPLE_PERIOD_FRACTION / self.model_fps):
            return False
        self._last_kept_s = stamp_s
        return True

    def slow_camera_warning(self) -> Optional[str]:
        """A warning when frames come clearly slower than the model's training rate."""
        rate = self.input_rate_hz
        if rate is None or rate >= SLOW_CAMERA_FRACTION * self.model_fps:
            return None
        return (f'frames arrive at {rate:.1f} Hz, slower than the {self.model_fps:g} Hz the model was '
                'trained at: objects seem to move faster than in training, expect earlier alerts')


class StalenessCheck:
    """Is a frame too old to act on? ``age = clock - stamp`` against ``max_frame_age_s``.

    The check applies only when the two are comparable: never when ``max_frame_age_s`` is 0,
    when the clock reads 0 (``use_sim_time`` before the first ``/clock`` message), or when the
    stamp is over :data:`CLOCK_MISMATCH_S` off (another time base, e.g. a bag's sim-time stamps
    replayed without ``/clock``). :attr:`status` says which applied last, for diagnostics.
    """

    def __init__(self, max_frame_age_s: float):
        self.max_frame_age_s = max_frame_age_s
        self.status = 'no frame yet'

    def is_stale(self, stamp_s: float, now_s: float) -> bool:
        age = now_s - stamp_s
        if self.max_frame_age_s == 0.0:
            self.status = 'off (max_frame_age_s is 0)'
        elif now_s == 0.0:
            self.status = 'off (clock not started)'
        elif abs(age) > CLOCK_MISMATCH_S:
            self.status = 'off (stamps and clock on different time bases)'
        else:
            self.status = 'on'
            return age > self.max_frame_age_s
        return False


class AlertHysteresis:
    """Boolean alert: on at ``probability >= on_threshold``, off again only below
    ``on_threshold - hysteresis``, so a probability hovering at the threshold does not flicker."""

    def __init__(self, on_threshold: float, hysteresis: float):
        self.active = False
        self.set_thresholds(on_threshold, hysteresis)

    def set_thresholds(self, on_threshold: float, hysteresis: float) -> None:
        self.on_threshold = on_threshold
        self.off_threshold = max(0.0, on_threshold - hysteresis)

    def update(self, probability: float) -> bool:
        if self.active:
            self.active = probability >= self.off_threshold
        else:
            self.active = probability >= self.on_threshold
        return self.active


def choose_reliability(mode: str, offered: Sequence[str]) -> str:
    """The image subscription's reliability (``'reliable'`` or ``'best_effort'``).

    ``mode`` ``'reliable'``/``'best_effort'`` is taken as is. ``'auto'`` matches what the topic's
    publishers ``offered`` (as rosbag2's recorder does): reliable only when every publisher is
    reliable (a best-effort subscription silently loses large frames of a reliable publisher
    under Fast DDS), best effort as soon as one is not (a reliable subscription gets nothing
    from a best-effort publisher), and best effort while there is none (it matches any
    publisher that appears until the choice is made again).
    """
    if mode != 'auto':
        return mode
    if offered and all(reliability == 'reliable' for reliability in offered):
        return 'reliable'
    return 'best_effort'


class NoFrameWatchdog:
    """Notices a publisher that is matched but delivers nothing for ``timeout_s``."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self._silent_since: Optional[float] = None

    def frame_arrived(self, now_s: float) -> None:
        self._silent_since = now_s

    def check(self, now_s: float, matched_publishers: int, topic: str) -> Optional[str]:
        """A warning (with the remedy) while matched publishers have been silent too long."""
        if matched_publishers == 0:
            self._silent_since = None
            return None
        if self._silent_since is None:
            self._silent_since = now_s
        silent_s = now_s - self._silent_since
        if silent_s < self.timeout_s:
            return None
        return (f'{matched_publishers} publisher(s) matched on {topic} but no frame arrived for '
                f'{silent_s:.0f} s. Fast DDS over UDP drops large best-effort frames (e.g. 640x480): '
                'make the camera publish reliable, or start EVERY process (camera and this node) '
                'with FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA; processes with and without it '
                'cannot talk to each other')


# ---------------------------------------------------------------------------------- statistics
@dataclass
class FrameCounters:
    """Frames since start, by what became of them."""

    received: int = 0
    processed: int = 0
    subsampled: int = 0    # skipped to match the model's frame rate
    stale: int = 0         # older than max_frame_age_s
    rejected: int = 0      # unreadable images
    resets: int = 0        # recurrent state resets, any cause


# ------------------------------------------------------------------------------- model stepping
def load_predictor(weights: str,
                   device_name: str) -> Tuple[CollisionPredictor, Dict[str, Any], Path, torch.device]:
    """Load the weights (``''`` = the shipped default) onto the device the parameter names.

    Raises :class:`ModelFileError` naming the file and the problem (missing, not a readable
    regular file of sane size, corrupt, not a collision model, weights and metadata disagree,
    unusable metadata), and
    ``DeviceUnavailableError`` / ``ValueError`` for the device.
    """
    path = checked_weights_path(weights or default_weights_path())   # ~ expanded, resolved, checked
    device = select_device(device_name)
    model, metadata = load_collision_model(path, device)
    fps = metadata.get('fps')
    if not isinstance(fps, (int, float)) or isinstance(fps, bool) or not 0 < fps < 1000:
        raise ModelFileError(f'{path}: metadata fps {fps!r} is not a frame rate (need a number in (0, 1000))')
    threshold = metadata.get('threshold', DEFAULT_THRESHOLD)
    if not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise ModelFileError(f'{path}: metadata threshold {threshold!r} is not a probability')
    if metadata.get('channel_order', 'rgb') != 'rgb':
        raise ModelFileError(f'{path}: metadata channel_order {metadata["channel_order"]!r} '
                             "is not the 'rgb' this node feeds")
    return model, metadata, path, device


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

    def __init__(self, model: CollisionPredictor, metadata: Dict[str, Any], device: torch.device,
                 settings: CollisionSettings):
        self.model = model
        self.compute = CpuFallback(model, device)
        self._frozen, self._frozen_for = model.frozen(), device
        self.model_fps = float(metadata['fps'])
        self.model_threshold = float(metadata.get('threshold', DEFAULT_THRESHOLD))
        self.counters = FrameCounters()
        self.latency = LatencyStats()
        self.last_reset_reason = 'none yet'
        self.last_rejection = 'none'
        self._state = None
        self.settings = settings
        self._resets = ResetPolicy(settings.reset_gap_s)
        self._subsampler = FrameSubsampler(self.model_fps, settings.subsample_to_model_rate)
        self.staleness = StalenessCheck(settings.max_frame_age_s)
        self.alert = AlertHysteresis(self._alert_threshold(settings), settings.alert_hysteresis)

    def _alert_threshold(self, settings: CollisionSettings) -> float:
        return self.model_threshold if settings.alert_on_threshold == -1.0 else settings.alert_on_threshold

    def configure(self, settings: CollisionSettings) -> None:
        """Apply new parameter values; the recurrent state, the alert and the timeline are kept."""
        self.settings = settings
        self._resets.reset_gap_s = settings.reset_gap_s
        self._subsampler.enabled = settings.subsample_to_model_rate
        self.staleness.max_frame_age_s = settings.max_frame_age_s
        self.alert.set_thresholds(self._alert_threshold(settings), settings.alert_hysteresis)

    @property
    def device(self) -> torch.device:
        """Where the model runs now (the CPU after a GPU failure)."""
        return self.compute.device

    @property
    def state(self):
        """The ConvLSTM state after the last processed frame (``None`` right after a reset)."""
        return self._state

    @property
    def input_rate_hz(self) -> Optional[float]:
        return self._subsampler.input_rate_hz

    def slow_camera_warning(self) -> Optional[str]:
        return self._subsampler.slow_camera_warning()

    def reset(self, reason: str) -> None:
        """Zero the recurrent state (and clear the alert) before the next frame."""
        self._state = None
        self._subsampler.restart()
        self.alert.active = False
        self.counters.resets += 1
        self.last_reset_reason = reason

    def process(self, message, now_s: float) -> FrameResult:
        """One ``sensor_msgs/msg/Image`` (any object with its fields) received at node time
        ``now_s`` -> its :class:`FrameResult`."""
        started = time.perf_counter()
        self.counters.received += 1
        stamp_s = stamp_seconds(message) or now_s
        if self.staleness.is_stale(stamp_s, now_s):
            self.counters.stale += 1
            return FrameResult(Outcome.STALE, stamp_s)
        try:
            rgb = image_to_rgb(message)
        except ImageConversionError as error:
            self.counters.rejected += 1
            self.last_rejection = str(error)
            return FrameResult(Outcome.REJECTED, stamp_s, error=str(error))
        reset_reason = self._resets.check(stamp_s, (rgb.shape[1], rgb.shape[0]))
        if reset_reason is not None:
            self.reset(reset_reason)
        if not self._subsampler.accept(stamp_s):
            self.counters.subsampled += 1
            return FrameResult(Outcome.SUBSAMPLED, stamp_s, reset_reason=reset_reason)
        probability, device_failure = self.compute.run(lambda device: self._step_on(rgb, device), self.reset)
        self.counters.processed += 1
        self.latency.add(time.perf_counter() - started)
        return FrameResult(Outcome.PROCESSED, stamp_s, probability, self.alert.update(probability),
                           device_failure or reset_reason, device_failure=device_failure)

    def _step_on(self, rgb: np.ndarray, device: torch.device) -> float:
        """Step the model once on an RGB frame with the carried state; the hit probability."""
        with torch.inference_mode():
            if device != self._frozen_for:            # the model fell back to the CPU: freeze it there
                self._frozen, self._frozen_for = self.model.frozen(), device
            frame = frames_to_tensor(resize_frames(rgb[None], self.model.config.image_size), device)
            logits, self._state = self._frozen.step(frame, self._state)
            return float(torch.sigmoid(logits[0]))


# ------------------------------------------------------------------------------ debug picture
MIN_MAP_CELL_PX = 16      # coarse maps (the default model's are 8x8) are scaled up to stay visible


def tile_maps(maps: np.ndarray, columns: int, cell: int) -> np.ndarray:
    """``(C, h, w)`` float maps in [-1, 1] -> one uint8 grid image, ``columns`` maps per row,
    each scaled (nearest) to ``cell`` x ``cell`` px, 1 px black gaps; 0 shows as mid grey."""
    count, height, width = maps.shape
    rows = -(-count // columns)
    grid = np.zeros((rows * (cell + 1) - 1, columns * (cell + 1) - 1), np.uint8)
    nearest_rows = np.arange(cell) * height // cell
    nearest_columns = np.arange(cell) * width // cell
    pixels = np.clip((maps + 1.0) * 127.5, 0, 255).astype(np.uint8)[:, nearest_rows][:, :, nearest_columns]
    for index in range(count):
        top, left = (cell + 1) * np.array(divmod(index, columns))
        grid[top:top + cell, left:left + cell] = pixels[index]
    return grid


def activation_mosaic(state: Sequence[Tuple[torch.Tensor, ...]], columns: int = 8) -> np.ndarray:
    """The ConvLSTM state of the first batch item as one mono8 picture: per layer, the hidden
    maps ``h`` then the cell maps ``c``, stacked top to bottom with 3 px gaps.

    ``h`` is already in [-1, 1]; each ``c`` (unbounded) is divided by its largest magnitude, so
    the picture shows where the memory is, not its absolute scale.
    """
    blocks: List[np.ndarray] = []
    cell = max(MIN_MAP_CELL_PX, *(int(tensor.shape[-1]) for layer in state for tensor in layer))
    for layer in state:
        for name, tensor in zip(('h', 'c'), layer):
            maps = tensor[0].detach().float().cpu().numpy()
            if name == 'c':
                maps = maps / max(float(np.abs(maps).max()), 1e-6)
            blocks.append(tile_maps(maps, columns, cell))
    width = max(block.shape[1] for block in blocks)
    gap = np.zeros((3, width), np.uint8)
    padded = [np.pad(block, ((0, 0), (0, width - block.shape[1]))) for block in blocks]
    return np.vstack([part for block in padded for part in (block, gap)][:-1])


class DiagnosticsSummary:
    """Periodic reports on a :class:`CollisionRuntime`: the processing rate and what went wrong
    since the previous report (rejected or stale frames, a slow camera, caller's warnings)."""

    def __init__(self, runtime: 'CollisionRuntime'):
        self._runtime = runtime
        self._last_time_s: Optional[float] = None
        self._last_counters = FrameCounters()

    def report(self, now_s: float, warnings: Sequence[str] = (),
               extra_values: Sequence[Tuple[str, str]] = ()) -> DiagnosticReport:
        """The report at monotonic time ``now_s``."""
        runtime, last = self._runtime, self._last_counters
        counters = replace(runtime.counters)
        elapsed = None if self._last_time_s is None else now_s - self._last_time_s
        rate = (counters.processed - last.processed) / elapsed if elapsed else 0.0
        self._last_time_s, self._last_counters = now_s, counters
        warnings = list(warnings)
        if counters.rejected > last.rejected:
            warnings.append(f'{counters.rejected - last.rejected} frame(s) rejected since the last '
                            f'report (last: {runtime.last_rejection})')
        if counters.stale > last.stale:
            warnings.append(f'{counters.stale - last.stale} stale frame(s) dropped since the last report '
                            f'(older than max_frame_age_s={runtime.settings.max_frame_age_s:g} s)')
        warnings += [warning for warning in (runtime.slow_camera_warning(), runtime.compute.warning()) if warning]
        input_rate = runtime.input_rate_hz
        values = [
            ('rate_hz', f'{rate:.2f}'),
            ('latency_p50_ms', format_ms(runtime.latency.percentile_ms(50))),
            ('latency_p99_ms', format_ms(runtime.latency.percentile_ms(99))),
            ('frames_received', str(counters.received)),
            ('frames_processed', str(counters.processed)),
            ('frames_subsampled', str(counters.subsampled)),
            ('frames_stale', str(counters.stale)),
            ('frames_rejected', str(counters.rejected)),
            ('state_resets', str(counters.resets)),
            ('last_reset_reason', runtime.last_reset_reason),
            ('last_rejection', runtime.last_rejection),
            ('input_rate_hz', 'n/a' if input_rate is None else f'{input_rate:.2f}'),
            ('model_fps', f'{runtime.model_fps:g}'),
            ('stale_check', runtime.staleness.status),
            ('device', str(runtime.device)),
            ('device_fallback', runtime.compute.failure or 'none'),
            *extra_values,
        ]
        if warnings:
            return DiagnosticReport(DIAGNOSTIC_WARN, '; '.join(warnings), values)
        return DiagnosticReport(DIAGNOSTIC_OK, f'{rate:.1f} frames/s', values)
