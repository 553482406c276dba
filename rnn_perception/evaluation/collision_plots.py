"""Pictures of a collision evaluation: the episode ROC and probability traces (PNG)."""
from __future__ import annotations

from typing import Sequence

from sklearn.metrics import roc_auc_score, roc_curve

from ..files import PathLike
from .collision_metrics import EpisodeTrace
from .figures import new_figure, save_png


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
