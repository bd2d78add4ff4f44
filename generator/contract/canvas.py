"""Edits of the canvas, on the token grid: a pan grows it by half on one side, Make Square to its
long side, each keeping every old token verbatim; a zoom out puts the picture, scaled, in the
middle of a canvas of its size (`zoom_box`: where), and Upscale (Creative) doubles it
(`upscaled_grid`: to what; `generator.method.canvas` makes the tokens of both). Each gives the
new grid and the mask of the cells that start afresh.

May import the standard library and `generator.contract`; the bot reads it too.
"""

from __future__ import annotations

from generator.contract.edits import UPSCALE_FACTOR, PanDirection, TokenGrid
from generator.contract.errors import MemberError
from generator.contract.reasons import EDIT_CANVAS_TOO_BIG
from generator.contract.settings import MAX_SIDE


def panned(grid: TokenGrid, direction: PanDirection) -> tuple[TokenGrid, tuple[bool, ...]]:
    """The canvas grown by half on one side, the old tokens copied into it verbatim, and the
    mask of the new strip (its tokens, 0 here, start afresh)."""
    grow_x = direction in ("left", "right")
    strip = max(1, (grid.cols if grow_x else grid.rows) // 2)
    rows, cols = (grid.rows, grid.cols + strip) if grow_x else (grid.rows + strip, grid.cols)
    left = strip if direction == "left" else 0
    top = strip if direction == "up" else 0
    return _placed(grid, rows, cols, left, top)


def squared(grid: TokenGrid) -> tuple[TokenGrid, tuple[bool, ...]]:
    """A non-square picture in the middle of a square canvas of its long side, its tokens
    verbatim, and the mask of the new borders."""
    side = max(grid.rows, grid.cols)
    return _placed(grid, side, side, (side - grid.cols) // 2, (side - grid.rows) // 2)


def zoom_box(rows: int, cols: int, factor: float) -> tuple[int, int, int, int]:
    """Where a picture of `rows` x `cols` cells zoomed out by `factor` goes in a canvas of its
    size: the middle box (column 0, row 0, column 1, row 1; the ends excluded), whole cells."""
    inner_cols, inner_rows = max(1, round(cols / factor)), max(1, round(rows / factor))
    left, top = (cols - inner_cols) // 2, (rows - inner_rows) // 2
    return left, top, left + inner_cols, top + inner_rows


def upscaled_grid(rows: int, cols: int) -> tuple[int, int]:
    """The rows and columns of a picture of `rows` x `cols` cells upscaled; MemberError when it
    would grow past the largest side."""
    rows, cols = UPSCALE_FACTOR * rows, UPSCALE_FACTOR * cols
    _check_side(rows, cols)
    return rows, cols


def _check_side(rows: int, cols: int) -> None:
    if max(rows, cols) * 8 > MAX_SIDE:
        raise MemberError(EDIT_CANVAS_TOO_BIG, width=8 * cols, height=8 * rows, most=MAX_SIDE)


def _placed(
    grid: TokenGrid, rows: int, cols: int, left: int, top: int
) -> tuple[TokenGrid, tuple[bool, ...]]:
    _check_side(rows, cols)
    tokens = [0] * (rows * cols)
    fresh = [True] * (rows * cols)
    for row in range(grid.rows):
        start = (top + row) * cols + left
        tokens[start : start + grid.cols] = grid.tokens[row * grid.cols : (row + 1) * grid.cols]
        fresh[start : start + grid.cols] = [False] * grid.cols
    placed = TokenGrid(rows, cols, grid.vocab, grid.decoder_sha256, tuple(tokens))
    return placed, tuple(fresh)
