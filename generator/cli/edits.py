"""`pseudo-dalle edit`'s picture and what to do with it: the token grid a PNG carries, the cells
of it that a --region box or a --mask picture frees, and the new canvas of a --pan or
--make-square (that of --zoom-out and --upscale creative needs the encoder:
`generator.method.canvas`)."""

from __future__ import annotations

import argparse
import io
import secrets
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from generator.cli.pictures import PictureArg, read_picture
from generator.contract.canvas import panned, squared, upscaled_grid
from generator.contract.edits import (
    CanvasKind,
    EditKind,
    EditSpec,
    TokenGrid,
    edit_iterations,
    free_from_box,
    pack_free,
)
from generator.contract.errors import GeneratorError, MemberError, PromptError
from generator.contract.reasons import EDIT_NO_REGION, EDIT_SQUARE_ALREADY, NOTHING_TO_DRAW
from generator.contract.settings import MAX_SEED, Job
from generator.intake.edits import EditSource, edit_source_file


def read_source(args: argparse.Namespace) -> EditSource:
    """The picture to edit; GeneratorError naming the file when it cannot be edited."""
    try:
        return edit_source_file(args.picture)
    except MemberError as error:
        raise GeneratorError(f"{args.picture}: {error}") from None
    except OSError as error:
        raise GeneratorError(f"cannot read {args.picture}: {error.strerror}") from None


def check_decoder(picture: Path, grid: TokenGrid, decoder_sha256: str) -> None:
    """GeneratorError naming the picture unless its grid was drawn by this decoder."""
    try:
        grid.check_decoder(decoder_sha256)
    except MemberError as error:
        raise GeneratorError(f"{picture}: {error}") from None


def edit_kind(args: argparse.Namespace) -> EditKind | CanvasKind:
    if args.vary is not None:
        return "subtle" if args.vary == "subtle" else "strong"
    if args.pan is not None:
        return "pan"
    if args.make_square:
        return "square"
    if args.zoom_out is not None:
        return "zoom"
    if args.upscale == "creative":
        return "upscale"
    return "region"


@dataclass(frozen=True)
class Plan:
    """What an edit starts from: its spec and the tokens (the picture's, or for a pan and
    Make Square the new canvas with the picture's tokens in it)."""

    spec: EditSpec
    grid: TokenGrid


def edit_plan(args: argparse.Namespace, source: EditSource) -> Plan:
    """The edit the options ask for of `source`. MemberError for a canvas that would grow past
    the largest side and a square picture asked to be made square. A zoom out's and Upscale
    (Creative)'s canvas is made later, by the encoder (`generator.method.canvas`)."""
    kind, grid = edit_kind(args), source.grid
    fields: dict[str, object] = {
        "decoder_sha256": grid.decoder_sha256,
        "source_sha256": source.sha256,
    }
    free = None
    if args.region is not None:
        free = free_from_box(args.region, grid.rows, grid.cols)
    elif args.mask is not None:
        free = mask_free(PictureArg(args.mask), grid)
    elif kind == "pan":
        grid, free = panned(grid, args.pan)
        fields["direction"] = args.pan
    elif kind == "square":
        if grid.rows == grid.cols:
            raise MemberError(EDIT_SQUARE_ALREADY)
        grid, free = squared(grid)
    elif kind == "zoom":
        fields["factor"] = args.zoom_out
    elif kind == "upscale":
        upscaled_grid(grid.rows, grid.cols)  # refused here, before any model is loaded
    if free is not None:
        fields["free_b64"] = pack_free(free)
    return Plan(EditSpec.model_validate({"kind": kind, **fields}), grid)


def mask_free(mask: PictureArg, grid: TokenGrid) -> tuple[bool, ...]:
    """The cells a mask picture frees: those with a white pixel (at least half bright) in
    their 8x8 square. GeneratorError for a mask of another size or with no white."""
    copy = read_picture(mask)  # read as any picture given: within the limits, re-encoded
    with Image.open(io.BytesIO(copy.png)) as image:
        if image.size != grid.size:
            width, height = grid.size
            raise GeneratorError(
                f"{mask.path}: the mask is {image.width}x{image.height} pixels and the picture "
                f"{width}x{height}: make them the same size"
            )
        white = image.convert("L").point(lambda value: 255 if value >= 128 else 0)
        cells = white.resize((grid.cols, grid.rows), Image.Resampling.BOX)
        free = tuple(value > 0 for value in cells.tobytes())
    if not any(free):
        raise GeneratorError(f"{mask.path}: {EDIT_NO_REGION.say()}: paint it white")
    return free


def edit_base(args: argparse.Namespace, source: EditSource, full_iterations: int) -> Job:
    """The job before its edit is applied: the new words or the picture's own, a new seed
    unless one is given, and the edit's share of `full_iterations` unless --iterations says."""
    prompt = source.prompt if args.prompt is None else args.prompt
    if not prompt.strip():
        raise PromptError(NOTHING_TO_DRAW)
    seed = secrets.randbelow(MAX_SEED + 1) if args.seed is None else args.seed
    iterations = args.iterations or edit_iterations(edit_kind(args), full_iterations)
    return Job(prompt, seed=seed, iterations=iterations, auto_stop=args.auto_stop)
