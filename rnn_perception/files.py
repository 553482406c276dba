"""Files the package writes and reads back: atomic writes and safetensors checkpoints.

Every file is written under a temporary name beside its target and then renamed over it
(``os.replace``), so a crash or a concurrent reader never sees a half-written file.
"""
from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, NamedTuple, Union

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

PathLike = Union[str, os.PathLike]


@contextmanager
def atomic_path(path: PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; once the block succeeds it replaces ``path``.
    On error the temporary file is removed and ``path`` is left as it was."""
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(directory, f'.{name}.{os.getpid()}.tmp')
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def user_cache_dir() -> Path:
    """Where the package keeps what it can make again (exported ONNX steps, TensorRT engines):
    ``$XDG_CACHE_HOME/rnn_perception``, by default ``~/.cache/rnn_perception``."""
    return Path(os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache') / 'rnn_perception'


def write_text_atomic(path: PathLike, text: str) -> None:
    with atomic_path(path) as temporary, \
            open(temporary, 'w', encoding='utf-8', newline='') as stream:
        stream.write(text)


def file_sha256(path: PathLike) -> str:
    """The SHA-256 of a file's bytes, hex (read a megabyte at a time)."""
    digest = hashlib.sha256()
    with open(path, 'rb') as stream:
        for block in iter(lambda: stream.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


class Checkpoint(NamedTuple):
    tensors: Dict[str, Tensor]
    metadata: Dict[str, Any]


def current_umask() -> int:
    """The process's file-creation mask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_checkpoint(path: PathLike, tensors: Dict[str, Tensor], metadata: Dict[str, Any]) -> None:
    """Write ``tensors`` (e.g. a ``state_dict``) and JSON-serialisable ``metadata`` to a
    safetensors file atomically. Each metadata value is stored JSON-encoded under its key."""
    header = {key: json.dumps(value) for key, value in metadata.items()}
    # safetensors stores dense CPU tensors that own their memory
    tensors = {key: tensor.detach().to('cpu').clone(memory_format=torch.contiguous_format)
               for key, tensor in tensors.items()}
    with atomic_path(path) as temporary:
        save_file(tensors, temporary, metadata=header)
        # safetensors creates its file readable by its owner only; a weights file is read by
        # nodes that may run as another user, so give it the mode any new file gets
        os.chmod(temporary, 0o666 & ~current_umask())


def load_checkpoint(path: PathLike, device: Union[str, torch.device] = 'cpu') -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint``: tensors on ``device``, decoded
    metadata."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint {path} not found')
    try:
        with safe_open(path, framework='pt', device=str(device)) as stream:
            header = stream.metadata() or {}
            tensors = {key: stream.get_tensor(key) for key in stream.keys()}
        metadata = {key: json.loads(value) for key, value in header.items()}
    except (SafetensorError, json.JSONDecodeError) as error:
        raise ValueError(f'{path}: not a readable checkpoint ({error})') from None
    return Checkpoint(tensors, metadata)
