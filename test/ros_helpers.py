"""Helpers for tests that run real ROS 2 (rclpy over Fast DDS).

Nothing here imports rclpy at module import time, so importing this module never
touches DDS. The DDS isolation itself (ROS_DOMAIN_ID, discovery range) is set up
by ``test/conftest.py`` before any test module is imported.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from typing import Callable, Iterator, Optional

# The interpreter running the tests (the venv's python under `make test`).
PYTHON = sys.executable

# Valid Fast DDS domain ids on Linux without port clashes are 0..101; 0 is the
# default every stray ROS 2 process on the machine uses, so tests avoid it.
DOMAIN_ID_MIN = 1
DOMAIN_ID_MAX = 101


def domain_id_for_pid(pid: int) -> int:
    """A per-process ROS_DOMAIN_ID in [1, 101], derived from ``pid``."""
    return DOMAIN_ID_MIN + pid % (DOMAIN_ID_MAX - DOMAIN_ID_MIN + 1)


def spin_until(executor, predicate: Callable[[], bool], timeout_sec: float = 20.0,
               period_sec: float = 0.05,
               on_tick: Optional[Callable[[], None]] = None) -> bool:
    """Spin ``executor`` until ``predicate()`` is true or ``timeout_sec`` passes.

    ``on_tick`` (optional) is called before every spin step, e.g. to publish
    again. Returns whether the predicate held; tests assert on the result.
    """
    deadline = time.monotonic() + timeout_sec
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return bool(predicate())
        if on_tick is not None:
            on_tick()
        executor.spin_once(timeout_sec=period_sec)


def wait_until(
    predicate: Callable[[], bool], timeout_sec: float, period_sec: float = 0.05
) -> bool:
    """Poll ``predicate`` until it holds or ``timeout_sec`` passes (nothing spun meanwhile);
    whether it held."""
    deadline = time.monotonic() + timeout_sec
    while not predicate():
        if time.monotonic() > deadline:
            return bool(predicate())
        time.sleep(period_sec)
    return True


def wait_for_exit(executor, process: subprocess.Popen, timeout_sec: float) -> int:
    """Spin ``executor`` until ``process`` exits (asserting it does within ``timeout_sec``); its
    exit status."""
    assert spin_until(executor, lambda: process.poll() is not None, timeout_sec), process_output(
        process
    )
    return process.returncode


@contextlib.contextmanager
def python_subprocess(code: str, *, env: Optional[dict] = None,
                      kill_timeout_sec: float = 5.0) -> Iterator[subprocess.Popen]:
    """Run ``PYTHON -c code`` in the background for the duration of the block.

    The child inherits the test run's environment (and so its DDS domain), with
    ``env`` entries added. Its stdout+stderr go to a temp file; read it with
    :func:`process_output`. The child is always terminated (then killed) when the
    block exits, whatever happens inside it.
    """
    child_env = dict(os.environ)
    if env:
        child_env.update(env)
    child_env.setdefault('PYTHONUNBUFFERED', '1')
    log = tempfile.TemporaryFile(mode='w+b')
    proc = subprocess.Popen([PYTHON, '-c', code], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=child_env)
    proc._rnn_log = log  # type: ignore[attr-defined]
    try:
        yield proc
    finally:
        try:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=kill_timeout_sec)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=kill_timeout_sec)
        finally:
            log.close()


def process_output(proc: subprocess.Popen, limit: int = 4000) -> str:
    """The last ``limit`` characters a :func:`python_subprocess` child printed so far."""
    log = getattr(proc, '_rnn_log', None)
    if log is None or log.closed:
        return ''
    # The child shares the file offset, so read with pread and never seek.
    fd = log.fileno()
    size = os.fstat(fd).st_size
    start = max(0, size - 4 * limit)
    data = os.pread(fd, size - start, start)
    return data.decode('utf-8', 'replace')[-limit:]


def record_calls(owner, name: str) -> list:
    """The argument of every call of ``owner.name(argument)`` from now on, in order; the calls
    still go through (a spy on a method, e.g. a runtime's ``reset`` or a publisher's
    ``publish``)."""
    calls, method = [], getattr(owner, name)

    def recording(argument):
        calls.append(argument)
        return method(argument)
    setattr(owner, name, recording)
    return calls
