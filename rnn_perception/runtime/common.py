"""What the nodes' runtimes share: parameter specifications and checks, settings, the stamp-gap
reset rule, the fall-back to the CPU when the GPU fails, latency statistics, diagnostic reports
and where the shipped models live."""
from __future__ import annotations

import importlib.resources
import itertools
import math
import re
from collections import deque
from dataclasses import dataclass, field, fields, make_dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, TypeVar

import numpy as np
import torch

LATENCY_WINDOW = 1000                  # latency percentiles over the last frames (bounded memory)


def shipped_model_path(file_name: str) -> Path:
    """A shipped default model, inside the installed package (``rnn_perception/models/default/``)."""
    return Path(str(importlib.resources.files('rnn_perception.models') / 'default' / file_name))


# ------------------------------------------------------------------------------------ parameters
def finite_above(minimum: float, inclusive: bool) -> Callable[[float], Optional[str]]:
    sign = '>=' if inclusive else '>'

    def check(value: float) -> Optional[str]:
        ok = math.isfinite(value) and (value >= minimum if inclusive else value > minimum)
        return None if ok else f'must be a finite number {sign} {minimum:g}'
    return check


def one_of(choices: Sequence[str]) -> Callable[[str], Optional[str]]:
    def check(value: str) -> Optional[str]:
        return None if value in choices else f'must be one of: {", ".join(choices)}'
    return check


def at_least_one(value: int) -> Optional[str]:
    return None if value >= 1 else 'must be >= 1'


@dataclass(frozen=True)
class ParameterSpec:
    """One node parameter: default (which fixes its type), description, validity check."""

    name: str
    default: Any
    description: str
    check: Optional[Callable[[Any], Optional[str]]] = None
    read_only: bool = False       # needs a restart: changing it at run time is refused


def check_parameter(specs: Mapping[str, ParameterSpec], name: str, value: Any) -> Optional[str]:
    """Why ``value`` is not acceptable for parameter ``name`` of ``specs``, or ``None`` when it is."""
    spec = specs.get(name)
    if spec is None or spec.check is None:
        return None
    problem = spec.check(value)
    return None if problem is None else f'{name}={value!r} refused: {problem}'


def parameter_checker(specs: Sequence[ParameterSpec]) -> Callable[[str, Any], Optional[str]]:
    """``problem(name, value)``: :func:`check_parameter` against ``specs``."""
    by_name = {spec.name: spec for spec in specs}
    return lambda name, value: check_parameter(by_name, name, value)


DEVICE_CHOICES = ('auto', 'cpu', 'cuda')


def model_parameters(model: str, cpu_threads_note: str) -> Tuple[ParameterSpec, ...]:
    """The parameters every model node declares first, read at start (so read-only): the weights
    file of ``model``, the torch device and the CPU threads (``cpu_threads_note`` says why 1)."""
    return (
        ParameterSpec('weights', '', f"{model} model safetensors file; '' = the shipped default model", read_only=True),
        ParameterSpec('device', 'auto', 'torch device: auto (CUDA if available, else CPU), cpu or cuda',
                      one_of(DEVICE_CHOICES), read_only=True),
        ParameterSpec('cpu_threads', 1, f'torch intra-op threads on the CPU; {cpu_threads_note}', at_least_one,
                      read_only=True),
    )


DIAGNOSTICS_PERIOD = ParameterSpec('diagnostics_period_s', 1.0, 'period of the /diagnostics report (s)',
                                   finite_above(0.0, inclusive=False), read_only=True)


class Settings:
    """Base of a node's frozen settings dataclass: the parameters' current values."""

    def updated(self, values: Dict[str, Any]) -> 'Settings':
        """A copy with ``values`` (parameter name -> value) applied; other names are ignored."""
        names = {f.name for f in fields(self)}
        return replace(self, **{name: value for name, value in values.items() if name in names})


def settings_class(name: str, specs: Sequence[ParameterSpec], module: str) -> type:
    """A frozen :class:`Settings` dataclass ``name`` with one field per parameter of ``specs``,
    in order, typed and defaulted by its spec: the specs stay the one place a parameter is
    written down (as ``generate_parameter_library`` does for C++ nodes)."""
    cls = make_dataclass(name, [(spec.name, type(spec.default), field(default=spec.default)) for spec in specs],
                         bases=(Settings,), frozen=True)
    cls.__module__ = module
    cls.__doc__ = f"The parameters' current values: {', '.join(spec.name for spec in specs)} (see the specs)."
    return cls


# -------------------------------------------------------------------------------- input policy
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


# ------------------------------------------------------------------------------ device fallback
# What the CUDA libraries name in the RuntimeErrors they raise (a kernel fault, a lost device, a
# cuDNN/cuBLAS failure); other RuntimeErrors are bugs that the CPU would raise too.
_DEVICE_ERROR = re.compile(r'\b(cuda|cudnn|cublas|cufft|cusolver|cusparse|nvrtc)', re.IGNORECASE)
T = TypeVar('T')


def is_device_failure(error: BaseException) -> bool:
    """Whether ``error``, raised by a step on an accelerator, is the device failing (out of
    memory, a CUDA library error) rather than a bug of the step itself."""
    return isinstance(error, torch.cuda.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and _DEVICE_ERROR.search(str(error)) is not None)


def _named_tensors(model: torch.nn.Module):
    return itertools.chain(model.named_parameters(), model.named_buffers())


class CpuFallback:
    """Runs a runtime's model steps on its device; when an accelerator fails
    (:func:`is_device_failure`) the model moves to the CPU for good and the step is done again
    there, so the node degrades instead of dying.

    A CPU copy of the weights is taken at start: after some CUDA errors (an illegal memory
    access) the device's memory cannot be read back any more, so the model is rebuilt on the
    CPU from the copy instead of being copied off the device.
    """

    def __init__(self, model: torch.nn.Module, device: torch.device):
        self.model = model
        self.device = device
        self.failure: Optional[str] = None     # why the model left its device, once it did
        self._cpu_copy = (None if device.type == 'cpu' else
                          {name: tensor.detach().to('cpu', copy=True) for name, tensor in _named_tensors(model)})

    def run(self, step: Callable[[torch.device], T], reset: Callable[[str], None]) -> Tuple[T, Optional[str]]:
        """``step(device)`` -> ``(its value, None)``. When it fails on an accelerator: the model
        moves to the CPU, ``reset(reason)`` drops the recurrent state (it lived on the failed
        device), and ``(step(cpu), reason)``. Any other error propagates."""
        try:
            return step(self.device), None
        except RuntimeError as error:
            if self.device.type == 'cpu' or not is_device_failure(error):
                raise
            reason = (f'{self.device} failed, model moved to the CPU for good: '
                      f'{" ".join(str(error).split())[:300]}')
        # outside the except block: the traceback's frames hold tensors of the failed device
        self._move_to_cpu()
        self.failure = reason
        reset(reason)
        return step(self.device), reason

    def _move_to_cpu(self) -> None:
        self.model.to_empty(device='cpu')            # fresh storage, nothing read from the device
        with torch.no_grad():
            for name, tensor in _named_tensors(self.model):
                tensor.copy_(self._cpu_copy[name])
        self._cpu_copy = None
        self.device = torch.device('cpu')

    def warning(self) -> Optional[str]:
        """The diagnostics warning while the model runs on the CPU after a failure."""
        return None if self.failure is None else f'degraded: {self.failure}'


# ---------------------------------------------------------------------------------- statistics
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


def stamp_seconds(message) -> float:
    """A message header's stamp in seconds (0.0 when unstamped)."""
    stamp = message.header.stamp
    return stamp.sec + stamp.nanosec * 1e-9
