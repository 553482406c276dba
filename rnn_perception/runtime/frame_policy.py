"""What the collision runtime decides per frame besides stepping: is it too old
(:class:`StalenessCheck`), is it one frame too many for the model's rate
(:class:`FrameSubsampler`), and is the alert on (:class:`AlertHysteresis`)."""
from __future__ import annotations

from typing import Optional


# A frame this far from the clock (either way) was stamped on another time base, e.g. a bag's
# sim time seen by a node on wall time: its age means nothing, so it is never called stale.
CLOCK_MISMATCH_S = 3600.0


# A frame is kept by the subsampler once this fraction of the model's frame period has passed
# since the last kept one: a 60 Hz camera is halved for a 30 Hz model, camera jitter is tolerated.
SUBSAMPLE_PERIOD_FRACTION = 0.75


# The camera is called slower than the model's rate below this fraction of it.
SLOW_CAMERA_FRACTION = 0.8


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
            self.input_rate_hz = (
                rate if self.input_rate_hz is None else 0.9 * self.input_rate_hz + 0.1 * rate
            )
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
        return (
            f'frames arrive at {rate:.1f} Hz, slower than the {self.model_fps:g} Hz the model was '
            'trained at: objects seem to move faster than in training, expect earlier alerts'
        )


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
