"""Per-epoch metrics of a training run: rows kept as CSV and JSON (:class:`MetricsWriter`) and
plotted as loss/accuracy curves (:func:`plot_curves`)."""
from __future__ import annotations

import csv
import io
import json
import os
from typing import Any, Dict, List, Optional, Sequence

from ..evaluation.figures import new_figure, save_png
from ..files import PathLike, write_text_atomic


class MetricsWriter:
    """Per-epoch metric rows, kept in ``<stem>.csv`` and ``<stem>.json`` in ``directory``.

    Both files are rewritten (atomically) after every ``append``, so they are complete and
    readable at any point of a run. All rows must have the first row's keys.
    """

    def __init__(self, directory: PathLike, stem: str = 'metrics'):
        self.csv_path = os.path.join(directory, f'{stem}.csv')
        self.json_path = os.path.join(directory, f'{stem}.json')
        self.rows: List[Dict[str, Any]] = []

    def append(self, row: Dict[str, Any]) -> None:
        if self.rows and list(row) != list(self.rows[0]):
            raise ValueError(
                f'metrics row keys {list(row)} differ from the first row\'s {list(self.rows[0])}'
            )
        self.rows.append(dict(row))
        write_text_atomic(self.json_path, json.dumps(self.rows, indent=1) + '\n')
        write_text_atomic(self.csv_path, self._csv_text())

    def _csv_text(self) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(self.rows[0]), lineterminator='\n')
        writer.writeheader()
        writer.writerows(self.rows)
        return buffer.getvalue()


def plot_curves(
    rows: Sequence[Dict[str, Any]],
    path: PathLike,
    metrics: Sequence[str] = ('loss', 'accuracy'),
    x: str = 'epoch',
    title: Optional[str] = None,
) -> None:
    """One panel per metric in ``metrics``, each plotting every column named ``<split>_<metric>``
    (e.g. ``train_loss`` and ``val_loss``) against ``x``; saved as a PNG (Agg, no display)."""
    figure, axes = new_figure(5 * len(metrics), 4, panels=len(metrics))
    steps = [row[x] for row in rows]
    for ax, metric in zip(axes, metrics):
        for column in (key for key in rows[0] if key.endswith(f'_{metric}')):
            ax.plot(
                steps,
                [row[column] for row in rows],
                marker='.',
                label=column.removesuffix(f'_{metric}'),
            )
        ax.set(xlabel=x, ylabel=metric)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        figure.suptitle(title)
    save_png(figure, path)


def plot_comparison(runs: Dict[str, Sequence[Dict[str, Any]]], path: PathLike,
                    column: str = 'val_accuracy', x: str = 'epoch',
                    title: Optional[str] = None) -> None:
    """One line per run (name -> its metric rows) of ``column`` against ``x``, on one panel:
    several runs (cells, precisions) side by side; saved as a PNG."""
    figure, (ax,) = new_figure(7, 4.5)
    for name, rows in runs.items():
        ax.plot([row[x] for row in rows], [row[column] for row in rows], marker='.', label=name)
    ax.set(xlabel=x, ylabel=column.replace('_', ' '))
    ax.grid(alpha=0.3)
    ax.legend(fontsize='small')
    if title:
        ax.set_title(title)
    save_png(figure, path)
