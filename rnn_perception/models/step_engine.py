"""How a node's model step runs on a backend, with its recurrent state carried, and off an
accelerator that fails (:class:`StepEngine`, the base of both backends).

An engine holds one model's step and its state between steps:

* ``step(*inputs)``: one step on numpy inputs (the node's frame or sample, batch 1) -> the
  output of batch item 0 as numpy; the state is carried to the next step;
* ``reset()``: the state back to the model's initial state (``state`` is ``None`` until the
  next step);
* ``state_arrays()``: the state as a flat list of numpy arrays (the collision node's debug
  picture);
* ``run(inputs, reset)``: ``step`` under the fault rule both backends share. When a step fails
  on an accelerator (out of memory, a CUDA or execution provider error), the engine moves to the
  CPU for good, ``reset(reason)`` lets the caller drop what it knows of the state (it lived on
  the failed device), and the step is done again there.

The backends (:data:`BACKENDS`): :mod:`.torch_engine` (eager torch, the models' own ``step``) and
:mod:`.onnx_engine` (ONNX Runtime, the step graph of :mod:`.onnx_export`); :mod:`.engines` makes
the one a node's parameters name.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

TORCH_BACKEND = 'torch'
ONNXRUNTIME_BACKEND = 'onnxruntime'
BACKENDS = (TORCH_BACKEND, ONNXRUNTIME_BACKEND)
CPU = 'cpu'


class EngineStartError(RuntimeError):
    """The engine cannot start as asked (a provider this machine lacks, an export that failed);
    the message says why and what to do."""


class StepEngine(ABC):
    """One model's step on one backend, with its state (see the module docstring)."""

    backend = ''

    def __init__(self) -> None:
        self.failure: Optional[str] = None   # why the engine runs on the CPU, once it does

    @property
    @abstractmethod
    def device(self) -> str:
        """Where the step runs now: ``cpu``, ``cuda:0``, ..."""

    @property
    @abstractmethod
    def state(self):
        """The carried state in the backend's own form; ``None`` right after a reset."""

    @abstractmethod
    def step(self, *inputs: np.ndarray) -> np.ndarray:
        """One step with the carried state (see the module docstring)."""

    @abstractmethod
    def reset(self) -> None:
        """The state back to the model's initial state."""

    @abstractmethod
    def state_arrays(self) -> Optional[List[np.ndarray]]:
        """The state as flat numpy arrays, batch item 0 first axis kept; ``None`` after a
        reset."""

    @abstractmethod
    def is_device_failure(self, error: Exception) -> bool:
        """Whether ``error``, raised by a step on an accelerator, is the device failing rather
        than a bug of the step (which the CPU would raise too)."""

    @abstractmethod
    def _move_to_cpu(self) -> None:
        """Run every later step on the CPU, from the initial state."""

    def describe(self) -> str:
        """The backend and where it runs, for logs and diagnostics."""
        return f'{self.backend} on {self.device}'

    def run(self, inputs: Sequence[np.ndarray],
            reset: Callable[[str], None]) -> Tuple[np.ndarray, Optional[str]]:
        """``step(*inputs)`` -> ``(its output, None)``; on a device failure, ``(the output of
        the step redone on the CPU, the reason)`` (see the module docstring)."""
        try:
            return self.step(*inputs), None
        except Exception as error:
            if self.device == CPU or not self.is_device_failure(error):
                raise
            reason = (f'{self.device} failed, model moved to the CPU for good: '
                      f'{" ".join(str(error).split())[:300]}')
        # outside the except block: the traceback's frames hold tensors of the failed device
        self._move_to_cpu()
        self.failure = reason
        reset(reason)
        return self.step(*inputs), reason

    def warning(self) -> Optional[str]:
        """The diagnostics warning while the engine runs on the CPU after a failure."""
        return None if self.failure is None else f'degraded: {self.failure}'
