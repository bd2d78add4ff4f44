"""The message context menu "Draw from this image": a form for the prompt, how to use the
picture and how firmly, then the same queue as /draw.

The picture is fetched only when the form is submitted; what its attachment declares (and
whether pictures are on) is checked before the form opens, so nobody fills it in for nothing.
A picture pseudo-dalle drew carries its tokens: it is not drawn from but offered its edits
(Vary (Subtle), Vary (Strong), Vary (Region): `bot.front.edits`), privately, with the words
of the form, or the picture's own when the form has none.
"""

from __future__ import annotations

import discord
from discord import app_commands

from bot.front.attachments import first_picture
from bot.front.checks import member_of
from bot.front.cogs.draw import USE_NAMES
from bot.front.edits import OFFERED, EditControls
from bot.front.forms import FORM_TIMEOUT_S
from bot.i18n import N_, language_of, tr
from bot.jobs.desk import FrontDesk
from bot.jobs.pictures import PictureAsk, Upload
from bot.jobs.spec import Ask, Refused
from generator.contract.errors import SettingsError
from generator.contract.images import (
    DEFAULT_IMAGE_USE,
    DEFAULT_INIT_STRENGTH,
    IMAGE_USES,
    check_strength,
)
from generator.contract.prompts import MAX_PROMPT_CHARS

MENU_NAME = N_("Draw from this image")


class DrawFromImageForm(discord.ui.Modal):
    """What to draw with the picture; the member's language on every label."""

    def __init__(self, edits: EditControls, upload: Upload, language: str) -> None:
        super().__init__(title=tr(language, MENU_NAME), timeout=FORM_TIMEOUT_S)
        self.edits = edits
        self.upload = upload
        self.prompt: discord.ui.TextInput[DrawFromImageForm] = discord.ui.TextInput(
            custom_id="prompt",
            style=discord.TextStyle.paragraph,
            required=False,
            max_length=MAX_PROMPT_CHARS,
            placeholder=tr(
                language, "e.g. a lighthouse at dusk; may stay empty to let the picture steer"
            ),
        )
        self.use: discord.ui.Select[DrawFromImageForm] = discord.ui.Select(
            custom_id="use",
            options=[
                discord.SelectOption(
                    label=tr(language, USE_NAMES[use]), value=use, default=use == DEFAULT_IMAGE_USE
                )
                for use in IMAGE_USES
            ],
        )
        self.strength: discord.ui.TextInput[DrawFromImageForm] = discord.ui.TextInput(
            custom_id="strength",
            required=False,
            max_length=10,
            default=f"{DEFAULT_INIT_STRENGTH:g}",
        )
        self.add_item(discord.ui.Label(text=tr(language, "What to draw"), component=self.prompt))
        self.add_item(discord.ui.Label(text=tr(language, "Use the picture to"), component=self.use))
        self.add_item(
            discord.ui.Label(
                text=tr(language, "Strength, 0 to 1"),
                component=self.strength,
                description=tr(
                    language, "How firmly the drawing holds to the picture it starts from"
                ),
            )
        )

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        member = member_of(interaction)
        try:
            strength = _strength(self.strength.value, member.language)
        except Refused as error:
            await interaction.edit_original_response(content=str(error))
            return
        use = self.use.values[0] if self.use.values else DEFAULT_IMAGE_USE
        picture = PictureAsk(self.upload, use, strength)
        ask = Ask(prompt=self.prompt.value)
        answer = await self.edits.editing.draw_from_image(member, ask, picture)
        if isinstance(answer, str):
            await interaction.edit_original_response(content=answer)
            return
        view = self.edits.offer_view(answer, member.language)
        await interaction.edit_original_response(content=tr(member.language, OFFERED), view=view)


def _strength(text: str, language: str) -> float:
    """The strength typed into the form (empty: the default); Refused if it is no number
    from 0 to 1."""
    if not text.strip():
        return DEFAULT_INIT_STRENGTH
    try:
        return check_strength(float(text.strip().replace(",", ".")))
    except (ValueError, SettingsError):
        raise Refused(
            tr(language, "The strength must be a number from 0 to 1, like 0.5.")
        ) from None


class DrawFromImageMenu:
    """The context menu command (`command`), which the bot registers next to its cogs."""

    def __init__(self, desk: FrontDesk, edits: EditControls) -> None:
        self.desk = desk
        self.edits = edits
        self.command = app_commands.ContextMenu(name=MENU_NAME, callback=self.open_form)

    @app_commands.guild_only()
    async def open_form(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Ask what to draw with the message's picture."""
        assert interaction.guild_id is not None
        language = language_of(str(interaction.locale))
        upload = first_picture(message)
        if upload is None:
            await interaction.response.send_message(
                tr(language, "This message has no picture to draw from."), ephemeral=True
            )
            return
        try:
            self.desk.check_picture(interaction.guild_id, upload, language)
        except Refused as error:
            await interaction.response.send_message(str(error), ephemeral=True)
            return
        await interaction.response.send_modal(DrawFromImageForm(self.edits, upload, language))
