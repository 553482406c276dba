"""What a runtime's diagnostics report is made of: latency percentiles over a bounded window, the
``diagnostic_msgs/DiagnosticStatus`` levels and one report (level, message, key/values)."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np


LATENCY_WINDOW = 1000                  # latency percentiles over the last frames (bounded memory)


class LatencyStats:
    """Percentiles of the last :data:`LATENCY_WINDOW` per-frame latencies (bounded memory)."""

    def __init__(self, window: int = LATENCY_WINDOW):
        self._samples: deque = deque(maxlen=window)

    def add(self, seconds: float) -> None:
        self._samples.append(seconds)

    def percentile_ms(self, q: float) -> Optional[float]:
        if not self._samples:
            return None
        return float(np.percentile(np.fromiter(self._samples, float), q)) * 1e3


DIAGNOSTIC_OK, DIAGNOSTIC_WARN = 0, 1    # diagnostic_msgs/DiagnosticStatus levels


@dataclass(frozen=True)
class DiagnosticReport:
    """One ``diagnostic_msgs/DiagnosticStatus`` worth: level, one-line message, key/values."""

    level: int
    message: str
    values: List[Tuple[str, str]]


def format_ms(value: Optional[float]) -> str:
    return 'n/a' if value is None else f'{value:.2f}'
