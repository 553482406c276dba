"""When a recurrent state must start again from zeros: a stamp gap, stamps going backwards, a
new input size (:class:`ResetPolicy`)."""
from __future__ import annotations

from typing import Optional, Tuple


class ResetPolicy:
    """Decides when the recurrent state must start again from zeros (see :meth:`check`)."""

    def __init__(self, reset_gap_s: float):
        self.reset_gap_s = reset_gap_s
        self._last_stamp_s: Optional[float] = None
        self._last_size: Optional[Tuple[int, int]] = None

    def check(self, stamp_s: float, size: Tuple[int, int]) -> Optional[str]:
        """Record an input (stamp in seconds, its ``(width, height)``: an image's size, or a fixed
        size for inputs whose size never changes); the reason to reset before stepping it, or
        ``None``. The first input needs none: the state is fresh anyway."""
        last_stamp, last_size = self._last_stamp_s, self._last_size
        self._last_stamp_s, self._last_size = stamp_s, size
        if last_stamp is None:
            return None
        if size != last_size:
            return f'resolution changed from {last_size[0]}x{last_size[1]} to {size[0]}x{size[1]}'
        if stamp_s < last_stamp:
            return f'stamps went backwards by {last_stamp - stamp_s:.3f} s'
        if stamp_s - last_stamp > self.reset_gap_s:
            return f'stamp gap {stamp_s - last_stamp:.3f} s > reset_gap_s {self.reset_gap_s:g} s'
        return None


def stamp_seconds(message) -> float:
    """A message header's stamp in seconds (0.0 when unstamped)."""
    stamp = message.header.stamp
    return stamp.sec + stamp.nanosec * 1e-9
