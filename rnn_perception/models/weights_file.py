"""The weights file every model of the package uses: safetensors tensors plus JSON metadata.

A file holds the model's ``state_dict`` and a header with ``kind`` (which model),
``schema_version`` (of that kind's format), the architecture ``config`` and whatever the model
adds (normalisation, sample rate, training command, dataset manifest hash, metrics...). Loading
never unpickles: the model is rebuilt from ``config`` and the tensors are loaded into it with
``strict=True``.

A weights file is untrusted input (it may come from anywhere), so loading checks before it
trusts: the path is a readable regular file of sane size (:func:`checked_weights_path`), the
header is safetensors (a pickle or ``torch.save`` file is refused unread), and the model its
``config`` describes is first built on the ``meta`` device, which allocates nothing, and its
tensor names, shapes and dtypes compared with the file's; only a match is built for real.
"""
from __future__ import annotations

import importlib.resources
import os
import warnings
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, TypeVar

import torch
from torch import Tensor, nn

from ..files import load_checkpoint, PathLike, save_checkpoint

Model = TypeVar('Model', bound=nn.Module)

# The package's models are well under a megabyte; a "weights file" of gigabytes is a mistake or
# an attack on memory, refused before it is read.
MAX_WEIGHTS_BYTES = 1 << 30
MISMATCHES_SHOWN = 3         # tensor mismatches named in the refusal; the rest are counted


class ModelFileError(ValueError):
    """A weights file that cannot serve: missing, unreadable, or not this model."""


def shipped_model_path(file_name: str) -> Path:
    """A shipped default model, inside the installed package
    (``rnn_perception/models/default/``)."""
    return Path(str(importlib.resources.files('rnn_perception.models') / 'default' / file_name))


def save_model_file(path: PathLike, model: nn.Module, kind: str, schema_version: int,
                    header: Dict[str, Any]) -> None:
    """Write ``model``'s tensors and ``header`` (plus ``kind`` and ``schema_version``)
    atomically."""
    save_checkpoint(
        path, model.state_dict(), dict(header, kind=kind, schema_version=schema_version)
    )


def checked_weights_path(path: PathLike) -> Path:
    """``path`` with ``~`` expanded and symlinks resolved, once it names a readable regular file
    of at most :data:`MAX_WEIGHTS_BYTES`; otherwise :class:`ModelFileError` saying which check
    failed."""
    try:
        resolved = Path(path).expanduser().resolve()
    except (OSError, RuntimeError) as error:          # RuntimeError: a symlink loop
        raise ModelFileError(f'weights file {path}: cannot resolve the path ({error})') from None
    if not resolved.exists():
        raise ModelFileError(f'weights file {resolved} not found')
    if not resolved.is_file():
        raise ModelFileError(
            f'{resolved}: not a regular file (a weights file is one .safetensors file)'
        )
    size = resolved.stat().st_size
    if size > MAX_WEIGHTS_BYTES:
        raise ModelFileError(
            f'{resolved}: {size} bytes, over the {MAX_WEIGHTS_BYTES} bytes a weights file may have'
        )
    if not os.access(resolved, os.R_OK):
        raise ModelFileError(f'{resolved}: not readable (permission denied)')
    return resolved


Upgrade = Callable[[Dict[str, Tensor], nn.Module], Dict[str, Tensor]]


def load_model_file(
    path: PathLike,
    kind: str,
    schema_version: int,
    build: Callable[[Dict[str, Any]], Model],
    device='cpu',
    metadata_problem: Callable[[Dict[str, Any]], Optional[str]] = lambda metadata: None,
    upgrades: Mapping[int, Upgrade] = MappingProxyType({}),
) -> Tuple[Model, Dict[str, Any]]:
    """Rebuild a model of ``kind`` with ``build(metadata['config'])`` and load its tensors, then
    ask ``metadata_problem`` (the kind's checks of the metadata its users read) what is wrong
    with the rest; every problem raises :class:`ModelFileError` naming the file and what is
    wrong with it. A file of an older schema version ``v`` loads when ``upgrades`` has a step
    for it and every version after (``upgrades[v](tensors, model)`` gives version ``v + 1``'s
    tensors)."""
    path = checked_weights_path(path)
    try:
        tensors, metadata = load_checkpoint(path)
    except (FileNotFoundError, ValueError) as error:
        raise ModelFileError(str(error)) from None
    if metadata.get('kind') != kind:
        raise ModelFileError(
            f'{path}: holds a {metadata.get("kind", "unknown")!r} model, not a {kind!r} one'
        )
    version = metadata.get('schema_version')
    steps = (list(range(version, schema_version))
             if isinstance(version, int) and not isinstance(version, bool) else [])
    if version != schema_version and (not steps or any(v not in upgrades for v in steps)):
        raise ModelFileError(f'{path}: schema version {version} is not the '
                             f'supported {schema_version}')
    config = metadata.get('config')
    if not isinstance(config, dict):
        raise ModelFileError(
            f'{path}: metadata config {config!r} is not an object of hyper-parameters'
        )
    try:
        with torch.device('meta'), warnings.catch_warnings():
            warnings.simplefilter(
                'ignore'
            )  # e.g. torch's zero-element init warning: the refusal says it
            skeleton = build(config)
    except Exception as error:  # noqa: BLE001 - an untrusted config can fail anywhere in
        # the constructors
        raise ModelFileError(
            f'{path}: metadata config does not describe a {kind} model ({_first_line(error)})'
        ) from None
    mismatches = tensor_mismatches(skeleton.state_dict(), tensors)
    if mismatches:
        shown = '; '.join(mismatches[:MISMATCHES_SHOWN])
        more = (
            f'; and {len(mismatches) - MISMATCHES_SHOWN} more'
            if len(mismatches) > MISMATCHES_SHOWN
            else ''
        )
        raise ModelFileError(f'{path}: weights do not match their metadata ({shown}{more})')
    for step in steps:
        tensors = upgrades[step](tensors, skeleton)
    model = build(config)
    model.load_state_dict(tensors, strict=True)
    problem = metadata_problem(metadata)
    if problem is not None:
        raise ModelFileError(f'{path}: {problem}')
    return model.to(device).eval(), metadata


def tensor_mismatches(expected: Mapping[str, Tensor], found: Mapping[str, Tensor]) -> List[str]:
    """How ``found`` (a file's tensors) differs from ``expected`` (a model's ``state_dict``):
    missing and unexpected names, other shapes, other dtypes (``load_state_dict`` would
    silently convert those)."""
    problems = [f'missing {name}' for name in expected if name not in found]
    problems += [f'unexpected {name}' for name in found if name not in expected]
    for name in (name for name in expected if name in found):
        want, have = expected[name], found[name]
        if want.shape != have.shape:
            problems.append(
                f'{name} has shape {tuple(have.shape)}, the model needs {tuple(want.shape)}'
            )
        elif want.dtype != have.dtype:
            problems.append(f'{name} is {have.dtype}, the model needs {want.dtype}')
    return problems


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
