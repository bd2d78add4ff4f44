"""Zoom out, which needs the engine: the picture decoded, scaled down and turned back into
tokens by the dVAE encoder (`generator.contract.canvas` has the edits of the canvas that need
nothing but the tokens)."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from generator.contract.canvas import zoom_box
from generator.contract.edits import TokenGrid
from generator.contract.settings import DrawSettings
from generator.method.engine import Engine
from generator.method.pictures import picture_tokens


@torch.no_grad()
def zoomed(engine: Engine, grid: TokenGrid, factor: float) -> tuple[TokenGrid, tuple[bool, ...]]:
    """The picture of `grid` zoomed out by `factor`: decoded, scaled down (Lanczos) into the
    middle of a canvas of its size and turned back into tokens by the dVAE encoder, the one
    lossy step; and the mask of the border around it, which starts afresh."""
    left, top, right, bottom = zoom_box(grid.rows, grid.cols, factor)
    width, height = grid.size
    settings = DrawSettings(width=width, height=height, precision="fp32")
    tokens = torch.tensor(grid.tokens, device=engine.device).view(1, grid.rows, grid.cols)
    picture = engine.render(F.one_hot(tokens, grid.vocab).float(), settings)
    inner = (8 * (right - left), 8 * (bottom - top))
    small = picture.resize(inner, Image.Resampling.LANCZOS)
    array = torch.from_numpy(np.asarray(small, dtype=np.uint8).copy())  # (h, w, 3)
    pixels = array.permute(2, 0, 1)[None].to(engine.device).float() / 255
    middle = picture_tokens(engine.picture_encoder(), pixels)[0].tolist()  # (rows, cols)
    placed = list(grid.tokens)
    fresh = [True] * len(placed)
    for row in range(top, bottom):
        start = row * grid.cols
        placed[start + left : start + right] = middle[row - top]
        fresh[start + left : start + right] = [False] * (right - left)
    return dataclasses.replace(grid, tokens=tuple(placed)), tuple(fresh)
