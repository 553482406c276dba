"""Evaluate a tactile pose predictor on a tactile dataset or a rosbag2: its future poses against
the true ones, beside two baselines computed in the same run.

    python -m rnn_perception eval tactile --weights FILE --data DIR [--json] [--plot PNG]
    python -m rnn_perception eval tactile --weights FILE --bag PATH [--json] [--plot PNG]

At every sample ``t`` of an episode a predictor gives the poses of samples ``t+1 .. t+H``
(``H = 20``). Scored against the true poses ``p``, for every horizon step ``k``:

- **angle error** ``|angle_hat_{t+k} - angle_{t+k}|`` in degrees;
- **position error** ``||xyz_hat_{t+k} - xyz_{t+k}||`` in millimetres;

averaged over every ``(episode, t)`` with ``t + k`` inside the episode (``per_step_*``, lists
of ``H``), and those ``H`` means averaged again (``*_mae_deg``, ``*_position_mm``). Predictors:

- **model**: the weights;
- **const_velocity**: ``p_t + k (p_t - p_{t-1})`` (``p_{-1} = p_0``);
- **zero_motion**: ``p_t``.

``--json`` prints one object with ``model_mae_deg``, ``const_velocity_mae_deg``,
``zero_motion_mae_deg``, ``per_step_model_mae_deg``, ``per_step_const_velocity_mae_deg``,
``per_step_zero_motion_mae_deg``, the position figures alike, ``episodes`` and ``samples``.

A dataset runs through the model's whole-sequence ``forward``; a bag is run sample by sample
with ``step``, as the tactile node runs it: a sample is a ``/tactile/raw`` message and the
``/object/pose`` of the same bag time (the pose is the model's current-pose input, its header
stamp the sample's time), and an episode ends where consecutive samples are more than
:data:`EPISODE_GAP_S` apart (the node's default ``reset_gap_s``: it resets its state there).
To score another runner (the node over DDS), match its outputs to :class:`BagEpisode`'s
``stamps_ns`` and pass them to :meth:`BagEpisode.prediction`.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rnn_perception.data.bags import LABELLED_ARRAY_MSGTYPE, POSE_STAMPED_MSGTYPE, BagError, read_bag, stamp_to_ns
from rnn_perception.data.tactile_dataset import (POSE_TOPIC, TACTILE_FIELDS, TACTILE_TOPIC, TactileEpisode,
                                                 load_tactile_dataset, quaternion_angle)
from rnn_perception.evaluation import evaluation_main
from rnn_perception.models.tactile import ANGLE, POSITION, TactilePredictor, load_tactile_model
from rnn_perception.training.utils import PathLike, atomic_path, select_device
from rnn_perception.cli import OneLineParser

EPISODE_GAP_S = 0.1          # a longer silence between samples starts a new episode
EVAL_BATCH_SIZE = 64         # episodes per whole-sequence forward
PREDICTORS = ('model', 'const_velocity', 'zero_motion')


# ------------------------------------------------------------------------------------- metrics
@dataclass
class EpisodePrediction:
    """One episode's true poses ``(T, 4)`` and a predictor's futures ``(T, H, 4)`` from every sample."""

    episode: int
    stamps_s: np.ndarray
    poses: np.ndarray
    predicted: np.ndarray


def constant_velocity(poses: np.ndarray, horizon: int) -> np.ndarray:
    """``p_t + k (p_t - p_{t-1})`` for ``k = 1..horizon``: ``(T, 4)`` -> ``(T, H, 4)``."""
    velocity = poses - np.concatenate([poses[:1], poses[:-1]])
    return poses[:, None] + np.arange(1, horizon + 1)[None, :, None] * velocity[:, None]


def zero_motion(poses: np.ndarray, horizon: int) -> np.ndarray:
    """``p_t`` for every ``k``: ``(T, 4)`` -> ``(T, H, 4)``."""
    return np.repeat(poses[:, None], horizon, 1)


class HorizonErrors:
    """Sums of angle and position errors per horizon step, over any number of episodes."""

    def __init__(self, horizon: int):
        self.angle_deg = np.zeros(horizon)
        self.position_mm = np.zeros(horizon)
        self.count = np.zeros(horizon)

    def add(self, predicted: np.ndarray, poses: np.ndarray) -> None:
        """Score futures ``(T, H, 4)`` against the episode's poses ``(T, 4)``."""
        steps, horizon = predicted.shape[:2]
        poses = poses.astype(np.float64)
        for k in range(1, min(horizon, steps - 1) + 1):
            truth, guess = poses[k:], predicted[:steps - k, k - 1].astype(np.float64)
            self.angle_deg[k - 1] += np.degrees(np.abs(guess[:, ANGLE] - truth[:, ANGLE])).sum()
            self.position_mm[k - 1] += 1e3 * np.linalg.norm(guess[:, POSITION] - truth[:, POSITION], axis=1).sum()
            self.count[k - 1] += steps - k

    def per_step(self) -> Dict[str, List[float]]:
        count = np.maximum(self.count, 1)
        return {'angle_deg': (self.angle_deg / count).tolist(), 'position_mm': (self.position_mm / count).tolist()}


def baseline_ratio(metrics: Dict[str, Any]) -> float:
    """Model / constant-velocity mean angle error (NaN when the objects never moved)."""
    baseline = metrics['const_velocity_mae_deg']
    return metrics['model_mae_deg'] / baseline if baseline > 0 else float('nan')


def tactile_metrics(predictions: Sequence[EpisodePrediction]) -> Dict[str, Any]:
    """The module docstring's figures for the model's ``predictions`` and both baselines."""
    if not predictions:
        raise ValueError('no episodes to evaluate')
    horizon = predictions[0].predicted.shape[1]
    errors = {name: HorizonErrors(horizon) for name in PREDICTORS}
    for prediction in predictions:
        errors['model'].add(prediction.predicted, prediction.poses)
        errors['const_velocity'].add(constant_velocity(prediction.poses, horizon), prediction.poses)
        errors['zero_motion'].add(zero_motion(prediction.poses, horizon), prediction.poses)
    metrics: Dict[str, Any] = {}
    for name, error in errors.items():
        per_step = error.per_step()
        metrics[f'{name}_mae_deg'] = float(np.mean(per_step['angle_deg']))
        metrics[f'{name}_position_mm'] = float(np.mean(per_step['position_mm']))
        metrics[f'per_step_{name}_mae_deg'] = per_step['angle_deg']
        metrics[f'per_step_{name}_position_mm'] = per_step['position_mm']
    metrics['episodes'] = len(predictions)
    metrics['samples'] = int(sum(len(p.poses) for p in predictions))
    return metrics


# ---------------------------------------------------------------------------------- running
@torch.no_grad()
def sequence_predictions(model: TactilePredictor, episodes: Sequence[TactileEpisode],
                         device: torch.device) -> List[EpisodePrediction]:
    """``forward`` over whole episodes, :data:`EVAL_BATCH_SIZE` at a time, zero-padded at the
    end (the model is causal: padding never changes the samples before it)."""
    model.eval()
    results = []
    for start in range(0, len(episodes), EVAL_BATCH_SIZE):
        chunk = episodes[start:start + EVAL_BATCH_SIZE]
        longest = max(e.num_frames for e in chunk)
        tactile = np.zeros((len(chunk), longest, len(TACTILE_FIELDS)), np.float32)
        poses = np.zeros((len(chunk), longest, 4), np.float32)
        for row, episode in enumerate(chunk):
            tactile[row, :episode.num_frames] = episode.tactile
            poses[row, :episode.num_frames] = episode.pose
            poses[row, episode.num_frames:] = episode.pose[-1]
        predicted = model(torch.from_numpy(tactile).to(device), torch.from_numpy(poses).to(device)).cpu().numpy()
        results += [EpisodePrediction(e.index, e.stamp_s, e.pose, predicted[row, :e.num_frames])
                    for row, e in enumerate(chunk)]
    return results


@torch.no_grad()
def stepped_predictions(model: TactilePredictor, tactile: Iterable[np.ndarray], poses: Iterable[np.ndarray],
                        device: torch.device) -> np.ndarray:
    """One ``step`` per sample from a zero state, as the node runs the model: ``(T, H, 4)``."""
    model.eval()
    state, futures = None, []
    for values, pose in zip(tactile, poses):
        predicted, state = model.step(torch.as_tensor(values, dtype=torch.float32, device=device)[None],
                                      torch.as_tensor(pose, dtype=torch.float32, device=device)[None], state)
        futures.append(predicted[0].cpu().numpy())
    return np.stack(futures)


def evaluate_dataset(weights_path: PathLike, data_dir: PathLike,
                     device='cpu') -> tuple[List[EpisodePrediction], Dict[str, Any]]:
    """Predictions and metrics of a weights file on a tactile dataset (whole-sequence ``forward``)."""
    device = torch.device(device)
    model, _ = load_tactile_model(weights_path, device)
    predictions = sequence_predictions(model, list(load_tactile_dataset(data_dir).episodes()), device)
    return predictions, tactile_metrics(predictions)


# ----------------------------------------------------------------------------------------- bags
@dataclass
class BagEpisode:
    """One episode read back from a tactile bag: per sample the tactile values, the pose and its stamp."""

    episode: int
    tactile: np.ndarray        # (T, 21)
    poses: np.ndarray          # (T, 4) x, y, z, angle
    stamps_ns: np.ndarray      # (T,) the poses' header stamps, to match a node's outputs to samples

    def prediction(self, predicted: np.ndarray) -> EpisodePrediction:
        """This episode scored with futures ``(T, H, 4)`` (e.g. a node's outputs)."""
        return EpisodePrediction(self.episode, (self.stamps_ns - self.stamps_ns[0]) / 1e9, self.poses, predicted)


def pose_vector(message) -> np.ndarray:
    """``geometry_msgs/Pose`` -> ``(x, y, z, angle about y)``."""
    p, q = message.position, message.orientation
    return np.array([p.x, p.y, p.z, quaternion_angle(q.x, q.y, q.z, q.w)], np.float32)


def _samples(path: PathLike) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(stamp_ns, tactile, pose)`` of every tactile message paired with the pose of its bag time."""
    pending: Dict[str, Dict[int, Any]] = {TACTILE_TOPIC: {}, POSE_TOPIC: {}}
    seen = {TACTILE_TOPIC: 0, POSE_TOPIC: 0}
    for record in read_bag(path, {TACTILE_TOPIC: LABELLED_ARRAY_MSGTYPE, POSE_TOPIC: POSE_STAMPED_MSGTYPE}):
        seen[record.topic] += 1
        pending[record.topic][record.stamp_ns] = record.message
        if all(record.stamp_ns in messages for messages in pending.values()):
            tactile = np.asarray(pending[TACTILE_TOPIC].pop(record.stamp_ns).data, np.float32)
            pose = pending[POSE_TOPIC].pop(record.stamp_ns)
            if tactile.shape != (len(TACTILE_FIELDS),):
                raise BagError(f'{path}: a {TACTILE_TOPIC} message holds {tactile.size} values, '
                               f'not {len(TACTILE_FIELDS)}')
            yield stamp_to_ns(pose.header.stamp), tactile, pose_vector(pose.pose)
    missing = [topic for topic, count in seen.items() if count == 0]
    if missing:
        raise BagError(f'{path}: no messages on {" or ".join(missing)}; a tactile bag needs '
                       f'{TACTILE_TOPIC} and {POSE_TOPIC}')


def episodes_from_bag(path: PathLike) -> Iterator[BagEpisode]:
    """The episodes of a tactile bag in recorded order (split at gaps over :data:`EPISODE_GAP_S`)."""
    samples: List[tuple] = []
    index = 0

    def episode() -> BagEpisode:
        stamps, tactile, poses = zip(*samples)
        return BagEpisode(index, np.stack(tactile), np.stack(poses), np.array(stamps, np.int64))

    for sample in _samples(path):
        if samples and not 0 <= sample[0] - samples[-1][0] <= EPISODE_GAP_S * 1e9:
            yield episode()
            samples, index = [], index + 1
        samples.append(sample)
    if not samples:
        raise BagError(f'{path}: no {TACTILE_TOPIC} message shares its bag time with a {POSE_TOPIC} message')
    yield episode()


def evaluate_bag(weights_path: PathLike, bag_path: PathLike,
                 device='cpu') -> tuple[List[EpisodePrediction], Dict[str, Any]]:
    """Predictions and metrics of a weights file on a tactile bag, stepped sample by sample with
    a fresh state per episode, as the node does."""
    device = torch.device(device)
    model, _ = load_tactile_model(weights_path, device)
    predictions = [episode.prediction(stepped_predictions(model, episode.tactile, episode.poses, device))
                   for episode in episodes_from_bag(bag_path)]
    return predictions, tactile_metrics(predictions)


# ------------------------------------------------------------------------------------- plots
def plot_trajectories(predictions: Sequence[EpisodePrediction], path: PathLike, episodes: int = 4,
                      every_s: float = 0.25) -> None:
    """Predicted vs true futures of the angle: for the first ``episodes`` episodes, the true
    angle over time (black) and, every ``every_s``, the model's 20-step prediction (red) beside
    constant-velocity extrapolation (blue, dotted)."""
    chosen = list(predictions[:episodes])
    figure = Figure(figsize=(6 * len(chosen), 4), layout='constrained')
    FigureCanvasAgg(figure)                   # render off-screen; no pyplot global state
    for ax, prediction in zip(figure.subplots(1, len(chosen), squeeze=False)[0], chosen):
        stamps, poses = prediction.stamps_s, prediction.poses
        horizon = prediction.predicted.shape[1]
        period = float(np.median(np.diff(stamps))) if len(stamps) > 1 else 1.0
        baseline = constant_velocity(poses, horizon)
        ax.plot(stamps, np.degrees(poses[:, ANGLE]), color='black', linewidth=1.2, label='true')
        stride = max(1, round(every_s / period))
        for t in range(0, len(stamps), stride):
            future = stamps[t] + period * np.arange(1, horizon + 1)
            ax.plot(future, np.degrees(prediction.predicted[t, :, ANGLE]), color='red', linewidth=1,
                    label='model' if t == 0 else None)
            ax.plot(future, np.degrees(baseline[t, :, ANGLE]), color='tab:blue', linestyle=':', linewidth=1,
                    label='const velocity' if t == 0 else None)
        ax.set(xlabel='time (s)', ylabel='angle (deg)', title=f'episode {prediction.episode}')
        ax.grid(alpha=0.3)
        ax.legend(loc='best', fontsize='small')
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format='png', dpi=100)


# ---------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog='rnn_perception eval tactile', description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--weights', required=True, metavar='FILE', help='tactile model (.safetensors)')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--data', metavar='DIR', help='tactile dataset directory (python -m sim tactile)')
    source.add_argument('--bag', metavar='PATH', help='tactile rosbag2 (python -m sim tactile --bag)')
    parser.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default='cpu',
                        help='auto: cuda when available, else cpu (default: cpu)')
    parser.add_argument('--json', action='store_true', help='print one JSON object instead of a table')
    parser.add_argument('--plot', metavar='PNG', help='also plot predicted vs true future angles of sample episodes')
    return parser


def report_lines(metrics: Dict[str, Any]) -> List[str]:
    """The per-step table and the means, as printed without ``--json``."""
    lines = [f"{metrics['episodes']} episodes, {metrics['samples']} samples",
             f"{'step':>4}  {'model deg':>9}  {'c.vel deg':>9}  {'zero deg':>9}  "
             f"{'model mm':>8}  {'c.vel mm':>8}  {'zero mm':>8}"]
    columns = [metrics[f'per_step_{name}_{unit}'] for unit in ('mae_deg', 'position_mm') for name in PREDICTORS]
    for k, row in enumerate(zip(*columns), 1):
        lines.append(f'{k:>4}  ' + '  '.join(f'{value:>9.4f}' for value in row[:3]) + '  '
                     + '  '.join(f'{value:>8.3f}' for value in row[3:]))
    lines.append('mean  ' + '  '.join(f"{metrics[f'{name}_mae_deg']:>9.4f}" for name in PREDICTORS) + '  '
                 + '  '.join(f"{metrics[f'{name}_position_mm']:>8.3f}" for name in PREDICTORS))
    lines.append(f"model / const velocity: {baseline_ratio(metrics):.3f} "
                 '(angle error over the horizon)')
    return lines


def run(args: argparse.Namespace) -> int:
    device = select_device(args.device)
    if args.data is not None:
        predictions, metrics = evaluate_dataset(args.weights, args.data, device)
    else:
        predictions, metrics = evaluate_bag(args.weights, args.bag, device)
    if args.plot:
        plot_trajectories(predictions, args.plot)
    print(json.dumps(metrics, allow_nan=False) if args.json else '\n'.join(report_lines(metrics)))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m rnn_perception eval tactile``; returns the exit code."""
    return evaluation_main('tactile', argv, build_parser, run)


if __name__ == '__main__':
    sys.exit(main())
