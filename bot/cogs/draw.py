"""/draw and /cancel."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.desk import FrontDesk, Request, UserError
from bot.i18n import language_of, tr
from bot.limits import ITERATIONS, SIDE
from generator.contract.prompts import MAX_PROMPT_CHARS
from generator.contract.settings import MAX_SEED


class DrawCog(commands.Cog):
    def __init__(self, desk: FrontDesk) -> None:
        self.desk = desk

    @app_commands.command(name="draw")
    @app_commands.guild_only()
    @app_commands.describe(
        prompt="What to draw, e.g. 'an image of the music'; weight parts: 'a red sky:1 | fog:0.5'",
        iterations="How long to work on it; more is slower but more detailed",
        seed="Pick a number to redraw the same picture later; left out, a random one",
        size="Width and height in pixels",
        negative="What to steer away from, e.g. 'blurry, text, watermark'",
    )
    async def draw(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, MAX_PROMPT_CHARS],
        iterations: app_commands.Range[int, ITERATIONS.low, ITERATIONS.high] | None = None,
        seed: app_commands.Range[int, 0, MAX_SEED] | None = None,
        size: app_commands.Range[int, SIDE.low, SIDE.high] | None = None,
        negative: app_commands.Range[str, 1, 500] | None = None,
    ) -> None:
        """Draw a picture from your words. It joins the queue and the card shows its progress."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        assert interaction.guild_id is not None
        language = language_of(str(interaction.locale))
        request = Request(
            guild_id=interaction.guild_id, channel_id=interaction.channel_id or 0,
            user_id=interaction.user.id, prompt=prompt, iterations=iterations, seed=seed,
            size=size, negative=negative, language=language,
        )  # fmt: skip
        try:
            job, notices = await self.desk.submit(request)
        except UserError as error:
            await interaction.edit_original_response(content=str(error))
            return
        queued = tr(language, "Queued as job {job}; its card is in this channel.", job=job.id)
        await interaction.edit_original_response(content=" ".join([queued, *notices]))

    @app_commands.command(name="cancel")
    @app_commands.guild_only()
    @app_commands.describe(job="The job number on the card; left out, your latest drawing")
    async def cancel(self, interaction: discord.Interaction, job: int | None = None) -> None:
        """Cancel your drawing. Server admins can cancel anyone's."""
        answer = await self.desk.cancel(interaction, job)
        await interaction.response.send_message(answer, ephemeral=True)
