"""The ``train <model>`` command line the trainers share: the parser and its common options, the
run's output paths and the entry point with the package's one-line errors."""
from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from ..cli import fraction, OneLineParser, report_error
from ..data.shards import DatasetError
from ..data.streaming import ALL, parse_shards_in_memory
from ..device import add_device_option, DeviceUnavailableError, select_device
from .precision import add_precision_option

# default --shards-in-memory: 256 episodes of the simulators' 64 a shard (dodgeball: ~85 MB at
# 64x64; tactile: a few MB)
SHARDS_IN_MEMORY = 4


def trainer_parser(model: str, description: str, dataset: str) -> argparse.ArgumentParser:
    """The parser of ``train <model>`` with the options every trainer starts with: ``--data``
    (a ``dataset``), ``--out``, ``--run-dir``; :func:`add_run_options` adds those it ends with."""
    parser = OneLineParser(prog=f'rnn_perception train {model}', description=description,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data', required=True, nargs='+', metavar='DIR',
                        help=f'{dataset}; several directories (the parts of a `--shard K/N` '
                             'run) are read as one dataset, in episode order')
    parser.add_argument(
        '--out', required=True, metavar='FILE', help='weights file to write (.safetensors)'
    )
    parser.add_argument(
        '--run-dir', metavar='DIR', help='where the reports go (default: beside --out)'
    )
    return parser


def add_shards_option(parser: argparse.ArgumentParser) -> None:
    """``--shards-in-memory K|all``: how much of the dataset a trainer holds at a time
    (:mod:`rnn_perception.data.streaming`)."""
    parser.add_argument(
        '--shards-in-memory', type=parse_shards_in_memory, default=SHARDS_IN_MEMORY,
        metavar='K',
        help='hold at most K dataset shards in memory at a time, streaming them in a random '
        f'order each epoch, or "{ALL}": read the dataset once and hold it (default: '
        f'{SHARDS_IN_MEMORY})',
    )


def add_run_options(parser: argparse.ArgumentParser, seeded: str) -> None:
    """The options every trainer ends with: the validation split, the seed (of ``seeded``),
    resume, the device, quiet."""
    parser.add_argument(
        '--val-fraction', type=fraction, default=0.15, help='episodes held out (default: 0.15)'
    )
    parser.add_argument('--seed', type=int, default=0, help=f'{seeded} (default: 0)')
    parser.add_argument('--resume', action='store_true',
                        help='carry on from the checkpoint this run writes after every epoch '
                             '(NAME_resume.safetensors in the run directory), with the same '
                             'options and data; without one, start afresh (so a requeued job '
                             'runs the same command)')
    add_device_option(parser, default='auto')
    add_precision_option(parser)
    parser.add_argument('--quiet', action='store_true', help='no progress bars or per-epoch lines')


@dataclass
class OutputPaths:
    """Where a training run writes: the weights and, beside them or in ``--run-dir``, its
    reports."""

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


def training_main(
    model: str,
    argv: Optional[Sequence[str]],
    build_parser: Callable[[], argparse.ArgumentParser],
    train: Callable[[argparse.Namespace, torch.device], int],
) -> int:
    """``python -m rnn_perception train <model> ...``: parse (recording the command in
    ``args.command``), pick the device, train; a bad command line or bad input is one line
    ``train <model>: error: ...`` (exit status 2 and 1, see :mod:`rnn_perception.cli`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        args.command = ' '.join(
            [f'python -m rnn_perception train {model}', *map(shlex.quote, argv)]
        )
        return train(args, select_device(args.device))
    except (
        OSError,
        ValueError,
        DatasetError,
        DeviceUnavailableError,
    ) as error:  # bad input: one line
        return report_error(f'train {model}', error)
