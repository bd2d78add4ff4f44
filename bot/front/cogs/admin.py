"""/drawconfig: a server's drawing limits, within the operator's hard limits, the channels it
draws in, whether members may give pictures, and whether drawings get a time-lapse by default.

Its limit options are `bot.limits.GuildLimits`' fields, with their ranges and help texts.
"""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands
from pydantic import ValidationError

from bot.front.checks import admin_only
from bot.front.cogs.draw import QUALITY_CHOICES
from bot.i18n import language_of, tr
from bot.jobs.desk import FrontDesk
from bot.jobs.store import Store
from bot.limits import (
    AUTO_STOP,
    ITERATIONS,
    PROGRESS_INTERVAL_S,
    QUEUED_PER_MEMBER,
    SIDE,
    GuildLimits,
    GuildSettings,
    HardLimits,
    applied,
    beyond_limits,
    bounds,
    default_beyond_maximum,
    describe,
)
from generator.contract.settings import SIDE_MULTIPLE

LIMIT_NAMES = tuple(GuildLimits.model_fields)


class AdminCog(commands.Cog):
    def __init__(self, store: Store, limits: HardLimits, desk: FrontDesk) -> None:
        self.store = store
        self.limits = limits
        self.desk = desk

    @app_commands.command(name="drawconfig")
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)
    @admin_only()
    @app_commands.rename(progress_interval_s="progress_interval")
    @app_commands.describe(
        **{name: describe(GuildLimits, name) for name in LIMIT_NAMES},
        allow_channel="Allow drawing in this channel (once any is allowed, only those are)",
        disallow_channel="Stop allowing drawing in this channel",
        all_channels="True: allow drawing in every channel again",
        image_inputs="Let members draw from or towards a picture they give (on by default)",
        timelapse="Give drawings a time-lapse on their final card unless the member says "
        "otherwise (off by default)",
    )
    @app_commands.choices(max_quality=QUALITY_CHOICES)
    async def drawconfig(
        self,
        interaction: discord.Interaction,
        max_iterations: app_commands.Range[int, ITERATIONS.low, ITERATIONS.high] | None = None,
        default_iterations: app_commands.Range[int, ITERATIONS.low, ITERATIONS.high] | None = None,
        max_queued_per_user: app_commands.Range[int, QUEUED_PER_MEMBER.low, QUEUED_PER_MEMBER.high]
        | None = None,
        progress_interval_s: app_commands.Range[
            float, PROGRESS_INTERVAL_S.low, PROGRESS_INTERVAL_S.high
        ]
        | None = None,
        max_size: app_commands.Range[int, SIDE.low, SIDE.high] | None = None,
        allow_channel: discord.TextChannel | None = None,
        disallow_channel: discord.TextChannel | None = None,
        all_channels: bool | None = None,
        image_inputs: bool | None = None,
        timelapse: bool | None = None,
        max_quality: app_commands.Choice[str] | None = None,
        auto_stop: app_commands.Range[int, AUTO_STOP.low, AUTO_STOP.high] | None = None,
    ) -> None:
        """View this server's drawing limits, or change them (Manage Server)."""
        assert interaction.guild_id is not None
        language = language_of(str(interaction.locale))
        settings = self.store.guild_settings(interaction.guild_id)
        asked: dict[str, int | float | str | None] = {
            "max_iterations": max_iterations,
            "default_iterations": default_iterations,
            "max_queued_per_user": max_queued_per_user,
            "progress_interval_s": progress_interval_s,
            "max_size": max_size,
            "auto_stop": auto_stop,
            "max_quality": max_quality.value if max_quality is not None else None,
        }
        changes = {name: value for name, value in asked.items() if value is not None}
        # What the admin asks for stays within the operator's limits, and the default within
        # the server's maximum (below, once the settings are whole).
        lowered = beyond_limits(changes, self.limits)
        changes.update({notice.name: notice.most for notice in lowered})
        if isinstance(size := changes.get("max_size"), int):
            changes["max_size"] = size - size % SIDE_MULTIPLE
        if isinstance(interval := changes.get("progress_interval_s"), float | int):
            changes["progress_interval_s"] = max(interval, self.limits.min_progress_interval_s)
        channels = set(settings.allowed_channels)
        if all_channels:
            channels.clear()
        if allow_channel is not None:
            channels.add(allow_channel.id)
        if disallow_channel is not None:
            channels.discard(disallow_channel.id)
        notices: list[str] = []
        if image_inputs and not self.desk.intake.enabled:
            notices.append(
                tr(
                    language,
                    "The bot's operator has switched pictures off for every "
                    "server; this counts once they switch them on.",
                )
            )
        pictures = settings.image_inputs if image_inputs is None else image_inputs
        animated = settings.timelapse if timelapse is None else timelapse
        try:
            updated = GuildSettings.model_validate(
                {
                    **settings.model_dump(),
                    **changes,
                    "allowed_channels": tuple(sorted(channels)),
                    "image_inputs": pictures,
                    "timelapse": animated,
                }
            )
        except ValidationError as error:
            problem = error.errors()[0]
            name, span = str(problem["loc"][0]), bounds(GuildSettings, str(problem["loc"][0]))
            said = (
                tr(
                    language,
                    "Nothing changed: {name} must be from {low:g} to {high:g}.",
                    name=name,
                    low=span[0],
                    high=span[1],
                )
                if span
                else tr(language, "Nothing changed: {name} is not valid.", name=name)
            )
            await interaction.response.send_message(said, ephemeral=True)
            return
        within = default_beyond_maximum(updated)
        if within is not None:
            lowered.append(within)
            updated = applied(updated, [within])
        notices = [notice.say(language) for notice in lowered] + notices
        if updated != settings:
            self.store.save_guild_settings(interaction.guild_id, updated)
        title = "Drawing settings updated" if updated != settings else "Drawing settings"
        limits = self.desk.describe_limits(interaction.guild_id, language)
        embed = discord.Embed(title=tr(language, title), description="\n".join(limits))
        if notices:
            embed.add_field(name=tr(language, "Note"), value="\n".join(notices), inline=False)
        await interaction.response.send_message(embed=embed, ephemeral=True)
