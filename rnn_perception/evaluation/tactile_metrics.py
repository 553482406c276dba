"""The tactile predictor's metrics against its baselines (see :mod:`.tactile` for their
definitions): per-episode predictions, the baselines, errors per horizon step."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, List

import numpy as np

from ..data.tactile_bag import BagEpisode
from ..models.tactile import ANGLE, POSITION


PREDICTORS = ('model', 'const_velocity', 'zero_motion')


@dataclass
class EpisodePrediction:
    """One episode's true poses ``(T, 4)`` and a predictor's futures ``(T, H, 4)`` from every
    sample."""

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
            self.position_mm[k - 1] += (
                1e3 * np.linalg.norm(guess[:, POSITION] - truth[:, POSITION], axis=1).sum()
            )
            self.count[k - 1] += steps - k

    def per_step(self) -> Dict[str, List[float]]:
        count = np.maximum(self.count, 1)
        return {
            'angle_deg': (self.angle_deg / count).tolist(),
            'position_mm': (self.position_mm / count).tolist(),
        }


def baseline_ratio(metrics: Dict[str, Any]) -> float:
    """Model / constant-velocity mean angle error (NaN when the objects never moved)."""
    baseline = metrics['const_velocity_mae_deg']
    return metrics['model_mae_deg'] / baseline if baseline > 0 else float('nan')


class TactileScores:
    """The figures of :func:`tactile_metrics`, gathered one episode's predictions at a time (so
    that a validation streamed in groups need not keep them)."""

    def __init__(self) -> None:
        self.errors: Dict[str, HorizonErrors] = {}
        self.episodes = self.samples = 0

    def add(self, prediction: EpisodePrediction) -> None:
        """Score one episode's predictions, and its baselines'."""
        horizon = prediction.predicted.shape[1]
        if not self.errors:
            self.errors = {name: HorizonErrors(horizon) for name in PREDICTORS}
        self.errors['model'].add(prediction.predicted, prediction.poses)
        self.errors['const_velocity'].add(
            constant_velocity(prediction.poses, horizon), prediction.poses
        )
        self.errors['zero_motion'].add(zero_motion(prediction.poses, horizon), prediction.poses)
        self.episodes += 1
        self.samples += len(prediction.poses)

    def metrics(self) -> Dict[str, Any]:
        """The module docstring's figures of the episodes added."""
        if not self.episodes:
            raise ValueError('no episodes to evaluate')
        metrics: Dict[str, Any] = {}
        for name, error in self.errors.items():
            per_step = error.per_step()
            metrics[f'{name}_mae_deg'] = float(np.mean(per_step['angle_deg']))
            metrics[f'{name}_position_mm'] = float(np.mean(per_step['position_mm']))
            metrics[f'per_step_{name}_mae_deg'] = per_step['angle_deg']
            metrics[f'per_step_{name}_position_mm'] = per_step['position_mm']
        metrics['episodes'] = self.episodes
        metrics['samples'] = self.samples
        return metrics


def tactile_metrics(predictions: Iterable[EpisodePrediction]) -> Dict[str, Any]:
    """The module docstring's figures for the model's ``predictions`` and both baselines."""
    scores = TactileScores()
    for prediction in predictions:
        scores.add(prediction)
    return scores.metrics()


def bag_prediction(episode: BagEpisode, predicted: np.ndarray) -> EpisodePrediction:
    """A bag episode scored with futures ``(T, H, 4)`` (e.g. a node's outputs)."""
    return EpisodePrediction(episode.episode, (episode.stamps_ns - episode.stamps_ns[0]) / 1e9,
                             episode.poses, predicted)
