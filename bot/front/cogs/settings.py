"""/settings: a member's own settings on a server. Remix: Reroll and the edits first open a
form with the words filled in, so that they can be changed."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.i18n import N_, language_of, tr
from bot.jobs.store import Store

REMIX = {
    True: N_(
        "Remix is on: Reroll, Vary (Subtle) and Vary (Strong) first open a form with the "
        "words, so that you can change them."
    ),
    False: N_(
        "Remix is off: Reroll, Vary (Subtle) and Vary (Strong) draw at once with the same words."
    ),
}


class SettingsCog(commands.Cog):
    def __init__(self, store: Store) -> None:
        self.store = store

    @app_commands.command(name="settings")
    @app_commands.guild_only()
    @app_commands.describe(
        remix="True: Reroll and Vary first open a form with the words, to change them"
    )
    async def settings(self, interaction: discord.Interaction, remix: bool | None = None) -> None:
        """Your own drawing settings on this server (Remix); without an option, see them."""
        guild_id, user_id = interaction.guild_id or 0, interaction.user.id
        if remix is not None:
            self.store.set_remix(guild_id, user_id, remix)
        on = self.store.remix(guild_id, user_id)
        answer = tr(language_of(str(interaction.locale)), REMIX[on])
        await interaction.response.send_message(answer, ephemeral=True)
