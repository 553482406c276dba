"""Train the ConvLSTM collision predictor on a dodgeball dataset.

    python -m rnn_perception train collision --data DIR --out FILE [--epochs N] [--device auto]

Data: episodes are resized to the model's ``image_size``
(:func:`~rnn_perception.models.collision.resize_frames`) as uint8 and split into
train/validation **by episode** (stratified by label, seeded). They are streamed from the
shards, at most ``--shards-in-memory`` shards at a time (default
:data:`~rnn_perception.training.command.SHARDS_IN_MEMORY`;
:mod:`rnn_perception.data.streaming`): each epoch the shards come in
a random order, in windows of that many, and the batches mix the episodes of a window; the
split, the lengths and the labels come from a small index read without the frames. With
``all`` (or at least as many as the dataset has) the whole dataset is read once and held, and
the batches are those of a shuffle over all training episodes. Validation streams the same way,
its episodes grouped by shard. A batch is whole episodes of similar length from their
first frame, zero-padded at the end (padded frames weigh 0), so training sees episodes exactly
as the node does: from a fresh state at the throw. Training episodes augment with a horizontal
flip (a mirrored throw has the same label), per-channel gain/offset jitter and, with
``--camera-effects train`` (the default), a random camera for :data:`CAMERA_EFFECTS_SHARE` of the
episodes each epoch (exposure, motion blur, noise, mono, JPEG at random quality:
:data:`~rnn_perception.data.sensor_effects.TRAINING_EFFECTS`), so the model survives real cameras;
the ball masks stay those of the clean frames. Validation runs on the frames as rendered.

Loss, three terms:

1. **per frame**: binary cross-entropy with logits of every frame against its episode's label,
   weighted. Frames from contact on weigh 0: a warning after the ball arrived is worth
   nothing, and the ball bouncing off the robot would teach the wrong cue. Earlier frames ramp
   linearly from 0 at the throw to 1 at ``--ramp-s``: at release the ball is a speck whose fate
   cannot be seen yet, and full weight there only teaches the model to guess;
2. **per episode** (``--episode-weight``): cross-entropy of each episode's highest logit, over
   all frames of a miss but only the frames at least ``--warning-s`` before contact of a hit
   (see :func:`episode_bce`): the evaluation's episode score, asking for an early warning;
3. **auxiliary** (``--aux-weight``, training only): where the balls are on the feature grid and
   the thrown ball's position, velocity and aim offset, every frame (see :class:`AuxiliaryHeads`).

Gradients are clipped by norm; AdamW with a one-cycle learning rate. After every epoch the
validation episodes are scored with the evaluation metrics at a threshold calibrated on them
(:func:`~rnn_perception.evaluation.collision.calibrate_threshold`, unless ``--threshold``
fixes one): the lowest threshold whose validation accuracy is within ``--accuracy-margin`` (one
point) of the best, because a warning's lead time is worth more to a robot than the last point
of accuracy, which the best-accuracy threshold buys with a far higher, later threshold. The
best epoch (highest validation accuracy, then AUROC) is kept in ``--out`` as safetensors with
the metadata the node needs, the threshold included.

Beside ``--out`` (or in ``--run-dir``), for ``--out DIR/NAME.safetensors``: ``NAME_metrics.json``
(summary: validation metrics of the kept epoch, command, dataset, timings), ``NAME_epochs.csv`` /
``.json`` (one row per epoch), ``NAME_curves.png`` (loss, accuracy, AUROC per epoch),
``NAME_roc.png`` and ``NAME_traces.png`` (validation ROC and sample probability traces), and
``NAME_resume.safetensors``, the whole state after the last epoch done, which ``--resume``
carries on from (:mod:`rnn_perception.training.resume`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import (Any, Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence,
                    Sized, Tuple, TypeVar)

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm import tqdm

from rnn_perception.cli import number
from rnn_perception.data.dodgeball_dataset import (DodgeballDataset, DodgeballEpisode,
                                                   load_dodgeball_dataset)
from rnn_perception.data.sensor_effects import TRAINING_EFFECTS
from rnn_perception.data.shards import DatasetError
from rnn_perception.data.streaming import (EpisodeRef, index_arrays, most_batches, shard_groups,
                                           shard_refs, ShardStream, windowed_plan)
from rnn_perception.evaluation.collision import sequence_probabilities
from rnn_perception.evaluation.collision_metrics import (calibrate_threshold, collision_metrics,
                                                         EpisodeTrace)
from rnn_perception.evaluation.collision_plots import plot_roc, plot_traces
from rnn_perception.models.collision import (CollisionConfig, CollisionPredictor,
                                             frames_to_tensor, load_collision_model,
                                             resize_frames, save_collision_model)
from rnn_perception.cli import probability
from rnn_perception.files import write_text_atomic
from rnn_perception.training.command import (add_run_options, add_shards_option, OutputPaths,
                                             trainer_parser, training_main)
from rnn_perception.training.distributed import data_parallel, Ranks, RankStep
from rnn_perception.training.episode_split import split_by_episode
from rnn_perception.training.gradients import clip_gradients
from rnn_perception.training.precision import Precision
from rnn_perception.training.metrics_log import MetricsWriter, plot_curves
from rnn_perception.training.resume import begin, end_epoch, RESUME_SUFFIX, training_checkpoint

# The calibrated threshold may give up this much validation accuracy for earlier warnings.
ACCURACY_MARGIN = 0.01
NORMALISATION_SAMPLE_STEP = 4      # mean/std from every 4th training frame: plenty, and quick
T = TypeVar('T')
# The auxiliary target per frame: robot-frame ball position (m), velocity (m/s) and the throw's
# signed aim offset (m), over these scales: of order 1, but the aim offset, which is what decides
# a hit and what an early warning must guess, in quarter metres so that it weighs the most.
BALL_STATE_SCALE = np.array([5.0, 5.0, 5.0, 10.0, 10.0, 10.0, 0.25], dtype=np.float32)
LATERAL = [1, 4, 6]                # the sideways components: a mirrored image negates them
BALL_PIXEL_DIFFERENCE = 40  # |RGB - background| summed over channels (0..765) that marks a ball
CAMERA_EFFECTS_TRAIN, CAMERA_EFFECTS_NONE = 'train', 'none'
CAMERA_EFFECTS_SHARE = 0.8  # the other episodes of each epoch as rendered: plain stays sharp
BALL_MASK_POSITIVE_WEIGHT = 10.0   # a ball covers few cells: weigh them up in the mask loss
CAMERA_SEED_BOUND = 2 ** 63        # an episode's camera seed: any non-negative int64
# What the index reads of every shard: the label, and the times of the trained part (its length,
# and the loss weights of a batch a rank holds only its share of).
INDEX_MEMBERS = ('hit', 'stamp_s', 'contact_time_s')


# ------------------------------------------------------------------------------------------ data
@dataclass
class Episode:
    """One episode in memory, frames at the model's input size."""

    index: int
    frames: np.ndarray          # (T, h, w, 3) uint8 RGB
    stamps_s: np.ndarray        # (T,) time since the throw
    hit: bool
    contact_time_s: float       # inf for misses
    ball_state: np.ndarray  # (T, 7) auxiliary targets, scaled by BALL_STATE_SCALE
    ball_mask: (
        np.ndarray
    )  # (T, h', w') share of each cell of the model's feature grid covered by a ball

    def weights(self, ramp_s: float) -> np.ndarray:
        """Per-frame loss weights (:func:`frame_weights`)."""
        return frame_weights(self.stamps_s, self.contact_time_s, ramp_s)

    def warning_frames(self, warning_s: float) -> np.ndarray:
        """Frames the episode term scores: a hit's frames at least ``warning_s`` before contact
        (all before contact if there are none that early), every frame of a miss."""
        early = self.stamps_s <= self.contact_time_s - warning_s
        return early if early.any() else self.stamps_s < self.contact_time_s

    def trace(self, probabilities: np.ndarray) -> EpisodeTrace:
        return EpisodeTrace(
            self.index, self.stamps_s, probabilities, self.hit, self.contact_time_s
        )


def frame_weights(stamps_s: np.ndarray, contact_time_s: float, ramp_s: float) -> np.ndarray:
    """Per-frame loss weights of frames at ``stamps_s`` (see the module docstring): 0 from
    contact on, a linear ramp from the throw to ``ramp_s``, 1 after."""
    ramp = np.minimum(1.0, (stamps_s + 1e-9) / ramp_s) if ramp_s > 0 else np.ones_like(stamps_s)
    return np.where(stamps_s < contact_time_s, ramp, 0.0).astype(np.float32)


class EpisodeTimes(NamedTuple):
    """What the index keeps of an episode for its loss weights without its frames: the times of
    the frames of its :func:`trained_part`, and of contact."""

    stamps_s: np.ndarray
    contact_time_s: float

    def weights(self, ramp_s: float) -> np.ndarray:
        """Per-frame loss weights (:func:`frame_weights`)."""
        return frame_weights(self.stamps_s, self.contact_time_s, ramp_s)


class EpisodeIndex(NamedTuple):
    """What the trainer knows of every episode before it trains (:func:`index_episodes`)."""

    refs: List[EpisodeRef]
    dataset: DodgeballDataset
    times: Dict[int, EpisodeTimes]   # by global episode index


class KeptMask(NamedTuple):
    """An episode's ball masks (:func:`ball_mask`) as kept between epochs: their nonzero cells
    only. A ball covers a few of a frame's cells, so this is about a tenth of the dense float16
    masks, which, kept for every episode, grew with the dataset by more than the stream saves."""

    shape: Tuple[int, ...]
    cells: np.ndarray    # flat indices of the nonzero cells, the smallest unsigned type that fits
    values: np.ndarray   # their values, float16 as :func:`ball_mask` gives them

    @classmethod
    def of(cls, mask: np.ndarray) -> 'KeptMask':
        cells = np.flatnonzero(mask)
        return cls(mask.shape, cells.astype(np.min_scalar_type(max(mask.size - 1, 0))),
                   mask.reshape(-1)[cells])

    def dense(self) -> np.ndarray:
        """The masks as :func:`ball_mask` gave them, bit for bit."""
        mask = np.zeros(self.shape, self.values.dtype)
        mask.reshape(-1)[self.cells] = self.values
        return mask


def preparation(image_size: Sequence[int], grid: Sequence[int]):
    """What makes a training :class:`Episode` of a dataset episode: frames at ``image_size``,
    ball masks on the feature ``grid``, ball-state targets.

    Each episode's ball masks are computed the first time it is prepared and kept as a
    :class:`KeptMask` (a few hundred bytes an episode, where its frames are a few hundred kB): a
    streamed episode is prepared again every epoch, and the masks were most of that work."""
    masks: Dict[int, KeptMask] = {}

    def prepare(e: DodgeballEpisode) -> Episode:
        frames = resize_frames(e.frames, image_size)
        if frames is e.frames:
            frames = frames.copy()   # not a view that would pin its whole shard's frames
        kept = masks.get(e.index)
        if kept is None:
            mask = ball_mask(frames, grid)
            masks[e.index] = KeptMask.of(mask)
        else:
            mask = kept.dense()
        return Episode(e.index, frames, e.stamp_s, e.hit, e.contact_time_s, ball_state(e), mask)
    return prepare


def check_labels(dataset: DodgeballDataset, hits: Sequence[bool]) -> None:
    """Raise DatasetError unless the dataset holds hits and misses."""
    if len(hits) < 2 or len(set(hits)) < 2:
        raise DatasetError(
            f'{dataset.name}: training needs hits and misses; it holds {len(hits)} episode(s) '
            f'with {sum(hits)} hit(s)'
        )


def load_episodes(data_dirs: str | Sequence[str], image_size: Sequence[int],
                  grid: Sequence[int]) -> Tuple[List[Episode], DodgeballDataset]:
    """Every episode of the dataset in ``data_dirs`` (one directory, or several read as one) at
    ``image_size`` (ball masks on the feature ``grid``), and the dataset."""
    dataset = load_dodgeball_dataset(data_dirs)
    episodes = [*map(preparation(image_size, grid), dataset.episodes())]
    check_labels(dataset, [e.hit for e in episodes])
    return episodes, dataset


def trained_times(arrays: Dict[str, np.ndarray]) -> List[EpisodeTimes]:
    """The :class:`EpisodeTimes` of each episode of a shard's :data:`INDEX_MEMBERS`: its frames
    before contact (at least 1), those of its :func:`trained_part`."""
    offsets, times = arrays['episode_offsets'], []
    for contact, start, stop in zip(arrays['contact_time_s'], offsets[:-1], offsets[1:]):
        stamps = arrays['stamp_s'][start:stop]
        times.append(EpisodeTimes(stamps[:trained_frames(stamps, contact)].copy(),
                                  float(contact)))
    return times


def index_episodes(data_dirs: str | Sequence[str]) -> EpisodeIndex:
    """The dataset in ``data_dirs``, its episodes' references (label: hit; length: that of the
    trained part) and times, from the shards' :data:`INDEX_MEMBERS` alone."""
    dataset = load_dodgeball_dataset(data_dirs)
    refs, times = [], {}
    for shard, arrays in index_arrays(dataset, INDEX_MEMBERS):
        trained = trained_times(arrays)
        ours = shard_refs(shard, arrays, [(hit, len(episode.stamps_s))
                                          for hit, episode in zip(arrays['hit'], trained)])
        refs += ours
        times.update((ref.index, episode) for ref, episode in zip(ours, trained))
    check_labels(dataset, [ref.label for ref in refs])
    return EpisodeIndex(refs, dataset, times)


def ball_state(episode: DodgeballEpisode) -> np.ndarray:
    """The auxiliary targets of every frame: where the ball is, how it moves, where it was
    aimed."""
    aim = np.full((episode.num_frames, 1), episode.aim_offset_m)
    return (
        np.concatenate([episode.ball_position, episode.ball_velocity, aim], 1) / BALL_STATE_SCALE
    ).astype(np.float32)


def ball_mask(frames: np.ndarray, grid: Sequence[int]) -> np.ndarray:
    """Where the balls are, per cell of ``grid``: pixels far from the episode's per-pixel median
    (the camera and the scene stand still and a ball passes any pixel in a few frames only, so
    the median is the background), area-averaged onto the grid. Label-free and
    camera-model-free."""
    # twice the per-pixel median, in integers: |2 frame - 2 median| > 2 difference is the test
    middle = (len(frames) - 1) // 2, len(frames) // 2
    # each pixel's values over time made contiguous first: partitioned in place along the time
    # axis of the frames, numpy walks memory T values apart (2.7x slower)
    ordered = np.partition(np.ascontiguousarray(frames.reshape(len(frames), -1).T), middle,
                           axis=-1)                                          # (H*W*3, T)
    twice_background = (ordered[:, middle[0]].astype(np.int16)
                        + ordered[:, middle[1]]).reshape(frames.shape[1:])   # (H, W, 3)
    difference = frames.astype(np.int16)
    difference *= 2
    difference -= twice_background
    np.abs(difference, out=difference)
    # the channels added one by one: numpy's sum over a last axis of 3 is far slower
    moving = (difference[..., 0] + difference[..., 1] + difference[..., 2]
              > 2 * BALL_PIXEL_DIFFERENCE)
    (steps, height, width), (rows, columns) = moving.shape, grid
    if height % rows == 0 and width % columns == 0:
        # whole cells: the same block means as the pooling below (the sums of 0/1 are exact),
        # without torch's thread pool, which the shard reader thread would contend for
        blocks = moving.reshape(steps, rows, height // rows, columns, width // columns)
        return blocks.mean((2, 4), dtype=np.float32).astype(np.float16)
    pooled = F.adaptive_avg_pool2d(torch.from_numpy(moving).float().unsqueeze(1), tuple(grid))
    return pooled.squeeze(1).numpy().astype(np.float16)


def channel_statistics(groups: Iterable[Sequence[Episode]]) -> Tuple[np.ndarray, np.ndarray]:
    """Per-channel RGB mean and std (in [0, 1]) of a sample of the frames of the episodes, given
    in groups (one group: a list of episodes), summed in float64 group by group."""
    count, total, squares = 0, np.zeros(3), np.zeros(3)
    for group in groups:
        for e in group:
            pixels = e.frames[::NORMALISATION_SAMPLE_STEP].reshape(-1, 3).astype(np.float64)
            count += len(pixels)
            total += pixels.sum(0)
            squares += np.square(pixels).sum(0)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean ** 2, 0.0))
    return (mean / 255.0).astype(np.float32), np.maximum(std / 255.0, 1e-3).astype(np.float32)


def trained_frames(stamps_s: np.ndarray, contact_time_s: float) -> int:
    """How many of an episode's first frames are trained: those before contact (from contact
    on they weigh 0), at least one."""
    return max(1, int(np.sum(stamps_s < contact_time_s)))


def trained_part(episode: Episode) -> Episode:
    """The episode without its frames from contact on (they weigh 0: no need to run them)."""
    keep = trained_frames(episode.stamps_s, episode.contact_time_s)
    return Episode(episode.index, episode.frames[:keep], episode.stamps_s[:keep], episode.hit,
                   episode.contact_time_s, episode.ball_state[:keep], episode.ball_mask[:keep])


@dataclass
class Batch:
    frames: Tensor      # (B, T, 3, h, w) float in [0, 1]
    labels: Tensor      # (B,)
    weights: Tensor     # (B, T), 0 on padding
    ball_state: Tensor  # (B, T, 7)
    ball_mask: Tensor   # (B, T, h', w')
    frame_mask: Tensor  # (B, T), 1 on real frames
    warning_mask: Tensor  # (B, T), 1 on the frames the episode term scores


def make_batch(
    episodes: Sequence[Episode], ramp_s: float, warning_s: float, device: torch.device
) -> Batch:
    """Zero-pad episodes at the end to the longest; padded frames weigh 0."""
    longest = max(len(e.frames) for e in episodes)
    frames = np.zeros((len(episodes), longest, *episodes[0].frames.shape[1:]), dtype=np.uint8)
    weights = np.zeros((len(episodes), longest), dtype=np.float32)
    ball_state = np.zeros((len(episodes), longest, len(BALL_STATE_SCALE)), dtype=np.float32)
    ball_mask = np.zeros(
        (len(episodes), longest, *episodes[0].ball_mask.shape[1:]), dtype=np.float32
    )
    warning_mask = np.zeros((len(episodes), longest), dtype=np.float32)
    for row, episode in enumerate(episodes):
        frames[row, :len(episode.frames)] = episode.frames
        weights[row, :len(episode.frames)] = episode.weights(ramp_s)
        ball_state[row, :len(episode.frames)] = episode.ball_state
        ball_mask[row, :len(episode.frames)] = episode.ball_mask
        warning_mask[row, :len(episode.frames)] = episode.warning_frames(warning_s)
    labels = np.array([e.hit for e in episodes], dtype=np.float32)
    frame_mask = (
        np.arange(longest) < np.array([len(e.frames) for e in episodes])[:, None]
    ).astype(np.float32)
    return Batch(
        frames_to_tensor(frames, device),
        *(
            torch.from_numpy(array).to(device)
            for array in (labels, weights, ball_state, ball_mask, frame_mask, warning_mask)
        ),
    )


def frame_count(episode: Episode) -> int:
    return len(episode.frames)


def length_bucketed_batches(episodes: Sequence[T], batch_size: int, rng: np.random.Generator,
                            length: Callable[[T], int] = frame_count) -> List[List[T]]:
    """Random batches of episodes (or their references) of similar ``length`` (little
    padding), in random order."""
    order = rng.permutation(len(episodes))
    pool = batch_size * 8  # sort within pools: similar lengths, still random
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool], key=lambda i: length(episodes[i]))
        batches += [
            [episodes[i] for i in chunk[k:k + batch_size]]
            for k in range(0, len(chunk), batch_size)
        ]
    return [batches[i] for i in rng.permutation(len(batches))]


@dataclass
class Augmentation:
    """One draw per episode of a batch: mirror it, and its channels' gain and offset."""

    flip: Tensor    # (B,) bool
    gain: Tensor    # (B, 1, 3, 1, 1)
    offset: Tensor  # (B, 1, 3, 1, 1)

    @classmethod
    def draw(cls, size: int, generator: torch.Generator, jitter: float) -> 'Augmentation':
        """The draws for ``size`` episodes: half mirrored, gains and offsets up to ``jitter``."""
        flip = torch.rand(size, generator=generator) < 0.5
        gain = 1 + jitter * (2 * torch.rand(size, 1, 3, 1, 1, generator=generator) - 1)
        offset = jitter * (torch.rand(size, 1, 3, 1, 1, generator=generator) - 0.5)
        return cls(flip, gain, offset)

    def rows(self, rows: Sequence[int]) -> 'Augmentation':
        """The draws of these episodes of the batch (a rank's share)."""
        index = torch.as_tensor(list(rows))
        return Augmentation(self.flip[index], self.gain[index], self.offset[index])


def augment(batch: Batch, generator: torch.Generator, jitter: float) -> Batch:
    """Mirror half the episodes left-right (and their ball's lateral motion) and scale/shift each
    episode's channels by up to ``jitter`` (one draw per episode, so it never flickers)."""
    return augmented(batch, Augmentation.draw(batch.frames.shape[0], generator, jitter))


def augmented(batch: Batch, draws: Augmentation) -> Batch:
    """``batch`` with ``draws`` applied (see :func:`augment`)."""
    device = batch.frames.device
    flip = draws.flip.to(device)
    frames = torch.where(flip.view(-1, 1, 1, 1, 1), batch.frames.flip(-1), batch.frames)
    frames = (frames * draws.gain.to(device) + draws.offset.to(device)).clamp_(0, 1)
    ball_state = batch.ball_state.clone()
    ball_state[..., LATERAL] *= torch.where(flip, -1.0, 1.0).view(-1, 1, 1)
    ball_mask = torch.where(flip.view(-1, 1, 1, 1), batch.ball_mask.flip(-1), batch.ball_mask)
    return Batch(
        frames,
        batch.labels,
        batch.weights,
        ball_state,
        ball_mask,
        batch.frame_mask,
        batch.warning_mask,
    )


class AuxiliaryHeads(nn.Module):
    """Training-only heads on the predictor's head input, every frame (not saved with the model):

    - **ball mask**: which cells of the feature grid a ball covers (1x1 conv, BCE);
    - **ball state**: the thrown ball's position, velocity and aim offset (linear, MSE).

    Why: the label is one bit per episode and the ball is a speck on a textured scene. From the
    label alone, training first idles for epochs until the encoder stumbles on the ball, then
    learns the one cue that is easy, the ball filling the frame just before contact, which warns
    far too late. The mask teaches the encoder to find the ball from the first batch; the state
    gives a dense, graded signal on what decides a ballistic hit (a throw 2 m wide and one 0.3 m
    wide are both just "miss" to the label), which is what lets the model warn early.
    """

    def __init__(self, model: CollisionPredictor):
        super().__init__()
        channels, (height, width) = model.head_conv.in_channels, model.feature_size()
        self.ball_mask = nn.Conv2d(channels, 1, 1)
        self.ball_state = nn.Linear(channels * height * width, len(BALL_STATE_SCALE))

    def loss(self, features: Tensor, batch: Batch, frames: Optional[Tensor] = None) -> Tensor:
        """Both losses, summed over the real (unpadded) frames of ``batch`` and divided by
        ``frames`` (default: their number)."""
        mask_logits = self.ball_mask(features.flatten(0, 1)).view(batch.ball_mask.shape)
        positive_weight = torch.tensor(BALL_MASK_POSITIVE_WEIGHT, device=features.device)
        mask_loss = F.binary_cross_entropy_with_logits(
            mask_logits, batch.ball_mask, reduction='none', pos_weight=positive_weight
        ).mean((-1, -2))
        state_loss = (self.ball_state(features.flatten(2)) - batch.ball_state).pow(2).mean(-1)
        frames = batch.frame_mask.sum() if frames is None else frames
        return ((mask_loss + state_loss) * batch.frame_mask).sum() / frames


def weighted_bce(logits: Tensor, labels: Tensor, weights: Tensor,
                 total_weight: Optional[Tensor] = None) -> Tensor:
    """Per-frame BCE with logits against each episode's label, weighted per frame, over
    ``total_weight`` (default: the weights' sum: the weighted mean)."""
    targets = labels.unsqueeze(1).expand_as(logits)
    return (
        F.binary_cross_entropy_with_logits(logits, targets, weight=weights, reduction='sum')
        / (weights.sum() if total_weight is None else total_weight)
    )


def episode_bce(logits: Tensor, labels: Tensor, warning_mask: Tensor,
                episodes: Optional[int] = None) -> Tensor:
    """BCE of each episode's highest logit over its warning frames (``Episode.warning_frames``):
    the evaluation's episode score, moved ``--warning-s`` earlier for hits. It pushes exactly on
    the frame that decides a false alarm, or a detection early enough to be useful, where the
    per-frame term spreads thin over many ambiguous frames; scored at contact instead, a hit is
    "detected" by the ball filling the frame, which teaches nothing about warning early."""
    highest = logits.masked_fill(warning_mask == 0, float('-inf')).amax(1)
    if episodes is None:
        return F.binary_cross_entropy_with_logits(highest, labels)
    return F.binary_cross_entropy_with_logits(highest, labels, reduction='sum') / episodes


@dataclass
class BatchTotals:
    """What the loss terms of a whole batch divide by, so that a rank's share of it divides by
    the same (see :mod:`rnn_perception.training.distributed`)."""

    weight: Tensor   # the frame weights' sum
    frames: Tensor   # real (unpadded) frames
    episodes: int

    @classmethod
    def of(cls, weights: Sequence[np.ndarray], device: torch.device) -> 'BatchTotals':
        """The totals of a batch of episodes whose frames weigh ``weights`` (one array per
        episode), as :func:`make_batch` lays them out (the weights summed over the same padded
        array): known from the index, without the frames."""
        padded = np.zeros((len(weights), max(len(w) for w in weights)), np.float32)
        for row, episode in enumerate(weights):
            padded[row, :len(episode)] = episode
        frames = float(sum(len(w) for w in weights))
        return cls(torch.from_numpy(padded).to(device).sum(),
                   torch.tensor(frames, device=device), len(weights))


class TrainingLoss(nn.Module):
    """The loss of a share of a batch (the module docstring's three terms, each over the whole
    batch's :class:`BatchTotals`) as one module over the predictor and the auxiliary heads, so
    that DistributedDataParallel can wrap it; returns the loss, the per-frame term and the
    auxiliary term."""

    def __init__(self, model: CollisionPredictor, auxiliary: 'AuxiliaryHeads',
                 episode_weight: float, aux_weight: float):
        super().__init__()
        self.model, self.auxiliary = model, auxiliary
        self.episode_weight, self.aux_weight = episode_weight, aux_weight

    def forward(self, batch: Batch, totals: BatchTotals) -> Tuple[Tensor, Tensor, Tensor]:
        features = self.model.features(batch.frames)
        logits = self.model.classify(features.flatten(0, 1)).view(features.shape[:2])
        collision_loss = weighted_bce(logits, batch.labels, batch.weights, totals.weight)
        auxiliary_loss = self.auxiliary.loss(features, batch, totals.frames)
        loss = (
            collision_loss
            + self.episode_weight
            * episode_bce(logits, batch.labels, batch.warning_mask, totals.episodes)
            + self.aux_weight * auxiliary_loss
        )
        return loss, collision_loss, auxiliary_loss


def training_loss(model: CollisionPredictor, auxiliary: 'AuxiliaryHeads',
                  args: argparse.Namespace) -> TrainingLoss:
    """The run's :class:`TrainingLoss`, weighted as the options say."""
    return TrainingLoss(model, auxiliary, args.episode_weight, args.aux_weight)


# -------------------------------------------------------------------------------------- training
def with_random_camera(episode: Episode, rng: np.random.Generator) -> Episode:
    """The episode as a random camera (:data:`TRAINING_EFFECTS`) would have delivered it, for
    :data:`CAMERA_EFFECTS_SHARE` of the calls; unchanged otherwise. In training ``rng`` is the
    episode's own (:func:`camera_seeds`)."""
    if rng.random() >= CAMERA_EFFECTS_SHARE:
        return episode
    return dataclasses.replace(episode,
                               frames=TRAINING_EFFECTS.sample(rng).apply(episode.frames, rng))


def camera_seeds(size: int, rng: np.random.Generator) -> np.ndarray:
    """One seed per episode of a batch of ``size`` for its :func:`with_random_camera`, drawn
    for the whole batch on every rank: how many draws a camera takes may depend on the
    effects drawn, so a rank drawing for its share alone would leave the run's stream, and the
    next batch's draws, different on every rank."""
    return rng.integers(CAMERA_SEED_BOUND, size=size)


def epoch_plan(refs: Sequence[EpisodeRef], shards_in_memory: Optional[int], batch_size: int,
               rng: np.random.Generator) -> List[List[EpisodeRef]]:
    """One epoch's batches of training ``refs``: length-bucketed within each window of
    ``shards_in_memory`` shards (:func:`~rnn_perception.data.streaming.windowed_plan`). With all
    shards in one window, the batches of :func:`length_bucketed_batches` over all of ``refs``."""
    return windowed_plan(refs, shards_in_memory, rng, lambda window, rng: length_bucketed_batches(
        window, batch_size, rng, episode_length))


def episode_length(ref: EpisodeRef) -> int:
    return ref.length


def train_epoch(
    model: CollisionPredictor,
    auxiliary: AuxiliaryHeads,
    steps: Iterable[RankStep],
    times: Mapping[int, EpisodeTimes],
    optimizer: torch.optim.Optimizer,
    schedule,
    args: argparse.Namespace,
    device: torch.device,
    rng: np.random.Generator,
    generator: torch.Generator,
    description: str,
    ranks: Ranks = Ranks(),
    step: Optional[nn.Module] = None,
    precision: Optional[Precision] = None,
) -> Tuple[float, float]:
    """One pass over the training episodes: ``steps``, each a global batch's references and
    this rank's share's episodes (:meth:`~rnn_perception.training.distributed.Ranks.steps` of
    an :func:`epoch_plan`; only the episodes' :func:`trained_part` is run); returns the mean
    per-frame collision loss and the mean auxiliary loss.

    Every rank draws the camera seeds (:func:`camera_seeds`) and the augmentation of the whole
    batch, so that the random streams stay the same on all ranks and on one, and applies its
    share's; the loss totals of the whole batch come from ``times`` (the index's, by episode
    index). ``step``: the run's :func:`training_loss` (made once per run, as DDP wants;
    default: one without DDP); ``precision``: the forward pass's arithmetic (default fp32)."""
    model.train()
    step = training_loss(model, auxiliary, args) if step is None else step
    precision = Precision('fp32', device) if precision is None else precision
    totals, count = np.zeros(2), 0
    parts = tqdm(
        steps,
        total=len(steps) if isinstance(steps, Sized) else None,
        desc=description,
        unit='batch',
        leave=False,
        disable=args.quiet,
    )
    for part in parts:
        chosen = [trained_part(episode) for episode in part.episodes]
        if args.camera_effects == CAMERA_EFFECTS_TRAIN:
            seeds = camera_seeds(len(part.batch), rng)
            chosen = [with_random_camera(episode, np.random.default_rng(seeds[row]))
                      for episode, row in zip(chosen, part.rows)]
        draws = Augmentation.draw(len(part.batch), generator, args.jitter)
        batch = augmented(make_batch(chosen, args.ramp_s, args.warning_s, device),
                          draws.rows(part.rows))
        with precision.autocast():
            loss, collision_loss, auxiliary_loss = step(batch, BatchTotals.of(
                [times[ref.index].weights(args.ramp_s) for ref in part.batch], device))
        optimizer.zero_grad(set_to_none=True)
        precision.step(loss.float() * (part.weight * ranks.scale()), optimizer,
                       lambda: clip_gradients([*model.parameters(), *auxiliary.parameters()],
                                              args.clip_norm))
        schedule.step()
        totals += [part.weight * collision_loss.item() * len(part.batch),
                   part.weight * auxiliary_loss.item() * len(part.batch)]
        count += len(part.batch)
        parts.set_postfix(
            loss=f'{totals[0] / count:.4f}', aux=f'{totals[1] / count:.4f}', refresh=False
        )
    collision_total, auxiliary_total = ranks.sum(totals)
    return collision_total / count, auxiliary_total / count


def validation_loss_terms(
    episodes: Sequence[Episode], probabilities: Sequence[np.ndarray], ramp_s: float
) -> Tuple[float, float]:
    """The training loss on validation episodes, from their probabilities, as its weighted sum
    and its weights' sum (so that groups of episodes add up)."""
    weights = np.concatenate([e.weights(ramp_s) for e in episodes])
    targets = np.concatenate([np.full(len(e.stamps_s), float(e.hit)) for e in episodes])
    p = np.clip(np.concatenate(probabilities), 1e-7, 1 - 1e-7)
    return (float(np.sum(-weights * (targets * np.log(p) + (1 - targets) * np.log(1 - p)))),
            float(weights.sum()))


def validate(
    model: CollisionPredictor,
    groups: Iterable[Sequence[Episode]],
    threshold: Optional[float],
    ramp_s: float,
    device: torch.device,
    accuracy_margin: float = 0.0,
) -> Tuple[List[EpisodeTrace], Dict[str, Any], float]:
    """Validation traces, metrics and loss of the episodes, given in groups (one group: a list of
    episodes; a stream's batches: a few shards' at a time, each group's frames let go once run);
    without a ``threshold``, the metrics are taken at the one calibrated on these traces
    (``accuracy_margin``: see ``calibrate_threshold``)."""
    traces, terms = [], np.zeros(2)
    for episodes in groups:
        probabilities = sequence_probabilities(model, [e.frames for e in episodes], device)
        traces += [e.trace(p) for e, p in zip(episodes, probabilities)]
        terms += validation_loss_terms(episodes, probabilities, ramp_s)
    threshold = calibrate_threshold(traces, accuracy_margin) if threshold is None else threshold
    return traces, collision_metrics(traces, threshold), float(terms[0] / terms[1])


def selection_key(metrics: Dict[str, Any]) -> Tuple[float, float]:
    """Which epoch is kept: the highest validation accuracy, ties to the higher AUROC."""
    return metrics['accuracy'], metrics['auroc'] if metrics['auroc'] is not None else 0.0


def model_metadata(args: argparse.Namespace, data: Dict[str, Any], epoch: int,
                   metrics: Dict[str, Any]) -> Dict[str, Any]:
    """What the node and a reader of the weights need besides the tensors and the config."""
    return {
        'fps': data['fps'],
        'threshold': metrics['threshold'],
        'training_command': args.command,
        'dataset_manifest_sha256': data['manifest_sha256'],
        'validation_metrics': metrics,
        'epoch': epoch,
        'epochs': args.epochs,
        'seed': args.seed,
        'train_episodes': data['train_episodes'],
        'val_episodes': data['val_episodes'],
        'frame_weighting': f'0 from contact; linear ramp over the first {args.ramp_s} s',
        'accuracy_margin': args.accuracy_margin,
        'camera_effects': args.camera_effects,
        'initial_weights': args.init,
    }


def epoch_line(row: Dict[str, Any], epochs: int) -> str:
    return (
        f"epoch {row['epoch']:>3}/{epochs}  train loss {row['train_loss']:.4f}"
        f" aux {row['train_aux_loss']:.4f}"
        f"  val loss {row['val_loss']:.4f}"
        f"  acc {row['val_accuracy']:.2%}  AUROC {row['val_auroc']:.4f}"
        f"  lead {row['val_lead_s']:.3f} s"
        f"  false alarms {row['val_false_alarm']:.2%} (threshold {row['val_threshold']:.2f})"
        f"  {row['seconds']:.0f}s"
    )


def write_reports(paths: OutputPaths, model: CollisionPredictor, metadata: Dict[str, Any],
                  val: Callable[[], Iterable[Sequence[Episode]]], args: argparse.Namespace,
                  device: torch.device,
                  rows: List[Dict[str, Any]], summary: Dict[str, Any]) -> None:
    """Plots of the kept epoch and the summary file; ``val()``: the validation episodes in
    groups (see :func:`validate`)."""
    traces, metrics, _ = validate(model, val(), metadata['threshold'], args.ramp_s, device)
    plot_curves(rows, paths.report('curves.png'), metrics=('loss', 'accuracy', 'auroc'),
                title='collision predictor')
    plot_roc(traces, paths.report('roc.png'), title=f'validation ROC (epoch {metadata["epoch"]})')
    plot_traces(traces, paths.report('traces.png'), metadata['threshold'])
    write_text_atomic(
        paths.summary, json.dumps({**summary, 'validation': metrics}, indent=1) + '\n'
    )


def train(args: argparse.Namespace, device: torch.device) -> int:
    """Train, keep the best epoch by validation, write the weights and the reports; under
    torchrun, data-parallel (:mod:`rnn_perception.training.distributed`)."""
    with data_parallel(device) as (ranks, device):
        return train_ranks(args, device, ranks)


def train_ranks(args: argparse.Namespace, device: torch.device, ranks: Ranks) -> int:
    """:func:`train` as one of ``ranks``: rank 0 alone validates and writes."""
    args.quiet = args.quiet or not ranks.is_main
    # --init: fine-tune those weights, with their architecture and input normalisation
    initial = load_collision_model(args.init)[0] if args.init else None
    config = initial.config if initial is not None else CollisionConfig(
        image_size=(args.image_size, args.image_size),
        encoder_channels=args.encoder_channels,
        recurrent_channels=args.recurrent_channels,
        recurrent_strides=args.recurrent_strides,
        head_channels=args.head_channels,
        coordinates=args.coordinates,
        frame_difference=args.frame_difference,
    )
    started = time.perf_counter()
    refs, dataset, times = index_episodes(args.data)
    stream = ShardStream(dataset, preparation(
        config.image_size, CollisionPredictor(config).feature_size()), args.shards_in_memory)
    manifest = dataset.manifest
    train_set, val = split_by_episode(refs, [r.label for r in refs], args.val_fraction, args.seed)
    data = {'fps': manifest['fps'], 'manifest_sha256': dataset.manifest_sha256,
            'train_episodes': len(train_set), 'val_episodes': len(val)}
    torch.manual_seed(args.seed)
    if initial is None:
        model = CollisionPredictor(config).to(device)
        model.set_normalisation(*channel_statistics(stream.batches(
            shard_groups(train_set, args.shards_in_memory))))
    else:
        model = initial.to(device)

    def val_groups() -> Iterable[List[Episode]]:
        return stream.batches(shard_groups(val, args.shards_in_memory))
    steps_per_epoch = most_batches(train_set, args.shards_in_memory, args.batch_size)
    auxiliary = AuxiliaryHeads(model).to(device)
    optimizer = torch.optim.AdamW([*model.parameters(), *auxiliary.parameters()], lr=args.lr,
                                  weight_decay=args.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch, pct_start=0.15
    )
    paths = OutputPaths(Path(args.out), Path(args.run_dir or Path(args.out).parent))
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    epochs_file = MetricsWriter(paths.run_dir, f'{paths.stem}_epochs')
    rng, generator = np.random.default_rng(args.seed), torch.Generator().manual_seed(args.seed)
    precision = Precision(args.precision, device)
    checkpoint = training_checkpoint(
        paths.report(RESUME_SUFFIX), args, data['manifest_sha256'],
        {'model': model, 'auxiliary': auxiliary, **precision.stateful()}, optimizer, schedule,
        rng, generator)
    progress = begin(checkpoint, args.resume, epochs_file, args.quiet)
    if not args.quiet:
        print(
            f'collision predictor: {sum(p.numel() for p in model.parameters()):,} parameters, '
            f'input {config.image_size[0]}x{config.image_size[1]}, '
            f'{len(train_set)}/{len(val)} train/val episodes '
            f'({sum(r.length for r in train_set)} training frames before contact), '
            f'device {device}, {stream.describe()}'
        )
    best = None if progress.best is None else tuple(progress.best)  # JSON made it a list
    step = ranks.wrap(training_loss(model, auxiliary, args), device)
    for epoch in range(progress.first_epoch, args.epochs + 1):
        epoch_started = time.perf_counter()
        train_loss, aux_loss = train_epoch(
            model,
            auxiliary,
            ranks.steps(epoch_plan(train_set, args.shards_in_memory, args.batch_size, rng),
                        stream.batches),
            times,
            optimizer,
            schedule,
            args,
            device,
            rng,
            generator,
            f'epoch {epoch}/{args.epochs}',
            ranks,
            step,
            precision,
        )
        if not ranks.is_main:
            continue
        _, metrics, val_loss = validate(
            model, val_groups(), args.threshold, args.ramp_s, device, args.accuracy_margin
        )
        row = {
            'epoch': epoch,
            'train_loss': train_loss,
            'train_aux_loss': aux_loss,
            'val_loss': val_loss,
            'val_accuracy': metrics['accuracy'],
            'val_auroc': metrics['auroc'] or 0.0,
            'val_lead_s': metrics['lead_time_median_s'] or 0.0,
            'val_false_alarm': metrics['false_alarm_rate'] or 0.0,
            'val_threshold': metrics['threshold'],
            'seconds': time.perf_counter() - epoch_started,
        }
        epochs_file.append(row)
        if best is None or selection_key(metrics) > best:
            best = selection_key(metrics)
            save_collision_model(paths.weights, model,
                                 model_metadata(args, data, epoch, metrics))
        end_epoch(checkpoint, epoch, best, epochs_file,
                  progress.seconds + time.perf_counter() - started)
        if not args.quiet:
            tqdm.write(epoch_line(row, args.epochs))
    if not ranks.is_main:
        return 0
    train_seconds = progress.seconds + time.perf_counter() - started
    model, best_metadata = load_collision_model(
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
        'epoch': best_metadata['epoch'],
        'epochs': args.epochs,
        'train_seconds': train_seconds,
        'device': str(device),
        'torch_threads': torch.get_num_threads(),
        'config': config.to_dict(),
        'threshold': best_metadata['threshold'],
    }
    write_reports(paths, model, best_metadata, val_groups, args, device, epochs_file.rows, summary)
    if not args.quiet:
        print(f"kept epoch {best_metadata['epoch']} in {paths.weights} ({train_seconds:.0f} s); "
              f"reports in {paths.run_dir}")
    return 0


# ------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = trainer_parser('collision', __doc__, 'dodgeball dataset (python -m sim dodgeball)')
    defaults = CollisionConfig()
    parser.add_argument(
        '--image-size',
        type=number(int),
        default=defaults.image_size[0],
        metavar='PX',
        help=f'square model input; frames are resized to it (default: {defaults.image_size[0]})',
    )
    parser.add_argument(
        '--encoder-channels',
        type=number(int),
        nargs='+',
        default=defaults.encoder_channels,
        metavar='C',
        help=f'one stride-2 conv each (default: {defaults.encoder_channels})',
    )
    parser.add_argument('--recurrent-channels', type=number(int), nargs='+',
                        default=defaults.recurrent_channels, metavar='C',
                        help=f'one ConvLSTM layer each (default: {defaults.recurrent_channels})')
    parser.add_argument(
        '--recurrent-strides',
        type=number(int),
        nargs='+',
        default=defaults.recurrent_strides,
        metavar='S',
        help=f'input stride of each ConvLSTM layer (default: {defaults.recurrent_strides})',
    )
    parser.add_argument(
        '--head-channels',
        type=number(int),
        default=defaults.head_channels,
        metavar='C',
        help=f'1x1 conv channels before the linear head (default: {defaults.head_channels})',
    )
    parser.add_argument(
        '--coordinates',
        action=argparse.BooleanOptionalAction,
        default=defaults.coordinates,
        help='feed each cell\'s (x, y) to the first ConvLSTM (CoordConv) '
        f'(default: {defaults.coordinates})',
    )
    parser.add_argument(
        '--frame-difference',
        action=argparse.BooleanOptionalAction,
        default=defaults.frame_difference,
        help='the encoder also reads the change since the previous frame, where a still '
        f"camera's background cancels (default: {defaults.frame_difference})",
    )
    parser.add_argument('--epochs', type=number(int), default=14, help='(default: 14)')
    parser.add_argument(
        '--batch-size', type=number(int), default=8, help='episodes per batch (default: 8)'
    )
    parser.add_argument(
        '--lr', type=number(float), default=3e-3, help='peak learning rate (default: 3e-3)'
    )
    parser.add_argument(
        '--weight-decay',
        type=number(float, zero_allowed=True),
        default=1e-4,
        help='AdamW weight decay (default: 1e-4)',
    )
    parser.add_argument('--clip-norm', type=number(float), default=1.0,
                        help="clip the gradients' total L2 norm to this (default: 1.0)")
    parser.add_argument(
        '--ramp-s',
        type=number(float, zero_allowed=True),
        default=0.5,
        help='loss weight ramps from 0 at the throw to 1 at this time (s) (default: 0.5)',
    )
    parser.add_argument('--jitter', type=number(float, zero_allowed=True), default=0.15,
                        help='per-channel colour gain/offset jitter (default: 0.15)')
    parser.add_argument('--init', metavar='FILE',
                        help='start from these collision weights (fine-tuning): their '
                             'architecture and input normalisation; the architecture options are '
                             'then ignored (default: random initialisation)')
    parser.add_argument('--camera-effects', choices=(CAMERA_EFFECTS_TRAIN, CAMERA_EFFECTS_NONE),
                        default=CAMERA_EFFECTS_TRAIN,
                        # '%%': argparse formats help strings with %
                        help='train: a random camera (exposure, blur, noise, mono, JPEG) for '
                             f'{CAMERA_EFFECTS_SHARE:.0%}% of the training episodes each epoch; '
                             'none: the frames as rendered (default: train)')
    parser.add_argument('--episode-weight', type=number(float, zero_allowed=True), default=1.0,
                        help="weight of the loss on each episode's highest logit (default: 1.0)")
    parser.add_argument(
        '--warning-s',
        type=number(float, zero_allowed=True),
        default=0.3,
        help='that loss scores a hit on its frames at least this long before contact '
        '(default: 0.3)',
    )
    parser.add_argument(
        '--aux-weight',
        type=number(float, zero_allowed=True),
        default=1.0,
        help='weight of the auxiliary ball mask and ball state losses (default: 1.0)',
    )
    parser.add_argument(
        '--threshold',
        type=probability,
        help='decision threshold stored with the weights (default: calibrated on the validation '
        'episodes every epoch, see --accuracy-margin)',
    )
    parser.add_argument(
        '--accuracy-margin',
        type=probability,
        default=ACCURACY_MARGIN,
        help='the calibrated threshold is the lowest whose validation accuracy is within this '
        'much of the best: earlier warnings for a little accuracy '
        f'(default: {ACCURACY_MARGIN:g}, one point)',
    )
    add_shards_option(parser)
    add_run_options(parser, 'split, initial weights, batches, augmentation')
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m rnn_perception train collision``; returns the exit code."""
    return training_main('collision', argv, build_parser, train)


if __name__ == '__main__':
    sys.exit(main())
