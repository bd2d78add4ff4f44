"""/drawconfig: a server's drawing limits, within the operator's hard limits."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.checks import admin_only

if TYPE_CHECKING:
    from bot.app import DrawBot


class AdminCog(commands.Cog):
    def __init__(self, bot: DrawBot) -> None:
        self.bot = bot

    @app_commands.command(name="drawconfig")
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)
    @admin_only()
    @app_commands.describe(
        max_iterations="Most iterations a member may ask for",
        default_iterations="Iterations when a member does not say",
        max_queued_per_user="Drawings one member may have waiting or running",
        progress_interval="Seconds between progress updates on a card (at least 2)",
        max_size="Largest picture side in pixels",
        allow_channel="Allow drawing in this channel (once any is allowed, only those are)",
        disallow_channel="Stop allowing drawing in this channel",
        all_channels="True: allow drawing in every channel again",
    )
    async def drawconfig(
        self,
        interaction: discord.Interaction,
        max_iterations: app_commands.Range[int, 1, 100_000] | None = None,
        default_iterations: app_commands.Range[int, 1, 100_000] | None = None,
        max_queued_per_user: app_commands.Range[int, 1, 1000] | None = None,
        progress_interval: app_commands.Range[float, 2, 3600] | None = None,
        max_size: app_commands.Range[int, 64, 1024] | None = None,
        allow_channel: discord.TextChannel | None = None,
        disallow_channel: discord.TextChannel | None = None,
        all_channels: bool | None = None,
    ) -> None:
        """View this server's drawing limits, or change them (Manage Server)."""
        assert interaction.guild_id is not None
        store, limits = self.bot.store, self.bot.config.limits
        settings = store.guild_settings(interaction.guild_id)
        notices: list[str] = []

        def within(name: str, value: float | None, ceiling: float) -> float | None:
            if value is not None and value > ceiling:
                notices.append(f"{name} lowered from {value:g} to the bot's limit, {ceiling:g}.")
                return ceiling
            return value

        changes: dict[str, object] = {}
        if (value := within("max_iterations", max_iterations, limits.max_iterations)) is not None:
            changes["max_iterations"] = int(value)
        if (value := within("max_size", max_size, limits.max_size)) is not None:
            changes["max_size"] = int(value) - int(value) % 8
        if (
            value := within("max_queued_per_user", max_queued_per_user, limits.max_queued_per_user)
        ) is not None:
            changes["max_queued_per_user"] = int(value)
        if progress_interval is not None:
            changes["progress_interval_s"] = max(progress_interval, limits.min_progress_interval_s)
        ceiling = int(changes.get("max_iterations", settings.max_iterations))  # type: ignore[call-overload]
        if (value := within("default_iterations", default_iterations, ceiling)) is not None:
            changes["default_iterations"] = int(value)
        elif settings.default_iterations > ceiling:
            changes["default_iterations"] = ceiling
            notices.append(
                f"default_iterations lowered to {ceiling} to stay within max_iterations."
            )
        channels = set(settings.allowed_channels)
        if all_channels:
            channels.clear()
        if allow_channel is not None:
            channels.add(allow_channel.id)
        if disallow_channel is not None:
            channels.discard(disallow_channel.id)
        changes["allowed_channels"] = tuple(sorted(channels))
        updated = replace(settings, **changes)  # type: ignore[arg-type]
        if updated != settings:
            store.save_guild_settings(interaction.guild_id, updated)
        title = "Drawing settings updated" if updated != settings else "Drawing settings"
        embed = discord.Embed(
            title=title,
            description="\n".join(self.bot.drawing.describe_limits(interaction.guild_id)),
        )
        if notices:
            embed.add_field(name="Note", value="\n".join(notices), inline=False)
        await interaction.response.send_message(embed=embed, ephemeral=True)
