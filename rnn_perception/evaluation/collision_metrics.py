"""The collision predictor's episode-level metrics (see :mod:`.collision` for their
definitions): per-episode traces, the metrics at a threshold, and the threshold calibration."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

from ..data.dodgeball_bag import BagEpisode
from ..data.dodgeball_dataset import DodgeballEpisode


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
        """Mask of the frames that count: before contact (every frame of a miss: contact is
        inf)."""
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
    """The module docstring's metrics of ``traces`` at ``threshold``; undefined ones are
    ``None``."""
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


def threshold_for_false_alarm_rate(traces: Sequence[EpisodeTrace], rate: float) -> float:
    """The lowest threshold at which at most ``rate`` of the misses in ``traces`` raise an
    alarm: the longest lead times that false-alarm rate allows. Used to set a predictor without
    a trained threshold (the trajectory oracle, the classical baseline) at a model's false-alarm
    rate; it is chosen on ``traces`` themselves, which can only flatter that predictor."""
    miss_scores = np.sort([trace.score() for trace in traces if not trace.hit])[::-1]
    if not miss_scores.size:
        raise ValueError('no misses: a false-alarm rate needs some')
    allowed = int(np.floor(rate * miss_scores.size + 1e-9))
    if allowed >= miss_scores.size:
        return 0.0
    return float(np.nextafter(miss_scores[allowed], np.inf))


def threshold_for_accuracy(traces: Sequence[EpisodeTrace], accuracy: float) -> Optional[float]:
    """The lowest threshold whose accuracy on ``traces`` is at least ``accuracy`` (``None`` if
    none reaches it): the longest lead times that accuracy allows."""
    hits = np.array([trace.hit for trace in traces])
    episode_scores = np.array([trace.score() for trace in traces])
    scores = np.unique([0.0, *episode_scores])
    # a threshold just above scores[k - 1] calls exactly the episodes scoring >= scores[k]
    for lower, upper in zip(scores[:-1], scores[1:]):
        if np.mean((episode_scores >= upper) == hits) >= accuracy - 1e-12:
            return float(np.nextafter(lower, np.inf))
    return None


def lead_times_s(traces: Sequence[EpisodeTrace], threshold: float) -> np.ndarray:
    """Every hit's lead time at ``threshold``, ``nan`` for a hit warned of too late or never
    (for lead-time curves: the share of hits warned at least so long before contact)."""
    leads = [trace.lead_time_s(threshold) for trace in traces if trace.hit]
    return np.array([np.nan if lead is None else lead for lead in leads], dtype=float)


def episode_rows(traces: Sequence[EpisodeTrace], threshold: float) -> List[Dict[str, Any]]:
    """Per-episode summary: label, score, first alarm and lead time (``None`` where undefined)."""
    return [
        {
            'episode': trace.episode,
            'hit': trace.hit,
            'frames': len(trace.stamps_s),
            'contact_time_s': trace.contact_time_s if trace.hit else None,
            'score': trace.score(),
            'first_alarm_s': trace.first_alarm_s(threshold),
            'lead_time_s': trace.lead_time_s(threshold),
        }
        for trace in traces
    ]


def dataset_trace(episode: DodgeballEpisode, probabilities: Sequence[float]) -> EpisodeTrace:
    """A dataset episode's trace with one probability per frame (a model's, the oracle's, the
    classical baseline's)."""
    return EpisodeTrace(episode.index, episode.stamp_s, np.asarray(probabilities), episode.hit,
                        episode.contact_time_s)


def bag_trace(episode: BagEpisode, probabilities: Sequence[float]) -> EpisodeTrace:
    """A bag episode's trace with one probability per frame (e.g. a node's outputs)."""
    return EpisodeTrace(episode.episode, episode.stamps_s, np.asarray(probabilities), episode.hit,
                        episode.contact_time_s)
