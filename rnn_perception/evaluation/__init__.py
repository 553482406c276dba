"""Offline evaluation of the package's models on datasets and rosbag2 recordings."""
from __future__ import annotations

import argparse
import sys
from typing import Callable, List, Optional

from ..data.bags import BagError
from ..data.shards import DatasetError
from ..training.utils import DeviceUnavailableError


def evaluation_main(model: str, argv: Optional[List[str]], build_parser: Callable[[], argparse.ArgumentParser],
                    run: Callable[[argparse.Namespace], int]) -> int:
    """``python -m rnn_perception eval <model> ...``: parse and ``run``; bad input (a weights file,
    a dataset, a bag, the device) is one line ``eval <model>: error: ...`` and exit status 2."""
    try:
        return run(build_parser().parse_args(argv))
    except (OSError, ValueError, DatasetError, BagError, DeviceUnavailableError) as error:
        print(f'eval {model}: error: {error}', file=sys.stderr)   # bad input: one line, no traceback
        return 2
