"""Timing helpers shared by the benchmark scripts (imported from their own folder)."""
from __future__ import annotations

import resource


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the pool workers)."""
    return sum(usage.ru_utime + usage.ru_stime for usage in (
        resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)))
