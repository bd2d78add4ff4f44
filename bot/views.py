"""Buttons that keep working after a restart: each one's state is in its custom_id.

The job id in the id is all a button needs; the rest comes from the database.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Self, cast

import discord

if TYPE_CHECKING:
    from bot.drawing import Drawing


def _drawing(interaction: discord.Interaction) -> Drawing:
    return cast("Drawing", interaction.client.drawing)  # type: ignore[attr-defined]


class _JobButton:
    """What every job button shares; each subclass is also a `DynamicItem` with a template."""

    action = ""
    label = ""
    style = discord.ButtonStyle.secondary

    def __init__(self, job_id: int) -> None:
        button: discord.ui.Button[Any] = discord.ui.Button(
            label=self.label, style=self.style, custom_id=f"draw:{self.action}:{job_id}"
        )
        super().__init__(button)  # type: ignore[call-arg]
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> Self:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await _drawing(interaction).on_button(interaction, self.action, self.job_id)


class CancelButton(
    _JobButton,
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"draw:cancel:(?P<job>[0-9]+)",
):
    action, label, style = "cancel", "Cancel", discord.ButtonStyle.danger


class RerollButton(
    _JobButton,
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"draw:reroll:(?P<job>[0-9]+)",
):
    action, label, style = "reroll", "Reroll", discord.ButtonStyle.primary


class ContinueButton(
    _JobButton,
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"draw:continue:(?P<job>[0-9]+)",
):
    action, label = "continue", "Continue"


class DeleteButton(
    _JobButton,
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"draw:delete:(?P<job>[0-9]+)",
):
    action, label = "delete", "Delete"


BUTTONS = (CancelButton, RerollButton, ContinueButton, DeleteButton)


def buttons(job_id: int, *kinds: type[discord.ui.DynamicItem[Any]]) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for kind in kinds:
        view.add_item(kind(job_id))
    return view
