"""Edits on the token grid, as the engine runs them (`generator.contract.edits` says what they
are).

A region edit keeps every token outside its region exactly: the decoder sees those cells as the
picture's own one-hot tokens at every step (not relaxed, no noise), so no gradient reaches
their logits and Adam never moves them, and the final picture's most likely token there is the
picture's. Its cutouts look mostly at the region and its surroundings: a share of them is cut
from a box around the region (widened by `CONTEXT` on each side), the rest from the whole
picture as in any drawing.

How far the decoder carries a change is `measured_reach`: the pixels farther than that from the
region are computed from unchanged tokens only, so they come out as they were.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from generator.contract.edits import EDITS, REGION_CUTOUT_SHARE, EditSpec, TokenGrid
from generator.contract.settings import Job
from generator.method.latent import decode

NOT_PULLED = -100  # an anchor target the pull back to the picture skips (cross-entropy's ignore)
CONTEXT = 0.25  # of the region's side, at least `MIN_CONTEXT` cells, around it for its cutouts
MIN_CONTEXT = 2


def edit_job(job: Job, grid: TokenGrid, edit: EditSpec, fresh: Sequence[bool] | None = None) -> Job:
    """`job` as the edit `edit` of the picture whose tokens are `grid` (for an edit of the
    canvas, the new canvas). A Vary starts from the tokens as firmly as its preset says, except
    its `fresh` share of cells (chosen by the job's seed), which start from random tokens; a
    region edit, and an edit of the canvas, keep every token outside the cells that start
    afresh (its region, or `fresh`: a zoom out's border). ValueError when the region is not a
    mask of the grid."""
    shape = (1, grid.rows, grid.cols)
    mask = edit.free(grid.rows, grid.cols) if fresh is None else tuple(fresh)
    if mask is not None:
        cells = torch.tensor(mask).view(shape)
    else:
        chance = torch.Generator().manual_seed(job.seed)
        cells = torch.rand(shape, generator=chance) < EDITS[edit.kind].fresh
    return dataclasses.replace(
        job,
        init_tokens=torch.tensor(grid.tokens).view(shape),
        fresh=cells,
        frozen=mask is not None,
        init_strength=EDITS[edit.kind].strength,
        edit=edit,
    )


@dataclass(frozen=True)
class Region:
    """A region edit's fixed parts, on the device: `free` (1, 1, h, w) where tokens may change,
    `kept` (1, V, h, w) the picture's one-hot tokens (the latent's channels-last layout),
    `focus` (2, 3) the affine map of the whole picture onto the box around the region, and
    how many of a step's cutouts are cut from that box."""

    free: torch.Tensor
    kept: torch.Tensor
    focus: torch.Tensor
    focused: int

    @classmethod
    def of(cls, tokens: torch.Tensor, free: torch.Tensor, vocab: int, cutouts: int) -> Region:
        """The region of `free` (1, h, w) bool around the kept `tokens` (1, h, w)."""
        kept = F.one_hot(tokens, vocab).float().permute(0, 3, 1, 2)  # (1, V, h, w), a view
        return cls(
            free=free[:, None],
            kept=kept,
            focus=focus_box(free[0]).to(tokens.device),
            focused=round(REGION_CUTOUT_SHARE * cutouts),
        )

    def hold(self, soft: torch.Tensor) -> torch.Tensor:
        """Soft tokens (1, V, h, w) with every cell outside the region the picture's own."""
        return torch.where(self.free, soft, self.kept)

    def cut(self, transforms: torch.Tensor) -> torch.Tensor:
        """A step's cutout maps (N, 2, 3), the first `focused` of them moved into the box."""
        inside = transforms[: self.focused]
        scale = self.focus[:, :2].diagonal()  # (2,): x and y
        moved = inside * scale[None, :, None]
        moved[:, :, 2] += self.focus[:, 2]
        return torch.cat([moved, transforms[self.focused :]])


def focus_box(free: torch.Tensor) -> torch.Tensor:
    """The affine map (2, 3) from the whole picture's coordinates ([-1, 1] on each axis) to a
    box around the cells where `free` (h, w) is True, widened by `CONTEXT` and kept inside
    the picture."""
    rows, cols = free.shape
    ys = free.any(dim=1).nonzero()[:, 0].tolist()
    xs = free.any(dim=0).nonzero()[:, 0].tolist()
    bounds = []
    for low, high, side in ((xs[0], xs[-1] + 1, cols), (ys[0], ys[-1] + 1, rows)):
        margin = max(MIN_CONTEXT, round(CONTEXT * (high - low)))
        start, end = max(0, low - margin), min(side, high + margin)
        bounds.append((start / side * 2 - 1, end / side * 2 - 1))
    (x0, x1), (y0, y1) = bounds
    return torch.tensor([[(x1 - x0) / 2, 0.0, (x0 + x1) / 2], [0.0, (y1 - y0) / 2, (y0 + y1) / 2]])


@torch.no_grad()
def measured_reach(
    decoder: Callable[..., torch.Tensor], vocab: int, device: torch.device, side: int = 48
) -> int:
    """How many pixels away from a token the decoder's output still changes when that token
    changes (the largest Chebyshev distance from the token's 8x8 square to a changed pixel):
    measured by decoding a random `side` x `side` grid with and without its middle token
    changed. ValueError when the change reaches the grid's edge (measure with a larger side)."""
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(vocab, (1, side, side), generator=generator)
    other = tokens.clone()
    middle = side // 2
    other[0, middle, middle] = (tokens[0, middle, middle] + 1) % vocab
    pair = torch.cat([tokens, other]).to(device)
    pixels = decode(decoder, F.one_hot(pair, vocab).float().permute(0, 3, 1, 2))
    changed = (pixels[0] != pixels[1]).any(dim=0).nonzero()  # (K, 2): y, x
    if not len(changed):
        return 0
    low, high = 8 * middle, 8 * middle + 7  # the token's own pixels
    below = (low - changed).clamp(min=0)
    above = (changed - high).clamp(min=0)
    reach = int(torch.maximum(below, above).max())
    if reach >= low:
        raise ValueError(f"the change reaches the edge of a {side}x{side} grid: use a larger one")
    return reach
