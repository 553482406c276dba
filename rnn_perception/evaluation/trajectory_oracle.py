"""The physical limit of collision prediction: an oracle that is given the ball's true positions.

At each frame the oracle knows where the thrown ball's centre was at every earlier frame at
which the camera could see it (the simulator's ground truth, ``ball_position``), plus Gaussian
noise of :data:`ORACLE_NOISE_M` per axis, about what a good stereo or depth camera measures for
a ball a few metres away. It also knows gravity, the ball's radius and the robot's collision
volume. It fits the drag-free ballistic flight to what it has seen
(:func:`~.ballistics.fit_trajectories`) and says how many of the trajectories its fit allows
hit the robot (:func:`~.ballistics.hit_probabilities`). No predictor that sees the same frames
can know more: what it cannot decide from them, physics had not yet decided in any way a camera
could observe. Its traces are ordinary :class:`~.collision_metrics.EpisodeTrace` objects, so it
is scored exactly as the model is.

What it ignores: a ball that bounces off the randomised scenes' clutter before reaching the
robot (a few in a thousand throws), and the second, distractor ball (it is told which ball is
the thrown one).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, List

import numpy as np

from ..data.dodgeball_dataset import DodgeballEpisode
from .ballistics import fit_trajectories, hit_probabilities
from .collision_metrics import dataset_trace, EpisodeTrace
from .dodgeball_scene import DodgeballScene

ORACLE_NOISE_M = 0.01         # per axis: a depth camera's error at a few metres is cm-level
POSTERIOR_SAMPLES = 256       # trajectories drawn per frame: P(hit) to within about +-0.03
SMALLEST_NOISE_M = 1e-6       # a noise-free oracle still needs an invertible covariance


@dataclass(frozen=True)
class OracleSettings:
    """How much the oracle knows: its position noise, how many trajectories it draws per
    frame, the seed of its noise and draws, and whether it only sees the ball where the
    nominal camera does."""

    noise_m: float = ORACLE_NOISE_M
    samples: int = POSTERIOR_SAMPLES
    seed: int = 0
    in_view_only: bool = True


def oracle_probabilities(episode: DodgeballEpisode, scene: DodgeballScene,
                         settings: OracleSettings = OracleSettings()) -> np.ndarray:
    """The oracle's P(hit) at each frame of ``episode``; the same for the same settings (its
    random stream is the seed's and the episode index's)."""
    rng = np.random.default_rng((settings.seed, episode.index))
    truth = np.asarray(episode.ball_position, dtype=float)
    observed = (scene.camera.sees(truth) if settings.in_view_only
                else np.ones(len(truth), dtype=bool))
    seen = truth + rng.normal(scale=settings.noise_m, size=truth.shape)
    covariance = np.broadcast_to(np.eye(3) * max(settings.noise_m, SMALLEST_NOISE_M) ** 2,
                                 (len(truth), 3, 3))
    posteriors = fit_trajectories(episode.stamp_s, seen, covariance, observed,
                                  scene.gravity_mps2)
    return hit_probabilities(posteriors, scene.robot, scene.gravity_mps2,
                             float(episode.ball_radius_m), rng, settings.samples)


def oracle_traces(episodes: Iterable[DodgeballEpisode], scene: DodgeballScene,
                  settings: OracleSettings = OracleSettings()) -> List[EpisodeTrace]:
    """The oracle's traces of ``episodes``, to score with
    :func:`~.collision_metrics.collision_metrics`."""
    return [dataset_trace(episode, oracle_probabilities(episode, scene, settings))
            for episode in episodes]
