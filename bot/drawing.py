"""Drawing requests and job cards: what /draw, /cancel and the buttons ask for.

Commands and buttons call into `Drawing`; it validates, records jobs in the store, says what
each job's card should show (the `CardPresenter` shows it) and wakes the `JobRunner`, which feeds
the worker.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

import discord

from bot import cards
from bot.checks import may_manage_job
from bot.config import Config
from bot.presenter import CardPresenter
from bot.runner import JobRunner
from bot.store import ACTIVE, GuildSettings, JobRow, JobStatus, Store
from generator.errors import PromptError
from generator.prompts import clean_text, parse_prompts
from generator.protocol import b64_to_png
from generator.settings import MAX_SEED
from generator.tokens import check_lengths

log = logging.getLogger("pseudo_dalle.drawing")
REFRESHED_POSITIONS = 10  # waiting cards kept current; later ones update as they move up
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


class Drawing:
    def __init__(self, client: discord.Client, store: Store, config: Config) -> None:
        self.client = client
        self.store = store
        self.config = config
        self.cards = CardPresenter(client, store)
        self.runner = JobRunner(self, store, config)

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
        size -= size % 8
        mine = self.store.active_count(user_id=request.user_id, guild_id=request.guild_id)
        if mine >= settings.max_queued_per_user:
            raise UserError(
                f"You already have {mine} drawing(s) waiting or running; this server allows "
                f"{settings.max_queued_per_user}. Wait for one to finish or use /cancel."
            )
        if self.store.active_count() >= self.config.limits.max_queued_total:
            raise UserError("The queue is full right now. Please try again later.")
        seed = request.seed if request.seed is not None else secrets.randbelow(MAX_SEED + 1)
        parent = request.parent
        job = self.store.add_job(
            guild_id=request.guild_id, channel_id=request.channel_id, user_id=request.user_id,
            prompt=prompt, seed=seed, iterations=iterations, size=size,
            parent_id=parent.id if parent else None,
            init_latent=parent.latent if parent else None,
        )  # fmt: skip
        self.refresh_queue(also=job)
        self.runner.wake()
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
        if job.status == JobStatus.RUNNING:
            await self.runner.cancel_running(job.id, interaction.user.id)
            return f"Stopping job {job.id} after the current step."
        job = self.store.cancel(job.id, notice=f"Cancelled by <@{interaction.user.id}>.")
        self.show(job, [])
        self.refresh_queue()
        return f"Cancelled job {job.id}."

    async def on_button(self, interaction: discord.Interaction, action: str, job_id: int) -> None:
        job = self.store.job(job_id)
        if job is None:
            await interaction.response.send_message(
                "This drawing no longer exists.", ephemeral=True
            )
            return
        if action == "cancel":
            answer = await self.cancel(interaction, job_id)
        elif action == "delete":
            answer = await self._delete(interaction, job)
        else:
            answer = await self._again(interaction, job, action)
        await interaction.response.send_message(answer, ephemeral=True)

    async def _delete(self, interaction: discord.Interaction, job: JobRow) -> str:
        if not may_manage_job(interaction, job.user_id):
            return "Only the member who asked for this drawing or a server admin can delete it."
        await self.cards.delete(job)
        return f"Deleted job {job.id}'s picture."

    async def _again(self, interaction: discord.Interaction, job: JobRow, action: str) -> str:
        """Reroll (same prompt, new seed) or Continue (more iterations from the saved latent)."""
        if action == "continue" and not job.latent:
            return "This drawing has no saved state to continue from."
        request = Request(
            guild_id=job.guild_id, channel_id=job.channel_id, user_id=interaction.user.id,
            prompt=job.prompt, size=job.size,
            iterations=job.iterations if action == "reroll" else None,
            seed=job.seed if action == "continue" else None,
            parent=job if action == "continue" else None,
        )  # fmt: skip
        try:
            new, notices = await self.submit(request)
        except UserError as error:
            return str(error)
        verb = "Rerolling" if action == "reroll" else "Continuing"
        return " ".join([f"{verb} as job {new.id}.", *notices])

    # -- cards --------------------------------------------------------------------------
    def show(
        self, job: JobRow, lines: list[str], png: bytes | None = None, *, final: bool = False
    ) -> None:
        """Ask for the job's card to show this; Discord being away never holds anything up."""
        self.cards.show(job, lines, png, final=final)

    def refresh_queue(self, also: JobRow | None = None) -> None:
        """Give the first waiting jobs' cards (and `also`'s) their position and ETA."""
        order = self.store.queue_order()
        estimates = self.runner.start_estimates(order)
        for position, (job, eta) in enumerate(zip(order, estimates, strict=True), start=1):
            if position <= REFRESHED_POSITIONS or (also is not None and job.id == also.id):
                self.show(job, cards.queued_lines(position, len(order), eta))

    def finish(self, job: JobRow, png_b64: str | None) -> None:
        png = b64_to_png(png_b64) if png_b64 else None
        ended = (JobStatus.DONE, JobStatus.CANCELLED)
        lines = cards.finished_lines(job) if job.status in ended else []
        if job.status == JobStatus.FAILED and job.error:
            lines = [cards.quote(job.error, 300)]
        self.show(job, lines, png, final=job.status == JobStatus.DONE)

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
