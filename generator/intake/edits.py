"""Reading a picture to edit: the token grid and prompt a pseudo-dalle PNG carries.

The file is as hostile as any other (`generator.intake.images`): its size and pixels are checked
before it is decoded, only the PNG decoder reads it, and its text chunks are read within limits
(Pillow's are lowered here). Nothing but the grid and the prompt is kept; the pixels are
decoded only to make sure the file is whole and the grid fits it. Upscale (Subtle), which needs
no grid, reads a picture as any other given (`upscaled_subtly`).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from generator.contract.edits import MAX_TOKENS_TEXT, UPSCALE_FACTOR, TokenGrid, grid_of
from generator.contract.errors import MemberError
from generator.contract.images import MAX_INPUT_BYTES
from generator.contract.reasons import (
    EDIT_NO_TOKENS,
    EDIT_PICTURE_SIZE,
    PICTURE_DAMAGED,
)
from generator.contract.settings import TILES
from generator.intake.images import check_pixels, check_size, reencode, sha256, too_many_pixels

# A text chunk larger than a token grid can be is not read (Pillow's defaults: 1 MB a chunk,
# 64 MB in all).
PngImagePlugin.MAX_TEXT_CHUNK = 2 * MAX_TOKENS_TEXT
PngImagePlugin.MAX_TEXT_MEMORY = 8 * MAX_TOKENS_TEXT


@dataclass(frozen=True)
class EditSource:
    """A picture to edit: its token grid, the prompt it was drawn with ("" when it says none),
    the axes it tiles along ("" for none: an edit of a tile stays one) and the SHA-256 of the
    file as given."""

    grid: TokenGrid
    prompt: str
    tile: str
    sha256: str


def edit_source(data: bytes) -> EditSource:
    """The grid and prompt of a PNG pseudo-dalle wrote. MemberError saying why for a file that
    is too big, not a PNG or carries no grid (`EDIT_NO_TOKENS`), a damaged grid, or a grid that
    does not fit the picture (it was scaled or cropped since)."""
    check_size(len(data))
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            check_pixels(*image.size)
            image.load()
            size = image.size
            chunks = {
                k: v for k, v in image.info.items() if isinstance(k, str) and isinstance(v, str)
            }
    except MemberError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        too_many_pixels()
    except UnidentifiedImageError:
        raise MemberError(EDIT_NO_TOKENS) from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise MemberError(PICTURE_DAMAGED) from None
    grid = grid_of(chunks)
    if grid.size != size:
        width, height = grid.size
        raise MemberError(
            EDIT_PICTURE_SIZE, width=size[0], height=size[1], grid=f"{width}x{height}"
        )
    return EditSource(
        grid=grid, prompt=chunks.get("prompt", ""), tile=_tile(chunks), sha256=sha256(data)
    )


def _tile(chunks: dict[str, str]) -> str:
    """The axes the settings chunk says the picture tiles along; "" when it says nothing
    usable."""
    try:
        settings = json.loads(chunks.get("settings", "{}"))
    except ValueError:
        return ""
    tile = settings.get("tile", "") if isinstance(settings, dict) else ""
    return tile if tile in TILES else ""


def edit_source_file(path: Path) -> EditSource:
    """`edit_source` of a local file, read within the size limit; OSError when unreadable."""
    check_size(path.stat().st_size)
    with path.open("rb") as handle:
        return edit_source(handle.read(MAX_INPUT_BYTES + 1))


def upscaled_subtly(data: bytes) -> Image.Image:
    """Upscale (Subtle) of the picture in `data`: read as any picture given (`reencode`: within
    the limits, a copy made by the allowed decoders), at twice its size with Pillow's Lanczos
    filter. ImageInputError for anything that is not a picture within the limits."""
    with Image.open(io.BytesIO(reencode(data)), formats=["PNG"]) as copy:
        picture = copy.convert("RGB")
    size = (UPSCALE_FACTOR * picture.width, UPSCALE_FACTOR * picture.height)
    return picture.resize(size, Image.Resampling.LANCZOS)
