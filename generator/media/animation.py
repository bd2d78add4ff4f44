"""Time-lapse animations: frames in, WebP or GIF bytes out, and back again to fit a limit.

Every frame shows `FRAME_MS`, the last (the final picture) `HOLD_MS`, and the animation loops
forever. Frames are held as small PNGs or PIL images while a drawing runs; nothing here
touches the disk.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image, ImageSequence, features

from generator.contract.timelapse import FRAME_MS, HOLD_MS, TIMELAPSE_FRAMES, TIMELAPSE_SIDES

WEBP = "WEBP"
GIF = "GIF"
SUFFIXES = {".webp": WEBP, ".gif": GIF}  # a file's suffix and the format it asks for


class AnimationError(ValueError):
    """Bytes that are not a time-lapse this module could have made."""


def can_write(fmt: str) -> bool:
    """Whether this Pillow writes animations in `fmt` (GIF always; WebP when built with it)."""
    return fmt == GIF or (fmt == WEBP and bool(features.check("webp")))


def best_format() -> str:
    """WebP, which Discord plays inline and which is far smaller, else GIF."""
    return WEBP if can_write(WEBP) else GIF


def suffix_of(data: bytes) -> str:
    """The file suffix for an animation's bytes: ".webp" or ".gif"."""
    return ".webp" if data[8:12] == b"WEBP" else ".gif"


def scaled(image: Image.Image, side: int = TIMELAPSE_SIDES[0]) -> Image.Image:
    """`image` as RGB with its long side at most `side`, keeping its shape."""
    image = image.convert("RGB")  # a copy: the caller's image is left as it was
    if max(image.size) > side:
        image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return image


def durations_for(count: int) -> list[int]:
    """Each progress frame `FRAME_MS`, the final picture `HOLD_MS`."""
    return [FRAME_MS] * (count - 1) + [HOLD_MS]


def encode_animation(
    frames: Sequence[Image.Image], fmt: str, durations: Sequence[int] | None = None
) -> bytes:
    """An animation of `frames` in `fmt` (WEBP or GIF) that loops forever; `durations` in
    milliseconds, by default `durations_for(len(frames))`. ValueError for no frames or a format
    this Pillow cannot write."""
    if not frames:
        raise ValueError("a time-lapse needs at least one frame")
    if not can_write(fmt):
        raise ValueError(f"this Pillow cannot write {fmt} animations")
    times = list(durations_for(len(frames)) if durations is None else durations)
    images = [frame.convert("RGB") for frame in frames]
    buffer = io.BytesIO()
    images[0].save(
        buffer, format=fmt, save_all=True, append_images=images[1:], duration=times, loop=0
    )
    return buffer.getvalue()


def decode_animation(data: bytes) -> tuple[list[Image.Image], list[int]]:
    """The frames and their durations; AnimationError for anything but a WebP or GIF of at most
    `TIMELAPSE_FRAMES` + 1 frames of at most `TIMELAPSE_SIDES[0]` pixels a side, checked before
    any frame is decoded."""
    try:
        with Image.open(io.BytesIO(data), formats=[WEBP, GIF]) as image:
            count = getattr(image, "n_frames", 1)
            if count > TIMELAPSE_FRAMES + 1 or max(image.size) > TIMELAPSE_SIDES[0]:
                raise AnimationError(f"{count} frames of {image.size}: not a time-lapse")
            frames, durations = [], []
            for frame in ImageSequence.Iterator(image):
                frames.append(frame.convert("RGB"))
                durations.append(int(frame.info.get("duration", FRAME_MS)))
    except (OSError, SyntaxError) as error:
        raise AnimationError(f"not a WebP or GIF animation: {error}") from None
    return frames, durations


def fit_animation(data: bytes, limit: int) -> bytes | None:
    """`data` if it has at most `limit` bytes; else the animation re-encoded smaller: scaled
    down through `TIMELAPSE_SIDES`, then with every other progress frame dropped (the kept ones
    showing as long, so it plays at the same pace) until it fits. None when even the final
    picture and one frame do not fit. AnimationError when `data` is not a time-lapse."""
    if len(data) <= limit:
        return data
    frames, durations = decode_animation(data)
    fmt = WEBP if suffix_of(data) == ".webp" and can_write(WEBP) else best_format()
    originals, side = frames, max(frames[0].size)
    for target in TIMELAPSE_SIDES:
        if target < side:
            frames = [scaled(frame, target) for frame in originals]
            data = encode_animation(frames, fmt, durations)
            if len(data) <= limit:
                return data
    while len(frames) > 2:
        frames, durations = _thinned(frames, durations)
        data = encode_animation(frames, fmt, durations)
        if len(data) <= limit:
            return data
    return None


def _thinned(
    frames: list[Image.Image], durations: list[int]
) -> tuple[list[Image.Image], list[int]]:
    """Every other progress frame, each shown as long as the two it stands for; the final
    picture stays."""
    progress, times = frames[:-1], durations[:-1]
    kept = progress[::2]
    merged = [sum(times[i : i + 2]) for i in range(0, len(times), 2)]
    return [*kept, frames[-1]], [*merged, durations[-1]]
