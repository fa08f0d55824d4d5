"""Whether the explanation points at the edit: its most suspicious cell against the mask,
and for a video, its top segment against the edited interval.

The explanation's grid divides the image evenly into rows and columns, row-major from the
top-left (``inference/explanation.py``); cell (row, col) covers the pixels
``overlay.cell_box`` gives, the rectangle the PNG overlay draws. The most suspicious cell
is the one with the highest fake probability (the first in row-major order on a tie). It
touches the edit when its rectangle holds at least one pixel of the edit's mask: a cell
is a sample of its area, so "touches" asks only that the region it names was edited.

A video's segments are intervals of time (``video.aggregate``): the top one is at the edit
when it overlaps the edited interval, and how well is their intersection over union.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from veracity.overlay import cell_box

Grid = Sequence[Sequence[float]]


def most_suspicious_cell(grid: Grid) -> tuple[int, int]:
    """(row, col) of the highest probability; the first in row-major order on a tie."""
    values = np.asarray(grid, dtype=np.float64)
    if values.ndim != 2 or values.size == 0:
        raise ValueError("the grid must be a non-empty rectangle of rows")
    row, col = divmod(int(np.argmax(values)), values.shape[1])
    return row, col


def cell_touches(
    mask: npt.NDArray[np.bool_], cell: tuple[int, int], shape: tuple[int, int]
) -> bool:
    """Whether cell ``cell`` of a ``shape`` = (rows, cols) grid over ``mask``'s image holds
    a marked pixel."""
    height, width = mask.shape
    rows, cols = shape
    left, top, right, bottom = cell_box(cell[0], cell[1], rows, cols, width, height)
    return bool(mask[top:bottom, left:right].any())


def touching_share(mask: npt.NDArray[np.bool_], shape: tuple[int, int]) -> float:
    """The share of a ``shape`` grid's cells that hold a marked pixel: how often a cell
    drawn at random would touch the edit, the chance level of the top cell's score."""
    rows, cols = shape
    touched = sum(cell_touches(mask, (r, c), shape) for r in range(rows) for c in range(cols))
    return touched / (rows * cols)


def top_cell_touches(grid: Grid, mask: npt.NDArray[np.bool_]) -> tuple[tuple[int, int], bool]:
    """The most suspicious cell of ``grid`` and whether it touches ``mask``."""
    cell = most_suspicious_cell(grid)
    return cell, cell_touches(mask, cell, (len(grid), len(grid[0])))


def interval_overlap(segment: tuple[float, float], edit: tuple[float, float]) -> tuple[bool, float]:
    """Whether ``segment`` = (start, end) overlaps ``edit`` for a positive time, and their
    intersection over union (0 when they only meet or are apart).

    Raises:
        ValueError: an interval ends before it starts.
    """
    (a0, a1), (b0, b1) = segment, edit
    if a1 < a0 or b1 < b0:
        raise ValueError(f"an interval ends before it starts: {segment}, {edit}")
    inter = max(0.0, min(a1, b1) - max(a0, b0))
    union = (a1 - a0) + (b1 - b0) - inter
    return inter > 0, inter / union if union > 0 else 0.0
