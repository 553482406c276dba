"""Train the tactile pose predictor on a tactile slip dataset.

    python -m rnn_perception train tactile --data DIR --out FILE [--epochs N] [--device auto]

Data: episodes of 21 tactile values and the pose per sample, split into train/validation **by
episode** (stratified by whether the grasp slipped, seeded). They are streamed from the shards
as the collision trainer streams its own, at most ``--shards-in-memory`` shards at a time
(default :data:`~rnn_perception.training.command.SHARDS_IN_MEMORY`;
:mod:`rnn_perception.data.streaming`): each epoch the shards come in a random order, in windows
of that many, and the batches are shuffled within a window; the split and the lengths come from
a small index (``slipped`` and the episode offsets) read without the samples. With ``all`` (or
at least as many as the dataset has) the dataset is read once and held, and the batches are
those of one shuffle over all training episodes. Validation streams the same way, its episodes
grouped by shard. A batch is whole episodes from their first sample, zero-padded at the end, so
training sees them exactly as the node does: from a fresh state when the stream starts.

Normalisation (stored with the weights, from the training episodes, one streamed pass): the
mean/std of the tactile input (PAC log-compressed,
:func:`~rnn_perception.models.tactile.tactile_features`) and of the pose, the std of the pose
change per sample, and per horizon step ``k`` and pose component the std of constant-velocity
extrapolation's error ``p_{t+k} - p_t - k v_t``. Each episode's moments are merged into the
running ones in float64 in episode order (:mod:`rnn_perception.training.moments`), so the
statistics are the same bits whatever ``--shards-in-memory``.

Loss: mean squared error of the model's standardised residuals ``r_{t,k}`` against
``(p_{t+k} - p_t - k v_t) / sigma_{r,k}`` over every sample and horizon step whose future lies
inside its episode (see :mod:`rnn_perception.models.tactile`). Gradients are clipped by norm;
AdamW with a one-cycle learning rate. After every epoch the validation episodes are scored
with the evaluation's metrics (:func:`~rnn_perception.evaluation.tactile.tactile_metrics`); the
epoch with the lowest mean angle error over the horizon is kept in ``--out`` as safetensors
with the metadata the node needs.

Beside ``--out`` (or in ``--run-dir``), for ``--out DIR/NAME.safetensors``: ``NAME_metrics.json``
(summary: validation metrics of the kept epoch, command, dataset, timings), ``NAME_epochs.csv`` /
``.json`` (one row per epoch), ``NAME_curves.png`` (loss and angle error per epoch) and
``NAME_trajectories.png`` (predicted vs true futures of validation episodes), and
``NAME_resume.safetensors``, the whole state after the last epoch done, which ``--resume``
carries on from (:mod:`rnn_perception.training.resume`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Sized, Tuple

import numpy as np
import torch
from torch import nn, Tensor
from tqdm import tqdm

from rnn_perception.cli import number
from rnn_perception.data.shards import DatasetError
from rnn_perception.data.streaming import (episode_refs, EpisodeRef, most_batches, shard_groups,
                                           ShardStream, windowed_plan)
from rnn_perception.data.tactile_dataset import (FRAME_DTYPES, load_tactile_dataset,
                                                 TactileDataset, TactileEpisode)
from rnn_perception.evaluation.tactile import sequence_predictions
from rnn_perception.evaluation.tactile_metrics import (baseline_ratio, EpisodePrediction,
                                                       TactileScores)
from rnn_perception.evaluation.tactile_plots import plot_trajectories
from rnn_perception.models.tactile import (NUM_POSE, NUM_TACTILE, TactileConfig,
                                           TactilePredictor, load_tactile_model,
                                           save_tactile_model, tactile_features)
from rnn_perception.files import write_text_atomic
from rnn_perception.training.command import (add_run_options, add_shards_option, OutputPaths,
                                             trainer_parser, training_main)
from rnn_perception.training.distributed import data_parallel, Ranks, RankStep
from rnn_perception.training.episode_split import split_by_episode
from rnn_perception.training.gradients import clip_gradients
from rnn_perception.training.precision import Precision
from rnn_perception.training.metrics_log import MetricsWriter, plot_curves
from rnn_perception.training.moments import Moments
from rnn_perception.training.resume import begin, end_epoch, RESUME_SUFFIX, training_checkpoint

STD_FLOOR = 1e-6        # a component that never varies (the pose's y) is divided by this, not 0
MIN_EPISODES = 4        # two to train on and two to validate
PLOTTED_EPISODES = 4    # validation episodes whose predicted futures the report plots
# What the index reads of every shard (besides the episode offsets): the label.
INDEX_MEMBERS = ('slipped',)


# ------------------------------------------------------------------------------------------ data
def check_count(dataset: TactileDataset, episodes: int) -> None:
    """Raise DatasetError unless the dataset holds enough episodes to split."""
    if episodes < MIN_EPISODES:
        raise DatasetError(f'{dataset.name}: training needs at least {MIN_EPISODES} episodes, it '
                           f'holds {episodes}')


def load_episodes(
    data_dirs: str | Sequence[str],
) -> Tuple[List[TactileEpisode], TactileDataset]:
    """Every episode of the dataset in ``data_dirs`` (one directory, or several read as one)
    and the dataset."""
    dataset = load_tactile_dataset(data_dirs)
    episodes = list(dataset.episodes())
    check_count(dataset, len(episodes))
    return episodes, dataset


def slips_and_lengths(arrays: Dict[str, np.ndarray]) -> List[Tuple[bool, int]]:
    """``(slipped, samples)`` of each episode of a shard's :data:`INDEX_MEMBERS`."""
    return [(bool(slipped), int(length))
            for slipped, length in zip(arrays['slipped'], np.diff(arrays['episode_offsets']))]


def index_episodes(data_dirs: str | Sequence[str]) -> Tuple[List[EpisodeRef], TactileDataset]:
    """The dataset in ``data_dirs`` and its episodes' references (label: slipped; length: its
    samples), from the shards' :data:`INDEX_MEMBERS` alone."""
    dataset = load_tactile_dataset(data_dirs)
    refs = episode_refs(dataset, INDEX_MEMBERS, slips_and_lengths)
    check_count(dataset, len(refs))
    return refs, dataset


def detached(episode: TactileEpisode) -> TactileEpisode:
    """The episode with copies of its per-sample arrays: as read, they are views into its
    shard's arrays, which a held episode would keep whole (the stream's ``prepare``)."""
    return dataclasses.replace(episode, **{name: getattr(episode, name).copy()
                                           for name in FRAME_DTYPES})


def futures(poses: Tensor, horizon: int) -> Tensor:
    """``p_{t+k}`` for ``k = 1..horizon``: ``(B, T, 4)`` -> ``(B, T, H, 4)``; past an episode's end
    the last pose repeats (those entries are masked out of the loss)."""
    extended = torch.cat([poses, poses[:, -1:].expand(-1, horizon, -1)], 1)      # (B, T + H, 4)
    return extended.unfold(1, horizon, 1)[:, 1:poses.shape[1] + 1].transpose(-1, -2)


def normalisation(groups: Iterable[Sequence[TactileEpisode]],
                  horizon: int) -> Dict[str, np.ndarray]:
    """The model's statistics (see the module docstring) from the episodes, given in groups (one
    group: a list of episodes; a stream's batches: a few shards' at a time), merged episode by
    episode in the order given: the velocity's std over ``n - 1``, the others over ``n``, the
    residuals' over the samples whose future lies inside the episode."""
    model = TactilePredictor(TactileConfig(horizon=horizon))  # zero head: constant velocity
    tactile, pose, velocity = (Moments.empty(shape) for shape in ((NUM_TACTILE,), (NUM_POSE,),
                                                                  (NUM_POSE,)))
    residual = Moments.empty((horizon, NUM_POSE))
    for group in groups:
        for e in group:
            poses = torch.from_numpy(e.pose)[None]
            velocities = model.velocities(poses)
            tactile += Moments.of(tactile_features(torch.from_numpy(e.tactile)).numpy())
            pose += Moments.of(e.pose)
            velocity += Moments.of(velocities[0].numpy())
            residual += Moments.of(
                (futures(poses, horizon) - model.extrapolate(poses, velocities))[0].numpy(),
                future_mask([e.num_frames], e.num_frames, horizon)[0, ..., None].numpy())
    return {'tactile_mean': tactile.mean, 'tactile_std': np.maximum(tactile.std(), STD_FLOOR),
            'pose_mean': pose.mean, 'pose_std': np.maximum(pose.std(), STD_FLOOR),
            'velocity_std': np.maximum(velocity.std(ddof=1), STD_FLOOR),
            'residual_std': np.maximum(residual.std(), STD_FLOOR)}


def future_mask(lengths: Sequence[int], steps: int, horizon: int) -> Tensor:
    """``(B, T, H)`` bool: sample ``t``'s step ``k`` lies inside its episode
    (``t + k < length``)."""
    t = torch.arange(steps).view(1, -1, 1)
    k = torch.arange(1, horizon + 1).view(1, 1, -1)
    return t + k < torch.as_tensor(list(lengths)).view(-1, 1, 1)


def make_batch(
    episodes: Sequence[TactileEpisode], device: torch.device
) -> Tuple[Tensor, Tensor, List[int]]:
    """Tactile ``(B, T, 21)`` and poses ``(B, T, 4)``, zero-padded at the end (poses: the last
    pose repeated, so the padding is no motion), and the lengths."""
    lengths = [e.num_frames for e in episodes]
    tactile = np.zeros((len(episodes), max(lengths), episodes[0].tactile.shape[1]), np.float32)
    poses = np.zeros((len(episodes), max(lengths), episodes[0].pose.shape[1]), np.float32)
    for row, episode in enumerate(episodes):
        tactile[row, :episode.num_frames] = episode.tactile
        poses[row, :episode.num_frames] = episode.pose
        poses[row, episode.num_frames:] = episode.pose[-1]
    return torch.from_numpy(tactile).to(device), torch.from_numpy(poses).to(device), lengths


def squared_errors(model: TactilePredictor, episodes: Sequence[TactileEpisode],
                   device: torch.device) -> Tensor:
    """The module docstring's squared errors on ``episodes``, summed (see :func:`error_count`
    for how many there are)."""
    tactile, poses, lengths = make_batch(episodes, device)
    residuals, velocity = model.forward_residuals(tactile, poses, lengths)
    horizon = model.config.horizon
    targets = (futures(poses, horizon) - model.extrapolate(poses, velocity)) / model.residual_std
    mask = future_mask(lengths, poses.shape[1], horizon).to(device)
    return (residuals - targets).pow(2).mean(-1)[mask].sum()


def error_count(lengths: Sequence[int], horizon: int) -> int:
    """How many (sample, horizon step) errors the loss of episodes of ``lengths`` averages."""
    return int(future_mask(lengths, max(lengths), horizon).sum())


def batch_loss(
    model: TactilePredictor, episodes: Sequence[TactileEpisode], device: torch.device
) -> Tensor:
    """The module docstring's loss on ``episodes``."""
    return squared_errors(model, episodes, device) / error_count(
        [e.num_frames for e in episodes], model.config.horizon)


class TrainingLoss(nn.Module):
    """The loss of a share of a batch as a module, so that DistributedDataParallel can wrap it:
    the share's squared errors over ``count``, the whole batch's (see
    :mod:`rnn_perception.training.distributed`)."""

    def __init__(self, model: TactilePredictor, device: torch.device):
        super().__init__()
        self.model, self.device = model, device

    def forward(self, episodes: Sequence[TactileEpisode], count: int) -> Tensor:
        return squared_errors(self.model, episodes, self.device) / count


# -------------------------------------------------------------------------------------- training
def shuffled_batches(items: Sequence[Any], batch_size: int,
                     rng: np.random.Generator) -> List[List[Any]]:
    """``items`` in a random order, cut into batches of ``batch_size`` (the last may be short)."""
    order = rng.permutation(len(items))
    return [[items[i] for i in order[k:k + batch_size]]
            for k in range(0, len(order), batch_size)]


def epoch_plan(refs: Sequence[EpisodeRef], shards_in_memory: Optional[int], batch_size: int,
               rng: np.random.Generator) -> List[List[EpisodeRef]]:
    """One epoch's batches of training ``refs``: shuffled within each window of
    ``shards_in_memory`` shards (:func:`~rnn_perception.data.streaming.windowed_plan`). With
    all shards in one window, the :func:`shuffled_batches` of all of ``refs``."""
    return windowed_plan(refs, shards_in_memory, rng,
                         lambda window, rng: shuffled_batches(window, batch_size, rng))


def train_epoch(
    model: TactilePredictor,
    steps: Iterable[RankStep],
    optimizer: torch.optim.Optimizer,
    schedule,
    args: argparse.Namespace,
    device: torch.device,
    description: str,
    ranks: Ranks = Ranks(),
    step: Optional[nn.Module] = None,
    precision: Optional[Precision] = None,
) -> float:
    """One pass over the training episodes: ``steps``, each a global batch's references and
    this rank's share's episodes (:meth:`~rnn_perception.training.distributed.Ranks.steps` of
    an :func:`epoch_plan`; the loss's count of the whole batch from its references' lengths),
    through ``step`` (the run's :class:`TrainingLoss`, in DistributedDataParallel when
    distributed: made once per run, as DDP wants) in ``precision`` (default fp32); returns the
    mean loss."""
    model.train()
    step = TrainingLoss(model, device) if step is None else step
    precision = Precision('fp32', device) if precision is None else precision
    total, count = 0.0, 0
    parts = tqdm(steps, desc=description, unit='batch', leave=False, disable=args.quiet,
                 total=len(steps) if isinstance(steps, Sized) else None)
    for part in parts:
        with precision.autocast():
            loss = step(part.episodes,
                        error_count([ref.length for ref in part.batch], model.config.horizon))
        loss = loss.float() * (part.weight * ranks.scale())
        optimizer.zero_grad(set_to_none=True)
        precision.step(loss, optimizer, lambda: clip_gradients(model.parameters(), args.clip_norm))
        schedule.step()
        total += loss.item() / ranks.scale() * len(part.batch)
        count += len(part.batch)
        parts.set_postfix(loss=f'{total / count:.4f}', refresh=False)
    return ranks.sum([total])[0] / count


@torch.no_grad()
def validate(model: TactilePredictor, groups: Iterable[Sequence[TactileEpisode]],
             device: torch.device, batch_size: int, plotted: int = 0
             ) -> Tuple[Dict[str, Any], float, List[EpisodePrediction]]:
    """Validation metrics (model and baselines), loss (the mean over episodes of their batches'
    losses, in batches of ``batch_size`` within a group) and the predictions of the first
    ``plotted`` episodes, of the episodes given in groups (one group: a list of episodes; a
    stream's batches: a few shards' at a time, each group let go once scored)."""
    model.eval()
    scores, loss, kept = TactileScores(), 0.0, []
    for episodes in groups:
        for k in range(0, len(episodes), batch_size):
            chunk = episodes[k:k + batch_size]
            loss += batch_loss(model, chunk, device).item() * len(chunk)
        for prediction in sequence_predictions(model, episodes, device):
            scores.add(prediction)
            if len(kept) < plotted:
                kept.append(prediction)
    return scores.metrics(), loss / scores.episodes, kept


def model_metadata(args: argparse.Namespace, data: Dict[str, Any], epoch: int,
                   metrics: Dict[str, Any]) -> Dict[str, Any]:
    """What the node and a reader of the weights need besides the tensors and the config."""
    return {
        'rate_hz': data['rate_hz'],
        'training_command': args.command,
        'dataset_manifest_sha256': data['manifest_sha256'],
        'validation_metrics': metrics,
        'epoch': epoch,
        'epochs': args.epochs,
        'seed': args.seed,
        'train_episodes': data['train_episodes'],
        'val_episodes': data['val_episodes'],
    }


def epoch_line(row: Dict[str, Any], epochs: int) -> str:
    return (
        f"epoch {row['epoch']:>3}/{epochs}  train loss {row['train_loss']:.4f}"
        f"  val loss {row['val_loss']:.4f}"
        f"  angle error {row['val_mae_deg']:.4f} deg (const velocity {row['val_cv_mae_deg']:.4f}, "
        f"ratio {row['val_ratio']:.3f})  {row['seconds']:.0f}s"
    )


def train(args: argparse.Namespace, device: torch.device) -> int:
    """Train, keep the best epoch by validation, write the weights and the reports; under
    torchrun, data-parallel (:mod:`rnn_perception.training.distributed`)."""
    with data_parallel(device) as (ranks, device):
        return train_ranks(args, device, ranks)


def train_ranks(args: argparse.Namespace, device: torch.device, ranks: Ranks) -> int:
    """:func:`train` as one of ``ranks``: rank 0 alone validates and writes."""
    args.quiet = args.quiet or not ranks.is_main
    config = TactileConfig(
        hidden_size=args.hidden_size, num_layers=args.num_layers, head_size=args.head_size
    )
    started = time.perf_counter()
    refs, dataset = index_episodes(args.data)
    stream = ShardStream(dataset, detached, args.shards_in_memory)
    manifest = dataset.manifest
    train_set, val = split_by_episode(refs, [r.label for r in refs], args.val_fraction, args.seed)
    data = {'rate_hz': manifest['rate_hz'], 'manifest_sha256': dataset.manifest_sha256,
            'train_episodes': len(train_set), 'val_episodes': len(val)}
    torch.manual_seed(args.seed)
    model = TactilePredictor(config)
    # in episode order, whatever the split's: the same bits at any --shards-in-memory
    model.set_normalisation(normalisation(
        stream.batches(shard_groups(sorted(train_set), args.shards_in_memory)), config.horizon))
    model.to(device)

    def val_groups() -> Iterable[List[TactileEpisode]]:
        return stream.batches(shard_groups(val, args.shards_in_memory))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=args.lr,
        total_steps=args.epochs * most_batches(train_set, args.shards_in_memory, args.batch_size),
        pct_start=0.15,
    )
    paths = OutputPaths(Path(args.out), Path(args.run_dir or Path(args.out).parent))
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    epochs_file = MetricsWriter(paths.run_dir, f'{paths.stem}_epochs')
    rng = np.random.default_rng(args.seed)
    precision = Precision(args.precision, device)
    checkpoint = training_checkpoint(paths.report(RESUME_SUFFIX), args, data['manifest_sha256'],
                                     {'model': model, **precision.stateful()}, optimizer, schedule,
                                     rng)
    progress = begin(checkpoint, args.resume, epochs_file, args.quiet)
    if not args.quiet:
        print(
            f'tactile predictor: {sum(p.numel() for p in model.parameters()):,} parameters, '
            f'{len(train_set)}/{len(val)} train/val episodes '
            f'({sum(r.length for r in train_set)} training '
            f'samples at {data["rate_hz"]:g} Hz), device {device}, {stream.describe()}'
        )
    best = progress.best
    step = ranks.wrap(TrainingLoss(model, device), device)
    for epoch in range(progress.first_epoch, args.epochs + 1):
        epoch_started = time.perf_counter()
        train_loss = train_epoch(
            model,
            ranks.steps(epoch_plan(train_set, args.shards_in_memory, args.batch_size, rng),
                        stream.batches),
            optimizer,
            schedule,
            args,
            device,
            f'epoch {epoch}/{args.epochs}',
            ranks,
            step,
            precision,
        )
        if not ranks.is_main:
            continue
        metrics, val_loss, _ = validate(model, val_groups(), device, args.batch_size)
        row = {
            'epoch': epoch,
            'train_loss': train_loss,
            'val_loss': val_loss,
            'val_mae_deg': metrics['model_mae_deg'],
            'val_cv_mae_deg': metrics['const_velocity_mae_deg'],
            'val_ratio': baseline_ratio(metrics),
            'val_position_mm': metrics['model_position_mm'],
            'seconds': time.perf_counter() - epoch_started,
        }
        epochs_file.append(row)
        if best is None or metrics['model_mae_deg'] < best:
            best = metrics['model_mae_deg']
            save_tactile_model(paths.weights, model, model_metadata(args, data, epoch, metrics))
        end_epoch(checkpoint, epoch, best, epochs_file,
                  progress.seconds + time.perf_counter() - started)
        if not args.quiet:
            tqdm.write(epoch_line(row, args.epochs))
    if not ranks.is_main:
        return 0
    train_seconds = progress.seconds + time.perf_counter() - started
    model, metadata = load_tactile_model(
        paths.weights, device
    )  # the kept epoch, as a node loads it
    summary = {
        'weights': str(paths.weights),
        'training_command': args.command,
        'data': dataset.name,
        'dataset_manifest_sha256': data['manifest_sha256'],
        'dataset_seed': manifest.get('seed'),
        'train_episodes': len(train_set),
        'val_episodes': len(val),
        'epoch': metadata['epoch'],
        'epochs': args.epochs,
        'train_seconds': train_seconds,
        'device': str(device),
        'torch_threads': torch.get_num_threads(),
        'config': config.to_dict(),
        'validation': metadata['validation_metrics'],
    }
    plot_curves(
        epochs_file.rows,
        paths.report('curves.png'),
        metrics=('loss', 'mae_deg'),
        title='tactile predictor',
    )
    plotted = validate(model, val_groups(), device, args.batch_size, PLOTTED_EPISODES)[2]
    plot_trajectories(plotted, paths.report('trajectories.png'), PLOTTED_EPISODES)
    write_text_atomic(paths.summary, json.dumps(summary, indent=1) + '\n')
    if not args.quiet:
        print(
            f"kept epoch {metadata['epoch']} in {paths.weights} ({train_seconds:.0f} s); "
            f"reports in {paths.run_dir}"
        )
    return 0


# ------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = trainer_parser('tactile', __doc__, 'tactile dataset (python -m sim tactile)')
    defaults = TactileConfig()
    parser.add_argument('--hidden-size', type=number(int), default=defaults.hidden_size,
                        help=f'LSTM units per layer (default: {defaults.hidden_size})')
    parser.add_argument('--num-layers', type=number(int), default=defaults.num_layers,
                        help=f'stacked LSTM layers (default: {defaults.num_layers})')
    parser.add_argument(
        '--head-size',
        type=number(int),
        default=defaults.head_size,
        help=f'hidden units of the multi-horizon head (default: {defaults.head_size})',
    )
    parser.add_argument('--epochs', type=number(int), default=30, help='(default: 30)')
    parser.add_argument(
        '--batch-size', type=number(int), default=16, help='episodes per batch (default: 16)'
    )
    parser.add_argument(
        '--lr', type=number(float), default=3e-3, help='peak learning rate (default: 3e-3)'
    )
    parser.add_argument('--weight-decay', type=number(float, zero_allowed=True), default=1e-4,
                        help='AdamW weight decay (default: 1e-4)')
    parser.add_argument('--clip-norm', type=number(float), default=1.0,
                        help="clip the gradients' total L2 norm to this (default: 1.0)")
    add_shards_option(parser)
    add_run_options(parser, 'split, initial weights, batches')
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m rnn_perception train tactile``; returns the exit code."""
    return training_main('tactile', argv, build_parser, train)


if __name__ == '__main__':
    sys.exit(main())
