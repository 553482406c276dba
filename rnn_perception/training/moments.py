"""Means and variances of a set too large to hold, gathered one piece (an episode) at a time.

Each piece's weighted count, mean and sum of squared deviations are computed in float64 and
merged into the running ones with Chan et al.'s parallel update, which needs no second pass and
loses none of the precision a one-shot sum of squares would (the pose's components vary by
micrometres around centimetres). The result depends on the order the pieces are merged in, to
float64 rounding: a trainer merges them in one fixed order (episode order), so that however the
pieces arrive in groups the statistics are the same bits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator``, 0 where the denominator is not positive (nothing counted)."""
    return np.divide(numerator, denominator, out=np.zeros(np.broadcast(
        numerator, denominator).shape), where=denominator > 0)


@dataclass(frozen=True)
class Moments:
    """Weighted count, mean and sum of squared deviations along the first axis of values."""

    count: np.ndarray
    mean: np.ndarray
    squares: np.ndarray

    @classmethod
    def empty(cls, shape: tuple) -> 'Moments':
        """Nothing counted yet, for values of ``shape`` (without the first axis)."""
        return cls(np.zeros(shape), np.zeros(shape), np.zeros(shape))

    @classmethod
    def of(cls, values: np.ndarray, weights: Optional[np.ndarray] = None) -> 'Moments':
        """The moments of ``values`` along their first axis, each weighted by ``weights``
        (broadcast against them; default 1)."""
        values = np.asarray(values, np.float64)
        weights = np.ones(values.shape) if weights is None else np.broadcast_to(
            np.asarray(weights, np.float64), values.shape)
        count = weights.sum(0)
        mean = _ratio((values * weights).sum(0), count)
        return cls(count, mean, (weights * np.square(values - mean)).sum(0))

    def __add__(self, other: 'Moments') -> 'Moments':
        count = self.count + other.count
        delta, share = other.mean - self.mean, _ratio(other.count, count)
        return Moments(count, self.mean + delta * share,
                       self.squares + other.squares + np.square(delta) * self.count * share)

    def std(self, ddof: int = 0) -> np.ndarray:
        """The standard deviation, over ``count - ddof``; 0 where no more than ``ddof`` were
        counted."""
        return np.sqrt(_ratio(self.squares, self.count - ddof))
