"""Edits on the token grid: what a picture carries so that it can be edited from the file alone,
and what an edit job is.

A picture pseudo-dalle draws is its decoder applied to the most likely token at each cell of a
grid (64x64 for 512 px). Every PNG it writes carries that grid in a text chunk (`TOKENS_KEY`,
`TokenGrid.to_text`: the cells as little-endian uint16, zlib-compressed, in base64, with a
version and the SHA-256 of the decoder that drew it), so keeping some tokens and freeing others
is exact, needs no dVAE encoder and works from the file alone.

An edit is a job that starts from those tokens (they travel as a continue state,
`TokenGrid.state`) with an `EditSpec`:

- ``subtle`` and ``strong`` (Vary): a few (subtle) or many (strong) cells start afresh, the
  others from the picture's tokens, held firmly or loosely (`EDITS`; the strength is on the
  scale of a picture given to start from), with a new seed, for a share of a full run's
  iterations;
- ``region`` (Vary (Region)): the tokens outside the region never change; those inside start
  afresh and are optimised for the prompt, with cutouts that look at the region and its
  surroundings as well as at the whole picture.
- the edits of the canvas (`CanvasKind`, `generator.contract.canvas`): a pan and Make Square
  grow it, every old token kept; a zoom out puts the picture, scaled down, in the middle; and
  ``upscale`` (Upscale (Creative)) doubles it. The last two take their tokens from the dVAE
  encoder (`ENCODED`): the worker makes them from the tokens the job carries.

A region is a mask of the grid's cells (`free`: True where a token may change), made from the
cells of a `REGION_CELLS` x `REGION_CELLS` grid of labels (A1..D4, columns A-D left to right,
rows 1-4 top to bottom), from a box in pixels, or from a mask picture.

May import the standard library, pydantic and `generator.contract`; the bot reads it too.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from generator.contract.errors import MemberError
from generator.contract.reasons import (
    EDIT_NO_REGION,
    EDIT_NO_TOKENS,
    EDIT_OTHER_DECODER,
    EDIT_REGION_CELL,
    EDIT_TOKENS_DAMAGED,
)

TOKENS_KEY = "pseudo-dalle-tokens"  # the PNG text chunk with the token grid
EDIT_KEY = "pseudo-dalle-edit"  # the PNG text chunk saying what edit made the picture
TOKENS_VERSION = 1
MAX_TOKENS_TEXT = 256 * 1024  # characters: a 128x128 grid of noise is about 44 KB
MAX_GRID_SIDE = 256
SHA256 = r"^[0-9a-f]{64}$"
FROZEN = ConfigDict(frozen=True, extra="forbid", strict=True)

EditKind = Literal["subtle", "strong", "region"]
EDIT_KINDS: tuple[EditKind, ...] = ("subtle", "strong", "region")
# Edits of the canvas: pan (it grows by half on one side), make square (it grows to its long
# side), zoom out (the picture scaled into the middle of a canvas of its size), Upscale
# (Creative) (twice the size, its tokens the dVAE encoder's of the picture scaled up, then drawn
# on briefly).
CanvasKind = Literal["pan", "square", "zoom", "upscale"]
CANVAS_KINDS: tuple[CanvasKind, ...] = ("pan", "square", "zoom", "upscale")
PanDirection = Literal["left", "right", "up", "down"]
PAN_DIRECTIONS: tuple[PanDirection, ...] = ("left", "right", "up", "down")
ZOOM_FACTORS = (1.5, 2.0)
UPSCALE_FACTOR = 2
# The edits whose tokens come from the dVAE encoder (of the picture scaled): the worker needs it.
ENCODED: tuple[CanvasKind, ...] = ("zoom", "upscale")


@dataclass(frozen=True)
class EditPreset:
    """How an edit runs: the share of cells that start afresh from random tokens (`fresh`,
    chosen by the job's seed; a region edit: its region), how firmly the others hold to the
    picture's tokens (`strength`, 0 to 1, as a picture given to start from:
    `generator.method.pictures`; a region edit keeps them exactly), and its iterations as a
    share of a full run's."""

    fresh: float
    strength: float
    share: float


# Declared once: bench/bench_edits.py measures how many tokens each changes.
EDITS: dict[EditKind | CanvasKind, EditPreset] = {
    "subtle": EditPreset(fresh=0.1, strength=0.5, share=0.25),
    "strong": EditPreset(fresh=0.4, strength=0.1, share=0.6),
    # The region, the new part of a canvas: fresh; the rest kept exactly.
    "region": EditPreset(fresh=1.0, strength=1.0, share=0.6),
    "pan": EditPreset(fresh=1.0, strength=1.0, share=0.6),
    "square": EditPreset(fresh=1.0, strength=1.0, share=0.6),
    "zoom": EditPreset(fresh=1.0, strength=1.0, share=0.6),
    # Every token from the encoder, held as firmly as a subtle Vary's, for a short run: each
    # step at twice the size costs four of the picture's.
    "upscale": EditPreset(fresh=0.0, strength=0.5, share=0.15),
}
# The edits whose fresh cells are a mask carried with the job (`EditSpec.free_b64`).
MASKED: tuple[EditKind | CanvasKind, ...] = ("region", "pan", "square")
# Of a region edit's cutouts, this share looks at the region and its surroundings; the rest
# at the whole picture, so that the edit fits it.
REGION_CUTOUT_SHARE = 0.75


def edit_iterations(kind: EditKind | CanvasKind, full: int) -> int:
    """An edit's iterations: its share of a full run of `full`."""
    return max(1, round(EDITS[kind].share * full))


# -- the token grid a picture carries -----------------------------------------------------------

# The continue state's form (`generator.method.latent.pack_state`): magic, rows, columns,
# vocabulary, then the tokens (int16) and each one's scale (float16).
STATE_MAGIC = b"PDC1"
STATE_HEADER = struct.Struct("<4sHHH")
HELD_SCALE = 30.0  # the largest scale a continue state holds: the token as sure as it gets


@dataclass(frozen=True)
class TokenGrid:
    """A picture's tokens: `rows` x `cols` cells of a `vocab`-token codebook, row-major, drawn by
    the decoder whose SHA-256 is `decoder_sha256`."""

    rows: int
    cols: int
    vocab: int
    decoder_sha256: str
    tokens: tuple[int, ...]

    def __post_init__(self) -> None:
        if not (0 < self.rows <= MAX_GRID_SIDE and 0 < self.cols <= MAX_GRID_SIDE):
            raise MemberError(EDIT_TOKENS_DAMAGED)
        if not 0 < self.vocab <= 2**16 or len(self.tokens) != self.rows * self.cols:
            raise MemberError(EDIT_TOKENS_DAMAGED)
        if any(not 0 <= token < self.vocab for token in self.tokens):
            raise MemberError(EDIT_TOKENS_DAMAGED)

    @property
    def size(self) -> tuple[int, int]:
        """The picture's (width, height) in pixels: 8 per cell."""
        return 8 * self.cols, 8 * self.rows

    def to_text(self) -> str:
        """The text of the PNG chunk."""
        packed = struct.pack(f"<{len(self.tokens)}H", *self.tokens)
        return json.dumps(
            {
                "v": TOKENS_VERSION,
                "rows": self.rows,
                "cols": self.cols,
                "vocab": self.vocab,
                "decoder_sha256": self.decoder_sha256,
                "tokens": base64.b64encode(zlib.compress(packed, 9)).decode("ascii"),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_text(cls, text: str) -> TokenGrid:
        """A chunk's grid; MemberError (EDIT_TOKENS_DAMAGED) for anything but one
        `to_text` wrote."""
        if len(text) > MAX_TOKENS_TEXT:
            raise MemberError(EDIT_TOKENS_DAMAGED)
        try:
            fields = json.loads(text)
            if not isinstance(fields, dict) or fields.get("v") != TOKENS_VERSION:
                raise ValueError("another version")
            rows, cols, vocab = (int(fields[key]) for key in ("rows", "cols", "vocab"))
            digest = str(fields["decoder_sha256"])
            if not (len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
                raise ValueError("not a SHA-256")
            expected = 2 * rows * cols
            packed = _decompress(base64.b64decode(fields["tokens"], validate=True), expected)
            if len(packed) != expected:
                raise ValueError("tokens cut short")
            tokens = struct.unpack(f"<{rows * cols}H", packed)
        except (ValueError, KeyError, TypeError, binascii.Error, zlib.error, struct.error):
            raise MemberError(EDIT_TOKENS_DAMAGED) from None
        return cls(rows, cols, vocab, digest, tokens)

    def check_decoder(self, decoder_sha256: str) -> None:
        """MemberError unless the grid was drawn by the decoder with this SHA-256."""
        if decoder_sha256 != self.decoder_sha256:
            raise MemberError(EDIT_OTHER_DECODER, decoder=self.decoder_sha256[:12])

    def state(self) -> bytes:
        """The grid as a continue state, each token as sure as a state holds it."""
        header = STATE_HEADER.pack(STATE_MAGIC, self.rows, self.cols, self.vocab)
        cells = len(self.tokens)
        return (
            header
            + struct.pack(f"<{cells}h", *self.tokens)
            + struct.pack(f"<{cells}e", *([HELD_SCALE] * cells))
        )

    @classmethod
    def from_state(cls, data: bytes, decoder_sha256: str) -> TokenGrid:
        """The tokens of a continue state (`generator.method.latent.pack_state`); MemberError
        for bytes that are not one."""
        try:
            magic, rows, cols, vocab = STATE_HEADER.unpack_from(data)
            cells = rows * cols
            if magic != STATE_MAGIC or len(data) != STATE_HEADER.size + 4 * cells:
                raise ValueError("not a continue state")
            tokens = struct.unpack_from(f"<{cells}h", data, STATE_HEADER.size)
        except (struct.error, ValueError):
            raise MemberError(EDIT_TOKENS_DAMAGED) from None
        return cls(rows, cols, vocab, decoder_sha256, tokens)


def grid_of(chunks: dict[str, str]) -> TokenGrid:
    """The token grid in a PNG's text chunks; MemberError when it has none (a picture from
    before 0.3, or not pseudo-dalle's) or a damaged one."""
    text = chunks.get(TOKENS_KEY)
    if text is None:
        raise MemberError(EDIT_NO_TOKENS)
    return TokenGrid.from_text(text)


def _decompress(data: bytes, most: int) -> bytes:
    """zlib's output, refusing to inflate past `most` bytes (a small chunk cannot unpack to
    gigabytes)."""
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, most + 1)
    if len(out) > most or inflater.unconsumed_tail:
        raise ValueError(f"more than {most} bytes")
    return out


# -- regions ------------------------------------------------------------------------------------

REGION_CELLS = 4  # the labelled grid a member picks from: A1..D4
CELL_LABELS: tuple[str, ...] = tuple(
    f"{'ABCD'[column]}{row + 1}" for row in range(REGION_CELLS) for column in range(REGION_CELLS)
)
CellLabel = Annotated[str, Field(pattern=r"^[A-D][1-4]$")]


def cell_bounds(label: str, rows: int, cols: int) -> tuple[int, int, int, int]:
    """The token cells (column 0, row 0, column 1, row 1; the ends excluded) a label covers."""
    if label not in CELL_LABELS:
        raise MemberError(EDIT_REGION_CELL, cell=label[:8])
    column, row = "ABCD".index(label[0]), int(label[1]) - 1
    return (
        column * cols // REGION_CELLS,
        row * rows // REGION_CELLS,
        (column + 1) * cols // REGION_CELLS,
        (row + 1) * rows // REGION_CELLS,
    )


def free_from_cells(labels: Iterable[str], rows: int, cols: int) -> tuple[bool, ...]:
    """The mask of the token cells that the labelled cells cover; MemberError when none is."""
    free = [False] * (rows * cols)
    for label in labels:
        x0, y0, x1, y1 = cell_bounds(label, rows, cols)
        for row in range(y0, y1):
            free[row * cols + x0 : row * cols + x1] = [True] * (x1 - x0)
    return _some(free)


def free_from_box(box: Sequence[int], rows: int, cols: int) -> tuple[bool, ...]:
    """The mask of the token cells (8x8 pixels each) that a box X0,Y0,X1,Y1 in pixels touches
    (X1 and Y1 excluded); MemberError when the box holds no pixel of the picture."""
    x0, y0, x1, y1 = box
    left, top = max(0, x0 // 8), max(0, y0 // 8)
    right, bottom = min(cols, -(-x1 // 8)), min(rows, -(-y1 // 8))
    free = [
        left <= column < right and top <= row < bottom
        for row in range(rows)
        for column in range(cols)
    ]
    return _some(free)


def _some(free: list[bool]) -> tuple[bool, ...]:
    if not any(free):
        raise MemberError(EDIT_NO_REGION)
    return tuple(free)


def pack_free(free: Sequence[bool]) -> str:
    """A mask as `EditSpec.free_b64`: one bit a cell, row-major, compressed, in base64."""
    bits = bytearray((len(free) + 7) // 8)
    for index, on in enumerate(free):
        if on:
            bits[index // 8] |= 1 << (index % 8)
    return base64.b64encode(zlib.compress(bytes(bits), 9)).decode("ascii")


def unpack_free(text: str, cells: int) -> tuple[bool, ...]:
    """`pack_free`'s mask of `cells` cells; ValueError for anything else."""
    size = (cells + 7) // 8
    try:
        bits = _decompress(base64.b64decode(text, validate=True), size)
    except (binascii.Error, zlib.error, ValueError):
        bits = b""
    if len(bits) != size:
        raise ValueError(f"the region is not a mask of {cells} cells")
    return tuple(bool(bits[i // 8] >> (i % 8) & 1) for i in range(cells))


# -- the job ------------------------------------------------------------------------------------


class EditSpec(BaseModel):
    """What edit a job is. Its tokens travel as the job's continue state (`TokenGrid.state`);
    `decoder_sha256` is the decoder that drew them, which the worker's must be (None: they
    come from a job this bot drew, with the decoder its workers hold). `cells` are the labels a
    member chose (for the card); `source_sha256` the picture edited, where one was given."""

    model_config = FROZEN

    kind: EditKind | CanvasKind
    decoder_sha256: Annotated[str, Field(pattern=SHA256)] | None = None
    free_b64: Annotated[str, Field(min_length=1, max_length=16384)] | None = None
    cells: Annotated[tuple[CellLabel, ...], Field(max_length=len(CELL_LABELS))] = ()
    source_sha256: Annotated[str, Field(pattern=SHA256)] | None = None
    direction: PanDirection | None = None  # a pan's
    factor: float | None = None  # a zoom out's, one of ZOOM_FACTORS

    @model_validator(mode="after")
    def _consistent(self) -> EditSpec:
        if (self.kind in MASKED) != (self.free_b64 is not None):
            raise ValueError("a region edit has a region (free_b64), and only a region edit")
        if (self.kind == "pan") != (self.direction is not None):
            raise ValueError("a pan has a direction, and only a pan")
        if (self.kind == "zoom") != (self.factor is not None):
            raise ValueError("a zoom out has a factor, and only a zoom out")
        if self.factor is not None and self.factor not in ZOOM_FACTORS:
            raise ValueError(f"a zoom out is by {' or '.join(map(str, ZOOM_FACTORS))}")
        return self

    def free(self, rows: int, cols: int) -> tuple[bool, ...] | None:
        """The mask of the cells that start afresh over a grid of `rows` x `cols`; None for a
        Vary and a zoom out."""
        return None if self.free_b64 is None else unpack_free(self.free_b64, rows * cols)

    def record(self) -> str:
        """What the PNG's `EDIT_KEY` chunk says of the edit."""
        fields: dict[str, object] = {"kind": self.kind}
        if self.source_sha256 is not None:
            fields["parent_sha256"] = self.source_sha256
        if self.cells:
            fields["cells"] = list(self.cells)
        if self.direction is not None:
            fields["direction"] = self.direction
        if self.factor is not None:
            fields["factor"] = self.factor
        if self.free_b64 is not None:
            fields["region"] = self.free_b64
        return json.dumps(fields, separators=(",", ":"))
