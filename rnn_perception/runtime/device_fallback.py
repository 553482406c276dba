"""The fall-back to the CPU when an accelerator fails during a step (:class:`CpuFallback`), so a
node degrades instead of dying."""
from __future__ import annotations

import itertools
import re
from typing import Callable, Optional, Tuple, TypeVar

import torch


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
        self._cpu_copy = (
            None
            if device.type == 'cpu'
            else {
                name: tensor.detach().to('cpu', copy=True)
                for name, tensor in _named_tensors(model)
            }
        )

    def run(
        self, step: Callable[[torch.device], T], reset: Callable[[str], None]
    ) -> Tuple[T, Optional[str]]:
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
