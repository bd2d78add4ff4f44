"""Buttons that keep working after a restart: each one's state is in its custom_id.

A button's id says what it does and to which job (`draw:continue:12`); the rest comes from the
database. The launcher makes the button class with what handles a press (`job_buttons`, with
`presses` for the desk's answers) and registers it with the bot, so buttons on cards posted
before a restart still work. The edits' buttons hand over to `bot.front.edits`, which may ask
for the words first (Remix) or show the region picker.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any, Self

import discord

from bot.front.checks import member_of
from bot.front.edits import EditControls
from bot.i18n import N_, SOURCE_LANGUAGE, tr
from bot.jobs.desk import FrontDesk
from bot.jobs.edits import UPSCALE_SUBTLE, EditPress
from generator.contract.edits import UPSCALE_FACTOR, PanDirection
from generator.contract.settings import MAX_SIDE


class Action(StrEnum):
    CANCEL = "cancel"
    REROLL = "reroll"
    CONTINUE = "continue"
    SUBTLE = "subtle"
    STRONG = "strong"
    REGION = "region"
    DELETE = "delete"
    REPORT = "report"
    PAN_LEFT = "left"
    PAN_RIGHT = "right"
    PAN_UP = "up"
    PAN_DOWN = "down"
    SQUARE = "square"
    ZOOM_OUT_15 = "zoom15"
    ZOOM_OUT_2 = "zoom2"
    UPSCALE_SUBTLE = "upsubtle"
    UPSCALE_CREATIVE = "upcreative"


PANS: dict[Action, PanDirection] = {
    Action.PAN_LEFT: "left",
    Action.PAN_RIGHT: "right",
    Action.PAN_UP: "up",
    Action.PAN_DOWN: "down",
}
ZOOMS: dict[Action, float] = {Action.ZOOM_OUT_15: 1.5, Action.ZOOM_OUT_2: 2.0}
# The buttons that queue an edit (`bot.front.edits` takes them over).
EDIT_PRESSES: dict[Action, EditPress] = {
    Action.SUBTLE: EditPress("subtle"),
    Action.STRONG: EditPress("strong"),
    Action.REGION: EditPress("region"),
    **{action: EditPress("pan", direction=direction) for action, direction in PANS.items()},
    Action.SQUARE: EditPress("square"),
    **{action: EditPress("zoom", factor=factor) for action, factor in ZOOMS.items()},
    Action.UPSCALE_CREATIVE: EditPress("upscale"),
}
LOOKS: dict[Action, tuple[str, discord.ButtonStyle]] = {
    Action.CANCEL: (N_("Cancel"), discord.ButtonStyle.danger),
    Action.REROLL: (N_("Reroll"), discord.ButtonStyle.primary),
    Action.CONTINUE: (N_("Continue"), discord.ButtonStyle.secondary),
    Action.DELETE: (N_("Delete"), discord.ButtonStyle.secondary),
    Action.REPORT: (N_("Report"), discord.ButtonStyle.secondary),
    Action.UPSCALE_SUBTLE: (UPSCALE_SUBTLE, discord.ButtonStyle.secondary),
    **{
        action: (press.name, discord.ButtonStyle.secondary)
        for action, press in EDIT_PRESSES.items()
    },
    # The pans as arrows, grouped on one row: a pan grows the canvas by half on that side.
    Action.PAN_LEFT: ("⬅", discord.ButtonStyle.secondary),
    Action.PAN_RIGHT: ("➡", discord.ButtonStyle.secondary),
    Action.PAN_UP: ("⬆", discord.ButtonStyle.secondary),
    Action.PAN_DOWN: ("⬇", discord.ButtonStyle.secondary),
}
# A card's buttons, row by row (Discord shows at most 5 a row, and 5 rows): what makes more of
# the picture first, then what grows its canvas, then what is done with it.
Rows = tuple[tuple[Action, ...], ...]
ON_ACTIVE_CARDS: Rows = ((Action.CANCEL,),)
AGAIN_ROW = (Action.REROLL, Action.CONTINUE, Action.SUBTLE, Action.STRONG, Action.REGION)
PAN_ROW = (Action.PAN_LEFT, Action.PAN_RIGHT, Action.PAN_UP, Action.PAN_DOWN)
ZOOM_ROW = (Action.ZOOM_OUT_15, Action.ZOOM_OUT_2, Action.UPSCALE_SUBTLE)
LAST_ROW = (Action.DELETE, Action.REPORT)


def finished_rows(width: int, height: int) -> Rows:
    """A finished card's buttons: Make Square only for a picture that is not square, Upscale
    (Creative) only for one whose double is within the largest side."""
    pans = PAN_ROW if width == height else (*PAN_ROW, Action.SQUARE)
    doubled = UPSCALE_FACTOR * max(width, height) <= MAX_SIDE
    zooms = (*ZOOM_ROW, Action.UPSCALE_CREATIVE) if doubled else ZOOM_ROW
    return (AGAIN_ROW, pans, zooms, LAST_ROW)


TEMPLATE = rf"draw:(?P<action>{'|'.join(Action)}):(?P<job>[0-9]+)"

OnPress = Callable[[discord.Interaction, Action, int], Awaitable[None]]


class JobButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=TEMPLATE):
    """A job card's button; `job_buttons` makes the class that acts on a press."""

    def __init__(
        self,
        action: Action,
        job_id: int,
        language: str = SOURCE_LANGUAGE,
        row: int | None = None,
    ) -> None:
        label, style = LOOKS[action]
        button: discord.ui.Button[Any] = discord.ui.Button(
            label=tr(language, label), style=style, custom_id=f"draw:{action}:{job_id}"
        )
        super().__init__(button, row=row)
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> Self:
        return cls(Action(match["action"]), int(match["job"]))


def presses(desk: FrontDesk, edits: EditControls) -> OnPress:
    """What a press of a job card's button does: the desk decides, the answer is ephemeral
    (Report's thank-you included), and Delete removes the card it is on. The edits, and Reroll
    with Remix on, go to `edits`."""

    async def on_press(interaction: discord.Interaction, action: Action, job_id: int) -> None:
        member, job = member_of(interaction), desk.store.job(job_id)
        if job is not None and action in EDIT_PRESSES:
            await edits.pressed(interaction, member, job, EDIT_PRESSES[action])
            return
        if job is not None and action == Action.UPSCALE_SUBTLE:
            await edits.upscale_subtly(interaction, member, job)
            return
        if job is not None and action == Action.REROLL and edits.editing.remix(member):
            await edits.reroll(interaction, member, job)
            return
        if job is None:
            answer = tr(member.language, "This drawing no longer exists.")
        elif action == Action.CANCEL:
            answer = await desk.cancel(member, job_id)
        elif action == Action.REPORT:
            answer = desk.report(member, job)
        elif action == Action.DELETE:
            allowed, answer = desk.delete(member, job)
            if allowed and interaction.message is not None:
                # The button is on the card itself; a card already gone is fine.
                with contextlib.suppress(discord.NotFound):
                    await interaction.message.delete()
        else:
            answer = await desk.again(member, job, continues=action == Action.CONTINUE)
        await interaction.response.send_message(answer, ephemeral=True)

    return on_press


def job_buttons(on_press: OnPress) -> type[JobButton]:
    """The job button class whose presses go to `on_press`."""

    class PressedJobButton(JobButton, template=TEMPLATE):
        async def callback(self, interaction: discord.Interaction) -> None:
            await on_press(interaction, self.action, self.job_id)

    return PressedJobButton


def card_view(kind: type[JobButton], job_id: int, rows: Rows, language: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for row, actions in enumerate(rows):
        for action in actions:
            view.add_item(kind(action, job_id, language, row))
    return view
