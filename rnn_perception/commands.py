"""``python -m rnn_perception <command> ...``: one entry point for every job of the package.

Each command lives in its own module with its own ``main(argv) -> int`` and ``--help``; this
module dispatches, importing the chosen command's module alone (so ``--help`` is quick and a
command never pays for another's imports). The conventions they keep are in
:mod:`rnn_perception.cli`.
"""
from __future__ import annotations

import importlib
import sys
from typing import Dict, List, Optional, Tuple, Union

from .cli import report_error, USAGE_ERROR_STATUS, UsageError

# name -> (module:function, one-line help), or name -> {target: (module:function, help)}
Command = Tuple[str, str]
COMMANDS: Dict[str, Union[Command, Dict[str, Command]]] = {
    'demo': (
        'rnn_perception.demo:main',
        'the main job: run the package end to end on this machine',
    ),
    'zoo': (
        'rnn_perception.training.zoo:main',
        'train/test a recurrent cell type on sequential (permuted) digits or MNIST',
    ),
    'train': {
        'collision': (
            'rnn_perception.training.collision:main',
            'train the ConvLSTM collision predictor on a dodgeball dataset',
        ),
        'tactile': (
            'rnn_perception.training.tactile:main',
            'train the LSTM tactile pose predictor on a tactile dataset',
        ),
    },
    'eval': {
        'collision': (
            'rnn_perception.evaluation.collision:main',
            'evaluate collision weights on a dataset or a rosbag2',
        ),
        'tactile': (
            'rnn_perception.evaluation.tactile:main',
            'evaluate tactile weights against baselines on a dataset or a rosbag2',
        ),
    },
    'export': {
        'collision': ('rnn_perception.export:collision',
                      'one collision step as an ONNX graph (ONNX Runtime, TensorRT)'),
        'tactile': ('rnn_perception.export:tactile', 'one tactile step as an ONNX graph'),
    },
    'play': (
        'rnn_perception.ros.player:main',
        'publish a rosbag2 over DDS with its recorded timing',
    ),
    'bringup': {
        'dodgeball': (
            'rnn_perception.bringup:dodgeball',
            'start the collision node in this process (no ros2 launch needed)',
        ),
        'tactile': ('rnn_perception.bringup:tactile', 'start the tactile node in this process'),
        'all': (
            'rnn_perception.bringup:both',
            'start the collision and the tactile node in this process',
        ),
    },
}

USAGE = 'usage: python -m rnn_perception <command> [options]   (<command> --help for its options)'


def _describe(table: Dict[str, Union[Command, Dict[str, Command]]]) -> List[str]:
    rows = []
    for name, entry in table.items():
        if isinstance(entry, dict):
            rows += [(f'{name} {target}', help_) for target, (_, help_) in entry.items()]
        else:
            rows.append((name, entry[1]))
    width = max(len(label) for label, _ in rows)
    return [f'  {label:<{width}}  {help_}' for label, help_ in rows]


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ('-h', '--help'):
        print('\n'.join([USAGE, '', 'commands:', *_describe(COMMANDS)]))
        return 0 if argv else USAGE_ERROR_STATUS
    name, rest = argv[0], argv[1:]
    entry = COMMANDS.get(name)
    if entry is None:
        return report_error('rnn_perception', UsageError(f"unknown command {name!r}; choose from "
                                                         f"{', '.join(COMMANDS)}"))
    if isinstance(entry, dict):
        if not rest or rest[0] not in entry:
            return report_error(
                f'rnn_perception {name}', UsageError(f"choose what to {name}: {', '.join(entry)}")
            )
        entry, rest = entry[rest[0]], rest[1:]
    module_name, function = entry[0].split(':')
    return getattr(importlib.import_module(module_name), function)(rest)
