"""The `commands.Bot` subclass. Start-up lives in `bot.launcher`, which builds the store and
injects it; async set-up (cogs, buttons, command sync, the job runner) is in `setup_hook`."""

from __future__ import annotations

import asyncio
import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot.cards import NO_MENTIONS
from bot.cogs.admin import AdminCog
from bot.cogs.draw import DrawCog
from bot.cogs.help import HelpCog
from bot.cogs.queue import QueueCog
from bot.config import Config
from bot.drawing import Drawing
from bot.health import HeartbeatWriter
from bot.store import Store
from bot.views import BUTTONS

log = logging.getLogger("pseudo_dalle.bot")
# Shutdown's deadlines: the worker gets up to 3 s (bot.runner), then these; 8 s in all.
CARDS_FLUSH_S = 3.0
GATEWAY_CLOSE_S = 2.0


# The bot never joins voice channels: spare operators discord.py's warnings about voice libraries.
discord.VoiceClient.warn_nacl = False
discord.VoiceClient.warn_dave = False


class DrawBot(commands.Bot):
    def __init__(self, config: Config, store: Store) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(
            command_prefix=commands.when_mentioned, intents=intents, help_command=None,
            allowed_mentions=NO_MENTIONS,
        )  # fmt: skip
        self.config = config
        self.store = store
        self.drawing = Drawing(self, store, config)
        self._closing_started = False
        self.heartbeat: HeartbeatWriter | None = None
        if config.health.heartbeat_file:
            self.heartbeat = HeartbeatWriter(
                config.resolve(config.health.heartbeat_file), config.health.interval_s,
                gateway=self.gateway_connected, worker=lambda: self.drawing.runner.link.alive,
            )  # fmt: skip

    async def setup_hook(self) -> None:
        for cog in (DrawCog, QueueCog, AdminCog, HelpCog):
            await self.add_cog(cog(self))
        self.add_dynamic_items(*BUTTONS)
        self.tree.error(self._on_app_command_error)
        if self.config.discord.sync_commands:
            await self.tree.sync()
        for job in self.store.requeue_interrupted():
            log.info("job %s was running when the bot stopped; it is queued again", job.id)
        self.drawing.cards.start()
        self.drawing.runner.start()
        if self.heartbeat is not None:
            self.heartbeat.start()

    def gateway_connected(self) -> bool:
        return bool(self.is_ready() and self.ws is not None and self.ws.open)

    async def close(self) -> None:
        """Stop taking jobs, put the running ones back in the queue, show that on their cards,
        then leave the gateway; each step has a deadline, so a Discord that does not answer
        cannot hold the shutdown past Docker's stop_grace_period (10 s)."""
        if self._closing_started:
            await super().close()
            return
        self._closing_started = True
        if self.heartbeat is not None:
            await self.heartbeat.stop()
        await self.drawing.runner.stop()
        await self.drawing.cards.stop(CARDS_FLUSH_S)
        try:
            await asyncio.wait_for(super().close(), GATEWAY_CLOSE_S)
        except TimeoutError:
            log.warning("Discord did not answer the gateway's close in %.0f s", GATEWAY_CLOSE_S)
            await self.http.close()

    async def _on_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        if isinstance(error, app_commands.CheckFailure):
            message = str(error) or "You cannot use this command here."
        else:
            log.error("command %s failed", interaction.command, exc_info=error)
            message = "Sorry, something went wrong on our side; it has been logged."
        if interaction.response.is_done():
            await interaction.followup.send(message, ephemeral=True)
        else:
            await interaction.response.send_message(message, ephemeral=True)
