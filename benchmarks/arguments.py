"""Command-line helpers shared by the benchmark scripts (imported from their own folder)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Tuple


def named_paths(values: List[str], flag: str, parser: argparse.ArgumentParser
                ) -> List[Tuple[str, Path]]:
    """The ``NAME=PATH`` values of a repeatable ``flag`` as ``(name, path)`` pairs; anything
    else is the parser's usage error (one line, exit status 2)."""
    pairs = []
    for value in values:
        name, _, path = value.partition('=')
        if not name or not path:
            parser.error(f'{flag} takes NAME=PATH, got {value!r}')
        pairs.append((name, Path(path)))
    return pairs
