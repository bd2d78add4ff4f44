"""Reading an untrusted picture: declared limits first, then a restricted decode, then a copy.

Pillow's decompression-bomb limit is lowered to `MAX_INPUT_PIXELS` for this process and its
warning becomes an error, so a header that claims more pixels is refused before any pixel is
decoded; the size is checked again from the opened header in case the filter is changed.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path
from typing import NoReturn

from PIL import Image, ImageOps, UnidentifiedImageError

from generator.contract.errors import ImageInputError
from generator.contract.images import (
    DEFAULT_IMAGE_WEIGHT,
    INPUT_FORMATS,
    MAX_INPUT_BYTES,
    MAX_INPUT_PIXELS,
    MAX_INPUT_SIDE,
    ImageInput,
)
from generator.contract.reasons import (
    NOT_A_PICTURE,
    PICTURE_DAMAGED,
    PICTURE_TOO_BIG,
    PICTURE_TOO_MANY_PIXELS,
    PICTURE_TYPE,
)

Image.MAX_IMAGE_PIXELS = MAX_INPUT_PIXELS
warnings.simplefilter("error", Image.DecompressionBombWarning)


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f}".rstrip("0").rstrip(".")


def check_size(size: int) -> None:
    if size > MAX_INPUT_BYTES:
        raise ImageInputError(PICTURE_TOO_BIG, size=_mib(size), limit=_mib(MAX_INPUT_BYTES))


def check_pixels(width: int, height: int) -> None:
    if width * height > MAX_INPUT_PIXELS:
        too_many_pixels()


def too_many_pixels() -> NoReturn:
    raise ImageInputError(PICTURE_TOO_MANY_PIXELS, limit=f"{MAX_INPUT_PIXELS / 1e6:g}")


def check_declared(
    size: int, content_type: str | None, width: int | None, height: int | None
) -> None:
    """What an upload says of itself, before a byte of it is fetched."""
    check_size(size)
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind not in INPUT_FORMATS.values():
        raise ImageInputError(PICTURE_TYPE, kind=kind or "unknown")
    if width is not None and height is not None:
        check_pixels(width, height)


def reencode(data: bytes) -> bytes:
    """The picture in `data` as a PNG: its first frame, turned upright by its EXIF
    orientation, RGB, at most `MAX_INPUT_SIDE` on the long side. ImageInputError saying why
    for anything else."""
    check_size(len(data))
    try:
        with Image.open(io.BytesIO(data), formats=list(INPUT_FORMATS)) as image:
            check_pixels(*image.size)
            image.seek(0)
            image.load()
            upright = ImageOps.exif_transpose(image)
    except ImageInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        too_many_pixels()
    except UnidentifiedImageError:
        raise ImageInputError(NOT_A_PICTURE) from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise ImageInputError(PICTURE_DAMAGED) from None
    rgb = upright.convert("RGB")
    rgb.thumbnail((MAX_INPUT_SIDE, MAX_INPUT_SIDE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    rgb.save(out, format="PNG")
    return out.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def from_upload(data: bytes, name: str, weight: float = DEFAULT_IMAGE_WEIGHT) -> ImageInput:
    """An upload's re-encoded copy; its SHA-256 is the copy's, the only bytes kept."""
    png = reencode(data)
    return ImageInput(png=png, name=name, sha256=sha256(png), weight=weight)


def from_file(path: Path, weight: float = DEFAULT_IMAGE_WEIGHT) -> ImageInput:
    """A local file's re-encoded copy; its SHA-256 is the file's, as given. ImageInputError
    for a file too big (checked before reading) or not a picture; OSError when unreadable."""
    check_size(path.stat().st_size)
    with path.open("rb") as handle:
        data = handle.read(MAX_INPUT_BYTES + 1)
    return ImageInput(png=reencode(data), name=path.name, sha256=sha256(data), weight=weight)
