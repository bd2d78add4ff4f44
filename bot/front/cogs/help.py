"""/help."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.front.cards import quote
from bot.i18n import N_, language_of, tr
from bot.jobs.desk import FrontDesk
from bot.jobs.scheduler import Scheduler

ABOUT = N_(
    "I draw pictures from your words. `/draw an image of the music` joins the queue; the card "
    "shows your place, then the picture taking shape, then the result with buttons to reroll "
    "it with a new seed, continue it for more detail, vary it (subtly, strongly, or only the "
    "cells of it you pick), or delete it. With `/settings remix:True`, Reroll and Vary first "
    "let you change the words.\n\n"
    "Tips: weight parts of a prompt with `text:weight` separated by `|`, e.g. "
    "`a red sky:1 | fog:0.5`; use `negative` for what to avoid. The same seed and settings "
    "redraw the same picture.\n\n"
    "Pictures: give `/draw` an `image` to start from (`image_as: start`, held by `strength`, "
    "0 to 1), to steer towards (`steer`, the prompt may then stay empty) or both; or use "
    "**Draw from this image** in a message's Apps menu. The limits are below.\n\n"
    "`/queue` shows what is waiting, `/cancel` stops your drawing."
)


class HelpCog(commands.Cog):
    def __init__(self, desk: FrontDesk, scheduler: Scheduler) -> None:
        self.desk = desk
        self.scheduler = scheduler

    @app_commands.command(name="help")
    async def help(self, interaction: discord.Interaction) -> None:
        """What this bot does and this server's drawing limits."""
        language = language_of(str(interaction.locale))
        embed = discord.Embed(title="pseudo-dalle", description=tr(language, ABOUT))
        if interaction.guild_id is not None:
            limits = self.desk.describe_limits(interaction.guild_id, language)
            embed.add_field(
                name=tr(language, "Limits on this server"), value="\n".join(limits), inline=False
            )
        workers = self.scheduler.workers()
        if not workers:
            embed.set_footer(
                text=tr(
                    language,
                    "No drawing worker is connected right now: drawings wait in the queue.",
                )
            )
        elif all(worker.device == "cpu" for worker in workers):
            embed.set_footer(
                text=tr(language, "This bot draws on a CPU, which is slow: expect long waits.")
            )
        if len(workers) > 1:
            lines = [
                tr(
                    language,
                    "{worker} · {device} · {free} of {places} place(s) free",
                    worker=quote(w.id, 40),
                    device=w.device,
                    free=w.places - self.scheduler.busy(w.id),
                    places=w.places,
                )
                for w in workers
            ]
            embed.add_field(name=tr(language, "Workers"), value="\n".join(lines), inline=False)
        await interaction.response.send_message(embed=embed, ephemeral=True)
