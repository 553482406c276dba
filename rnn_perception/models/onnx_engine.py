"""The ``onnxruntime`` backend: a model's step graph (:mod:`.onnx_export`) in ONNX Runtime, on the
execution providers a node's ``device`` and ``onnx_providers`` name (:class:`OnnxEngine`).

Providers (:func:`execution_providers`): ``onnx_providers`` ``auto`` follows ``device``: ``cpu``
-> CPU; ``cuda`` -> CUDA, then CPU (refused at start when this onnxruntime has no CUDA provider:
the CPU wheel; ``onnxruntime-gpu`` has it); ``auto`` -> CUDA when onnxruntime has it, else CPU.
A list (``tensorrt,cuda,cpu``) is taken in that order, CPU always last. A provider this
onnxruntime lacks, or one that fails to start (missing CUDA libraries: ONNX Runtime then
carries on without it), leaves the engine on the next one, with the reason as its ``failure``
(in the diagnostics), as a GPU that fails during a step does (:mod:`.step_engine`).

Every step runs through IO binding: the state lives in two sets of buffers on the provider's
device, one the step reads and one it writes, swapped after each step, so the state never
leaves the device and no step allocates; the output is bound to a host buffer, the one read per
step.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .step_engine import CPU, EngineStartError, ONNXRUNTIME_BACKEND, StepEngine

AUTO_PROVIDERS = 'auto'
PROVIDER_NAMES = {'tensorrt': 'TensorrtExecutionProvider', 'cuda': 'CUDAExecutionProvider',
                  'cpu': 'CPUExecutionProvider'}
GPU_PROVIDERS = (PROVIDER_NAMES['tensorrt'], PROVIDER_NAMES['cuda'])
STATE_PREFIX = 'state_'
NEXT_STATE_PREFIX = 'next_state_'
ERRORS_LEVEL = 3                # ONNX Runtime's log severity for errors only: we report fallbacks


def providers_problem(value: str) -> Optional[str]:
    """Why ``value`` is no ``onnx_providers`` setting, or ``None``."""
    if value == AUTO_PROVIDERS:
        return None
    names = [name.strip() for name in value.split(',')]
    unknown = [name for name in names if name not in PROVIDER_NAMES]
    if unknown or not names:
        return (f"must be {AUTO_PROVIDERS} or a comma-separated list of "
                f"{', '.join(PROVIDER_NAMES)} (unknown: {', '.join(unknown) or 'none'})")
    return None


def execution_providers(device: str, requested: str,
                        available: Sequence[str]) -> Tuple[List[str], Optional[str]]:
    """ONNX Runtime provider names to start with, for the ``device`` and ``onnx_providers``
    settings and the providers this onnxruntime has (see the module docstring), and why some
    asked for are left out (``None`` when none is)."""
    cuda = PROVIDER_NAMES['cuda']
    if requested == AUTO_PROVIDERS:
        if device == 'cuda' and cuda not in available:
            raise EngineStartError(
                'device cuda requested but this onnxruntime has no CUDA execution provider '
                '(pip install onnxruntime-gpu, or use device cpu or auto)')
        wanted = [cuda] if device == 'cuda' or (device == 'auto' and cuda in available) else []
    else:
        wanted = [PROVIDER_NAMES[name.strip()] for name in requested.split(',')]
    wanted = [name for name in dict.fromkeys(wanted) if name != PROVIDER_NAMES['cpu']]
    missing = [name for name in wanted if name not in available]
    chosen = [name for name in wanted if name in available] + [PROVIDER_NAMES['cpu']]
    reason = (f"{', '.join(missing)} not in this onnxruntime (it has {', '.join(available)}); "
              f'running on {chosen[0]}') if missing else None
    return chosen, reason


def _is_onnxruntime_error(error: Exception) -> bool:
    return type(error).__module__.startswith('onnxruntime')


class OnnxEngine(StepEngine):
    """A step graph in ONNX Runtime (see the module docstring): its data inputs (those not named
    ``state_*``) are :meth:`step`'s inputs in order, its first output the output, the state
    starts from ``initial_state`` (flat, batch 1)."""

    backend = ONNXRUNTIME_BACKEND

    def __init__(self, path: Path, initial_state: Sequence[np.ndarray], providers: Sequence[str],
                 threads: int, provider_options: Optional[dict] = None,
                 unavailable: Optional[str] = None, origin: str = ''):
        super().__init__()
        import onnxruntime

        self._ort = onnxruntime
        self.path = Path(path)
        self.origin = origin            # where the graph came from (onnx_export.step_graph)
        self._initial = [np.ascontiguousarray(array) for array in initial_state]
        self._threads = threads
        self._provider_options = provider_options or {}
        self._start(list(providers))
        active = self._session.get_providers()
        failed = [name for name in providers if name not in active]
        notes = [unavailable] if unavailable else []
        if failed:
            notes.append(f"{', '.join(failed)} did not start (see the log); running on "
                         f'{active[0]}')
        self.failure = '; '.join(notes) or None

    def _start(self, providers: List[str]) -> None:
        options = self._ort.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        options.log_severity_level = ERRORS_LEVEL
        self._session = self._ort.InferenceSession(
            str(self.path), options,
            providers=[(name, self._provider_options.get(name, {})) for name in providers])
        self.provider = self._session.get_providers()[0]
        self._on_gpu = self.provider in GPU_PROVIDERS
        inputs = [node.name for node in self._session.get_inputs()]
        self._input_names = [name for name in inputs if not name.startswith(STATE_PREFIX)]
        state_count = len(inputs) - len(self._input_names)
        if state_count != len(self._initial):
            raise EngineStartError(f'{self.path}: the graph carries {state_count} state tensors, '
                                   f'the model {len(self._initial)}')
        output = self._session.get_outputs()[0]
        self._output = np.zeros(output.shape, np.dtype(_NUMPY_TYPES[output.type]))
        self._bind()

    def _bind(self) -> None:
        """Two buffer sets for the state on the provider's device, and a binding that reads one
        and writes the other, each way; the output bound to a host buffer."""
        ort_value = self._ort.OrtValue
        device = 'cuda' if self._on_gpu else CPU
        self._buffers = [[ort_value.ortvalue_from_numpy(array.copy(), device, 0)
                          for array in self._initial] for _ in range(2)]
        output = ort_value.ortvalue_from_numpy(self._output)
        output_name = self._session.get_outputs()[0].name
        self._bindings = []
        for reads, writes in ((0, 1), (1, 0)):
            binding = self._session.io_binding()
            for index, (source, target) in enumerate(zip(self._buffers[reads],
                                                         self._buffers[writes])):
                binding.bind_ortvalue_input(f'{STATE_PREFIX}{index}', source)
                binding.bind_ortvalue_output(f'{NEXT_STATE_PREFIX}{index}', target)
            binding.bind_ortvalue_output(output_name, output)
            self._bindings.append(binding)
        self._current = 0           # the buffer set holding the state
        self._fresh = True

    @property
    def device(self) -> str:
        return 'cuda:0' if self._on_gpu else CPU

    @property
    def state(self):
        return None if self._fresh else self._buffers[self._current]

    def describe(self) -> str:
        origin = f', {self.origin}' if self.origin else ''
        return (f'{self.backend} {self._ort.__version__} on {self.provider} '
                f'(graph {self.path}{origin})')

    def step(self, *inputs: np.ndarray) -> np.ndarray:
        binding = self._bindings[self._current]
        for name, array in zip(self._input_names, inputs):
            binding.bind_cpu_input(name, np.ascontiguousarray(array))
        self._session.run_with_iobinding(binding)
        self._current ^= 1
        self._fresh = False
        return self._output[0].copy()

    def reset(self) -> None:
        for value, initial in zip(self._buffers[self._current], self._initial):
            value.update_inplace(initial)
        self._fresh = True

    def state_arrays(self) -> Optional[List[np.ndarray]]:
        if self._fresh:
            return None
        return [value.numpy()[0] for value in self._buffers[self._current]]

    def is_device_failure(self, error: Exception) -> bool:
        # a bad input is refused alike on every provider; anything else the provider raised is
        # the provider failing
        return _is_onnxruntime_error(error) and type(error).__name__ != 'InvalidArgument'

    def _move_to_cpu(self) -> None:
        self._start([PROVIDER_NAMES['cpu']])


# ONNX tensor types of the graphs' outputs -> numpy
_NUMPY_TYPES = {'tensor(float)': 'float32', 'tensor(double)': 'float64',
                'tensor(float16)': 'float16'}
