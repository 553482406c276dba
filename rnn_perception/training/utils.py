"""Training utilities shared by the package's trainers: device choice, gradient clipping,
per-epoch metrics files, atomic safetensors checkpoints and loss/accuracy plots.

Every file is written under a temporary name beside its target and then renamed over it
(``os.replace``), so a crash or a concurrent reader never sees a half-written file.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import shlex
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import (Any, Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple, TypeVar,
                    Union)

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from rnn_perception.cli import OneLineParser, report_error
from rnn_perception.data.shards import MANIFEST_NAME, DatasetError

T = TypeVar('T')

PathLike = Union[str, os.PathLike]


class DeviceUnavailableError(RuntimeError):
    """The requested device does not exist on this machine."""


def select_device(name: str = 'auto') -> torch.device:
    """``'auto'`` (CUDA when available, else CPU), ``'cpu'`` or ``'cuda'`` -> ``torch.device``."""
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if name == 'cuda' and not torch.cuda.is_available():
        raise DeviceUnavailableError('device cuda requested but CUDA is not available here '
                                     '(use --device cpu or auto)')
    if name not in ('cpu', 'cuda'):
        raise ValueError(f"unknown device {name!r}; expected 'auto', 'cpu' or 'cuda'")
    return torch.device(name)


@contextmanager
def cpu_threads(count: Optional[int]) -> Iterator[None]:
    """Run the block with torch on ``count`` CPU threads (``None`` or 0: as it is), then restore the
    previous count, so that a trainer called in-process leaves no global setting behind."""
    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def clip_gradients(parameters: Iterable[Tensor], max_norm: Optional[float] = None,
                   max_value: Optional[float] = None) -> Optional[float]:
    """Clip gradients in place: each element to ``[-max_value, max_value]``, then their total
    L2 norm to ``max_norm``; either may be ``None`` (off). Returns the total norm before norm
    clipping, or ``None`` without ``max_norm``."""
    parameters = [p for p in parameters if p.grad is not None]
    if max_value is not None:
        torch.nn.utils.clip_grad_value_(parameters, max_value)
    if max_norm is None:
        return None
    return float(torch.nn.utils.clip_grad_norm_(parameters, max_norm))


# ------------------------------------------------------------------------------------- files
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


def write_text_atomic(path: PathLike, text: str) -> None:
    with atomic_path(path) as temporary, open(temporary, 'w', encoding='utf-8', newline='') as stream:
        stream.write(text)


class MetricsWriter:
    """Per-epoch metric rows, kept in ``<stem>.csv`` and ``<stem>.json`` in ``directory``.

    Both files are rewritten (atomically) after every ``append``, so they are complete and
    readable at any point of a run. All rows must have the first row's keys.
    """

    def __init__(self, directory: PathLike, stem: str = 'metrics'):
        self.csv_path = os.path.join(directory, f'{stem}.csv')
        self.json_path = os.path.join(directory, f'{stem}.json')
        self.rows: List[Dict[str, Any]] = []

    def append(self, row: Dict[str, Any]) -> None:
        if self.rows and list(row) != list(self.rows[0]):
            raise ValueError(f'metrics row keys {list(row)} differ from the first row\'s {list(self.rows[0])}')
        self.rows.append(dict(row))
        write_text_atomic(self.json_path, json.dumps(self.rows, indent=1) + '\n')
        write_text_atomic(self.csv_path, self._csv_text())

    def _csv_text(self) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(self.rows[0]), lineterminator='\n')
        writer.writeheader()
        writer.writerows(self.rows)
        return buffer.getvalue()


# ------------------------------------------------------------------------------- checkpoints
class Checkpoint(NamedTuple):
    tensors: Dict[str, Tensor]
    metadata: Dict[str, Any]


def save_checkpoint(path: PathLike, tensors: Dict[str, Tensor], metadata: Dict[str, Any]) -> None:
    """Write ``tensors`` (e.g. a ``state_dict``) and JSON-serialisable ``metadata`` to a
    safetensors file atomically. Each metadata value is stored JSON-encoded under its key."""
    header = {key: json.dumps(value) for key, value in metadata.items()}
    # safetensors stores dense CPU tensors that own their memory
    tensors = {key: tensor.detach().to('cpu').clone(memory_format=torch.contiguous_format)
               for key, tensor in tensors.items()}
    with atomic_path(path) as temporary:
        save_file(tensors, temporary, metadata=header)


def load_checkpoint(path: PathLike, device: Union[str, torch.device] = 'cpu') -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint``: tensors on ``device``, decoded metadata."""
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


# ---------------------------------------------------------------------------------- plotting
def plot_curves(rows: Sequence[Dict[str, Any]], path: PathLike, metrics: Sequence[str] = ('loss', 'accuracy'),
                x: str = 'epoch', title: Optional[str] = None) -> None:
    """One panel per metric in ``metrics``, each plotting every column named ``<split>_<metric>``
    (e.g. ``train_loss`` and ``val_loss``) against ``x``; saved as a PNG (Agg, no display)."""
    figure = Figure(figsize=(5 * len(metrics), 4), layout='constrained')
    FigureCanvasAgg(figure)                   # render off-screen; no pyplot global state
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
    steps = [row[x] for row in rows]
    for ax, metric in zip(axes, metrics):
        for column in (key for key in rows[0] if key.endswith(f'_{metric}')):
            ax.plot(steps, [row[column] for row in rows], marker='.', label=column.removesuffix(f'_{metric}'))
        ax.set(xlabel=x, ylabel=metric)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        figure.suptitle(title)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format='png', dpi=100)


# --------------------------------------------------------------------------- trainer commands
def probability(text: str) -> float:
    """An argparse type: a float in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a number, got {text!r}') from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f'must be in [0, 1], got {text}')
    return value


def split_by_episode(episodes: Sequence[T], labels: Sequence[bool], val_fraction: float,
                     seed: int) -> Tuple[List[T], List[T]]:
    """Train/validation split by episode, stratified by ``labels`` (hit, slipped) when both sides
    can hold two of each kind; raises ``DatasetError`` when too few episodes to split."""
    from sklearn.model_selection import train_test_split   # here: the nodes import this module, not sklearn

    val_size = max(2, round(val_fraction * len(episodes)))
    if val_size > len(episodes) - 2:
        raise DatasetError(f'{len(episodes)} episodes are too few to split off a validation set')
    stratify = labels if min(sum(labels), len(labels) - sum(labels)) >= 2 else None
    train, val = train_test_split(np.arange(len(episodes)), test_size=val_size, stratify=stratify,
                                  random_state=seed)
    return [episodes[i] for i in train], [episodes[i] for i in val]


def trainer_parser(model: str, description: str, dataset: str) -> argparse.ArgumentParser:
    """The parser of ``train <model>`` with the options every trainer starts with: ``--data``
    (a ``dataset``), ``--out``, ``--run-dir``; :func:`add_run_options` adds those it ends with."""
    parser = OneLineParser(prog=f'rnn_perception train {model}', description=description,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data', required=True, metavar='DIR', help=dataset)
    parser.add_argument('--out', required=True, metavar='FILE', help='weights file to write (.safetensors)')
    parser.add_argument('--run-dir', metavar='DIR', help='where the reports go (default: beside --out)')
    return parser


def add_run_options(parser: argparse.ArgumentParser, seeded: str) -> None:
    """The options every trainer ends with: the validation split, the seed (of ``seeded``), the
    device, quiet."""
    parser.add_argument('--val-fraction', type=fraction, default=0.15, help='episodes held out (default: 0.15)')
    parser.add_argument('--seed', type=int, default=0, help=f'{seeded} (default: 0)')
    parser.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default='auto',
                        help='auto: cuda when available, else cpu (default: auto)')
    parser.add_argument('--quiet', action='store_true', help='no progress bars or per-epoch lines')


def fraction(text: str) -> float:
    """An argparse type: a float in (0, 1)."""
    value = probability(text)
    if value in (0.0, 1.0):
        raise argparse.ArgumentTypeError(f'must be strictly between 0 and 1, got {text}')
    return value


def manifest_sha256(data_dir: PathLike) -> str:
    """SHA-256 of a dataset's manifest (it lists every shard's counts: the dataset's identity)."""
    return hashlib.sha256((Path(data_dir) / MANIFEST_NAME).read_bytes()).hexdigest()


@dataclass
class OutputPaths:
    """Where a training run writes: the weights and, beside them or in ``--run-dir``, its reports."""

    weights: Path
    run_dir: Path

    @property
    def stem(self) -> str:
        return self.weights.name.removesuffix('.safetensors')

    def report(self, suffix: str) -> Path:
        return self.run_dir / f'{self.stem}_{suffix}'

    @property
    def summary(self) -> Path:
        return self.report('metrics.json')


def training_main(model: str, argv: Optional[Sequence[str]], build_parser: Callable[[], argparse.ArgumentParser],
                  train: Callable[[argparse.Namespace, torch.device], int]) -> int:
    """``python -m rnn_perception train <model> ...``: parse (recording the command in
    ``args.command``), pick the device, train; a bad command line or bad input is one line
    ``train <model>: error: ...`` (exit status 2 and 1, see :mod:`rnn_perception.cli`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        args.command = ' '.join([f'python -m rnn_perception train {model}', *map(shlex.quote, argv)])
        return train(args, select_device(args.device))
    except (OSError, ValueError, DatasetError, DeviceUnavailableError) as error:   # bad input: one line
        return report_error(f'train {model}', error)
