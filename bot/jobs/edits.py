"""Edits of a picture: Vary (Subtle), Vary (Strong) and Vary (Region) of a job's picture, or of
a picture pseudo-dalle drew that a member gave, and the edits of a job's canvas (the pans, Make
Square, Zoom Out, Upscale), in plain values, without Discord.

An edit is a job like any other, queued through the front desk (`FrontDesk.submit`): fairly
with the member's other drawings, under the same limits, barring and prompt rules, at its
parent's quality, and at its picture's size, since it starts from the picture's tokens
(`generator.contract.edits`). Those are a job's `continue_state`, kept `[storage] keep_days`, or
the grid a given PNG carries; the picture itself keeps them after the state is gone. A pan's
and Make Square's new canvas is made here, from the tokens alone; a zoom out's and Upscale
(Creative)'s by the worker, which holds the dVAE encoder. Upscale (Subtle) draws nothing and is
no job: the card's picture, scaled up with Lanczos (`upscaled_subtly`). Only the member who drew
a job, or a server admin, may edit it.

A given picture's grid is too big for a button's custom_id, so it is offered (`Offer`) to the
member who gave it and kept in memory, at most `MAX_OFFERS` of them for `OFFER_KEEP_S` each;
after a restart the member gives the picture again. The region picker's picture is the
picture fetched afresh (the card's, or the one given), drawn over with its labelled cells
(`bot.jobs.region`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import secrets
import time
from dataclasses import dataclass, field, replace

from PIL import PngImagePlugin

from bot.i18n import N_, tr
from bot.jobs.desk import FrontDesk, Member
from bot.jobs.pictures import CarriesTokens, PictureAsk, Upload
from bot.jobs.region import labelled_grid
from bot.jobs.spec import Ask, Edit, Refused, refused
from bot.jobs.store import JobRow
from bot.limits import effective
from generator.contract.canvas import panned, squared, upscaled_grid
from generator.contract.edits import (
    CELL_LABELS,
    EDIT_KEY,
    CanvasKind,
    EditKind,
    EditSpec,
    PanDirection,
    TokenGrid,
    edit_iterations,
    free_from_cells,
    pack_free,
)
from generator.contract.errors import MemberError
from generator.contract.images import steers_towards
from generator.contract.prompts import clean_text
from generator.contract.quality import DEFAULT_QUALITY
from generator.contract.reasons import EDIT_SQUARE_ALREADY, EDIT_TOKENS_DAMAGED
from generator.contract.settings import SIDE_MULTIPLE
from generator.intake.edits import EditSource, upscaled_subtly

OFFER_KEEP_S = 3600.0
MAX_OFFERS = 200  # each holds a grid's state: about 22 KB of base64 at 512x512
# The names of the edits, by `EditSpec.kind` (a pan's by its direction, a zoom out's by its
# factor), and of Upscale (Subtle), which the bot does itself: it draws nothing.
EDIT_NAMES: dict[str, str] = {
    "subtle": N_("Vary (Subtle)"),
    "strong": N_("Vary (Strong)"),
    "region": N_("Vary (Region)"),
    "square": N_("Make Square"),
    "upscale": N_("Upscale (Creative)"),
}
ZOOM_NAMES: dict[float, str] = {1.5: N_("Zoom Out 1.5x"), 2.0: N_("Zoom Out 2x")}
UPSCALE_SUBTLE = N_("Upscale (Subtle)")
PAN_NAMES: dict[PanDirection, str] = {
    "left": N_("Pan left"),
    "right": N_("Pan right"),
    "up": N_("Pan up"),
    "down": N_("Pan down"),
}
QUEUED: dict[EditKind | CanvasKind, str] = {
    "subtle": N_("Varying it subtly as job {job}."),
    "strong": N_("Varying it strongly as job {job}."),
    "region": N_("Redrawing {cells} as job {job}."),
    "pan": N_("Growing the picture as job {job}."),
    "square": N_("Growing the picture as job {job}."),
    "zoom": N_("Zooming out as job {job}."),
    "upscale": N_("Upscaling it as job {job}."),
}
Kind = EditKind | CanvasKind


def edit_name(
    kind: Kind, direction: PanDirection | None = None, factor: float | None = None
) -> str:
    """The name of an edit, to translate: "Vary (Subtle)", "Pan right", "Zoom Out 2x"."""
    if kind == "pan" and direction is not None:
        return PAN_NAMES[direction]
    if kind == "zoom" and factor is not None:
        return ZOOM_NAMES[factor]
    return EDIT_NAMES[kind]


@dataclass(frozen=True)
class EditPress:
    """Which edit a member asks for: its kind, and a pan's direction or a zoom out's factor."""

    kind: Kind
    direction: PanDirection | None = None
    factor: float | None = None

    @property
    def name(self) -> str:
        """Its name, to translate."""
        return edit_name(self.kind, self.direction, self.factor)


@dataclass(frozen=True)
class Offer:
    """A picture pseudo-dalle drew, which a member gave and may edit: its grid as a continue
    state and its size in cells, the decoder that drew it, the file's SHA-256, the words to
    draw with (the member's, else the picture's own) and where the picture is, for the region
    picker."""

    id: str
    user_id: int
    state: str = field(repr=False)
    rows: int
    cols: int
    decoder_sha256: str
    source_sha256: str
    words: str
    upload: Upload
    made_at: float


Origin = JobRow | Offer  # what an edit edits


class Editing:
    """Offers, checks and queues the edits; the front end (`bot.front.edits`) shows them."""

    def __init__(self, desk: FrontDesk) -> None:
        self.desk = desk
        self._offers: dict[str, Offer] = {}  # oldest first

    def remix(self, member: Member) -> bool:
        """Whether the member's Reroll and edits first ask for the words (`/settings remix`)."""
        return self.desk.store.remix(member.guild_id, member.user_id)

    # -- a picture given --------------------------------------------------------------------
    async def draw_from_image(self, member: Member, ask: Ask, picture: PictureAsk) -> str | Offer:
        """What "Draw from this image" does: `FrontDesk.draw`, except that a picture
        pseudo-dalle drew, which carries its tokens, is not drawn from but comes back as an
        offer of its edits."""
        try:
            return await self.desk.draw(member, ask, replace(picture, offer_edits=True))
        except CarriesTokens as carried:
            return self._offer(member, carried.source, ask.prompt, picture.upload)

    def _offer(self, member: Member, source: EditSource, words: str, upload: Upload) -> Offer:
        now = time.monotonic()
        for offer_id, kept in list(self._offers.items()):
            if now - kept.made_at > OFFER_KEEP_S or len(self._offers) >= MAX_OFFERS:
                del self._offers[offer_id]
        grid = source.grid
        offer = Offer(
            id=secrets.token_hex(4),
            user_id=member.user_id,
            state=base64.b64encode(grid.state()).decode("ascii"),
            rows=grid.rows,
            cols=grid.cols,
            decoder_sha256=grid.decoder_sha256,
            source_sha256=source.sha256,
            words=clean_text(words) or clean_text(source.prompt),
            upload=upload,
            made_at=now,
        )
        self._offers[offer.id] = offer
        return offer

    def offered(self, offer_id: str, member: Member) -> Offer | None:
        """The offer `offer_id` made to `member`; None once it has expired."""
        offer = self._offers.get(offer_id)
        if offer is None or offer.user_id != member.user_id:
            return None
        if time.monotonic() - offer.made_at > OFFER_KEEP_S:
            del self._offers[offer_id]
            return None
        return offer

    def expired(self, language: str) -> str:
        return tr(
            language,
            "This offer has expired: use Draw from this image on the picture again.",
        )

    # -- what an edit needs -----------------------------------------------------------------
    def may_edit(self, member: Member, job: JobRow) -> str | None:
        """Why `member` may not edit `job`, or None: only its requester or an admin may."""
        language = member.language
        if job.guild_id != member.guild_id:
            return tr(language, "There is no job {job} on this server.", job=job.id)
        if not member.may_manage(job):
            return tr(
                language,
                "Only the member who asked for this drawing or a server admin can edit it.",
            )
        return None

    def refusal(self, member: Member, job: JobRow) -> str | None:
        """Why `member` may not edit `job`, or None: only its requester or an admin may, and
        only while its tokens are kept."""
        if (refusal := self.may_edit(member, job)) is not None:
            return refusal
        if not job.continue_state:
            return tr(
                member.language,
                "What an edit of this drawing starts from is kept {days:g} days and is gone, "
                "but its picture carries it too: use Draw from this image on the picture (in "
                "its message's Apps menu).",
                days=self.desk.keep_days,
            )
        return None

    def words(self, origin: Origin) -> str:
        """The words an edit of `origin` draws with unless the member changes them."""
        return origin.words if isinstance(origin, Offer) else origin.spec.prompt

    def grid_size(self, origin: Origin) -> tuple[int, int]:
        """The rows and columns of `origin`'s token grid."""
        if isinstance(origin, Offer):
            return origin.rows, origin.cols
        return origin.spec.height // SIDE_MULTIPLE, origin.spec.width // SIDE_MULTIPLE

    async def grid_picture(self, upload: Upload, origin: Origin, language: str) -> bytes:
        """`upload`, the picture `origin` is, with the cells a member picks labelled on it;
        Refused when it cannot be fetched or read."""
        rows, cols = self.grid_size(origin)
        try:
            data = await self.desk.intake.fetch(upload)
            return await asyncio.to_thread(labelled_grid, data, rows, cols)
        except MemberError as error:
            raise refused(language, error) from None

    async def upscaled_subtly(self, upload: Upload, language: str) -> bytes:
        """Upscale (Subtle) of the picture `upload` (a card's): twice its size with Lanczos, as
        a PNG that says so. Refused when it cannot be fetched or read."""
        try:
            data = await self.desk.intake.fetch(upload)
            return await asyncio.to_thread(_upscaled_png, data)
        except MemberError as error:
            raise refused(language, error) from None

    # -- queueing one ----------------------------------------------------------------------
    async def edit(
        self,
        member: Member,
        origin: Origin,
        press: EditPress,
        *,
        words: str | None = None,
        cells: tuple[str, ...] = (),
    ) -> str:
        """Queue the edit `press` asks for of `origin` (for a region edit, of the region
        `cells`) with `words`, or with the words it was drawn with; what to answer the
        member."""
        language, kind = member.language, press.kind
        if isinstance(origin, Offer):
            asker, parent, given, ask = member, None, None, Ask(prompt=origin.words)
            drawn_by, source = origin.decoder_sha256, origin.source_sha256
        else:
            if (refusal := self.refusal(member, origin)) is not None:
                return refusal
            spec, given = origin.spec, self.desk.store.picture(origin)
            if spec.image_prompts and given is None:
                return tr(
                    language,
                    "The picture this drawing was given is kept {days:g} days and is "
                    "gone: give it again with /draw.",
                    days=self.desk.keep_days,
                )
            # An edit starts from its tokens: a picture it was given only steers it still.
            if given is not None:
                given = replace(given, use="steer") if steers_towards(given.use) else None
            asker = replace(member, guild_id=origin.guild_id, channel_id=origin.channel_id)
            parent = origin
            quality = None if spec.quality == DEFAULT_QUALITY else spec.quality
            # An edit of a tile stays one.
            ask = Ask(
                prompt=spec.prompt, timelapse=spec.timelapse, quality=quality, tile=bool(spec.tile)
            )
            drawn_by, source = None, None  # the decoder of this bot's workers drew it
        rows, cols = self.grid_size(origin)
        chosen = tuple(label for label in CELL_LABELS if label in cells)
        state = origin.state if isinstance(origin, Offer) else str(origin.continue_state)
        try:
            region = pack_free(free_from_cells(chosen, rows, cols)) if kind == "region" else None
            if kind in ("pan", "square"):
                state, rows, cols, region = _canvas(state, kind, press.direction)
            elif kind == "upscale":  # the worker makes its tokens, from the picture's
                rows, cols = upscaled_grid(rows, cols)
        except MemberError as error:
            return str(refused(language, error))
        made = EditSpec(
            kind=kind,
            decoder_sha256=drawn_by,
            free_b64=region,
            cells=chosen,
            source_sha256=source,
            direction=press.direction if kind == "pan" else None,
            factor=press.factor if kind == "zoom" else None,
        )
        edit = Edit(made, state, SIDE_MULTIPLE * cols, SIDE_MULTIPLE * rows)
        full = effective(self.desk.settings(asker.guild_id), self.desk.rules.limits)
        ask = replace(
            ask,
            prompt=ask.prompt if words is None else words,
            iterations=edit_iterations(kind, full.default_iterations),
        )
        try:
            job, notices = await self.desk.submit(asker, ask, given=given, parent=parent, edit=edit)
        except Refused as error:
            return str(error)
        said = tr(language, QUEUED[kind], job=job.id, cells=", ".join(chosen))
        return " ".join([said, *notices])


def _canvas(state: str, kind: Kind, direction: PanDirection | None) -> tuple[str, int, int, str]:
    """A pan's or Make Square's new canvas: its state, rows and columns, and the mask of the
    cells drawn afresh; the old tokens copied verbatim. MemberError for a canvas past the
    largest side, and for Make Square of a square picture."""
    try:
        grid = TokenGrid.from_state(base64.b64decode(state, validate=True), "")
    except binascii.Error:
        raise MemberError(EDIT_TOKENS_DAMAGED) from None
    if kind == "pan" and direction is not None:
        grown, fresh = panned(grid, direction)
    elif grid.rows == grid.cols:
        raise MemberError(EDIT_SQUARE_ALREADY)
    else:
        grown, fresh = squared(grid)
    new_state = base64.b64encode(grown.state()).decode("ascii")
    return new_state, grown.rows, grown.cols, pack_free(fresh)


def _upscaled_png(data: bytes) -> bytes:
    """`upscaled_subtly`'s picture as a PNG whose edit chunk says what made it."""
    info = PngImagePlugin.PngInfo()
    info.add_text(EDIT_KEY, json.dumps({"kind": "upscale", "method": "lanczos"}))
    out = io.BytesIO()
    upscaled_subtly(data).save(out, format="PNG", pnginfo=info)
    return out.getvalue()
