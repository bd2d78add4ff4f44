"""/queue."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.front.cards import quote
from bot.i18n import language_of, tr
from bot.jobs.scheduler import Scheduler
from bot.jobs.store import JobStatus, Store

SHOWN = 15


class QueueCog(commands.Cog):
    def __init__(self, store: Store, scheduler: Scheduler) -> None:
        self.store = store
        self.scheduler = scheduler

    @app_commands.command(name="queue")
    @app_commands.guild_only()
    async def queue(self, interaction: discord.Interaction) -> None:
        """See what is being drawn now and what is waiting."""
        store, language = self.store, language_of(str(interaction.locale))
        lines = []
        running = store.jobs_with_status(JobStatus.RUNNING)
        workers = self.scheduler.workers()
        if len(running) > 1 and len(workers) == 1:
            together = (
                "**Drawing together** · these {count} jobs share the GPU (up to {places} at once):"
                if workers[0].device.startswith("cuda")
                else "**Drawing together** · these {count} jobs share the worker (up to {places} "
                "at once):"
            )
            lines.append(tr(language, together, count=len(running), places=workers[0].places))
        for job in running:
            where = ""
            if len(workers) > 1:
                where = (
                    tr(language, " · on {worker}", worker=quote(job.worker, 40))
                    if job.worker
                    else tr(language, " · waiting for a worker")
                )
            lines.append(
                tr(
                    language,
                    "**Drawing** · job {job} by <@{member}>",
                    job=job.id,
                    member=job.user_id,
                )
                + f"{where} · {job.steps}/{job.spec.iterations} · {quote(job.spec.prompt, 60)}"
            )
        order = store.queue_order()
        for position, job in enumerate(order[:SHOWN], start=1):
            lines.append(
                tr(
                    language,
                    "{position}. job {job} by <@{member}> · {iterations} it",
                    position=position,
                    job=job.id,
                    member=job.user_id,
                    iterations=job.spec.iterations,
                )
                + f" · {quote(job.spec.prompt, 60)}"
            )
        if len(order) > SHOWN:
            lines.append(tr(language, "…and {count} more", count=len(order) - SHOWN))
        embed = discord.Embed(
            title=tr(language, "Queue: {count} waiting", count=len(order)),
            description="\n".join(lines)
            or tr(language, "Nothing is being drawn. Start with /draw!"),
        )
        await interaction.response.send_message(embed=embed, ephemeral=True)
