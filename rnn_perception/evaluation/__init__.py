"""Offline evaluation of the package's models on datasets and rosbag2 recordings."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import torch

from ..cli import OneLineParser, report_error, UsageError
from ..data.bags import BagError
from ..data.shards import DatasetError
from ..device import add_device_option, DeviceUnavailableError
from ..files import PathLike
from ..models.engines import EngineOptions, start_engine
from ..models.loading import KindLoader, load_model, LoadedModel
from ..models.step_engine import BACKENDS, EngineStartError, StepEngine, TORCH_BACKEND


def evaluation_main(
    model: str,
    argv: Optional[List[str]],
    build_parser: Callable[[], argparse.ArgumentParser],
    run: Callable[[argparse.Namespace], int],
) -> int:
    """``python -m rnn_perception eval <model> ...``: parse and ``run``; a bad command line or bad
    input (a weights file, a dataset, a bag, the device) is one line ``eval <model>: error: ...``
    (exit status 2 and 1, see :mod:`rnn_perception.cli`)."""
    try:
        return run(build_parser().parse_args(argv))
    except (OSError, ValueError, DatasetError, BagError, DeviceUnavailableError,
            EngineStartError) as error:
        return report_error(f'eval {model}', error)             # one line, no traceback


def evaluation_parser(model: str, description: str, sim: str) -> argparse.ArgumentParser:
    """The options every ``eval <model>`` takes: ``--weights``, a ``--data`` directory or a
    ``--bag`` made by ``python -m sim <sim>``, ``--device`` (default cpu) and ``--json``; the
    command adds its own."""
    parser = OneLineParser(prog=f'rnn_perception eval {model}', description=description,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        '--weights', required=True, metavar='FILE', help=f'{model} model (.safetensors)'
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        '--data', nargs='+', metavar='DIR',
        help=f'{sim} dataset directory (python -m sim {sim}); several (the parts of a '
             '`--shard K/N` run) are read as one dataset'
    )
    source.add_argument('--bag', metavar='PATH', help=f'{sim} rosbag2 (python -m sim {sim} --bag)')
    add_device_option(parser, default='cpu')
    parser.add_argument('--backend', choices=BACKENDS, default=TORCH_BACKEND,
                        help='with --bag: what steps the model, as the nodes\' backend parameter '
                             f'(default: {TORCH_BACKEND}; --data runs torch\'s whole-sequence '
                             'forward)')
    parser.add_argument(
        '--json', action='store_true', help='print one JSON object instead of tables'
    )
    return parser


def check_backend(args: argparse.Namespace) -> None:
    """``--backend`` other than torch steps a bag; a dataset runs whole sequences in torch."""
    if args.backend != TORCH_BACKEND and args.bag is None:
        raise UsageError(f'--backend {args.backend} steps a bag: give --bag, not --data')


def bag_engine(kind: str, weights_path: PathLike, load: KindLoader, device='cpu',
               backend: str = TORCH_BACKEND) -> Tuple[StepEngine, LoadedModel]:
    """The engine that steps the ``kind`` weights at ``weights_path`` through a bag as the node
    does (the same backend, the node's one thread), and the loaded weights."""
    options = EngineOptions(backend=backend, device=torch.device(device).type)
    loaded = load_model(str(weights_path), options.model_device, Path(weights_path), load)
    return start_engine(kind, loaded, options), loaded
