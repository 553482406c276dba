"""Evaluate a collision predictor on a dodgeball dataset or a rosbag2: per-episode probability
traces and the episode-level metrics below.

    python -m rnn_perception eval collision --weights FILE --data DIR [--json]
    python -m rnn_perception eval collision --weights FILE --bag PATH [--json]

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
agree to float rounding: the model is causal). A bag must hold ``/camera/image_raw`` and
``/dodgeball/ground_truth`` (see :mod:`rnn_perception.data.dodgeball_dataset`); frames of
another size are resized to the model's input by :func:`~rnn_perception.models.collision.resize_frames`.

To score another runner of the model (e.g. the collision node replaying a bag over DDS) the same
way: read the bag with :func:`episodes_from_bag`, match the runner's outputs to each
:class:`BagEpisode`'s frames by ``header_stamps_ns``, build traces with
:meth:`BagEpisode.trace` and compare :func:`collision_metrics` with :func:`evaluate_bag`'s.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score, roc_curve

from rnn_perception.data.bags import (IMAGE_MSGTYPE, LABELLED_ARRAY_MSGTYPE, BagError, labelled_array_fields, read_bag,
                                      stamp_to_ns)
from rnn_perception.data.dodgeball_dataset import (GROUND_TRUTH_FIELDS, GROUND_TRUTH_TOPIC, IMAGE_TOPIC,
                                                   DodgeballEpisode, load_dodgeball_dataset)
from rnn_perception.evaluation import evaluation_main
from rnn_perception.models.collision import (CollisionPredictor, frames_to_tensor, load_collision_model,
                                             resize_frames)
from rnn_perception.ros.image_conversion import ImageConversionError, image_to_rgb
from rnn_perception.training.utils import PathLike, atomic_path, probability, select_device
from rnn_perception.cli import OneLineParser

DEFAULT_THRESHOLD = 0.5      # when the weights' metadata has none
EVAL_BATCH_SIZE = 32         # episodes per whole-sequence forward
METRIC_KEYS = ('auroc', 'accuracy', 'lead_time_median_s', 'lead_time_p10_s', 'false_alarm_rate', 'episodes')


# ------------------------------------------------------------------------------------- metrics
@dataclass
class EpisodeTrace:
    """One episode's per-frame collision probabilities and its ground truth."""

    episode: int
    stamps_s: np.ndarray          # frame times within the episode (s)
    probabilities: np.ndarray     # P(hit) per frame
    hit: bool
    contact_time_s: float         # within the episode; inf for misses

    def __post_init__(self):
        self.stamps_s = np.asarray(self.stamps_s, dtype=np.float64)
        self.probabilities = np.asarray(self.probabilities, dtype=np.float64)
        if self.stamps_s.shape != self.probabilities.shape or self.stamps_s.ndim != 1:
            raise ValueError(f'episode {self.episode}: {self.stamps_s.shape} stamps for '
                             f'{self.probabilities.shape} probabilities')
        self.hit = bool(self.hit)
        self.contact_time_s = float(self.contact_time_s)

    def counted(self) -> np.ndarray:
        """Mask of the frames that count: before contact (every frame of a miss: contact is inf)."""
        return self.stamps_s < self.contact_time_s

    def score(self) -> float:
        """Highest probability over the counted frames (0 when none counts)."""
        counted = self.probabilities[self.counted()]
        return float(counted.max()) if counted.size else 0.0

    def first_alarm_s(self, threshold: float) -> Optional[float]:
        """Stamp of the first counted frame with probability ``>= threshold``, if any."""
        alarms = np.flatnonzero(self.counted() & (self.probabilities >= threshold))
        return float(self.stamps_s[alarms[0]]) if alarms.size else None

    def lead_time_s(self, threshold: float) -> Optional[float]:
        """For a detected hit: how long before contact the first alarm came; else ``None``."""
        alarm = self.first_alarm_s(threshold)
        return self.contact_time_s - alarm if self.hit and alarm is not None else None


def collision_metrics(traces: Sequence[EpisodeTrace], threshold: float) -> Dict[str, Any]:
    """The module docstring's metrics of ``traces`` at ``threshold``; undefined ones are ``None``."""
    if not traces:
        raise ValueError('no episodes to evaluate')
    scores = np.array([trace.score() for trace in traces])
    hits = np.array([trace.hit for trace in traces])
    lead_times = [trace.lead_time_s(threshold) for trace in traces if trace.hit]
    detected = np.array([lead for lead in lead_times if lead is not None])
    misses_alarmed = scores[~hits] >= threshold
    return {
        'auroc': float(roc_auc_score(hits, scores)) if 0 < hits.sum() < len(hits) else None,
        'accuracy': float(np.mean((scores >= threshold) == hits)),
        'lead_time_median_s': float(np.median(detected)) if detected.size else None,
        'lead_time_p10_s': float(np.percentile(detected, 10)) if detected.size else None,
        'false_alarm_rate': float(misses_alarmed.mean()) if misses_alarmed.size else None,
        'episodes': len(traces),
        'hits': int(hits.sum()),
        'detected_hits': int(detected.size),
        'threshold': float(threshold),
    }


def calibrate_threshold(traces: Sequence[EpisodeTrace], accuracy_margin: float = 0.0) -> float:
    """The lowest threshold whose accuracy on ``traces`` is within ``accuracy_margin`` of the best
    one (0: the best accuracy itself): the earliest warnings, so the longest lead times, that
    this much accuracy buys. Taken at the middle of its range of thresholds (all call the same
    episodes), so a score a little off either end on new data keeps its side."""
    scores = np.unique([0.0, *(trace.score() for trace in traces), 1.0])
    hits = np.array([trace.hit for trace in traces])
    episode_scores = np.array([trace.score() for trace in traces])
    # a threshold in (scores[k-1], scores[k]] calls exactly the episodes scoring >= scores[k]
    accuracies = np.array([np.mean((episode_scores >= upper) == hits) for upper in scores[1:]])
    chosen = int(np.flatnonzero(accuracies >= accuracies.max() - accuracy_margin - 1e-12)[0]) + 1
    return float((scores[chosen - 1] + scores[chosen]) / 2)


def episode_rows(traces: Sequence[EpisodeTrace], threshold: float) -> List[Dict[str, Any]]:
    """Per-episode summary: label, score, first alarm and lead time (``None`` where undefined)."""
    return [{'episode': trace.episode, 'hit': trace.hit, 'frames': len(trace.stamps_s),
             'contact_time_s': trace.contact_time_s if trace.hit else None, 'score': trace.score(),
             'first_alarm_s': trace.first_alarm_s(threshold), 'lead_time_s': trace.lead_time_s(threshold)}
            for trace in traces]


# ----------------------------------------------------------------------------------------- bags
@dataclass
class BagEpisode:
    """One episode read back from a dodgeball bag."""

    episode: int
    hit: bool
    contact_time_s: float          # within the episode; inf for misses
    frames: List[np.ndarray]       # (H, W, 3) uint8 RGB, as recorded
    stamps_s: np.ndarray           # frame times within the episode (header stamp - first frame's)
    header_stamps_ns: np.ndarray   # the images' header stamps, to match a node's outputs to frames

    def trace(self, probabilities: Sequence[float]) -> EpisodeTrace:
        """This episode's trace with one probability per frame (e.g. a node's outputs)."""
        return EpisodeTrace(self.episode, self.stamps_s, np.asarray(probabilities), self.hit, self.contact_time_s)


@dataclass
class _LabelledFrame:
    header_stamp_ns: int
    rgb: np.ndarray
    truth: Dict[str, float]


def _labelled_frames(path: PathLike) -> Iterator[_LabelledFrame]:
    """Images paired with their ground truth by bag time (the ground truth has no header)."""
    pending: Dict[str, Dict[int, Any]] = {IMAGE_TOPIC: {}, GROUND_TRUTH_TOPIC: {}}
    seen = {IMAGE_TOPIC: 0, GROUND_TRUTH_TOPIC: 0}
    paired = 0
    for record in read_bag(path, {IMAGE_TOPIC: IMAGE_MSGTYPE, GROUND_TRUTH_TOPIC: LABELLED_ARRAY_MSGTYPE}):
        seen[record.topic] += 1
        pending[record.topic][record.stamp_ns] = record.message
        if all(record.stamp_ns in messages for messages in pending.values()):
            image = pending[IMAGE_TOPIC].pop(record.stamp_ns)
            truth = pending[GROUND_TRUTH_TOPIC].pop(record.stamp_ns)
            paired += 1
            yield _LabelledFrame(stamp_to_ns(image.header.stamp), _bag_image(path, image, record.stamp_ns),
                                 _ground_truth(path, truth, record.stamp_ns))
    missing = [topic for topic, count in seen.items() if count == 0]
    if missing:
        raise BagError(f'{path}: no messages on {" or ".join(missing)}; a dodgeball bag needs '
                       f'{IMAGE_TOPIC} and {GROUND_TRUTH_TOPIC}')
    if not paired:
        raise BagError(f'{path}: no image shares its bag time with a ground-truth message')


def _bag_image(path: PathLike, image, stamp_ns: int) -> np.ndarray:
    """The RGB pixels of a bag's image, read as the collision node reads a camera's."""
    try:
        return image_to_rgb(image)
    except ImageConversionError as error:
        raise BagError(f'{path}: unreadable {IMAGE_TOPIC} image at bag time {stamp_ns / 1e9:.3f} s ({error})') from None


def _ground_truth(path: PathLike, truth, stamp_ns: int) -> Dict[str, float]:
    try:
        fields = labelled_array_fields(truth)
    except BagError as error:
        raise BagError(f'{path}: {GROUND_TRUTH_TOPIC} at bag time {stamp_ns / 1e9:.3f} s: {error}') from None
    missing = [name for name in GROUND_TRUTH_FIELDS if name not in fields]
    if missing:
        raise BagError(f'{path}: {GROUND_TRUTH_TOPIC} at bag time {stamp_ns / 1e9:.3f} s lacks the fields '
                       f'{", ".join(missing)}')
    return fields


def _bag_episode(frames: List[_LabelledFrame]) -> BagEpisode:
    first = frames[0].truth
    header_stamps = np.array([frame.header_stamp_ns for frame in frames], dtype=np.int64)
    return BagEpisode(
        episode=int(first['episode']), hit=bool(first['hit']),
        contact_time_s=float(first['episode_time_s']) + float(first['time_to_contact_s']),
        frames=[frame.rgb for frame in frames], stamps_s=(header_stamps - header_stamps[0]) / 1e9,
        header_stamps_ns=header_stamps)


def episodes_from_bag(path: PathLike) -> Iterator[BagEpisode]:
    """The episodes of a dodgeball bag in recorded order, one at a time (bounded memory).

    Frames go to the episode named by their ground truth's ``episode`` field. Raises
    ``BagError`` for a path that is no bag, or a bag without images or ground truth.
    """
    frames: List[_LabelledFrame] = []
    for frame in _labelled_frames(path):
        if frames and frame.truth['episode'] != frames[-1].truth['episode']:
            yield _bag_episode(frames)
            frames = []
        frames.append(frame)
    if frames:
        yield _bag_episode(frames)


# ---------------------------------------------------------------------------------- running
@torch.no_grad()
def sequence_probabilities(model: CollisionPredictor, episodes: Sequence[np.ndarray],
                           device: torch.device, batch_size: int = EVAL_BATCH_SIZE) -> List[np.ndarray]:
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


@torch.no_grad()
def stepped_probabilities(model: CollisionPredictor, frames: Iterable[np.ndarray],
                          device: torch.device) -> np.ndarray:
    """One ``step`` per ``(H, W, 3)`` uint8 frame from a zero state, as the node runs the model
    (its frozen snapshot)."""
    model.eval()
    frozen = model.frozen()
    state, probabilities = None, []
    for rgb in frames:
        frame = frames_to_tensor(resize_frames(rgb[None], model.config.image_size), device)
        logits, state = frozen.step(frame, state)
        probabilities.append(float(torch.sigmoid(logits)[0]))
    return np.array(probabilities)


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
    return [EpisodeTrace(episode.index, episode.stamp_s, p, episode.hit, episode.contact_time_s)
            for episode, p in zip(episodes, probabilities)]


def model_threshold(metadata: Dict[str, Any]) -> float:
    """The decision threshold stored with the weights (``DEFAULT_THRESHOLD`` without one)."""
    return float(metadata.get('threshold', DEFAULT_THRESHOLD))


def evaluate_dataset(weights_path: PathLike, data_dir: PathLike, device='cpu',
                     threshold: Optional[float] = None) -> Tuple[List[EpisodeTrace], Dict[str, Any]]:
    """Traces and metrics of a weights file on a dodgeball dataset (whole-sequence ``forward``);
    ``threshold`` defaults to the weights' own."""
    device = torch.device(device)
    model, metadata = load_collision_model(weights_path, device)
    traces = dataset_traces(model, load_dodgeball_dataset(data_dir).episodes(), device)
    return traces, collision_metrics(traces, model_threshold(metadata) if threshold is None else threshold)


def evaluate_bag(weights_path: PathLike, bag_path: PathLike, device='cpu',
                 threshold: Optional[float] = None) -> Tuple[List[EpisodeTrace], Dict[str, Any]]:
    """Traces and metrics of a weights file on a dodgeball bag, stepped frame by frame with a
    fresh state per episode, as the node does; ``threshold`` defaults to the weights' own."""
    device = torch.device(device)
    model, metadata = load_collision_model(weights_path, device)
    traces = [episode.trace(stepped_probabilities(model, episode.frames, device))
              for episode in episodes_from_bag(bag_path)]
    if not traces:
        raise BagError(f'{bag_path}: no labelled frames')
    return traces, collision_metrics(traces, model_threshold(metadata) if threshold is None else threshold)


# ------------------------------------------------------------------------------------- plots
def _new_figure(width: float, height: float, panels: int = 1):
    figure = Figure(figsize=(width, height), layout='constrained')
    FigureCanvasAgg(figure)                   # render off-screen; no pyplot global state
    return figure, figure.subplots(1, panels, squeeze=False)[0]


def _save(figure: Figure, path: PathLike) -> None:
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format='png', dpi=100)


def plot_roc(traces: Sequence[EpisodeTrace], path: PathLike, title: str = 'episode ROC') -> None:
    """ROC curve of the episode scores (an empty panel with a note if one class is missing)."""
    figure, (ax,) = _new_figure(4.5, 4.5)
    hits = [trace.hit for trace in traces]
    if 0 < sum(hits) < len(hits):
        scores = [trace.score() for trace in traces]
        false_positive, true_positive, _ = roc_curve(hits, scores)
        ax.plot(false_positive, true_positive, label=f'AUROC {roc_auc_score(hits, scores):.3f}')
        ax.legend(loc='lower right')
    else:
        ax.text(0.5, 0.5, 'one class only: no ROC', ha='center')
    ax.plot([0, 1], [0, 1], color='grey', linestyle=':')
    ax.set(xlabel='false positive rate', ylabel='true positive rate', title=title)
    ax.grid(alpha=0.3)
    _save(figure, path)


def plot_traces(traces: Sequence[EpisodeTrace], path: PathLike, threshold: float, per_class: int = 8) -> None:
    """Probability over time for the first ``per_class`` hits (against time to contact) and
    misses (against time since the throw), with the threshold."""
    figure, (hit_ax, miss_ax) = _new_figure(10, 4, panels=2)
    for trace in [trace for trace in traces if trace.hit][:per_class]:
        hit_ax.plot(trace.stamps_s - trace.contact_time_s, trace.probabilities, marker='.', markersize=3)
    for trace in [trace for trace in traces if not trace.hit][:per_class]:
        miss_ax.plot(trace.stamps_s, trace.probabilities, marker='.', markersize=3)
    hit_ax.axvline(0.0, color='black', linewidth=0.8)
    hit_ax.set(xlabel='time relative to contact (s)', title=f'hits (first {per_class})')
    miss_ax.set(xlabel='time since the throw (s)', title=f'misses (first {per_class})')
    for ax in (hit_ax, miss_ax):
        ax.axhline(threshold, color='red', linestyle='--', linewidth=0.8)
        ax.set(ylabel='P(hit)', ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
    _save(figure, path)


# ---------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog='rnn_perception eval collision', description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--weights', required=True, metavar='FILE', help='collision model (.safetensors)')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--data', metavar='DIR', help='dodgeball dataset directory (python -m sim dodgeball)')
    source.add_argument('--bag', metavar='PATH', help='dodgeball rosbag2 (python -m sim dodgeball --bag)')
    parser.add_argument('--threshold', type=probability,
                        help="decision threshold (default: the weights' own, else 0.5)")
    parser.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default='cpu',
                        help='auto: cuda when available, else cpu (default: cpu)')
    parser.add_argument('--json', action='store_true',
                        help='print one JSON object (the metrics and a per_episode list) instead of tables')
    parser.add_argument('--traces', metavar='PNG', help='also plot probability traces of sample episodes')
    parser.add_argument('--roc', metavar='PNG', help='also plot the episode ROC curve')
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
    lines += ['', f"episodes {m['episodes']} ({m['hits']} hits), threshold {m['threshold']:.3f}",
              f"AUROC             {_number(m['auroc'], '.4f')}",
              f"accuracy          {m['accuracy']:.2%}",
              f"lead time median  {_number(m['lead_time_median_s'], '.3f')} s   "
              f"p10 {_number(m['lead_time_p10_s'], '.3f')} s   ({m['detected_hits']}/{m['hits']} hits detected)",
              f"false alarm rate  {_number(m['false_alarm_rate'], '.2%')}"]
    return lines


def run(args: argparse.Namespace) -> int:
    device = select_device(args.device)
    if args.data is not None:
        traces, metrics = evaluate_dataset(args.weights, args.data, device, args.threshold)
    else:
        traces, metrics = evaluate_bag(args.weights, args.bag, device, args.threshold)
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
