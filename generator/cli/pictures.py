"""`pseudo-dalle draw`'s pictures: --init-image, --init-strength, --image-prompt and --encoder,
read from local files with the same limits as the bot's uploads (`generator.intake`)."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

from generator.contract.errors import GeneratorError, ImageInputError, SettingsError
from generator.contract.images import (
    DEFAULT_IMAGE_WEIGHT,
    DEFAULT_INIT_STRENGTH,
    MAX_IMAGE_PROMPTS,
    MAX_INPUT_BYTES,
    MAX_INPUT_PIXELS,
    ImageInput,
    check_image_weight,
)
from generator.contract.weights import DEFAULT_ENCODER_URL


@dataclass(frozen=True)
class PictureArg:
    """A picture named on the command line, with its weight (image prompts only)."""

    path: Path
    weight: float = DEFAULT_IMAGE_WEIGHT


def _strength(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}") from None
    if not (math.isfinite(value) and 0 <= value <= 1):
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {text!r}")
    return value


def _image_prompt(text: str) -> PictureArg:
    """PATH or PATH:WEIGHT; a tail that is not a number is part of the path."""
    path, _, tail = text.rpartition(":")
    try:
        weight = float(tail)
    except ValueError:
        return PictureArg(Path(text))
    if not path:
        raise argparse.ArgumentTypeError(f"expected PATH[:WEIGHT], got {text!r}")
    try:
        return PictureArg(Path(path), check_image_weight(weight))
    except SettingsError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_picture_options(parser: argparse.ArgumentParser) -> None:
    limits = (
        f"PNG, JPEG, WebP or GIF, at most {MAX_INPUT_BYTES // 2**20} MiB and "
        f"{MAX_INPUT_PIXELS / 1e6:g} million pixels"
    )
    parser.add_argument(
        "--init-image",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"start from this picture's tokens instead of random ones ({limits})",
    )
    parser.add_argument(
        "--init-strength",
        type=_strength,
        default=DEFAULT_INIT_STRENGTH,
        metavar="S",
        help="how firmly the start holds, 0 to 1: 0 lets the first steps move away freely, 1 "
        f"keeps the picture's tokens through the run (default {DEFAULT_INIT_STRENGTH})",
    )
    parser.add_argument(
        "--image-prompt",
        type=_image_prompt,
        action="append",
        default=[],
        metavar="PATH[:WEIGHT]",
        help="steer towards this picture as well as (or instead of) the words; repeat for up "
        f"to {MAX_IMAGE_PROMPTS}; a trailing ':WEIGHT' weights it (default "
        f"{DEFAULT_IMAGE_WEIGHT:g}; negative steers away)",
    )
    add_encoder_option(parser)


def add_encoder_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--encoder",
        default=DEFAULT_ENCODER_URL,
        metavar="URL_OR_PATH",
        help=f"dVAE encoder URL or file, for --init-image and --zoom-out (default "
        f"{DEFAULT_ENCODER_URL})",
    )


def read_picture(arg: PictureArg) -> ImageInput:
    """The picture's re-encoded copy; GeneratorError naming the file when it is refused."""
    try:
        from generator.intake.images import from_file

        return from_file(arg.path, arg.weight)
    except ImageInputError as error:
        raise GeneratorError(f"{arg.path}: {error}") from None
    except OSError as error:
        raise GeneratorError(f"cannot read {arg.path}: {error.strerror}") from None
