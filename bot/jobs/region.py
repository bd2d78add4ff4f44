"""The region picker's picture: a picture with the cells a member picks from (A1..D4,
`generator.contract.edits.CELL_LABELS`) drawn over it.

Discord has no canvas to draw a region on, so the member picks cells of a labelled grid. The
lines are white edged with black and each label sits on a dark badge, so that they read on
light and dark pictures alike; a small picture is enlarged first, so that its labels read on a
phone. The picture is read as any picture a member gives (`generator.intake.images.reencode`):
whatever was fetched is untrusted, even the bot's own card.
"""

from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageFont

from generator.contract.edits import CELL_LABELS, REGION_CELLS, cell_bounds
from generator.intake.images import reencode

PICKER_SIDE = 512  # a picture's short side is enlarged to at least this many pixels
LINE_PX = 2  # the white of a line; its black edge is as wide again on each side
LABEL_SHARE = 0.2  # a label's height, as a share of its cell's
BADGE = (0, 0, 0, 170)  # behind each label


def labelled_grid(data: bytes, rows: int, cols: int) -> bytes:
    """The picture in `data`, as a PNG, with the cells of a token grid of `rows` x `cols` over
    it: lines between the cells and each one's label in its top left corner. ImageInputError
    for anything that is not a picture within the limits."""
    with Image.open(io.BytesIO(reencode(data)), formats=["PNG"]) as copy:
        picture = copy.convert("RGB")
    factor = -(-PICKER_SIDE // min(picture.size))
    if factor > 1:  # nearest neighbour: the pixels stay as sharp as the picture's own
        size = (picture.width * factor, picture.height * factor)
        picture = picture.resize(size, Image.Resampling.NEAREST)
    width, height = picture.size
    draw = ImageDraw.Draw(picture)
    # Each label's cell in pixels: the token cells it covers, scaled to the picture.
    boxes: dict[str, tuple[int, int, int, int]] = {}
    for label in CELL_LABELS:
        x0, y0, x1, y1 = cell_bounds(label, rows, cols)
        boxes[label] = (
            x0 * width // cols,
            y0 * height // rows,
            x1 * width // cols,
            y1 * height // rows,
        )
    columns = sorted({box[2] for box in boxes.values()})[:-1]
    lines = sorted({box[3] for box in boxes.values()})[:-1]
    for colour, width_px in (("black", 3 * LINE_PX), ("white", LINE_PX)):
        for x in columns:
            draw.line([(x, 0), (x, height)], fill=colour, width=width_px)
        for y in lines:
            draw.line([(0, y), (width, y)], fill=colour, width=width_px)
    # Each label on a badge of translucent black, so that it reads on any picture.
    font_px = max(12, round(LABEL_SHARE * height / REGION_CELLS))
    font = ImageFont.load_default(size=font_px)
    badges = Image.new("RGBA", picture.size, (0, 0, 0, 0))
    badge = ImageDraw.Draw(badges)
    pad = max(2, font_px // 4)
    for label, (x0, y0, _, _) in boxes.items():
        at = (x0 + 2 * LINE_PX + pad, y0 + 2 * LINE_PX + pad)
        left, top, right, bottom = badge.textbbox(at, label, font=font)
        badge.rounded_rectangle(
            (left - pad, top - pad, right + pad, bottom + pad), radius=pad, fill=BADGE
        )
        badge.text(at, label, fill="white", font=font)
    picture = Image.alpha_composite(picture.convert("RGBA"), badges).convert("RGB")
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return out.getvalue()
