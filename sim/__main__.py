"""``python -m sim <simulator> [options]``: generate training data.

Each simulator is a subcommand; adding one means writing a module with a
``register(subcommands)`` function (see ``sim.dodgeball.cli``) and listing it in
:data:`SIMULATORS`; what generation shares (workers, shards, bag, preview) is in
``sim.pipeline``. Known errors print one line, ``sim: error: ...``, and exit with 1
(2 for a bad command line), as the package's commands do (:mod:`rnn_perception.cli`); Ctrl-C or
SIGTERM exits with 130 after removing partial outputs.
"""
from __future__ import annotations

import argparse
import signal
import sys

from rnn_perception.cli import OneLineParser, UsageError, report_error
from rnn_perception.data.bags import BagError
from rnn_perception.data.shards import DatasetError
from sim.dodgeball import cli as dodgeball_cli
from sim.errors import SimError
from sim.pipeline import request_stop
from sim.tactile import cli as tactile_cli

SIMULATORS = (dodgeball_cli, tactile_cli)

# Errors that are the user's input or environment, not a bug: no traceback for these.
REPORTED_ERRORS = (SimError, BagError, DatasetError, OSError)


def build_parser() -> argparse.ArgumentParser:
    """The ``sim`` parser with one subcommand per simulator."""
    parser = OneLineParser(
        prog='sim', description='Generate training data with a simulator; '
                                '`python -m sim SIMULATOR --help` for its options.')
    subcommands = parser.add_subparsers(dest='simulator', required=True, metavar='SIMULATOR')
    for simulator in SIMULATORS:
        simulator.register(subcommands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except UsageError as error:
        return report_error('sim', error)
    # Ctrl-C and SIGTERM stop the generation between episodes (see pipeline.request_stop),
    # which unwinds like Ctrl-C so staged outputs get removed.
    previous = {
        number: signal.signal(number, request_stop) for number in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        args.run(args)
    except KeyboardInterrupt:
        print('sim: interrupted; partial outputs were removed', file=sys.stderr)
        return 130
    except REPORTED_ERRORS as error:
        return report_error('sim', error)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return 0


if __name__ == '__main__':
    sys.exit(main())
