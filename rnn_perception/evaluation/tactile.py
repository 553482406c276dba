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
To score another runner (the node over DDS), match its outputs to the ``stamps_ns`` of the
episodes of :func:`~rnn_perception.data.tactile_bag.episodes_from_bag` and pass them to
:func:`~.tactile_metrics.bag_prediction`.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np
import torch

from rnn_perception.data.tactile_bag import episodes_from_bag
from rnn_perception.data.tactile_dataset import (
    load_tactile_dataset,
    TACTILE_FIELDS,
    TactileEpisode,
)
from rnn_perception.device import select_device
from rnn_perception.evaluation import bag_engine, check_backend, evaluation_main, evaluation_parser
from rnn_perception.evaluation.tactile_metrics import (bag_prediction, baseline_ratio,
                                                       EpisodePrediction, PREDICTORS,
                                                       tactile_metrics)
from rnn_perception.evaluation.tactile_plots import plot_trajectories
from rnn_perception.files import PathLike
from rnn_perception.models.step_engine import StepEngine, TORCH_BACKEND
from rnn_perception.models.tactile import load_tactile_model, TactilePredictor

EVAL_BATCH_SIZE = 64         # episodes per whole-sequence forward


# ------------------------------------------------------------------------------------- metrics


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
        predicted = (
            model(torch.from_numpy(tactile).to(device), torch.from_numpy(poses).to(device))
            .cpu()
            .numpy()
        )
        results += [EpisodePrediction(e.index, e.stamp_s, e.pose, predicted[row, :e.num_frames])
                    for row, e in enumerate(chunk)]
    return results


def stepped_predictions(engine: StepEngine, tactile: Iterable[np.ndarray],
                        poses: Iterable[np.ndarray]) -> np.ndarray:
    """One step of ``engine`` per sample from the initial state, as the node runs the model:
    ``(T, H, 4)``."""
    engine.reset()
    return np.stack([engine.step(np.asarray(values, np.float32)[None],
                                 np.asarray(pose, np.float32)[None])
                     for values, pose in zip(tactile, poses)])


def evaluate_dataset(weights_path: PathLike, data_dir: PathLike,
                     device='cpu') -> tuple[List[EpisodePrediction], Dict[str, Any]]:
    """Predictions and metrics of a weights file on a tactile dataset (whole-sequence
    ``forward``)."""
    device = torch.device(device)
    model, _ = load_tactile_model(weights_path, device)
    predictions = sequence_predictions(
        model, list(load_tactile_dataset(data_dir).episodes()), device
    )
    return predictions, tactile_metrics(predictions)


# ----------------------------------------------------------------------------------------- bags


def evaluate_bag(weights_path: PathLike, bag_path: PathLike, device='cpu',
                 backend: str = TORCH_BACKEND) -> tuple[List[EpisodePrediction], Dict[str, Any]]:
    """Predictions and metrics of a weights file on a tactile bag, stepped sample by sample on
    ``backend`` with a fresh state per episode, as the node does."""
    engine, _ = bag_engine('tactile', weights_path, load_tactile_model, device, backend)
    predictions = [
        bag_prediction(episode, stepped_predictions(engine, episode.tactile, episode.poses))
        for episode in episodes_from_bag(bag_path)
    ]
    return predictions, tactile_metrics(predictions)


# ------------------------------------------------------------------------------------- plots


# ---------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = evaluation_parser('tactile', __doc__, sim='tactile')
    parser.add_argument(
        '--plot',
        metavar='PNG',
        help='also plot predicted vs true future angles of sample episodes',
    )
    return parser


def report_lines(metrics: Dict[str, Any]) -> List[str]:
    """The per-step table and the means, as printed without ``--json``."""
    lines = [f"{metrics['episodes']} episodes, {metrics['samples']} samples",
             f"{'step':>4}  {'model deg':>9}  {'c.vel deg':>9}  {'zero deg':>9}  "
             f"{'model mm':>8}  {'c.vel mm':>8}  {'zero mm':>8}"]
    columns = [
        metrics[f'per_step_{name}_{unit}']
        for unit in ('mae_deg', 'position_mm')
        for name in PREDICTORS
    ]
    for k, row in enumerate(zip(*columns), 1):
        lines.append(f'{k:>4}  ' + '  '.join(f'{value:>9.4f}' for value in row[:3]) + '  '
                     + '  '.join(f'{value:>8.3f}' for value in row[3:]))
    lines.append(
        'mean  '
        + '  '.join(f"{metrics[f'{name}_mae_deg']:>9.4f}" for name in PREDICTORS)
        + '  '
        + '  '.join(f"{metrics[f'{name}_position_mm']:>8.3f}" for name in PREDICTORS)
    )
    lines.append(f"model / const velocity: {baseline_ratio(metrics):.3f} "
                 '(angle error over the horizon)')
    return lines


def run(args: argparse.Namespace) -> int:
    check_backend(args)
    device = select_device(args.device)
    if args.data is not None:
        predictions, metrics = evaluate_dataset(args.weights, args.data, device)
    else:
        predictions, metrics = evaluate_bag(args.weights, args.bag, device, args.backend)
    if args.plot:
        plot_trajectories(predictions, args.plot)
    print(json.dumps(metrics, allow_nan=False) if args.json else '\n'.join(report_lines(metrics)))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m rnn_perception eval tactile``; returns the exit code."""
    return evaluation_main('tactile', argv, build_parser, run)


if __name__ == '__main__':
    sys.exit(main())
