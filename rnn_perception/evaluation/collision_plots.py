"""Pictures of a collision evaluation: the episode ROC, probability traces and cumulative
lead-time curves (PNG)."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from ..files import PathLike
from .collision_metrics import EpisodeTrace
from .figures import new_figure, save_png

LEAD_CURVE_POINTS = 200      # lead times at which each cumulative curve is drawn
LEAD_AXIS_MIN_S = 0.5        # the lead-time axis spans at least this much


def plot_roc(traces: Sequence[EpisodeTrace], path: PathLike, title: str = 'episode ROC') -> None:
    """ROC curve of the episode scores (an empty panel with a note if one class is missing)."""
    figure, (ax,) = new_figure(4.5, 4.5)
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
    save_png(figure, path)


def plot_traces(
    traces: Sequence[EpisodeTrace], path: PathLike, threshold: float, per_class: int = 8
) -> None:
    """Probability over time for the first ``per_class`` hits (against time to contact) and
    misses (against time since the throw), with the threshold."""
    figure, (hit_ax, miss_ax) = new_figure(10, 4, panels=2)
    for trace in [trace for trace in traces if trace.hit][:per_class]:
        hit_ax.plot(
            trace.stamps_s - trace.contact_time_s, trace.probabilities, marker='.', markersize=3
        )
    for trace in [trace for trace in traces if not trace.hit][:per_class]:
        miss_ax.plot(trace.stamps_s, trace.probabilities, marker='.', markersize=3)
    hit_ax.axvline(0.0, color='black', linewidth=0.8)
    hit_ax.set(xlabel='time relative to contact (s)', title=f'hits (first {per_class})')
    miss_ax.set(xlabel='time since the throw (s)', title=f'misses (first {per_class})')
    for ax in (hit_ax, miss_ax):
        ax.axhline(threshold, color='red', linestyle='--', linewidth=0.8)
        ax.set(ylabel='P(hit)', ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
    save_png(figure, path)


def plot_lead_time_curves(curves: Mapping[str, np.ndarray], path: PathLike,
                          title: str = 'warnings before contact') -> None:
    """One cumulative lead-time curve per method: the share of hits warned at least ``x``
    seconds before contact, from each method's lead times (``nan``: warned too late or never,
    as :func:`~.collision_metrics.lead_times_s` gives them), with each median marked."""
    figure, (ax,) = new_figure(6.5, 4.5)
    longest = max([float(np.nanmax(leads)) for leads in curves.values()
                   if np.isfinite(leads).any()] + [LEAD_AXIS_MIN_S])
    grid = np.linspace(0.0, longest * 1.05, LEAD_CURVE_POINTS)
    for name, leads in curves.items():
        warned = np.where(np.isfinite(leads), leads, -np.inf)
        share = (warned[None, :] >= grid[:, None]).mean(axis=1) if leads.size else grid * 0
        line, = ax.plot(grid, share, label=name)
        if np.isfinite(leads).any():
            ax.axvline(float(np.nanmedian(leads)), color=line.get_color(), linestyle=':',
                       linewidth=0.8)
    ax.set(xlabel='lead time: warning before contact (s)',
           ylabel='share of hits warned at least this early', ylim=(-0.02, 1.02), title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc='lower left', fontsize='small')
    save_png(figure, path)
