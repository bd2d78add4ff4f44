"""Pictures members and users give: the limits every way in applies, how a job uses them, and
the re-encoded copy that travels with a job.

The limits hold before anything is decoded (`generator.intake` reads files within them);
the same numbers feed the bot's `/help`, its config checks and the CLI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from generator.contract.errors import SettingsError

MAX_INPUT_BYTES = 8 * 2**20  # a file as given: an upload or a file on the CLI
MAX_INPUT_PIXELS = 16_800_000  # width x height, declared or decoded (about 4096 x 4096)
MAX_INPUT_SIDE = 1024  # the long side of the copy that is kept, after scaling down
# What decodes them (Pillow's format names) and the content types Discord declares for them.
INPUT_FORMATS: dict[str, str] = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "GIF": "image/gif",
}
# A re-encoded copy is a PNG of at most 1024 x 1024 RGB: about 3 MiB when it is pure noise.
MAX_STORED_PNG_BYTES = 4 * 2**20
MAX_IMAGE_PROMPTS = 4

# How a job uses a picture: start from it, steer towards it, or both.
IMAGE_USES = ("start", "steer", "both")
DEFAULT_IMAGE_USE = "start"
DEFAULT_INIT_STRENGTH = 0.5
DEFAULT_IMAGE_WEIGHT = 1.0
MAX_IMAGE_WEIGHT = 100.0


def starts_from(use: str) -> bool:
    return use in ("start", "both")


def steers_towards(use: str) -> bool:
    return use in ("steer", "both")


def check_strength(value: float) -> float:
    """`value` if it is a strength in [0, 1]; SettingsError otherwise."""
    if not (isinstance(value, int | float) and math.isfinite(value) and 0 <= value <= 1):
        raise SettingsError(f"init strength must be from 0 to 1, got {value}")
    return float(value)


def check_image_weight(value: float) -> float:
    if not (math.isfinite(value) and 0 < abs(value) <= MAX_IMAGE_WEIGHT):
        raise SettingsError(
            f"an image prompt's weight must be a non-zero number from -{MAX_IMAGE_WEIGHT:g} "
            f"to {MAX_IMAGE_WEIGHT:g}, got {value}"
        )
    return float(value)


@dataclass(frozen=True)
class ImageInput:
    """A picture a job was given, as the re-encoded PNG `generator.intake` made of it.

    `name` and `sha256` are what the output's metadata records (the file's name, the SHA-256
    of the bytes given); the bytes themselves are never logged nor recorded.
    """

    png: bytes
    name: str
    sha256: str
    weight: float = DEFAULT_IMAGE_WEIGHT

    def __post_init__(self) -> None:
        if not self.png or len(self.png) > MAX_STORED_PNG_BYTES:
            raise SettingsError(
                f"an input picture must be a PNG of at most {MAX_STORED_PNG_BYTES} bytes"
            )
        check_image_weight(self.weight)

    def __repr__(self) -> str:
        return f"ImageInput(name={self.name!r}, sha256={self.sha256[:12]}…, weight={self.weight})"
