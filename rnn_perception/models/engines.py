"""Start the step engine a node's parameters (or a command's options) name: :func:`start_engine`
with :class:`EngineOptions` (backend, device, execution providers, threads, ONNX cache)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..files import user_cache_dir
from .loading import LoadedModel
from .onnx_engine import (AUTO_PROVIDERS, execution_providers, GPU_PROVIDERS, OnnxEngine,
                          PROVIDER_NAMES)
from .step_engine import EngineStartError, StepEngine, TORCH_BACKEND
from .torch_engine import CollisionTorchEngine, TactileTorchEngine

TORCH_ENGINES = {'collision': CollisionTorchEngine, 'tactile': TactileTorchEngine}
ONNX_CACHE = 'onnx'              # the exported graphs' folder in the cache
TENSORRT_CACHE = 'tensorrt'      # TensorRT's built engines' folder in the cache


@dataclass(frozen=True)
class EngineOptions:
    """How a model's steps run: the settings of the same names (see the nodes' parameters)."""

    backend: str = TORCH_BACKEND
    device: str = 'auto'
    onnx_providers: str = AUTO_PROVIDERS
    cpu_threads: int = 1
    onnx_cache_dir: str = ''          # '' = the user's cache (files.user_cache_dir)

    @property
    def model_device(self) -> str:
        """Where to load the torch model: the engine's device for torch; the CPU for
        onnxruntime, where the model only serves to export the graph and give its initial
        state."""
        return self.device if self.backend == TORCH_BACKEND else 'cpu'

    @property
    def cache_dir(self) -> Path:
        return Path(self.onnx_cache_dir).expanduser() if self.onnx_cache_dir else user_cache_dir()


def start_engine(kind: str, loaded: LoadedModel, options: EngineOptions) -> StepEngine:
    """The ``kind`` (``collision`` / ``tactile``) step of ``loaded`` on ``options.backend``.
    Raises :class:`EngineStartError` when it cannot start as asked."""
    if options.backend == TORCH_BACKEND:
        return TORCH_ENGINES[kind](loaded.model, loaded.device)
    try:
        import onnxruntime
    except ImportError:
        raise EngineStartError('backend onnxruntime needs the onnxruntime package '
                               '(pip install -r requirements.txt)') from None
    from .onnx_export import initial_state, step_graph

    providers, unavailable = execution_providers(
        options.device, options.onnx_providers, onnxruntime.get_available_providers())
    if providers[0] in GPU_PROVIDERS and hasattr(onnxruntime, 'preload_dlls'):
        # onnxruntime-gpu loads the CUDA and cuDNN libraries torch already brought, so the two
        # share one copy (ONNX Runtime's "compatibility with PyTorch")
        onnxruntime.preload_dlls()
    try:
        path, origin = step_graph(kind, loaded.model, loaded.metadata, loaded.path,
                                  options.cache_dir / ONNX_CACHE)
    except ImportError as error:
        raise EngineStartError(f'{loaded.path}: no current .onnx beside it, and exporting one '
                               f'needs {error.name} (pip install -r requirements.txt)') from None
    except OSError as error:
        raise EngineStartError(f'cannot export the {kind} step into {options.cache_dir}: '
                               f'{error}') from None
    trt_options = {'trt_engine_cache_enable': True,
                   'trt_engine_cache_path': str(options.cache_dir / TENSORRT_CACHE)}
    return OnnxEngine(path, [tensor.numpy() for tensor in initial_state(loaded.model)], providers,
                      options.cpu_threads, {PROVIDER_NAMES['tensorrt']: trt_options},
                      unavailable, origin)
