"""The edits on Discord: a card's Vary buttons, the offer of edits for a picture given, the
region picker, and Remix's form; `bot.jobs.edits` decides and queues.

Vary (Subtle) and Vary (Strong) queue at once with the same words, or, with Remix on, open a
form with the words filled in. Vary (Region) answers privately with the picture, its cells
labelled A1..D4, a multi-select of the cells and a button that opens the form. Every part keeps
its state in its custom_id (`j12` is job 12, `o` and eight hex digits an offer of a picture
given; the cells chosen are a mask of 16 bits), so the picker of a job still works after a
restart; an offer lives in memory (`bot.jobs.edits.Offer`).
"""

from __future__ import annotations

import io
import re
from typing import Any, Self

import discord

from bot.front.attachments import upload_of
from bot.front.cards import picture_name
from bot.front.checks import member_of
from bot.front.forms import WordsForm
from bot.i18n import N_, SOURCE_LANGUAGE, language_of, tr
from bot.jobs.desk import FrontDesk, Member
from bot.jobs.edits import EDIT_NAMES, UPSCALE_SUBTLE, Editing, EditPress, Offer, Origin
from bot.jobs.spec import Refused
from bot.jobs.store import JobRow
from generator.contract.edits import CELL_LABELS, EDIT_KINDS, EditKind

TARGET = r"(?P<target>j[0-9]+|o[0-9a-f]{8})"
CELLS_TEMPLATE = rf"edit:cells:{TARGET}"
WORDS_TEMPLATE = rf"edit:words:{TARGET}:(?P<cells>[0-9a-f]{{4}})"
OFFER_TEMPLATE = rf"edit:(?P<kind>{'|'.join(EDIT_KINDS)}):(?P<target>o[0-9a-f]{{8}})"
PICK = N_(
    "Pick the cells to redraw (columns A to D from the left, rows 1 to 4 from the top), then "
    "say what to draw there. The rest of the picture stays exactly as it is."
)
OFFERED = N_(
    "pseudo-dalle drew this picture, and it carries its tokens: it can be edited exactly "
    "instead of drawn from. Pick an edit."
)


def cells_code(cells: tuple[str, ...]) -> str:
    """The cells as four hex digits: a bit for each label of `CELL_LABELS`."""
    return f"{sum(1 << CELL_LABELS.index(label) for label in cells):04x}"


def cells_of(code: str) -> tuple[str, ...]:
    mask = int(code, 16)
    return tuple(label for index, label in enumerate(CELL_LABELS) if mask >> index & 1)


class CellsSelect(discord.ui.DynamicItem[discord.ui.Select[Any]], template=CELLS_TEMPLATE):
    """The region picker's cells, the `chosen` ones ticked."""

    def __init__(
        self, target: str, language: str = SOURCE_LANGUAGE, chosen: tuple[str, ...] = ()
    ) -> None:
        select: discord.ui.Select[Any] = discord.ui.Select(
            custom_id=f"edit:cells:{target}",
            placeholder=tr(language, "Pick the cells to redraw"),
            min_values=1,
            max_values=len(CELL_LABELS),
            options=[
                discord.SelectOption(label=label, value=label, default=label in chosen)
                for label in CELL_LABELS
            ],
        )
        super().__init__(select, row=0)
        self.target = target

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> Self:
        return cls(match["target"], language_of(str(interaction.locale)))


class WordsButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=WORDS_TEMPLATE):
    """What opens the region's form, once cells are chosen (they are in its custom_id)."""

    def __init__(
        self, target: str, cells: tuple[str, ...], language: str = SOURCE_LANGUAGE
    ) -> None:
        button: discord.ui.Button[Any] = discord.ui.Button(
            label=tr(language, "Say what to draw there"),
            style=discord.ButtonStyle.primary,
            custom_id=f"edit:words:{target}:{cells_code(cells)}",
            disabled=not cells,
        )
        super().__init__(button, row=1)
        self.target = target
        self.cells = cells

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> Self:
        return cls(match["target"], cells_of(match["cells"]), language_of(str(interaction.locale)))


class OfferButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=OFFER_TEMPLATE):
    """One of the edits offered for a picture given."""

    def __init__(self, kind: EditKind, target: str, language: str = SOURCE_LANGUAGE) -> None:
        button: discord.ui.Button[Any] = discord.ui.Button(
            label=tr(language, EDIT_NAMES[kind]),
            style=discord.ButtonStyle.secondary,
            custom_id=f"edit:{kind}:{target}",
        )
        super().__init__(button)
        self.kind: EditKind = kind
        self.target = target

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> Self:
        kind = next(kind for kind in EDIT_KINDS if kind == match["kind"])
        return cls(kind, match["target"], language_of(str(interaction.locale)))


def target_of(origin: Origin) -> str:
    return f"o{origin.id}" if isinstance(origin, Offer) else f"j{origin.id}"


def card_picture(message: discord.Message | None, job_id: int) -> discord.Attachment | None:
    """The picture on job `job_id`'s card, a spoiler's too; None when it shows none (it was
    withheld)."""
    if message is None:
        return None
    for attachment in message.attachments:
        if attachment.filename.removeprefix("SPOILER_") == picture_name(job_id):
            return attachment
    return None


async def _say(interaction: discord.Interaction, answer: str) -> None:
    await interaction.response.send_message(answer, ephemeral=True)


class EditControls:
    """What the edits' buttons, select and forms do; `items` are the classes of the select and
    buttons whose uses come here, for the bot to register (and the only ones its views hold:
    discord.py dispatches to the class of the item it last sent)."""

    def __init__(self, desk: FrontDesk, editing: Editing) -> None:
        self.desk = desk
        self.editing = editing
        controls = self

        class PickedCells(CellsSelect, template=CELLS_TEMPLATE):
            async def callback(self, interaction: discord.Interaction) -> None:
                await controls.picked(interaction, self.target, self.item.values)

        class PressedWords(WordsButton, template=WORDS_TEMPLATE):
            async def callback(self, interaction: discord.Interaction) -> None:
                await controls.region_words(interaction, self.target, self.cells)

        class PressedOffer(OfferButton, template=OFFER_TEMPLATE):
            async def callback(self, interaction: discord.Interaction) -> None:
                await controls.offered(interaction, self.kind, self.target)

        self._cells: type[CellsSelect] = PickedCells
        self._words: type[WordsButton] = PressedWords
        self._offer: type[OfferButton] = PressedOffer
        self.items: tuple[type[discord.ui.DynamicItem[Any]], ...] = (
            PickedCells,
            PressedWords,
            PressedOffer,
        )

    def picker(self, target: str, language: str, chosen: tuple[str, ...] = ()) -> discord.ui.View:
        """The region picker's select and button, with the `chosen` cells."""
        view = discord.ui.View(timeout=None)
        view.add_item(self._cells(target, language, chosen))
        view.add_item(self._words(target, chosen, language))
        return view

    def offer_view(self, offer: Offer, language: str) -> discord.ui.View:
        """The edits offered for a picture given."""
        view = discord.ui.View(timeout=None)
        for kind in EDIT_KINDS:
            view.add_item(self._offer(kind, f"o{offer.id}", language))
        return view

    def origin(self, target: str, member: Member) -> Origin | str:
        """What `target` names, or what to answer when it is gone."""
        if target.startswith("j"):
            job = self.desk.store.job(int(target[1:]))
            return job or tr(member.language, "This drawing no longer exists.")
        offer = self.editing.offered(target[1:], member)
        return offer or self.editing.expired(member.language)

    async def _edit(
        self,
        member: Member,
        target: str,
        press: EditPress,
        words: str | None = None,
        *,
        cells: tuple[str, ...] = (),
    ) -> str:
        """The edit, of `target` as it is when the member sends it."""
        origin = self.origin(target, member)
        if isinstance(origin, str):
            return origin
        return await self.editing.edit(member, origin, press, words=words, cells=cells)

    async def pressed(
        self, interaction: discord.Interaction, member: Member, origin: Origin, press: EditPress
    ) -> None:
        """An edit's button, on a card (a Vary: or on an offer)."""
        if isinstance(origin, JobRow) and (refusal := self.editing.refusal(member, origin)):
            await _say(interaction, refusal)
        elif press.kind == "region":
            await self._pick_region(interaction, member, origin)
        elif self.editing.remix(member) or not self.editing.words(origin):
            target = target_of(origin)

            async def vary(asker: Member, words: str) -> str:
                return await self._edit(asker, target, press, words)

            words, language = self.editing.words(origin), member.language
            form = WordsForm(tr(language, press.name), words, vary, language)
            await interaction.response.send_modal(form)
        else:
            await _say(interaction, await self.editing.edit(member, origin, press))

    async def upscale_subtly(
        self, interaction: discord.Interaction, member: Member, job: JobRow
    ) -> None:
        """Upscale (Subtle): the card's picture at twice its size (Lanczos), posted in the
        channel at once; nothing is drawn or queued."""
        language = member.language
        if (refusal := self.editing.may_edit(member, job)) is not None:
            await _say(interaction, refusal)
            return
        attachment = card_picture(interaction.message, job.id)
        if attachment is None:
            answer = tr(language, "This card shows no picture, so there is nothing to upscale.")
            await _say(interaction, answer)
            return
        await interaction.response.defer(thinking=True)
        try:
            png = await self.editing.upscaled_subtly(upload_of(attachment), language)
        except Refused as error:
            await interaction.edit_original_response(content=str(error))
            return
        name = f"pseudo-dalle-{job.id}-upscaled.png"
        bigger = discord.File(io.BytesIO(png), filename=name, spoiler=attachment.is_spoiler())
        said = tr(
            language,
            "{edit} of job {job}: twice the size with the Lanczos filter; nothing was drawn.",
            edit=tr(language, UPSCALE_SUBTLE),
            job=job.id,
        )
        await interaction.edit_original_response(
            content=said, attachments=[bigger], allowed_mentions=discord.AllowedMentions.none()
        )

    async def reroll(self, interaction: discord.Interaction, member: Member, job: JobRow) -> None:
        """Reroll with Remix on: the form first."""

        async def again(asker: Member, words: str) -> str:
            current = self.desk.store.job(job.id)
            if current is None:
                return tr(asker.language, "This drawing no longer exists.")
            return await self.desk.again(asker, current, continues=False, prompt=words)

        title = tr(member.language, "Reroll")
        await interaction.response.send_modal(
            WordsForm(title, job.spec.prompt, again, member.language)
        )

    async def _pick_region(
        self, interaction: discord.Interaction, member: Member, origin: Origin
    ) -> None:
        """The region picker, privately: the picture with its cells labelled."""
        language, spoiler = member.language, False
        if isinstance(origin, Offer):
            upload = origin.upload
        else:
            attachment = card_picture(interaction.message, origin.id)
            if attachment is None:
                answer = tr(language, "This card shows no picture, so there is no part to pick.")
                await _say(interaction, answer)
                return
            upload, spoiler = upload_of(attachment), attachment.is_spoiler()
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            png = await self.editing.grid_picture(upload, origin, language)
        except Refused as error:
            await interaction.edit_original_response(content=str(error))
            return
        cells = discord.File(io.BytesIO(png), filename="pseudo-dalle-cells.png", spoiler=spoiler)
        await interaction.edit_original_response(
            content=tr(language, PICK),
            attachments=[cells],
            view=self.picker(target_of(origin), language),
        )

    async def picked(
        self, interaction: discord.Interaction, target: str, values: list[str]
    ) -> None:
        """Cells chosen: the button now carries them."""
        chosen = tuple(label for label in CELL_LABELS if label in values)
        language = language_of(str(interaction.locale))
        await interaction.response.edit_message(view=self.picker(target, language, chosen))

    async def region_words(
        self, interaction: discord.Interaction, target: str, cells: tuple[str, ...]
    ) -> None:
        """The region's form, with the words filled in."""
        member = member_of(interaction)
        origin = self.origin(target, member)
        if isinstance(origin, str):
            await _say(interaction, origin)
            return
        if isinstance(origin, JobRow) and (refusal := self.editing.refusal(member, origin)):
            await _say(interaction, refusal)
            return

        async def redraw(asker: Member, words: str) -> str:
            return await self._edit(asker, target, EditPress("region"), words, cells=cells)

        language = member.language
        form = WordsForm(
            tr(language, EDIT_NAMES["region"]),
            self.editing.words(origin),
            redraw,
            language,
            description=tr(language, "Cells to redraw: {cells}", cells=", ".join(cells)),
        )
        await interaction.response.send_modal(form)

    async def offered(self, interaction: discord.Interaction, kind: EditKind, target: str) -> None:
        """An edit offered for a picture given."""
        member = member_of(interaction)
        origin = self.origin(target, member)
        if isinstance(origin, str):
            await _say(interaction, origin)
            return
        await self.pressed(interaction, member, origin, EditPress(kind))
