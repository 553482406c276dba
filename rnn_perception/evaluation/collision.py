"""Evaluate a collision predictor on a dodgeball dataset or a rosbag2: per-episode probability
traces and the episode-level metrics below.

    python -m rnn_perception eval collision --weights FILE --data DIR [--json]
    python -m rnn_perception eval collision --weights FILE --bag PATH [--image-topic T] [--json]

Metrics (:func:`collision_metrics`), over episodes, at a threshold ``p*`` (the weights'
metadata ``threshold``, 0.5 without one; ``--threshold`` overrides it):

- **counted frames**: for a hit, the frames stamped strictly before contact (a warning after
  the ball arrived is worth nothing); for a miss, every frame;
- **score** of an episode: the highest probability over its counted frames (0 if none);
- **auroc**: ``sklearn.metrics.roc_auc_score`` of the scores against hit/miss (``None`` unless
  both classes are present);
- **accuracy**: share of episodes with ``(score >= p*) == hit``;
- **lead time** of a hit: contact time minus the stamp of the first counted frame with
  probability ``>= p*``. Hits that never cross before contact are missed detections: wrong in
  the accuracy, left out of ``lead_time_median_s`` and ``lead_time_p10_s`` (``numpy.percentile``,
  linear; the 10 % of detections with the least warning have at most this much). ``None``
  when no hit was detected;
- **false_alarm_rate**: share of misses whose probability reaches ``p*`` in any frame
  (``None`` without misses);
- **episodes**: number of episodes; ``hits`` and ``detected_hits`` count the others.

A dataset is run through the model's whole-sequence ``forward``; a bag is run frame by frame
with ``step`` and a state reset per episode, exactly as the collision node runs it (the two
agree to float rounding: the model is causal). A bag must hold ``/dodgeball/ground_truth`` (see
:mod:`rnn_perception.data.dodgeball_dataset`) and a camera: its one ``sensor_msgs/Image`` or
``sensor_msgs/CompressedImage`` topic, or the one ``--image-topic`` names. Compressed frames are
decoded as the node decodes them (:mod:`rnn_perception.data.camera_frames`); frames of another
size are brought to the model's input by :func:`~rnn_perception.models.collision.resize_frames`.

To score another runner of the model (e.g. the collision node replaying a bag over DDS) the same
way: read the bag with :func:`~rnn_perception.data.dodgeball_bag.episodes_from_bag`, match the
runner's outputs to each episode's frames by ``header_stamps_ns``, build traces with
:func:`~.collision_metrics.bag_trace` and compare
:func:`~.collision_metrics.collision_metrics` with :func:`evaluate_bag`'s.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from rnn_perception.cli import probability, UsageError
from rnn_perception.data.bags import BagError
from rnn_perception.data.dodgeball_bag import episodes_from_bag
from rnn_perception.data.dodgeball_dataset import DodgeballEpisode, load_dodgeball_dataset
from rnn_perception.device import select_device
from rnn_perception.evaluation import bag_engine, check_backend, evaluation_main, evaluation_parser
from rnn_perception.evaluation.collision_metrics import (bag_trace, collision_metrics,
                                                         dataset_trace, episode_rows,
                                                         EpisodeTrace)
from rnn_perception.evaluation.collision_plots import plot_roc, plot_traces
from rnn_perception.files import PathLike
from rnn_perception.models.collision import (CollisionPredictor, DEFAULT_THRESHOLD,
                                             frames_to_tensor, load_collision_model,
                                             model_threshold, resize_frames)
from rnn_perception.models.step_engine import StepEngine, TORCH_BACKEND

EVAL_BATCH_SIZE = 32         # episodes per whole-sequence forward
METRIC_KEYS = (
    'auroc',
    'accuracy',
    'lead_time_median_s',
    'lead_time_p10_s',
    'false_alarm_rate',
    'episodes',
)


# ------------------------------------------------------------------------------------- metrics


# ----------------------------------------------------------------------------------------- bags


# ---------------------------------------------------------------------------------- running
@torch.no_grad()
def sequence_probabilities(
    model: CollisionPredictor,
    episodes: Sequence[np.ndarray],
    device: torch.device,
    batch_size: int = EVAL_BATCH_SIZE,
) -> List[np.ndarray]:
    """``forward`` over whole episodes (each ``(T, h, w, 3)`` uint8 at the model's size) ->
    per-frame probabilities. Episodes of similar length share a batch, zero-padded at the end:
    the model is causal, so padding never changes the frames before it."""
    model.eval()
    order = np.argsort([len(frames) for frames in episodes])
    results: List[Optional[np.ndarray]] = [None] * len(episodes)
    for start in range(0, len(order), batch_size):
        chosen = order[start:start + batch_size]
        longest = max(len(episodes[i]) for i in chosen)
        batch = np.zeros((len(chosen), longest, *episodes[chosen[0]].shape[1:]), dtype=np.uint8)
        for row, i in enumerate(chosen):
            batch[row, :len(episodes[i])] = episodes[i]
        probabilities = torch.sigmoid(model(frames_to_tensor(batch, device))).cpu().numpy()
        for row, i in enumerate(chosen):
            results[i] = probabilities[row, :len(episodes[i])]
    return results


def stepped_probabilities(engine: StepEngine, image_size: Sequence[int],
                          frames: Iterable[np.ndarray]) -> np.ndarray:
    """One step of ``engine`` per ``(H, W, 3)`` uint8 frame, resized to ``image_size``, from
    the initial state: what the node answers."""
    engine.reset()
    return np.array([float(engine.step(resize_frames(rgb[None], image_size)))
                     for rgb in frames])


def dataset_traces(model: CollisionPredictor, episodes: Iterable[DodgeballEpisode],
                   device: torch.device) -> List[EpisodeTrace]:
    """Traces of dataset episodes, run ``EVAL_BATCH_SIZE`` episodes at a time."""
    traces, chunk = [], []
    for episode in episodes:
        chunk.append(episode)
        if len(chunk) == EVAL_BATCH_SIZE:
            traces += _chunk_traces(model, chunk, device)
            chunk = []
    return traces + (_chunk_traces(model, chunk, device) if chunk else [])


def _chunk_traces(model: CollisionPredictor, episodes: List[DodgeballEpisode],
                  device: torch.device) -> List[EpisodeTrace]:
    frames = [resize_frames(episode.frames, model.config.image_size) for episode in episodes]
    probabilities = sequence_probabilities(model, frames, device)
    return [dataset_trace(episode, p) for episode, p in zip(episodes, probabilities)]


def evaluate_dataset(
    weights_path: PathLike, data_dir: PathLike, device='cpu', threshold: Optional[float] = None
) -> Tuple[List[EpisodeTrace], Dict[str, Any]]:
    """Traces and metrics of a weights file on a dodgeball dataset (whole-sequence ``forward``);
    ``threshold`` defaults to the weights' own."""
    device = torch.device(device)
    model, metadata = load_collision_model(weights_path, device)
    traces = dataset_traces(model, load_dodgeball_dataset(data_dir).episodes(), device)
    return traces, collision_metrics(
        traces, model_threshold(metadata) if threshold is None else threshold
    )


def evaluate_bag(weights_path: PathLike, bag_path: PathLike, device='cpu',
                 threshold: Optional[float] = None, image_topic: Optional[str] = None,
                 backend: str = TORCH_BACKEND) -> Tuple[List[EpisodeTrace], Dict[str, Any]]:
    """Traces and metrics of a weights file on a dodgeball bag, stepped frame by frame on
    ``backend`` with a fresh state per episode, as the node does; ``threshold`` defaults to the
    weights' own, ``image_topic`` to the bag's only image topic."""
    engine, loaded = bag_engine('collision', weights_path, load_collision_model, device, backend)
    metadata, image_size = loaded.metadata, loaded.model.config.image_size
    episodes = episodes_from_bag(bag_path, image_topic, min_size=image_size)
    traces = [bag_trace(episode, stepped_probabilities(engine, image_size, episode.frames))
              for episode in episodes]
    if not traces:
        raise BagError(f'{bag_path}: no labelled frames')
    return traces, collision_metrics(
        traces, model_threshold(metadata) if threshold is None else threshold
    )


# ------------------------------------------------------------------------------------- plots


# ---------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = evaluation_parser('collision', __doc__, sim='dodgeball')
    parser.add_argument(
        '--threshold',
        type=probability,
        help=f"decision threshold (default: the weights' own, else {DEFAULT_THRESHOLD:g})",
    )
    parser.add_argument(
        '--traces', metavar='PNG', help='also plot probability traces of sample episodes'
    )
    parser.add_argument('--roc', metavar='PNG', help='also plot the episode ROC curve')
    parser.add_argument(
        '--image-topic', metavar='TOPIC',
        help="with --bag: the camera topic, sensor_msgs/Image or CompressedImage (default: the "
             "bag's only image topic)")
    return parser


def _number(value: Optional[float], form: str) -> str:
    return '-' if value is None else format(value, form)


def report_lines(rows: Sequence[Dict[str, Any]], metrics: Dict[str, Any]) -> List[str]:
    """The per-episode table and the metrics, as printed without ``--json``."""
    lines = [f"{'episode':>7}  {'label':<5}  {'frames':>6}  {'contact s':>9}  {'score':>5}  "
             f"{'alarm s':>7}  {'lead s':>6}"]
    lines += [f"{row['episode']:>7}  {'hit' if row['hit'] else 'miss':<5}  {row['frames']:>6}  "
              f"{_number(row['contact_time_s'], '.3f'):>9}  {row['score']:>5.3f}  "
              f"{_number(row['first_alarm_s'], '.3f'):>7}  {_number(row['lead_time_s'], '.3f'):>6}"
              for row in rows]
    m = metrics
    lines += [
        '',
        f"episodes {m['episodes']} ({m['hits']} hits), threshold {m['threshold']:.3f}",
        f"AUROC             {_number(m['auroc'], '.4f')}",
        f"accuracy          {m['accuracy']:.2%}",
        f"lead time median  {_number(m['lead_time_median_s'], '.3f')} s   "
        f"p10 {_number(m['lead_time_p10_s'], '.3f')} s   "
        f"({m['detected_hits']}/{m['hits']} hits detected)",
        f"false alarm rate  {_number(m['false_alarm_rate'], '.2%')}",
    ]
    return lines


def run(args: argparse.Namespace) -> int:
    if args.image_topic is not None and args.bag is None:
        raise UsageError('--image-topic reads a bag: give --bag, not --data (see --help)')
    check_backend(args)
    device = select_device(args.device)
    if args.data is not None:
        traces, metrics = evaluate_dataset(args.weights, args.data, device, args.threshold)
    else:
        traces, metrics = evaluate_bag(args.weights, args.bag, device, args.threshold,
                                       args.image_topic, args.backend)
    rows = episode_rows(traces, metrics['threshold'])
    if args.traces:
        plot_traces(traces, args.traces, metrics['threshold'])
    if args.roc:
        plot_roc(traces, args.roc)
    if args.json:
        print(json.dumps({**metrics, 'per_episode': rows}, allow_nan=False))
    else:
        print('\n'.join(report_lines(rows, metrics)))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m rnn_perception eval collision``; returns the exit code."""
    return evaluation_main('collision', argv, build_parser, run)


if __name__ == '__main__':
    sys.exit(main())
