"""Notices a camera that is matched but silent, and names the Fast DDS remedy."""
from __future__ import annotations

from typing import Optional


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
        return (
            f'{matched_publishers} publisher(s) matched on {topic} but no frame arrived for '
            f'{silent_s:.0f} s. Fast DDS over UDP drops large best-effort frames (e.g. 640x480): '
            'make the camera publish reliable, or start EVERY process (camera and this node) '
            'with FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA; processes with and without it '
            'cannot talk to each other'
        )
