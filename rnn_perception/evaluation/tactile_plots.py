"""Pictures of a tactile evaluation: predicted vs true future angles (PNG)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..files import PathLike
from ..models.tactile import ANGLE
from .figures import new_figure, save_png
from .tactile_metrics import constant_velocity, EpisodePrediction


def plot_trajectories(predictions: Sequence[EpisodePrediction], path: PathLike, episodes: int = 4,
                      every_s: float = 0.25) -> None:
    """Predicted vs true futures of the angle: for the first ``episodes`` episodes, the true
    angle over time (black) and, every ``every_s``, the model's 20-step prediction (red) beside
    constant-velocity extrapolation (blue, dotted)."""
    chosen = list(predictions[:episodes])
    figure, axes = new_figure(6 * len(chosen), 4, panels=len(chosen))
    for ax, prediction in zip(axes, chosen):
        stamps, poses = prediction.stamps_s, prediction.poses
        horizon = prediction.predicted.shape[1]
        period = float(np.median(np.diff(stamps))) if len(stamps) > 1 else 1.0
        baseline = constant_velocity(poses, horizon)
        ax.plot(stamps, np.degrees(poses[:, ANGLE]), color='black', linewidth=1.2, label='true')
        stride = max(1, round(every_s / period))
        for t in range(0, len(stamps), stride):
            future = stamps[t] + period * np.arange(1, horizon + 1)
            ax.plot(
                future,
                np.degrees(prediction.predicted[t, :, ANGLE]),
                color='red',
                linewidth=1,
                label='model' if t == 0 else None,
            )
            ax.plot(
                future,
                np.degrees(baseline[t, :, ANGLE]),
                color='tab:blue',
                linestyle=':',
                linewidth=1,
                label='const velocity' if t == 0 else None,
            )
        ax.set(xlabel='time (s)', ylabel='angle (deg)', title=f'episode {prediction.episode}')
        ax.grid(alpha=0.3)
        ax.legend(loc='best', fontsize='small')
    save_png(figure, path)
