"""Timing helpers shared by the benchmark scripts (imported from their own folder)."""
from __future__ import annotations

import resource
import time
from typing import Callable, Dict, List, Sequence, Tuple


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the pool workers)."""
    return sum(usage.ru_utime + usage.ru_stime for usage in (
        resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)))


def alternate_blocks(paths: Dict[str, Callable], items: Sequence, block: int
                     ) -> Tuple[Dict[str, List[float]], Dict[str, List]]:
    """Per-item milliseconds and outputs of each path on ``items``, the paths taking turns by
    blocks of ``block`` items, so that every path sees the same machine load."""
    times = {name: [] for name in paths}
    outputs = {name: [] for name in paths}
    for start in range(0, len(items), block):
        for name, path in paths.items():
            for item in items[start:start + block]:
                began = time.perf_counter()
                result = path(item)
                times[name].append((time.perf_counter() - began) * 1e3)
                outputs[name].append(result)
    return times, outputs
