"""Off-screen matplotlib figures (Agg, no pyplot global state) saved as PNG atomically; for
the evaluation and training plots, never for a node."""
from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..files import atomic_path, PathLike


def new_figure(width: float, height: float, panels: int = 1):
    """A ``width`` x ``height`` inch figure and its row of ``panels`` axes."""
    figure = Figure(figsize=(width, height), layout='constrained')
    FigureCanvasAgg(figure)                   # render off-screen; no pyplot global state
    return figure, figure.subplots(1, panels, squeeze=False)[0]


def save_png(figure: Figure, path: PathLike) -> None:
    """Write ``figure`` to ``path`` as a PNG, atomically."""
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format='png', dpi=100)
