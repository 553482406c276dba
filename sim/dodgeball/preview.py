"""A contact sheet: a PNG grid of sample frames, hits and misses, time to contact on each."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rnn_perception.data.dodgeball_dataset import DodgeballDataset, DodgeballEpisode


def pick_episodes(dataset: DodgeballDataset, per_label: int) -> list[DodgeballEpisode]:
    """The first ``per_label`` hit episodes, then the first ``per_label`` misses."""
    hits, misses = [], []
    for episode in dataset.episodes():
        chosen = hits if episode.hit else misses
        if len(chosen) < per_label:
            chosen.append(episode)
        if len(hits) == len(misses) == per_label:
            break
    return hits + misses


def time_to_contact_caption(time_to_contact_s: float) -> str:
    """'ttc 0.43 s' before contact, 'hit +0.10 s' after it, 'no contact' for a miss."""
    if math.isinf(time_to_contact_s):
        return 'no contact'
    if time_to_contact_s >= 0:
        return f'ttc {time_to_contact_s:.2f} s'
    return f'hit +{-time_to_contact_s:.2f} s'


def write_contact_sheet(dataset: DodgeballDataset, path: Path, *, per_label: int = 3,
                        frames_per_episode: int = 6) -> None:
    """Write a PNG: one row per episode (hits first), frames spread over each episode."""
    episodes = pick_episodes(dataset, per_label)
    figure = Figure(figsize=(1.6 * frames_per_episode, 1.8 * len(episodes)), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(episodes), frames_per_episode, squeeze=False)
    for row, episode in zip(axes, episodes):
        frame_numbers = np.linspace(0, episode.num_frames - 1, frames_per_episode).round()
        for column, (ax, frame) in enumerate(zip(row, frame_numbers.astype(int))):
            ax.imshow(episode.frames[frame], interpolation='nearest')
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f'frame {frame}', fontsize=7)
            ax.text(0.5, 0.03, time_to_contact_caption(episode.time_to_contact_s[frame]),
                    transform=ax.transAxes, ha='center', va='bottom', fontsize=7,
                    bbox={'facecolor': 'white', 'alpha': 0.8, 'pad': 1, 'linewidth': 0})
            if column == 0:
                ax.set_ylabel(f'{"HIT" if episode.hit else "miss"} ep {episode.index}', fontsize=8)
    figure.suptitle(
        f'dodgeball: {dataset.num_episodes} episodes, hit ratio {dataset.hit_ratio:.2f}')
    figure.tight_layout()
    figure.savefig(path, format='png')
