"""Bad weights files, for both models: every one is refused at start with one line naming the
file and the problem, by the loader, the node (``StartupError``; the executable exits 1) and
``eval <model> --weights`` (exit 2), and a pickle payload in one never runs.

Each case writes a real file: safetensors from ``safe_open``'s own writer, pickles from
``pickle``/``torch.save``, a sparse file over the size limit.
"""
from __future__ import annotations

import os
import pickle
import re
import struct
import subprocess
from pathlib import Path
from typing import Callable, Dict, NamedTuple

import pytest
import torch

from ros_helpers import PYTHON

from rnn_perception.models.collision import (CollisionConfig, CollisionPredictor,
                                             load_collision_model, save_collision_model)
from rnn_perception.models.tactile import (
    TactileConfig,
    TactilePredictor,
    load_tactile_model,
    save_tactile_model,
)
from rnn_perception.models.weights_file import (
    MAX_WEIGHTS_BYTES,
    ModelFileError,
    checked_weights_path,
)
from rnn_perception.cells import LSTMCell
from rnn_perception.files import load_checkpoint, save_checkpoint

REPO = Path(__file__).resolve().parent.parent


class Kind(NamedTuple):
    name: str
    other: str
    save_good: Callable[[Path], None]
    load: Callable
    node_module: str


def _save_collision(path: Path) -> None:
    config = CollisionConfig(
        image_size=(16, 16), encoder_channels=[4], recurrent_channels=[4], recurrent_strides=[1]
    )
    save_collision_model(path, CollisionPredictor(config), {'fps': 30.0, 'threshold': 0.5})


def _save_tactile(path: Path) -> None:
    save_tactile_model(
        path,
        TactilePredictor(TactileConfig(hidden_size=4, head_size=4, horizon=3)),
        {'rate_hz': 100.0},
    )


KINDS = {
    'collision': Kind(
        'collision',
        'tactile',
        _save_collision,
        load_collision_model,
        'rnn_perception.nodes.collision_node',
    ),
    'tactile': Kind(
        'tactile',
        'collision',
        _save_tactile,
        load_tactile_model,
        'rnn_perception.nodes.tactile_node',
    ),
}


class _Payload:
    """Unpickling this runs code: it would create the marker directory."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def marker_of(path: Path) -> Path:
    return path.parent / 'code_ran'


# ---------------------------------------------------------------------------- the bad files
def _rewritten(path: Path, kind: Kind, change: Callable[[Dict, Dict], tuple]) -> None:
    kind.save_good(path)
    tensors, metadata = load_checkpoint(path)
    save_checkpoint(path, *change(tensors, metadata))


def truncated(path, kind):
    kind.save_good(path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def missing_tensor(path, kind):
    _rewritten(path, kind, lambda t, m: ({k: v for k, v in list(t.items())[1:]}, m))


def extra_tensor(path, kind):
    _rewritten(path, kind, lambda t, m: ({**t, 'smuggled': torch.zeros(3)}, m))


def wrong_shape(path, kind):
    _rewritten(path, kind, lambda t, m: ({k: torch.zeros(v.numel() + 1) for k, v in t.items()}, m))


def wrong_dtype(path, kind):
    _rewritten(path, kind, lambda t, m: ({k: v.double() for k, v in t.items()}, m))


def other_models_metadata(path, kind):
    other = path.parent / 'other.safetensors'
    KINDS[kind.other].save_good(other)
    _rewritten(path, kind, lambda t, m: (t, load_checkpoint(other).metadata))


def huge_config(path, kind):
    """A config asking for a model of billions of parameters: refused without allocating it."""
    big = {'collision': {'encoder_channels': [10**9]}, 'tactile': {'hidden_size': 10**6}}[
        kind.name
    ]
    _rewritten(path, kind, lambda t, m: (t, {**m, 'config': {**m['config'], **big}}))


def pickle_payload(path, kind):
    path.write_bytes(pickle.dumps({'state_dict': _Payload(marker_of(path))}))


def torch_save_payload(path, kind):
    torch.save({'state_dict': _Payload(marker_of(path))}, path)       # a torch.save zip, renamed


def empty(path, kind):
    path.write_bytes(b'')


def directory(path, kind):
    path.mkdir()


def nonexistent(path, kind):
    pass


def absurd_header_length(path, kind):
    kind.save_good(path)
    data = path.read_bytes()
    path.write_bytes(struct.pack('<Q', 2**62) + data[8:])  # the first 8 bytes: the header's length


def over_the_size_limit(path, kind):
    kind.save_good(path)
    os.truncate(path, MAX_WEIGHTS_BYTES + 1)                   # sparse: no disk used


CASES = {
    truncated: 'not a readable checkpoint',
    missing_tensor: r'weights do not match their metadata \(missing ',
    extra_tensor: r'weights do not match their metadata \(unexpected smuggled\)',
    wrong_shape: (r'weights do not match their metadata '
                  r'\(.* has shape \(\d+,\), the model needs \('),
    wrong_dtype: (r'weights do not match their metadata '
                  r'\(.* is torch.float64, the model needs torch.float32'),
    other_models_metadata: "holds a '{other}' model, not a '{kind}' one",
    huge_config: r'weights do not match their metadata \(.*the model needs \(.*000000[,)]',
    pickle_payload: r'not a readable checkpoint \(Error while deserializing header',
    torch_save_payload: r'not a readable checkpoint \(Error while deserializing header',
    empty: r'not a readable checkpoint \(Error while deserializing header: header too small\)',
    directory: r'not a regular file',
    nonexistent: r'not found',
    absurd_header_length: (r'not a readable checkpoint '
                           r'\(Error while deserializing header: header too large\)'),
    over_the_size_limit: (rf'{MAX_WEIGHTS_BYTES + 1} bytes, '
                          rf'over the {MAX_WEIGHTS_BYTES} bytes a weights file may have'),
}


def bad_file(tmp_path: Path, kind: Kind, make) -> Path:
    path = tmp_path / f'{kind.name}.safetensors'
    make(path, kind)
    return path


def expected(make, kind: Kind) -> str:
    return CASES[make].format(kind=kind.name, other=kind.other)


def assert_one_line(text: str, path: Path, match: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in text, text
    assert str(path) in lines[0]
    assert_matches(lines[0], match)
    return lines[0]


def assert_matches(text: str, match: str) -> None:
    assert re.search(match, text), f'{match!r} not in {text!r}'


parametrize_cases = pytest.mark.parametrize('make', CASES, ids=[make.__name__ for make in CASES])
parametrize_kinds = pytest.mark.parametrize('kind', KINDS.values(), ids=list(KINDS))


# ------------------------------------------------------------------------------- the refusals
@parametrize_kinds
@parametrize_cases
def test_the_loader_refuses_with_the_file_and_the_problem(tmp_path, kind, make):
    path = bad_file(tmp_path, kind, make)
    with pytest.raises(ModelFileError) as raised:
        kind.load(path)
    assert_one_line(str(raised.value), path, expected(make, kind))
    assert not marker_of(path).exists()


@parametrize_kinds
@parametrize_cases
def test_the_node_refuses_to_start_and_its_executable_exits_1_with_one_line(
    tmp_path, capsys, kind, make
):
    import importlib

    path = bad_file(tmp_path, kind, make)
    node_main = importlib.import_module(kind.node_module).main
    assert node_main(['--ros-args', '-p', f'weights:={path}']) == 1
    line = assert_one_line(capsys.readouterr().err, path, expected(make, kind))
    assert line.startswith(f'{kind.name}_node: error: ')
    assert not marker_of(path).exists()


@parametrize_kinds
@parametrize_cases
def test_eval_refuses_the_weights_with_one_line(tmp_path, capsys, kind, make):
    from rnn_perception.commands import main

    path = bad_file(tmp_path, kind, make)
    assert (
        main(['eval', kind.name, '--weights', str(path), '--data', str(tmp_path / 'never_read')])
        == 1
    )
    line = assert_one_line(capsys.readouterr().err, path, expected(make, kind))
    assert line.startswith(f'eval {kind.name}: error: ')
    assert not marker_of(path).exists()


@parametrize_kinds
def test_a_pickle_payload_never_runs_in_the_real_executables(tmp_path, kind):
    """The same through separate processes, as a user would run them."""
    path = bad_file(tmp_path, kind, pickle_payload)
    commands = ([PYTHON, '-m', kind.node_module, '--ros-args', '-p', f'weights:={path}'],
                [PYTHON, '-m', 'rnn_perception', 'eval', kind.name, '--weights', str(path),
                 '--data', str(tmp_path)])
    # side by side: each is a start of torch, and neither waits on the other
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, cwd=REPO) for command in commands]
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 1, stderr
        assert_one_line(stderr, path, expected(pickle_payload, kind))
    assert not marker_of(path).exists()


# ------------------------------------------------------------------------------------- paths
def test_paths_are_expanded_and_resolved_before_they_are_checked(tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path))
    _save_collision(tmp_path / 'real.safetensors')
    (tmp_path / 'link.safetensors').symlink_to(tmp_path / 'real.safetensors')
    assert checked_weights_path('~/link.safetensors') == (tmp_path / 'real.safetensors').resolve()
    model, _ = load_collision_model('~/link.safetensors')
    assert isinstance(model, CollisionPredictor)
    (tmp_path / 'loop.safetensors').symlink_to(tmp_path / 'loop.safetensors')
    with pytest.raises(ModelFileError, match='loop.safetensors'):
        checked_weights_path('~/loop.safetensors')


@pytest.mark.skipif(os.geteuid() == 0, reason='root reads any file: permissions cannot refuse it')
def test_an_unreadable_file_is_refused(tmp_path):
    path = tmp_path / 'locked.safetensors'
    _save_collision(path)
    path.chmod(0)
    with pytest.raises(ModelFileError, match='not readable'):
        checked_weights_path(path)


@pytest.mark.parametrize('kind, older', [('collision', 2), ('tactile', 1)])
def test_files_of_the_older_lstm_gate_order_load_with_the_same_outputs(tmp_path, kind, older):
    """Weights files written before the LSTM cells took torch's gate order (collision schema 2,
    tactile 1) are converted on loading; older ones than that are still refused."""
    save_good, load = KINDS[kind].save_good, KINDS[kind].load
    save_good(tmp_path / 'new.safetensors')
    model, metadata = load(tmp_path / 'new.safetensors')
    tensors, _ = load_checkpoint(tmp_path / 'new.safetensors')
    for name, module in model.named_modules():
        if isinstance(module, LSTMCell):
            for part in ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh'):
                i, f, g, o = tensors[f'{name}.{part}'].chunk(4, 0)
                tensors[f'{name}.{part}'] = torch.cat([i, f, o, g])     # the older row order
    for version, name in ((older, 'older.safetensors'), (older - 1, 'oldest.safetensors')):
        save_checkpoint(tmp_path / name, tensors, {**metadata, 'schema_version': version})
    converted, _ = load(tmp_path / 'older.safetensors')
    for (key, value), expected in zip(converted.state_dict().items(),
                                      model.state_dict().values()):
        torch.testing.assert_close(value, expected, msg=key)
    with pytest.raises(ModelFileError, match=f'schema version {older - 1} is not the supported'):
        load(tmp_path / 'oldest.safetensors')
