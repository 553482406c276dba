"""The collision node's periodic ``/diagnostics`` report on its runtime
(:class:`DiagnosticsSummary`)."""

from __future__ import annotations

from dataclasses import replace
from typing import Optional, Sequence, Tuple

from .collision import CollisionRuntime, FrameCounters
from .diagnostics import DIAGNOSTIC_OK, DIAGNOSTIC_WARN, DiagnosticReport, format_ms


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
            warnings.append(
                f'{counters.rejected - last.rejected} frame(s) rejected since the last '
                f'report (last: {runtime.last_rejection})'
            )
        if counters.stale > last.stale:
            warnings.append(
                f'{counters.stale - last.stale} stale frame(s) dropped since the last report '
                f'(older than max_frame_age_s={runtime.settings.max_frame_age_s:g} s)'
            )
        warnings += [
            warning
            for warning in (runtime.slow_camera_warning(), runtime.engine.warning())
            if warning
        ]
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
            ('backend', runtime.engine.describe()),
            ('device_fallback', runtime.engine.failure or 'none'),
            *extra_values,
        ]
        if warnings:
            return DiagnosticReport(DIAGNOSTIC_WARN, '; '.join(warnings), values)
        return DiagnosticReport(DIAGNOSTIC_OK, f'{rate:.1f} frames/s', values)
