"""Load the model a node's ``weights`` and ``device`` parameters (or a command's options) name.

Each model kind's loader (``load_collision_model``, ``load_tactile_model``) checks the file and
the metadata every user of it reads, so the nodes, the evaluation and the demo refuse the same
files; :func:`load_model` adds what the nodes (and the node benchmarks) need around it: the
shipped default for ``''``, the device choice, the resolved path for their logs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, NamedTuple, Tuple

import torch

from ..device import select_device
from .weights_file import checked_weights_path

KindLoader = Callable[[Path, torch.device], Tuple[torch.nn.Module, Dict[str, Any]]]


class LoadedModel(NamedTuple):
    """A model as its ``weights`` and ``device`` settings name it."""

    model: torch.nn.Module
    metadata: Dict[str, Any]
    path: Path                    # resolved: the name errors and logs give
    device: torch.device


def load_model(
    weights: str, device_name: str, default_path: Path, load: KindLoader
) -> LoadedModel:
    """``load`` (a model kind's loader) the ``weights`` file (``''`` = ``default_path``, the
    shipped model) onto the device ``device_name`` names.

    Raises ``ModelFileError`` naming the file and the problem, and ``DeviceUnavailableError`` /
    ``ValueError`` for the device.
    """
    path = checked_weights_path(weights or default_path)   # ~ expanded, resolved, checked
    device = select_device(device_name)
    model, metadata = load(path, device)
    return LoadedModel(model, metadata, path, device)
