"""Node parameters written once: each :class:`ParameterSpec` gives a parameter's name, default
(which fixes its type), description, check and whether it is read-only; :func:`settings_class`
makes the frozen settings dataclass from the specs (as ``generate_parameter_library`` does for
C++ nodes), and the checks refuse a bad value with the reason."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, make_dataclass, replace
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

from ..device import DEVICE_CHOICES
from ..models.engines import EngineOptions
from ..models.onnx_engine import AUTO_PROVIDERS, providers_problem
from ..models.step_engine import BACKENDS, TORCH_BACKEND


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
    """Why ``value`` is not acceptable for parameter ``name`` of ``specs``, or ``None`` when it
    is."""
    spec = specs.get(name)
    if spec is None or spec.check is None:
        return None
    problem = spec.check(value)
    return None if problem is None else f'{name}={value!r} refused: {problem}'


def parameter_checker(specs: Sequence[ParameterSpec]) -> Callable[[str, Any], Optional[str]]:
    """``problem(name, value)``: :func:`check_parameter` against ``specs``."""
    by_name = {spec.name: spec for spec in specs}
    return lambda name, value: check_parameter(by_name, name, value)


def model_parameters(model: str, cpu_threads_note: str) -> Tuple[ParameterSpec, ...]:
    """The parameters every model node declares first, read at start (so read-only): the weights
    file of ``model``, how its steps run (backend, device, execution providers, ONNX cache) and
    the CPU threads (``cpu_threads_note`` says why 1)."""
    return (
        ParameterSpec(
            'weights',
            '',
            f"{model} model safetensors file; '' = the shipped default model",
            read_only=True,
        ),
        ParameterSpec(
            'backend',
            TORCH_BACKEND,
            'what runs each step: torch (eager PyTorch) or onnxruntime (the step exported to '
            'ONNX: the .onnx beside the weights when it was made from them, else one exported at '
            'start into onnx_cache_dir)',
            one_of(BACKENDS),
            read_only=True,
        ),
        ParameterSpec(
            'device',
            'auto',
            'where the steps run: auto (CUDA if available, else CPU), cpu or cuda; with backend '
            'onnxruntime it picks the execution providers when onnx_providers is auto',
            one_of(DEVICE_CHOICES),
            read_only=True,
        ),
        ParameterSpec(
            'onnx_providers',
            AUTO_PROVIDERS,
            'backend onnxruntime: execution providers in order of preference, comma-separated '
            "from tensorrt, cuda, cpu (the CPU always last); auto = from device. One this "
            'machine lacks or that fails to start is skipped, with the reason in the diagnostics',
            providers_problem,
            read_only=True,
        ),
        ParameterSpec(
            'onnx_cache_dir',
            '',
            'backend onnxruntime: where exported steps and TensorRT engines are kept; '
            "'' = $XDG_CACHE_HOME/rnn_perception (~/.cache/rnn_perception)",
            read_only=True,
        ),
        ParameterSpec(
            'cpu_threads',
            1,
            f'intra-op threads of torch or onnxruntime on the CPU; {cpu_threads_note}',
            at_least_one,
            read_only=True,
        ),
    )


def engine_options(settings: 'Settings') -> EngineOptions:
    """The engine options of a model node's settings (the parameters of
    :func:`model_parameters`)."""
    return EngineOptions(settings.backend, settings.device, settings.onnx_providers,
                         settings.cpu_threads, settings.onnx_cache_dir)


DIAGNOSTICS_PERIOD = ParameterSpec(
    'diagnostics_period_s',
    1.0,
    'period of the /diagnostics report (s)',
    finite_above(0.0, inclusive=False),
    read_only=True,
)


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
    cls = make_dataclass(
        name,
        [(spec.name, type(spec.default), field(default=spec.default)) for spec in specs],
        bases=(Settings,),
        frozen=True,
    )
    cls.__module__ = module
    cls.__doc__ = (f"The parameters' current values: {', '.join(spec.name for spec in specs)} "
                   '(see the specs).')
    return cls
