"""The weights file every model of the package uses: safetensors tensors plus JSON metadata.

A file holds the model's ``state_dict`` and a header with ``kind`` (which model), ``schema_version``
(of that kind's format), the architecture ``config`` and whatever the model adds (normalisation,
sample rate, training command, dataset manifest hash, metrics...). Loading never unpickles: the
model is rebuilt from ``config`` and the tensors are loaded into it with ``strict=True``.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Tuple, TypeVar

from torch import nn

from ..training.utils import PathLike, load_checkpoint, save_checkpoint

Model = TypeVar('Model', bound=nn.Module)


class ModelFileError(ValueError):
    """A weights file that cannot serve: missing, unreadable, or not this model."""


def save_model_file(path: PathLike, model: nn.Module, kind: str, schema_version: int,
                    header: Dict[str, Any]) -> None:
    """Write ``model``'s tensors and ``header`` (plus ``kind`` and ``schema_version``) atomically."""
    save_checkpoint(path, model.state_dict(), dict(header, kind=kind, schema_version=schema_version))


def load_model_file(path: PathLike, kind: str, schema_version: int, build: Callable[[Dict[str, Any]], Model],
                    device='cpu') -> Tuple[Model, Dict[str, Any]]:
    """Rebuild a model of ``kind`` with ``build(metadata['config'])`` and load its tensors; every
    problem raises :class:`ModelFileError` naming the file and what is wrong with it."""
    try:
        tensors, metadata = load_checkpoint(path, device)
    except (FileNotFoundError, ValueError) as error:
        raise ModelFileError(str(error)) from None
    if metadata.get('kind') != kind:
        raise ModelFileError(f'{path}: holds a {metadata.get("kind", "unknown")!r} model, not a {kind!r} one')
    if metadata.get('schema_version') != schema_version:
        raise ModelFileError(f'{path}: schema version {metadata.get("schema_version")} is not the '
                             f'supported {schema_version}')
    try:
        model = build(metadata['config'])
        model.load_state_dict(tensors, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ModelFileError(f'{path}: weights do not match their metadata ({str(error).splitlines()[0]})') from None
    return model.to(device).eval(), metadata
