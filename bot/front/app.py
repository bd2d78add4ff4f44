"""The `commands.Bot` subclass: the cogs, context menus, buttons and selects it is handed,
command sync and errors.

Everything it serves is built and wired by `bot.ops.launcher`; the bot itself owns no jobs, workers
or cards.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.front.cards import NO_MENTIONS
from bot.front.views import JobButton
from bot.i18n import catalog, language_of, tr

log = logging.getLogger("pseudo_dalle.bot")
GATEWAY_CLOSE_S = 2.0


# The bot never joins voice channels: spare operators discord.py's warnings about voice libraries.
discord.VoiceClient.warn_nacl = False
discord.VoiceClient.warn_dave = False


class CatalogTranslator(app_commands.Translator):
    """Command names, option names and descriptions from the message catalogs."""

    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        language = language_of(locale.value)
        translated = catalog(language).gettext(string.message)
        return translated if translated != string.message else None


class DrawBot(commands.Bot):
    def __init__(
        self,
        cogs: Sequence[commands.Cog],
        buttons: type[JobButton],
        *,
        sync_commands: bool,
        menus: Sequence[app_commands.ContextMenu] = (),
        items: Sequence[type[discord.ui.DynamicItem[Any]]] = (),
    ) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        intents.auto_moderation_configuration = True  # servers' AutoMod rules apply to prompts
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            help_command=None,
            allowed_mentions=NO_MENTIONS,
        )
        self.sync_commands = sync_commands
        self._cogs = list(cogs)
        self._menus = list(menus)
        self._buttons = buttons
        self._items = list(items)

    async def setup_hook(self) -> None:
        for cog in self._cogs:
            await self.add_cog(cog)
        for menu in self._menus:
            self.tree.add_command(menu)
        self.add_dynamic_items(self._buttons, *self._items)
        self.tree.error(self._on_app_command_error)
        await self.tree.set_translator(CatalogTranslator())
        if self.sync_commands:
            await self.tree.sync()

    def gateway_connected(self) -> bool:
        return bool(self.is_ready() and self.ws is not None and self.ws.open)

    async def close(self) -> None:
        """Leave the gateway; a Discord that does not answer cannot hold this up."""
        try:
            await asyncio.wait_for(super().close(), GATEWAY_CLOSE_S)
        except TimeoutError:
            log.warning("Discord did not answer the gateway's close in %.0f s", GATEWAY_CLOSE_S)
            await self.http.close()

    async def _on_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        language = language_of(str(interaction.locale))
        if isinstance(error, app_commands.CheckFailure):
            message = str(error) or tr(language, "You cannot use this command here.")
        else:
            log.error("command %s failed", interaction.command, exc_info=error)
            message = tr(language, "Sorry, something went wrong on our side; it has been logged.")
        if interaction.response.is_done():
            await interaction.followup.send(message, ephemeral=True)
        else:
            await interaction.response.send_message(message, ephemeral=True)
