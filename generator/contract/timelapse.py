"""A drawing's time-lapse: how many frames it keeps, how fast it plays, how big it may get.

The worker keeps a frame every `frame_every(iterations)` steps (at most `TIMELAPSE_FRAMES`),
scaled to at most `TIMELAPSE_SIDES[0]`, and adds the final picture, held `HOLD_MS`; the CLI
samples the same way. What does not fit a limit is scaled down through `TIMELAPSE_SIDES`, then
thinned out (`generator.media.animation.fit_animation`).
"""

from __future__ import annotations

TIMELAPSE_FRAMES = 60  # progress frames kept, the final picture not counted
FRAME_MS = 100
HOLD_MS = 1000  # the final picture, so the loop pauses on the result
TIMELAPSE_SIDES = (512, 384, 256)  # the long side, largest first: each try when it is too big
# What the worker sends with `Finished`, at most; Discord's default upload limit is 10 MiB.
MAX_TIMELAPSE_BYTES = 18 * 2**20


def frame_every(iterations: int) -> int:
    """Steps between two kept frames: evenly spaced, never more than `TIMELAPSE_FRAMES`."""
    return max(1, -(-iterations // TIMELAPSE_FRAMES))
