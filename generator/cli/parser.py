"""`pseudo-dalle draw`'s and `edit`'s options and the argument types they share with the other
commands."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from generator.cli.pictures import add_encoder_option, add_picture_options
from generator.contract.edits import EDITS, PAN_DIRECTIONS, ZOOM_FACTORS
from generator.contract.encoders import (
    DEFAULT_MULTILINGUAL,
    MULTILINGUAL_MODELS,
    TEXT_ENCODER_CHOICES,
)
from generator.contract.quality import DEFAULT_QUALITY, PRESETS
from generator.contract.settings import (
    AUTO_STOP_WINDOW,
    CUT_SCHEDULES,
    DEFAULTS,
    LR_DROP_FACTOR,
    MAX_ITERATIONS,
    MAX_SEED,
    MAX_SIDE,
    MIN_SIDE,
    PRECISION_CHOICES,
    RELAXATIONS,
    TILES,
)
from generator.worker.options import (
    add_cuda_graphs_option,
    add_model_options,
    add_quality_option,
    add_threads_option,
)


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def lr_drop(text: str) -> float | None:
    if text.strip().lower() == "off":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction or 'off', got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (or 'off'), got {text!r}")
    return value


def size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)(?:x(\d+))?", text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"expected SIDE or WIDTHxHEIGHT, got {text!r}")
    width = int(match.group(1))
    height = int(match.group(2) or width)
    for side in (width, height):
        if side % 8 or not MIN_SIDE <= side <= MAX_SIDE:
            raise argparse.ArgumentTypeError(
                f"sides must be multiples of 8 from {MIN_SIDE} to {MAX_SIDE}, got {text!r}"
            )
    return width, height


def timelapse_file(text: str) -> Path:
    """A --timelapse file whose suffix names a format this Pillow writes."""
    from generator.media.animation import SUFFIXES, WEBP, can_write

    path = Path(text)
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise argparse.ArgumentTypeError(f"expected a file ending .webp or .gif, got {text!r}")
    if not can_write(fmt):
        webp = " (this Pillow was built without WebP: use .gif)" if fmt == WEBP else ""
        raise argparse.ArgumentTypeError(f"cannot write {fmt} animations{webp}, got {text!r}")
    return path


def add_draw_options(draw: argparse.ArgumentParser, *, edit: bool = False) -> None:
    """Every option of `pseudo-dalle draw`; with `edit`, of `pseudo-dalle edit`: the picture
    first, what edit to make, and no size or pictures to start from (the picture is both)."""
    normal = PRESETS[DEFAULT_QUALITY]
    if edit:
        _add_edit_options(draw)
    else:
        draw.add_argument(
            "prompt",
            nargs="?",
            default="",
            help="what to draw; weight parts with 'text:weight' and separate them with '|', "
            "e.g. 'a red sky:1 | blurry, watermark:-0.5'; may be left out with --image-prompt",
        )
    add_quality_option(
        draw, "the size, cutouts, iterations and CLIP models; the options below win over it"
    )
    # argparse formats help with %: a percent sign is written twice.
    shares = ", ".join(f"{kind} {preset.share:.0%}%" for kind, preset in EDITS.items())
    draw.add_argument(
        "--iterations",
        type=positive,
        default=None,
        help=f"optimisation steps, 1 to {MAX_ITERATIONS} (default: "
        + (
            f"a share of the quality's, {normal.iterations} at {DEFAULT_QUALITY}: {shares})"
            if edit
            else f"the quality's, {normal.iterations} at {DEFAULT_QUALITY}; the reference used "
            "7000)"
        ),
    )
    if not edit:
        draw.add_argument(
            "--size",
            type=size,
            default=None,
            metavar="SIDE|WxH",
            help=f"picture size in pixels, multiples of 8 from {MIN_SIDE} to {MAX_SIDE} "
            f"(default: the quality's, {normal.size} at {DEFAULT_QUALITY})",
        )
        draw.add_argument(
            "--tile",
            nargs="?",
            const="xy",
            default="",
            choices=TILES[1:],
            help="draw a seamless tile: the picture wraps around both axes (or only x or y, "
            "given after it), so that copies of it side by side show no seam",
        )
    draw.add_argument(
        "--seed",
        type=int,
        default=None,
        help=f"random seed, 0 to {MAX_SEED}; the same seed and settings redraw the same picture "
        "(default: a random one, printed at the end)",
    )
    draw.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="FILE.png",
        help="where to save the picture (default: named after the prompt and seed)",
    )
    draw.add_argument(
        "--cutouts",
        type=positive,
        default=None,
        help="random crops CLIP looks at per step (default: the quality's, "
        f"{normal.cutouts} at {DEFAULT_QUALITY})",
    )
    draw.add_argument(
        "--lr", type=float, default=DEFAULTS.lr, help=f"Adam learning rate (default {DEFAULTS.lr})"
    )
    draw.add_argument(
        "--temperature",
        type=float,
        default=DEFAULTS.temperature,
        help=f"Gumbel-softmax temperature (default {DEFAULTS.temperature})",
    )
    draw.add_argument(
        "--lr-drop",
        type=lr_drop,
        default=DEFAULTS.lr_drop,
        metavar="FRACTION|off",
        help=f"divide the learning rate by {LR_DROP_FACTOR:g} from this fraction of the run on "
        f"(default {DEFAULTS.lr_drop}); off keeps it constant",
    )
    draw.add_argument(
        "--auto-stop",
        type=positive,
        default=None,
        metavar="N",
        help=f"stop early when the loss, averaged over windows of {AUTO_STOP_WINDOW} steps, has "
        "not beaten its best window for N windows in a row (default: run every iteration)",
    )
    draw.add_argument(
        "--cut-schedule",
        choices=CUT_SCHEDULES,
        default=DEFAULTS.cut_schedule,
        help="coarse-to-fine (default): cutouts around the whole picture early, small crops "
        "late; fixed: the same mix of sizes throughout",
    )
    draw.add_argument(
        "--temperature-end",
        type=float,
        default=None,
        help="anneal the temperature geometrically to this value by the last step",
    )
    draw.add_argument(
        "--relaxation",
        choices=RELAXATIONS,
        default=DEFAULTS.relaxation,
        help="what the Gumbel-softmax normalises over: codebook (the default; each position a soft "
        "mix of codebook entries) or positions (each entry spread over the grid, as the "
        "notebooks that introduced the method did)",
    )
    add_text_encoder_options(draw)
    if not edit:
        add_picture_options(draw)
    draw.add_argument(
        "--rotation",
        type=float,
        default=DEFAULTS.rotation_degrees,
        metavar="DEGREES",
        help="rotate cutouts randomly by up to this many degrees (default 0)",
    )
    draw.add_argument("--flip", action="store_true", help="mirror half of the cutouts at random")
    draw.add_argument(
        "--noise",
        type=float,
        default=DEFAULTS.noise_std,
        metavar="STD",
        help="add Gaussian noise of this strength to the cutouts (default 0)",
    )
    add_model_options(draw)
    add_threads_option(draw, reserve=0)
    add_cuda_graphs_option(draw)
    draw.add_argument(
        "--precision",
        choices=PRECISION_CHOICES,
        default="auto",
        help="auto (default): bf16 on GPUs and on CPUs with AVX512-BF16 or AMX, fp16 on GPUs "
        "without bf16, else fp32; fp32 is the plain path, with near-identical results",
    )
    draw.add_argument(
        "--checkpointing",
        action="store_true",
        help="recompute activations in the backward pass: much less memory, about a third "
        "more compute (for big pictures on small GPUs)",
    )
    draw.add_argument(
        "--compile",
        action="store_true",
        help="compile the networks with torch.compile: the first steps take tens of seconds "
        "longer; see bench/RESULTS.md for where it pays",
    )
    draw.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where to run: cuda if available with auto (default auto)",
    )
    draw.add_argument(
        "--save-every",
        type=positive,
        default=None,
        metavar="N",
        help="save a progress frame every N iterations (into --progress-dir)",
    )
    draw.add_argument(
        "--progress-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder for progress frames (needs --save-every)",
    )
    draw.add_argument(
        "--timelapse",
        type=timelapse_file,
        default=None,
        metavar="FILE.webp",
        help="also write an animation of the progress frames: an animated WebP or GIF, as "
        "FILE ends",
    )


def box(text: str) -> tuple[int, int, int, int]:
    """X0,Y0,X1,Y1 in pixels, X0 < X1 and Y0 < Y1."""
    parts = text.split(",")
    try:
        x0, y0, x1, y1 = (int(part) for part in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X0,Y0,X1,Y1 in pixels, got {text!r}") from None
    if not (0 <= x0 < x1 and 0 <= y0 < y1):
        raise argparse.ArgumentTypeError(f"expected 0 <= X0 < X1 and 0 <= Y0 < Y1, got {text!r}")
    return x0, y0, x1, y1


def _add_edit_options(edit: argparse.ArgumentParser) -> None:
    edit.add_argument(
        "picture",
        type=Path,
        metavar="PICTURE.png",
        help="a picture pseudo-dalle drew (0.3 or later): it carries the tokens it is made of",
    )
    edit.add_argument(
        "prompt",
        nargs="?",
        default=None,
        help="the words to draw (a region edit: what the region shows); default: the "
        "picture's own prompt",
    )
    how = edit.add_mutually_exclusive_group(required=True)
    how.add_argument(
        "--vary",
        choices=("subtle", "strong"),
        help="a variation: every token starts from the picture's, held firmly (subtle: the "
        "composition stays, details change) or loosely (strong)",
    )
    how.add_argument(
        "--region",
        type=box,
        metavar="X0,Y0,X1,Y1",
        help="draw this box again (pixels, X1 and Y1 excluded); every token outside it stays",
    )
    how.add_argument(
        "--mask",
        type=Path,
        metavar="MASK.png",
        help="draw again where this picture (the same size) is white; every token elsewhere stays",
    )
    how.add_argument(
        "--pan",
        choices=PAN_DIRECTIONS,
        help="grow the canvas by half on that side and draw the new part to continue the "
        "picture; every old token stays",
    )
    how.add_argument(
        "--zoom-out",
        type=float,
        choices=ZOOM_FACTORS,
        help="scale the picture down into the middle (through the dVAE encoder: the one "
        "lossy step, see --encoder) and draw the border around it",
    )
    how.add_argument(
        "--make-square",
        action="store_true",
        help="grow a picture that is not square to its long side and draw the new borders",
    )
    how.add_argument(
        "--upscale",
        choices=("subtle", "creative"),
        help="twice the size. subtle: Pillow's Lanczos filter, nothing drawn (there is no "
        "learned upscaler: every one needs weights this project cannot ship); creative: the "
        "picture scaled up, turned into tokens by the dVAE encoder (see --encoder) and drawn "
        "on briefly at the new size, which costs four times a step's memory and time",
    )
    add_encoder_option(edit)


def add_text_encoder_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--text-encoder",
        choices=TEXT_ENCODER_CHOICES,
        default="clip",
        help="what reads the prompt: clip (default; OpenAI's, English), multilingual (50+ "
        "languages, an approximation of CLIP's text space; needs the multilingual extra) or "
        "auto (clip for plain ASCII prompts, multilingual otherwise)",
    )
    parser.add_argument(
        "--multilingual-model",
        default=DEFAULT_MULTILINGUAL,
        metavar="NAME_OR_DIR",
        help=f"the multilingual encoder: {', '.join(MULTILINGUAL_MODELS)} (the first is the "
        "default) or a folder saved by sentence-transformers or M-CLIP",
    )
