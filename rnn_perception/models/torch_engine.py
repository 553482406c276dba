"""The ``torch`` backend: a model's own ``step`` in eager torch, on the CPU or a CUDA GPU
(:class:`TorchEngine`; :class:`CollisionTorchEngine` steps the frozen collision snapshot,
:class:`TactileTorchEngine` the tactile model).

On a GPU the inputs go up through pinned staging buffers without blocking (:class:`Uploader`),
the state stays on the device, and the one read per step is the output. Convolutions and
matrix products run in full fp32 (not TF32), so a GPU answers as the CPU does.
"""
from __future__ import annotations

import itertools
from abc import abstractmethod
import re
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from .collision import CollisionPredictor, frame_input
from .onnx_export import flatten_state
from .step_engine import StepEngine, TORCH_BACKEND

# What the CUDA libraries name in the RuntimeErrors they raise (a kernel fault, a lost device, a
# cuDNN/cuBLAS failure); other RuntimeErrors are bugs that the CPU would raise too.
_DEVICE_ERROR = re.compile(r'\b(cuda|cudnn|cublas|cufft|cusolver|cusparse|nvrtc)', re.IGNORECASE)


def is_device_failure(error: BaseException) -> bool:
    """Whether ``error``, raised by a torch step on an accelerator, is the device failing (out of
    memory, a CUDA library error) rather than a bug of the step itself."""
    return isinstance(error, torch.cuda.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and _DEVICE_ERROR.search(str(error)) is not None)


def full_fp32_on_cuda() -> None:
    """cuDNN convolutions and matrix products in IEEE fp32 (torch defaults convolutions to
    TF32), so that the GPU's answers equal the CPU's within 1e-4. Process-wide: the node's
    process runs its one model. (The older flags: once the newer ``fp32_precision`` ones are
    set, torch.export, which the ONNX export runs, fails on reading the older.)"""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


class Uploader:
    """numpy inputs -> tensors on the device: on the CPU a view (no copy); on a GPU a copy into a
    pinned staging buffer (one per input shape, made once) and an asynchronous upload from it.

    Reusing a staging buffer is safe: the step that uploaded from it ended with a read of its
    output, which waited for the upload too.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self._staging: Dict[Tuple, torch.Tensor] = {}

    def __call__(self, array: np.ndarray) -> torch.Tensor:
        host = torch.from_numpy(np.ascontiguousarray(array))
        if self.device.type == 'cpu':
            return host
        key = (host.shape, host.dtype)
        staging = self._staging.get(key)
        if staging is None:
            staging = self._staging[key] = torch.empty_like(host).pin_memory()
        staging.copy_(host)
        return staging.to(self.device, non_blocking=True)


def _named_tensors(model: torch.nn.Module):
    return itertools.chain(model.named_parameters(), model.named_buffers())


class TorchEngine(StepEngine):
    """A model's step in eager torch, state carried as the model returns it (see
    :mod:`.step_engine`). Subclasses give :meth:`_step` (tensors on the device and the state ->
    the output of batch item 0 and the new state).

    A CPU copy of the weights is taken at start on a GPU: after some CUDA errors (an illegal
    memory access) the device's memory cannot be read back any more, so on a failure the model
    is rebuilt on the CPU from the copy instead of being copied off the device.
    """

    backend = TORCH_BACKEND

    def __init__(self, model: torch.nn.Module, device: torch.device):
        super().__init__()
        self.model = model.eval()
        self._device = torch.device(device)
        if self._device.type == 'cuda':
            full_fp32_on_cuda()
        self._upload = Uploader(self._device)
        self._state = None
        self._cpu_copy = (
            None if self._device.type == 'cpu'
            else {name: tensor.detach().to('cpu', copy=True)
                  for name, tensor in _named_tensors(model)})

    @property
    def device(self) -> str:
        return str(self._device)

    @property
    def state(self):
        return self._state

    def describe(self) -> str:
        return f'{self.backend} {torch.__version__} on {self.device}'

    def reset(self) -> None:
        self._state = None

    def state_arrays(self) -> Optional[List[np.ndarray]]:
        if self._state is None:
            return None
        return [tensor[0].detach().float().cpu().numpy() for tensor in flatten_state(self._state)]

    def step(self, *inputs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            output, self._state = self._step([self._upload(array) for array in inputs],
                                             self._state)
            return output.cpu().numpy()

    @abstractmethod
    def _step(self, inputs: List[torch.Tensor], state) -> Tuple[torch.Tensor, object]:
        """One step of the model on ``inputs`` with ``state``."""

    def is_device_failure(self, error: Exception) -> bool:
        return is_device_failure(error)

    def _move_to_cpu(self) -> None:
        self.model.to_empty(device='cpu')            # fresh storage, nothing read from the device
        with torch.no_grad():
            for name, tensor in _named_tensors(self.model):
                tensor.copy_(self._cpu_copy[name])
        self._cpu_copy = None
        self._device = torch.device('cpu')
        self._upload = Uploader(self._device)
        self._state = None


class CollisionTorchEngine(TorchEngine):
    """The collision step: ``frame (1, h, w, 3)`` uint8 RGB at the model's input size ->
    the hit probability ``()``. Steps the model's frozen snapshot
    (:class:`~.collision.FrozenCollisionPredictor`), frozen again after a move to the CPU."""

    def __init__(self, model: CollisionPredictor, device: torch.device):
        super().__init__(model, device)
        self._frozen = model.frozen()

    def _step(self, inputs, state):
        logits, state = self._frozen.step(frame_input(inputs[0]), state)
        return torch.sigmoid(logits[0]), state

    def _move_to_cpu(self) -> None:
        super()._move_to_cpu()
        self._frozen = self.model.frozen()


class TactileTorchEngine(TorchEngine):
    """The tactile step: ``tactile (1, 21)``, ``pose (1, 4)`` float32 -> the next poses
    ``(H, 4)``."""

    def _step(self, inputs, state):
        poses, state = self.model.step(*inputs, state)
        return poses[0], state
