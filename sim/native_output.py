"""Keeping native libraries' chatter off the command line's stdout."""
from __future__ import annotations

import ctypes
import os
import sys
from contextlib import contextmanager

_LIBC = ctypes.CDLL(None)


@contextmanager
def native_stdout_silenced():
    """Discard what C code writes to stdout meanwhile (pybullet prints its argv on connect).

    C's stdio buffer is flushed before stdout is restored, or buffered text would still
    reach the real stdout later.
    """
    sys.stdout.flush()
    saved_stdout = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        _LIBC.fflush(None)
        os.dup2(saved_stdout, 1)
        os.close(saved_stdout)
        os.close(devnull)
