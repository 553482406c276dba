"""The collision node's debug picture: the ConvLSTM state as one mono8 mosaic
(``~/activations``)."""

from __future__ import annotations

from typing import List, Sequence

import numpy as np


MIN_MAP_CELL_PX = 16      # coarse maps (the default model's are 8x8) are scaled up to stay visible


def tile_maps(maps: np.ndarray, columns: int, cell: int) -> np.ndarray:
    """``(C, h, w)`` float maps in [-1, 1] -> one uint8 grid image, ``columns`` maps per row,
    each scaled (nearest) to ``cell`` x ``cell`` px, 1 px black gaps; 0 shows as mid grey."""
    count, height, width = maps.shape
    rows = -(-count // columns)
    grid = np.zeros((rows * (cell + 1) - 1, columns * (cell + 1) - 1), np.uint8)
    nearest_rows = np.arange(cell) * height // cell
    nearest_columns = np.arange(cell) * width // cell
    pixels = np.clip((maps + 1.0) * 127.5, 0, 255).astype(np.uint8)[:, nearest_rows][
        :, :, nearest_columns
    ]
    for index in range(count):
        top, left = (cell + 1) * np.array(divmod(index, columns))
        grid[top:top + cell, left:left + cell] = pixels[index]
    return grid


def activation_mosaic(state: Sequence[np.ndarray], columns: int = 8) -> np.ndarray:
    """The ConvLSTM state of the first batch item, as a step engine's ``state_arrays`` gives
    it (per layer ``h`` then ``c``, each ``(C, h, w)``), as one mono8 picture: the maps stacked
    top to bottom with 3 px gaps.

    ``h`` is already in [-1, 1]; each ``c`` (unbounded) is divided by its largest magnitude, so
    the picture shows where the memory is, not its absolute scale.
    """
    blocks: List[np.ndarray] = []
    cell = max(MIN_MAP_CELL_PX, *(int(maps.shape[-1]) for maps in state))
    for index, maps in enumerate(state):
        maps = np.asarray(maps, np.float32)
        if index % 2:                          # a cell map c
            maps = maps / max(float(np.abs(maps).max()), 1e-6)
        blocks.append(tile_maps(maps, columns, cell))
    width = max(block.shape[1] for block in blocks)
    gap = np.zeros((3, width), np.uint8)
    padded = [np.pad(block, ((0, 0), (0, width - block.shape[1]))) for block in blocks]
    return np.vstack([part for block in padded for part in (block, gap)][:-1])
