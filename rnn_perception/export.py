"""``python -m rnn_perception export collision|tactile --weights FILE --out FILE.onnx``: one
recurrent step of a model as an ONNX graph for ONNX Runtime or TensorRT on a robot computer (see
:mod:`rnn_perception.models.onnx_export` for the graph's inputs, outputs and metadata).

A bad weights file, an unwritable output or a missing ``onnx`` is one line ``export <kind>:
error: ...`` and exit status 1 (2 for a bad command line), as every command of the package.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, List, Optional

from .cli import OneLineParser, report_error, UsageError

KINDS = ('collision', 'tactile')


def build_parser(kind: str) -> argparse.ArgumentParser:
    parser = OneLineParser(prog=f'python -m rnn_perception export {kind}', description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--weights', default='', metavar='FILE',
                        help=f'{kind} weights (.safetensors; default: the shipped model)')
    parser.add_argument('--out', required=True, type=Path, metavar='FILE.onnx',
                        help='the ONNX file to write (replaced when complete)')
    return parser


def loader(kind: str) -> Callable:
    """The kind's ``load_<kind>_model`` and its shipped weights' path."""
    if kind == 'collision':
        from .models.collision import default_weights_path, load_collision_model
        return load_collision_model, default_weights_path()
    from .models.tactile import default_weights_path, load_tactile_model
    return load_tactile_model, default_weights_path()


def run(kind: str, argv: Optional[List[str]]) -> int:
    from .models.loading import load_model
    from .models.weights_file import ModelFileError

    try:
        args = build_parser(kind).parse_args(argv)
        if not args.out.parent.is_dir():
            raise UsageError(f'--out {args.out}: {args.out.parent} is not a directory')
        load, shipped = loader(kind)
        loaded = load_model(args.weights, 'cpu', shipped, load)
        try:
            from .models.onnx_export import export_step
        except ImportError as error:
            raise OSError(f'exporting needs onnx and onnxscript ({error.name} is missing); '
                          'pip install -r requirements.txt') from None
        export_step(kind, loaded.model, loaded.metadata, loaded.path, args.out)
    except (UsageError, ModelFileError, OSError) as error:
        return report_error(f'export {kind}', error)
    print(f'wrote {args.out} (one {kind} step, opset 18) from {loaded.path}')
    return 0


def collision(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``export collision``."""
    return run('collision', argv)


def tactile(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``export tactile``."""
    return run('tactile', argv)


if __name__ == '__main__':
    sys.exit(collision())
