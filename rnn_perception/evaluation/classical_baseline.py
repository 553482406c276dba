"""The classical collision predictor a roboticist would try first: find the ball in each frame,
guess its depth from its apparent size, fit a ballistic flight, and ask whether it hits.

Per frame ``t``, from frames ``0..t`` only:

1. :func:`~.ball_detector.track_balls` finds every moving ball's image centre and apparent
   radius, one track per ball (the thrown ball, a distractor, a background ghost);
2. the centre's ray through the calibrated camera (the dataset's nominal ``camera_info``: the
   robot's calibration, which does not know a randomised scene's camera jitter) and the distance
   at which a ball of the nominal radius (the middle of the thrown sizes) looks that big give a
   3-D position. Its noise is :data:`CENTRE_NOISE_PX` across the ray and, along it, what
   :data:`RADIUS_NOISE_PX` of apparent radius makes of the distance;
3. :func:`~.ballistics.fit_trajectories` fits the flight, with the depth scale (true ball radius
   over nominal) as an unknown whose prior spreads over the thrown sizes;
4. :func:`~.ballistics.hit_probabilities` draws trajectories (and ball sizes) from the fit and
   counts those that touch the robot;
5. P(hit) is the largest over the tracks of at least :data:`MIN_TRACK_DETECTIONS` detections (a
   robot dodges whichever ball comes at it), :data:`~.ballistics.UNINFORMED_PROBABILITY` before
   there is one.

:func:`perfect_detections` stands in for the detector with the ball's true image centre and
apparent size: the same geometry without the detector's misses, ghosts, confusions and pixel
counting, to tell the two apart.

No learning and no tuning on test throws: the only number taken from data is
:data:`APPARENT_RADIUS_BIAS`, the detector's over-estimate of small rasterised discs, measured on
throws of a seed used for nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, List

import numpy as np

from ..data.dodgeball_dataset import DodgeballEpisode
from .ball_detector import BallDetections, track_balls
from .ballistics import fit_trajectories, hit_probabilities, UNINFORMED_PROBABILITY
from .collision_metrics import dataset_trace, EpisodeTrace
from .dodgeball_scene import DodgeballScene
from .trajectory_oracle import POSTERIOR_SAMPLES

CENTRE_NOISE_PX = 0.5          # a blob's centre: within about half a pixel
RADIUS_NOISE_PX = 0.35         # a blob's sqrt(area / pi): area is counted in whole pixels
SMALLEST_RADIUS_PX = 0.5       # a one-pixel blob says "no bigger than a pixel", not "0.56 px"
MIN_TRACK_DETECTIONS = 3       # a track of fewer is too short to say anything
# sqrt(area / pi) over the true apparent radius, median over 1,600 detections of 100 plain
# throws of seed 99 (1.18; 1.37 for balls under half a pixel, 1.10 for those over 2 pixels)
APPARENT_RADIUS_BIAS = 1.18


@dataclass(frozen=True)
class BaselineSettings:
    """How many trajectories the baseline draws per frame, the seed of the draws, and whether
    it is given :func:`perfect_detections` instead of its detector's."""

    samples: int = POSTERIOR_SAMPLES
    seed: int = 0
    perfect_detection: bool = False


def ball_positions(detections: BallDetections, scene: DodgeballScene):
    """Camera-relative positions (T, 3) of a ball of the nominal radius where it was detected,
    and their covariances (T, 3, 3); ``nan`` where it was not."""
    camera = scene.camera
    nominal_radius = float(np.mean(scene.ball_radius_range_m))
    radius_px = np.maximum(detections.radius_px / APPARENT_RADIUS_BIAS, SMALLEST_RADIUS_PX)
    distance = camera.focal_px * nominal_radius / radius_px
    rays = camera.rays(np.nan_to_num(detections.pixels))
    across = distance * CENTRE_NOISE_PX / camera.focal_px
    along = distance * RADIUS_NOISE_PX / radius_px
    outer = rays[:, :, None] * rays[:, None, :]
    covariance = (across[:, None, None] ** 2 * (np.eye(3) - outer)
                  + along[:, None, None] ** 2 * outer)
    return distance[:, None] * rays, covariance


def perfect_detections(episode: DodgeballEpisode, scene: DodgeballScene) -> BallDetections:
    """The thrown ball's true image centre and apparent radius (as the detector would measure
    it, :data:`APPARENT_RADIUS_BIAS` included) wherever the camera sees it, without noise."""
    camera = scene.camera
    truth = np.asarray(episode.ball_position, dtype=float)
    seen = camera.sees(truth)
    distance = np.linalg.norm(truth - camera.position_m, axis=1)
    radius = camera.focal_px * episode.ball_radius_m / distance * APPARENT_RADIUS_BIAS
    return BallDetections(seen, np.where(seen[:, None], camera.project(truth), np.nan),
                          np.where(seen, radius, np.nan))


def track_probabilities(detections: BallDetections, stamps_s: np.ndarray, scene: DodgeballScene,
                        rng: np.random.Generator, samples: int) -> np.ndarray:
    """P(hit) per frame of the ball one track follows."""
    positions, covariance = ball_positions(detections, scene)
    low, high = scene.ball_radius_range_m
    nominal_radius = 0.5 * (low + high)
    # a uniform spread of ball sizes, as a Gaussian of the same standard deviation
    scale_sigma = (high - low) / np.sqrt(12.0) / nominal_radius
    posteriors = fit_trajectories(stamps_s, positions, covariance, detections.found,
                                  scene.gravity_mps2, origin_m=scene.camera.position_m,
                                  scale_prior_sigma=scale_sigma)
    return hit_probabilities(posteriors, scene.robot, scene.gravity_mps2, nominal_radius, rng,
                             samples)


def baseline_probabilities(episode: DodgeballEpisode, scene: DodgeballScene,
                           settings: BaselineSettings = BaselineSettings()) -> np.ndarray:
    """The baseline's P(hit) at each frame of ``episode``, from its frames alone (or from
    :func:`perfect_detections`); the same for the same settings."""
    rng = np.random.default_rng((settings.seed, episode.index))
    tracks = ([perfect_detections(episode, scene)] if settings.perfect_detection
              else track_balls(episode.frames))
    probabilities = np.full(episode.num_frames, -np.inf)
    for track in tracks:
        long_enough = np.cumsum(track.found) >= MIN_TRACK_DETECTIONS
        if long_enough.any():
            track_p = track_probabilities(track, episode.stamp_s, scene, rng, settings.samples)
            probabilities = np.where(long_enough, np.maximum(probabilities, track_p),
                                     probabilities)
    return np.where(np.isfinite(probabilities), probabilities, UNINFORMED_PROBABILITY)


def baseline_traces(episodes: Iterable[DodgeballEpisode], scene: DodgeballScene,
                    settings: BaselineSettings = BaselineSettings()) -> List[EpisodeTrace]:
    """The baseline's traces of ``episodes``, to score with
    :func:`~.collision_metrics.collision_metrics`."""
    return [dataset_trace(episode, baseline_probabilities(episode, scene, settings))
            for episode in episodes]
