"""Ballistic trajectories fitted to noisy ball positions, frame by frame, and the probability
that the ball hits the robot.

The simulated ball flies drag-free (``sim/dodgeball/world.py``), so its centre follows
``p(t) = p0 + v0 t + g t^2 / 2`` with ``g = (0, 0, -gravity)`` known: six unknowns ``(p0, v0)``,
linear in the positions. Weighted least squares with each observation's covariance gives, after
every frame, the Gaussian posterior over ``(p0, v0)`` of the observations so far (flat prior);
the information matrix and vector are sums over observations, so all frames of an episode cost
one cumulative sum and one batched solve.

A monocular camera that guesses depth from the ball's apparent size gets positions right only up
to the ball's unknown size: ``p(t) = camera + s m(t)`` with ``m`` measured for a nominal radius and
``s`` the true radius over the nominal one. With ``origin`` (the camera centre) and a
``scale_prior_sigma``, ``s`` is a seventh unknown (still linear: ``p0 + v0 t - s m = camera -
g t^2 / 2``) with a Gaussian prior around 1; gravity is what makes it observable.

The hit probability of a frame is the share of trajectories drawn from its posterior that
:meth:`~.robot_volume.RobotVolume.hits` says touch the robot; before two observations there is
no trajectory yet, and the probability is :data:`UNINFORMED_PROBABILITY`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .robot_volume import RobotVolume

MIN_OBSERVATIONS = 2               # positions at two times fix p0 and v0 (gravity is known)
UNINFORMED_PROBABILITY = 0.5       # P(hit) before that: no better than a coin
TRAJECTORY_DIMENSIONS = 6          # p0 and v0
SCALED_DIMENSIONS = 7              # p0, v0 and the depth scale s
SMALLEST_SCALE = 0.05              # a drawn scale below this is clipped (a ball has a size)


@dataclass(frozen=True)
class TrajectoryPosteriors:
    """Per frame ``t`` of an episode, the posterior over the trajectory from the observations of
    frames ``<= t``: ``mean`` (T, n), ``covariance`` (T, n, n) and ``valid`` (T,), whether
    there were enough observations; ``n`` is 6 (``p0``, ``v0``) or 7 (and the scale ``s``)."""

    mean: np.ndarray
    covariance: np.ndarray
    valid: np.ndarray

    @property
    def scaled(self) -> bool:
        """Whether the depth scale ``s`` is one of the unknowns."""
        return self.mean.shape[-1] == SCALED_DIMENSIONS


def fit_trajectories(times_s: np.ndarray, positions_m: np.ndarray, covariances: np.ndarray,
                     observed: np.ndarray, gravity_mps2: float, *,
                     origin_m: Optional[np.ndarray] = None,
                     scale_prior_sigma: Optional[float] = None) -> TrajectoryPosteriors:
    """Posteriors after each of T frames from the positions (T, 3) seen at ``times_s`` (T,)
    (from the throw) with noise ``covariances`` (T, 3, 3), using only the ``observed`` (T,)
    frames. With ``origin_m`` and ``scale_prior_sigma`` the positions are measured from
    ``origin_m`` up to the unknown scale ``s`` (see the module docstring)."""
    times_s = np.asarray(times_s, dtype=float)
    observed = np.asarray(observed, dtype=bool)
    positions_m = np.where(observed[:, None], np.asarray(positions_m, dtype=float), 0.0)
    frames = len(times_s)
    scaled = scale_prior_sigma is not None
    size = SCALED_DIMENSIONS if scaled else TRAJECTORY_DIMENSIONS
    eye = np.broadcast_to(np.eye(3), (frames, 3, 3))
    design = np.concatenate([eye, eye * times_s[:, None, None]], axis=2)      # (T, 3, 6)
    gravity_lift = np.zeros((frames, 3))
    gravity_lift[:, 2] = 0.5 * gravity_mps2 * times_s ** 2
    if scaled:
        design = np.concatenate([design, -positions_m[:, :, None]], axis=2)    # (T, 3, 7)
        targets = np.asarray(origin_m, dtype=float) + gravity_lift
    else:
        targets = positions_m + gravity_lift
    weights = np.linalg.inv(np.where(observed[:, None, None], covariances, np.eye(3)))
    weights = weights * observed[:, None, None]
    weighted = np.swapaxes(design, 1, 2) @ weights                              # (T, n, 3)
    information = np.cumsum(weighted @ design, axis=0)
    vector = np.cumsum((weighted @ targets[:, :, None])[..., 0], axis=0)
    if scaled:
        prior = 1.0 / scale_prior_sigma ** 2
        information[:, -1, -1] += prior
        vector[:, -1] += prior                                                  # s ~ N(1, sigma)
    valid = np.cumsum(observed) >= MIN_OBSERVATIONS
    mean = np.zeros((frames, size))
    covariance = np.broadcast_to(np.eye(size), (frames, size, size)).copy()
    if valid.any():
        covariance[valid] = np.linalg.inv(information[valid])
        mean[valid] = (covariance[valid] @ vector[valid][:, :, None])[..., 0]
    return TrajectoryPosteriors(mean, covariance, valid)


def hit_probabilities(posteriors: TrajectoryPosteriors, robot: RobotVolume, gravity_mps2: float,
                      radius_m: float, rng: np.random.Generator, samples: int) -> np.ndarray:
    """P(hit) per frame: the share of ``samples`` trajectories drawn from each frame's
    posterior that touch ``robot``; ``radius_m`` is the ball's radius, multiplied by each drawn
    scale when the posteriors have one. :data:`UNINFORMED_PROBABILITY` where not ``valid``."""
    probabilities = np.full(len(posteriors.valid), UNINFORMED_PROBABILITY)
    valid = np.flatnonzero(posteriors.valid)
    if not valid.size:
        return probabilities
    mean, covariance = posteriors.mean[valid], posteriors.covariance[valid]
    size = mean.shape[-1]
    factors = _covariance_factors(covariance)
    draws = mean[:, None, :] + (rng.standard_normal((len(valid), samples, size))
                                @ np.swapaxes(factors, 1, 2))
    radius = radius_m * (np.maximum(draws[..., 6], SMALLEST_SCALE) if posteriors.scaled
                         else np.ones(draws.shape[:2]))
    hits = robot.hits(draws[..., :3], draws[..., 3:6], radius, gravity_mps2)
    probabilities[valid] = hits.mean(axis=1)
    return probabilities


def _covariance_factors(covariance: np.ndarray) -> np.ndarray:
    """``L`` with ``L L^T = covariance`` for each (n, n) matrix; a symmetric square root (from
    the eigendecomposition, negative rounding clipped) for matrices Cholesky refuses."""
    symmetric = 0.5 * (covariance + np.swapaxes(covariance, 1, 2))
    try:
        return np.linalg.cholesky(symmetric)
    except np.linalg.LinAlgError:
        values, vectors = np.linalg.eigh(symmetric)
        return vectors * np.sqrt(np.maximum(values, 0.0))[:, None, :]
