"""Offline evaluation of the package's models on datasets and rosbag2 recordings."""
from __future__ import annotations

import argparse
from typing import Callable, List, Optional

from ..cli import OneLineParser, report_error
from ..data.bags import BagError
from ..data.shards import DatasetError
from ..device import add_device_option, DeviceUnavailableError


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
    except (OSError, ValueError, DatasetError, BagError, DeviceUnavailableError) as error:
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
        '--data', metavar='DIR', help=f'{sim} dataset directory (python -m sim {sim})'
    )
    source.add_argument('--bag', metavar='PATH', help=f'{sim} rosbag2 (python -m sim {sim} --bag)')
    add_device_option(parser, default='cpu')
    parser.add_argument(
        '--json', action='store_true', help='print one JSON object instead of tables'
    )
    return parser
