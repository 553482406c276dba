"""Where the models run: the torch device a ``--device`` option or a ``device`` parameter names,
and the CPU threads torch uses.

``auto`` takes CUDA when this machine has it, else the CPU; ``cuda`` on a machine without it is
a :class:`DeviceUnavailableError` (a problem the user can mend, reported in one line), never a
silent fall-back.
"""
from __future__ import annotations

import argparse
from contextlib import contextmanager
from typing import Iterator, Optional

import torch

DEVICE_CHOICES = ('auto', 'cpu', 'cuda')
DEVICE_HELP = 'auto: cuda when available, else cpu'


class DeviceUnavailableError(RuntimeError):
    """The requested device does not exist on this machine."""


def select_device(name: str = 'auto') -> torch.device:
    """One of :data:`DEVICE_CHOICES` -> ``torch.device``."""
    if name not in DEVICE_CHOICES:
        raise ValueError(f'unknown device {name!r}; expected one of {", ".join(DEVICE_CHOICES)}')
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if name == 'cuda' and not torch.cuda.is_available():
        raise DeviceUnavailableError('device cuda requested but CUDA is not available here '
                                     '(use --device cpu or auto)')
    return torch.device(name)


def add_device_option(parser: argparse.ArgumentParser, default: str) -> None:
    """``--device {auto,cpu,cuda}`` with ``default``."""
    parser.add_argument('--device', choices=DEVICE_CHOICES, default=default,
                        help=f'{DEVICE_HELP} (default: {default})')


@contextmanager
def cpu_threads(count: Optional[int]) -> Iterator[None]:
    """Run the block with torch on ``count`` CPU threads (``None`` or 0: as it is), then restore
    the previous count, so that a trainer called in-process leaves no global setting behind."""
    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
