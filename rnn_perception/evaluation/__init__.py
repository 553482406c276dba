"""Offline evaluation of the package's models on datasets and rosbag2 recordings."""
from __future__ import annotations

import argparse
from typing import Callable, List, Optional

from ..cli import report_error
from ..data.bags import BagError
from ..data.shards import DatasetError
from ..training.utils import DeviceUnavailableError


def evaluation_main(model: str, argv: Optional[List[str]], build_parser: Callable[[], argparse.ArgumentParser],
                    run: Callable[[argparse.Namespace], int]) -> int:
    """``python -m rnn_perception eval <model> ...``: parse and ``run``; a bad command line or bad
    input (a weights file, a dataset, a bag, the device) is one line ``eval <model>: error: ...``
    (exit status 2 and 1, see :mod:`rnn_perception.cli`)."""
    try:
        return run(build_parser().parse_args(argv))
    except (OSError, ValueError, DatasetError, BagError, DeviceUnavailableError) as error:
        return report_error(f'eval {model}', error)             # one line, no traceback
