"""The tactile node's periodic ``/diagnostics`` report on its runtime
(:class:`TactileDiagnostics`)."""

from __future__ import annotations

from dataclasses import replace
from typing import Optional, Sequence, Tuple

from .diagnostics import DIAGNOSTIC_OK, DIAGNOSTIC_WARN, DiagnosticReport, format_ms
from .tactile import SampleCounters, TactileRuntime


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
            warnings.append(
                f'{counters.rejected - last.rejected} message(s) rejected since the last report '
                f'(last: {runtime.last_rejection})'
            )
        if unpaired > last_unpaired:
            warnings.append(
                f'{unpaired - last_unpaired} message(s) without a partner on the other stream '
                'since the last report (is /object/pose published with every tactile sample?)'
            )
        if runtime.engine.warning():
            warnings.append(runtime.engine.warning())
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
            ('backend', runtime.engine.describe()),
            ('device_fallback', runtime.engine.failure or 'none'),
            *extra_values,
        ]
        if warnings:
            return DiagnosticReport(DIAGNOSTIC_WARN, '; '.join(warnings), values)
        return DiagnosticReport(DIAGNOSTIC_OK, f'{rate:.1f} samples/s', values)
