"""The one command-line convention every command of the package (and ``python -m sim``) keeps:
a problem is one line ``<command>: error: ...`` on stderr, no traceback, and exit status 2 for a
bad command line, 1 for anything else the user can mend (a file, a dataset, a bag, the device);
and the argparse types the commands share. The commands themselves are listed in
:mod:`rnn_perception.commands`.
"""
from __future__ import annotations

import argparse
import sys

USAGE_ERROR_STATUS = 2
ERROR_STATUS = 1


class UsageError(ValueError):
    """A bad command line."""


class OneLineParser(argparse.ArgumentParser):
    """Raises :class:`UsageError` on a bad command line instead of printing the usage and
    exiting, so the command reports it in one line (:func:`report_error`) and returns."""

    def error(self, message: str):
        raise UsageError(f'{message} (see --help)')


def number(kind: type, zero_allowed: bool = False):
    """An argparse type: a positive ``kind`` (int or float), or also 0 with ``zero_allowed``."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'expected {kind.__name__}, got {text!r}') from None
        if value < 0 or (value == 0 and not zero_allowed):
            raise argparse.ArgumentTypeError(
                f'must be {">= 0" if zero_allowed else "> 0"}, got {text}'
            )
        return value
    return parse


def probability(text: str) -> float:
    """An argparse type: a float in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a number, got {text!r}') from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f'must be in [0, 1], got {text}')
    return value


def fraction(text: str) -> float:
    """An argparse type: a float in (0, 1)."""
    value = probability(text)
    if value in (0.0, 1.0):
        raise argparse.ArgumentTypeError(f'must be strictly between 0 and 1, got {text}')
    return value


def report_error(command: str, error: BaseException) -> int:
    """Print ``error`` as the one line ``<command>: error: ...``; the exit status to return."""
    print(f'{command}: error: {error}', file=sys.stderr)
    return USAGE_ERROR_STATUS if isinstance(error, UsageError) else ERROR_STATUS
