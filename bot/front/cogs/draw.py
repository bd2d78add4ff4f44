"""/draw and /cancel."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.front.attachments import upload_of
from bot.front.checks import member_of
from bot.i18n import N_
from bot.jobs.desk import FrontDesk
from bot.jobs.pictures import PictureAsk
from bot.jobs.spec import Ask
from bot.limits import ITERATIONS, QUALITY_NAMES, SIDE
from generator.contract.images import (
    DEFAULT_IMAGE_USE,
    DEFAULT_INIT_STRENGTH,
    IMAGE_USES,
    MAX_INPUT_BYTES,
)
from generator.contract.prompts import MAX_PROMPT_CHARS
from generator.contract.quality import DEFAULT_QUALITY, QUALITIES
from generator.contract.settings import MAX_SEED

# How a picture can be used, as members choose it (in /draw and in "Draw from this image").
USE_NAMES = {
    "start": N_("start from it"),
    "steer": N_("steer towards it"),
    "both": N_("both: start from it and steer towards it"),
}
USE_CHOICES = [
    app_commands.Choice(name=app_commands.locale_str(USE_NAMES[use]), value=use)
    for use in IMAGE_USES
]
QUALITY_CHOICES = [
    app_commands.Choice(name=app_commands.locale_str(QUALITY_NAMES[quality]), value=quality)
    for quality in QUALITIES
]


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
        image=f"A picture to draw with: PNG, JPEG, WebP or GIF, at most "
        f"{MAX_INPUT_BYTES // 2**20} MiB",
        image_as=f"Start from the picture, steer towards it, or both (default: "
        f"{DEFAULT_IMAGE_USE})",
        strength=f"How firmly the drawing holds to the picture it starts from, 0 to 1 "
        f"(default {DEFAULT_INIT_STRENGTH:g})",
        timelapse="Also show the picture taking shape, as an animation on the final card",
        quality=f"Higher takes longer and looks better (default: {DEFAULT_QUALITY})",
        tile="A seamless tile: copies of it side by side show no seam",
    )
    @app_commands.choices(image_as=USE_CHOICES, quality=QUALITY_CHOICES)
    async def draw(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, MAX_PROMPT_CHARS] | None = None,
        iterations: app_commands.Range[int, ITERATIONS.low, ITERATIONS.high] | None = None,
        seed: app_commands.Range[int, 0, MAX_SEED] | None = None,
        size: app_commands.Range[int, SIDE.low, SIDE.high] | None = None,
        negative: app_commands.Range[str, 1, 500] | None = None,
        image: discord.Attachment | None = None,
        image_as: app_commands.Choice[str] | None = None,
        strength: app_commands.Range[float, 0, 1] | None = None,
        timelapse: bool | None = None,
        quality: app_commands.Choice[str] | None = None,
        tile: bool = False,
    ) -> None:
        """Draw a picture from your words. It joins the queue and the card shows its progress."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        picture = None
        if image is not None:
            picture = PictureAsk(
                upload_of(image),
                image_as.value if image_as else DEFAULT_IMAGE_USE,
                DEFAULT_INIT_STRENGTH if strength is None else strength,
            )
        ask = Ask(
            prompt=prompt or "",
            negative=negative,
            iterations=iterations,
            seed=seed,
            size=size,
            quality=quality.value if quality else None,
            timelapse=timelapse,
            tile=tile,
        )
        answer = await self.desk.draw(member_of(interaction), ask, picture)
        await interaction.edit_original_response(content=answer)

    @app_commands.command(name="cancel")
    @app_commands.guild_only()
    @app_commands.describe(job="The job number on the card; left out, your latest drawing")
    async def cancel(self, interaction: discord.Interaction, job: int | None = None) -> None:
        """Cancel your drawing. Server admins can cancel anyone's."""
        answer = await self.desk.cancel(member_of(interaction), job)
        await interaction.response.send_message(answer, ephemeral=True)
