"""The front desk: what members ask for with /draw, /cancel and the card buttons.

It checks each request against the server's limits and answers the member; what it accepts goes
to the scheduler (`enqueue`, `cancel`), which owns the jobs from then on.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from dataclasses import dataclass

import discord

from bot.checks import may_manage_job
from bot.limits import HardLimits
from bot.scheduler import Cancelled, Scheduler
from bot.store import ACTIVE, GuildSettings, JobRow, Store
from bot.views import Action
from generator.errors import PromptError
from generator.prompts import clean_text, parse_prompts
from generator.settings import MAX_SEED, SIDE_MULTIPLE
from generator.tokens import check_lengths

log = logging.getLogger("pseudo_dalle.desk")
NEGATIVE_WEIGHT = -0.5


class UserError(Exception):
    """A request that cannot be met; the message is shown to the member as is."""


@dataclass(frozen=True)
class Request:
    guild_id: int
    channel_id: int
    user_id: int
    prompt: str
    iterations: int | None = None
    seed: int | None = None
    size: int | None = None
    negative: str | None = None
    parent: JobRow | None = None


class FrontDesk:
    def __init__(
        self, store: Store, scheduler: Scheduler, limits: HardLimits, *, keep_days: float
    ) -> None:
        self.store = store
        self.scheduler = scheduler
        self.limits = limits
        self.keep_days = keep_days

    # -- requests -----------------------------------------------------------------------
    def settings(self, guild_id: int) -> GuildSettings:
        return self.store.guild_settings(guild_id)

    async def submit(self, request: Request) -> tuple[JobRow, list[str]]:
        """Queue a job and post its card; returns the job and notices about clamped values."""
        settings = self.settings(request.guild_id)
        if settings.allowed_channels and request.channel_id not in settings.allowed_channels:
            places = ", ".join(f"<#{c}>" for c in settings.allowed_channels)
            raise UserError(f"Drawing is not enabled in this channel. Try {places}.")
        prompt = self._prompt(request.prompt, request.negative)
        notices: list[str] = []
        iterations = request.iterations or settings.default_iterations
        if iterations > settings.max_iterations:
            notices.append(
                f"Iterations lowered from {iterations} to this server's maximum, "
                f"{settings.max_iterations}."
            )
            iterations = settings.max_iterations
        size = request.size or min(512, settings.max_size)
        if size > settings.max_size:
            notices.append(
                f"Size lowered from {size} to this server's maximum, {settings.max_size}."
            )
            size = settings.max_size
        size -= size % SIDE_MULTIPLE
        mine = self.store.active_count(user_id=request.user_id, guild_id=request.guild_id)
        if mine >= settings.max_queued_per_user:
            raise UserError(
                f"You already have {mine} drawing(s) waiting or running; this server allows "
                f"{settings.max_queued_per_user}. Wait for one to finish or use /cancel."
            )
        if self.store.active_count() >= self.limits.max_queued_total:
            raise UserError("The queue is full right now. Please try again later.")
        seed = request.seed if request.seed is not None else secrets.randbelow(MAX_SEED + 1)
        job = self.scheduler.enqueue(
            guild_id=request.guild_id, channel_id=request.channel_id, user_id=request.user_id,
            prompt=prompt, seed=seed, iterations=iterations, size=size, parent=request.parent,
        )  # fmt: skip
        return job, notices

    @staticmethod
    def _prompt(text: str, negative: str | None) -> str:
        prompt = clean_text(text)
        if negative and clean_text(negative):
            prompt = f"{prompt} | {clean_text(negative)}:{NEGATIVE_WEIGHT}"
        try:
            check_lengths(parse_prompts(prompt))
        except PromptError as error:
            message = str(error)
            raise UserError(f"{message[:1].upper()}{message[1:]}.") from None
        return prompt

    async def cancel(self, interaction: discord.Interaction, job_id: int | None) -> str:
        """Cancel a job (the member's latest active one if no id is given)."""
        if job_id is None:
            own = [
                j for j in self.store.jobs_with_status(*ACTIVE)
                if j.user_id == interaction.user.id and j.guild_id == interaction.guild_id
            ]  # fmt: skip
            if not own:
                return "You have no drawing waiting or running."
            job_id = own[-1].id
        job = self.store.job(job_id)
        if job is None or job.guild_id != interaction.guild_id:
            return f"There is no job {job_id} on this server."
        if not may_manage_job(interaction, job.user_id):
            return "Only the member who asked for this drawing or a server admin can cancel it."
        if job.status not in ACTIVE:
            return f"Job {job.id} has already ended ({job.status})."
        if await self.scheduler.cancel(job, interaction.user.id) == Cancelled.AFTER_STEP:
            return f"Stopping job {job.id} after the current step."
        return f"Cancelled job {job.id}."

    async def on_button(
        self, interaction: discord.Interaction, action: Action, job_id: int
    ) -> None:
        job = self.store.job(job_id)
        if job is None:
            await interaction.response.send_message(
                "This drawing no longer exists.", ephemeral=True
            )
            return
        if action == Action.CANCEL:
            answer = await self.cancel(interaction, job_id)
        elif action == Action.DELETE:
            answer = await self._delete(interaction, job)
        else:
            answer = await self._again(interaction, job, action)
        await interaction.response.send_message(answer, ephemeral=True)

    async def _delete(self, interaction: discord.Interaction, job: JobRow) -> str:
        if not may_manage_job(interaction, job.user_id):
            return "Only the member who asked for this drawing or a server admin can delete it."
        if interaction.message is not None:
            # The button is on the card itself; a card already gone is fine.
            with contextlib.suppress(discord.NotFound):
                await interaction.message.delete()
        return f"Deleted job {job.id}'s picture."

    async def _again(self, interaction: discord.Interaction, job: JobRow, action: Action) -> str:
        """Reroll (same prompt, new seed) or Continue (more iterations from where it ended)."""
        again = action == Action.CONTINUE
        if again and not (job.continue_state or job.latent):
            return (
                "This drawing can no longer be continued: what it needs is kept "
                f"{self.keep_days:g} days. Reroll it instead."
            )
        request = Request(
            guild_id=job.guild_id, channel_id=job.channel_id, user_id=interaction.user.id,
            prompt=job.prompt, size=job.size, iterations=None if again else job.iterations,
            seed=job.seed if again else None, parent=job if again else None,
        )  # fmt: skip
        try:
            new, notices = await self.submit(request)
        except UserError as error:
            return str(error)
        verb = "Continuing" if again else "Rerolling"
        return " ".join([f"{verb} as job {new.id}.", *notices])

    def describe_limits(self, guild_id: int) -> list[str]:
        settings = self.settings(guild_id)
        channels = ", ".join(f"<#{c}>" for c in settings.allowed_channels) or "any channel"
        return [
            f"Iterations: {settings.default_iterations} by default, "
            f"at most {settings.max_iterations}",
            f"Largest size: {settings.max_size}x{settings.max_size}",
            f"Drawings waiting or running per member: {settings.max_queued_per_user}",
            f"Progress updates: every {settings.progress_interval_s:g} s",
            f"Where: {channels}",
        ]
