"""/queue."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.cards import quote
from bot.scheduler import Scheduler
from bot.store import JobStatus, Store

SHOWN = 15


class QueueCog(commands.Cog):
    def __init__(self, store: Store, scheduler: Scheduler) -> None:
        self.store = store
        self.scheduler = scheduler

    @app_commands.command(name="queue")
    @app_commands.guild_only()
    async def queue(self, interaction: discord.Interaction) -> None:
        """See what is being drawn now and what is waiting."""
        store = self.store
        lines = []
        running = store.jobs_with_status(JobStatus.RUNNING)
        workers = self.scheduler.workers()
        if len(running) > 1 and len(workers) == 1:
            where = "GPU" if workers[0].device.startswith("cuda") else "worker"
            lines.append(
                f"**Drawing together** · these {len(running)} jobs share the {where} "
                f"(up to {workers[0].places} at once):"
            )
        for job in running:
            where = ""
            if len(workers) > 1:
                where = (
                    f" · on {quote(job.worker, 40)}" if job.worker else " · waiting for a worker"
                )
            lines.append(
                f"**Drawing** · job {job.id} by <@{job.user_id}>{where} · "
                f"{job.steps}/{job.iterations} · {quote(job.prompt, 60)}"
            )
        order = store.queue_order()
        for position, job in enumerate(order[:SHOWN], start=1):
            lines.append(
                f"{position}. job {job.id} by <@{job.user_id}> · {job.iterations} it · "
                f"{quote(job.prompt, 60)}"
            )
        if len(order) > SHOWN:
            lines.append(f"…and {len(order) - SHOWN} more")
        embed = discord.Embed(
            title=f"Queue: {len(order)} waiting",
            description="\n".join(lines) or "Nothing is being drawn. Start with /draw!",
        )
        await interaction.response.send_message(embed=embed, ephemeral=True)
