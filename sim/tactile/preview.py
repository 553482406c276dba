"""A preview PNG: tactile channels and the angle over time for a few episodes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rnn_perception.data.tactile_dataset import (
    NUM_ELECTRODES, PAC_INDEX, PDC_INDEX, TactileDataset, TactileEpisode)


def pick_episodes(dataset: TactileDataset, per_label: int) -> list[TactileEpisode]:
    """The first ``per_label`` episodes that slipped, then the first ``per_label`` that held."""
    slipped, held = [], []
    for episode in dataset.episodes():
        chosen = slipped if episode.slipped else held
        if len(chosen) < per_label:
            chosen.append(episode)
        if len(slipped) == len(held) == per_label:
            break
    return slipped + held


def write_preview(dataset: TactileDataset, path: Path, *, per_label: int = 2) -> None:
    """Write a PNG: per episode (a column), electrodes, PDC, PAC and angle over time."""
    episodes = pick_episodes(dataset, per_label)
    figure = Figure(figsize=(4.0 * len(episodes), 8.0), dpi=90)
    FigureCanvasAgg(figure)
    axes = figure.subplots(4, len(episodes), squeeze=False, sharex='col')
    for column, episode in zip(axes.T, episodes):
        t, tactile = episode.stamp_s, episode.tactile
        electrodes = tactile[:, :NUM_ELECTRODES]
        column[0].plot(t, electrodes - electrodes[0], linewidth=0.6)
        column[0].set_title(f'ep {episode.index}: {"SLIP" if episode.slipped else "held"}',
                            fontsize=9)
        column[1].plot(t, tactile[:, PDC_INDEX], color='tab:blue')
        column[2].plot(t, tactile[:, PAC_INDEX], color='tab:red')
        column[3].plot(t, np.degrees(episode.angle_rad), color='black')
        slipping = episode.slipping
        for ax in column:
            ax.fill_between(t, 0, 1, where=slipping, transform=ax.get_xaxis_transform(),
                            color='orange', alpha=0.25, linewidth=0)
            ax.tick_params(labelsize=7)
        column[3].set_xlabel('time (s)', fontsize=8)
    for ax, label in zip(axes[:, 0], ('electrodes − first\n(counts)', 'PDC (counts)',
                                      'PAC (counts)', 'angle (deg)')):
        ax.set_ylabel(label, fontsize=8)
    figure.suptitle(f'tactile: {dataset.num_episodes} episodes, slip ratio '
                    f'{dataset.slip_ratio:.2f} (orange: slipping)')
    figure.tight_layout()
    figure.savefig(path, format='png')
