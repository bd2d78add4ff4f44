"""The edits of the canvas that need the engine: a zoom out and Upscale (Creative), whose tokens
come from the picture decoded, scaled (Lanczos) and turned back into tokens by the dVAE encoder,
the one lossy step (`generator.contract.canvas` has the edits that need nothing but the tokens).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from generator.contract.canvas import upscaled_grid, zoom_box
from generator.contract.edits import EditSpec, TokenGrid
from generator.contract.settings import DrawSettings
from generator.method.engine import Engine
from generator.method.pictures import picture_tokens


def encoded_canvas(
    engine: Engine, grid: TokenGrid, edit: EditSpec, tile: str = ""
) -> tuple[TokenGrid, tuple[bool, ...] | None]:
    """What the edit `edit` of `grid` starts from, where its tokens come from the encoder: a
    zoom out's canvas and the mask of its border (`zoomed`), Upscale (Creative)'s grid
    (`upscaled`, no mask: every token is held as firmly as its preset says). Any other edit:
    `grid` as it is."""
    if edit.kind == "zoom" and edit.factor is not None:
        return zoomed(engine, grid, edit.factor, tile)
    if edit.kind == "upscale":
        return upscaled(engine, grid, tile), None
    return grid, None


@torch.no_grad()
def zoomed(
    engine: Engine, grid: TokenGrid, factor: float, tile: str = ""
) -> tuple[TokenGrid, tuple[bool, ...]]:
    """The picture of `grid` zoomed out by `factor`: decoded, scaled down into the middle of a
    canvas of its size and turned back into tokens by the encoder; and the mask of the border
    around it, which starts afresh."""
    left, top, right, bottom = zoom_box(grid.rows, grid.cols, factor)
    small = _picture(engine, grid, tile).resize(
        (8 * (right - left), 8 * (bottom - top)), Image.Resampling.LANCZOS
    )
    middle = _tokens(engine, small)  # (bottom - top) rows of (right - left) tokens
    placed = list(grid.tokens)
    fresh = [True] * len(placed)
    for row in range(top, bottom):
        start = row * grid.cols
        placed[start + left : start + right] = middle[row - top]
        fresh[start + left : start + right] = [False] * (right - left)
    return dataclasses.replace(grid, tokens=tuple(placed)), tuple(fresh)


@torch.no_grad()
def upscaled(engine: Engine, grid: TokenGrid, tile: str = "") -> TokenGrid:
    """The grid of `grid`'s picture at twice its size: decoded, scaled up and turned back into
    tokens by the encoder. MemberError when it would grow past the largest side."""
    rows, cols = upscaled_grid(grid.rows, grid.cols)
    bigger = _picture(engine, grid, tile).resize((8 * cols, 8 * rows), Image.Resampling.LANCZOS)
    tokens = tuple(token for row in _tokens(engine, bigger) for token in row)
    return TokenGrid(rows, cols, grid.vocab, grid.decoder_sha256, tokens)


def _picture(engine: Engine, grid: TokenGrid, tile: str) -> Image.Image:
    """The picture `grid` decodes to, as it was drawn (in fp32, wrapping where it tiles)."""
    width, height = grid.size
    settings = DrawSettings(width=width, height=height, precision="fp32", tile=tile)
    tokens = torch.tensor(grid.tokens, device=engine.device).view(1, grid.rows, grid.cols)
    return engine.render(F.one_hot(tokens, grid.vocab).float(), settings)


def _tokens(engine: Engine, picture: Image.Image) -> list[list[int]]:
    """The encoder's tokens of `picture`, row by row."""
    array = torch.from_numpy(np.asarray(picture, dtype=np.uint8).copy())  # (H, W, 3)
    pixels = array.permute(2, 0, 1)[None].to(engine.device).float() / 255  # (1, 3, H, W)
    tokens: list[list[int]] = picture_tokens(engine.picture_encoder(), pixels)[0].tolist()
    return tokens
