"""The front desk: what members ask for with /draw, "Draw from this image", /cancel and the
card buttons.

It checks each request against the server's limits and answers the member; what it accepts goes
to the scheduler (`enqueue`, `cancel`), which owns the jobs from then on. A picture given with a
request is fetched and re-encoded (`bot.pictures`) only after every other check has passed.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace

import discord

from bot.cards import QUALITY_NAMES
from bot.checks import may_manage_job
from bot.i18n import N_, SOURCE_LANGUAGE, language_of, tr
from bot.limits import HardLimits
from bot.pictures import PictureAsk, PictureIntake, Upload
from bot.scheduler import NO_WORKER_HOLDS, Cancelled, Scheduler
from bot.store import ACTIVE, GivenPicture, GuildSettings, JobRow, Store
from bot.views import Action
from generator.contract.encoders import PromptLimit, choose_encoder
from generator.contract.errors import ImageInputError, MemberError, PromptError
from generator.contract.images import (
    MAX_INPUT_BYTES,
    MAX_INPUT_PIXELS,
    steers_towards,
)
from generator.contract.prompts import clean_text, parse_prompts
from generator.contract.quality import DEFAULT_QUALITY, QUALITIES, cheaper, preset
from generator.contract.settings import AUTO_STOP_WINDOW, MAX_SEED, SIDE_MULTIPLE
from generator.contract.tokens import check_lengths
from generator.contract.weights import clip_label

log = logging.getLogger("pseudo_dalle.desk")
NEGATIVE_WEIGHT = -0.5
STATUS_NAMES = {
    "queued": N_("waiting"),
    "running": N_("drawing"),
    "done": N_("done"),
    "failed": N_("failed"),
    "cancelled": N_("cancelled"),
}


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
    language: str = SOURCE_LANGUAGE  # of the member asking: the answers are in it
    picture: PictureAsk | None = None  # a picture to fetch and draw with
    given: GivenPicture | None = None  # one already kept (Reroll, Continue)
    timelapse: bool | None = None  # None: as the server's default
    quality: str | None = None  # None: normal, with the server's default iterations


class FrontDesk:
    def __init__(
        self,
        store: Store,
        scheduler: Scheduler,
        limits: HardLimits,
        intake: PictureIntake,
        *,
        keep_days: float,
        text_encoder: str = "clip",
        multilingual_limit: PromptLimit | None = None,
    ) -> None:
        self.store = store
        self.scheduler = scheduler
        self.limits = limits
        self.intake = intake
        self.keep_days = keep_days
        self.text_encoder = text_encoder  # clip, multilingual or auto ([models] text_encoder)
        # The multilingual encoder's tokenizer, when this host has it; else the worker checks.
        self.multilingual_limit = multilingual_limit
        # Told of each picture refused (the metrics count them, when they are on).
        self.picture_refused: Callable[[ImageInputError], None] = lambda error: None

    # -- requests -----------------------------------------------------------------------
    def settings(self, guild_id: int) -> GuildSettings:
        return self.store.guild_settings(guild_id)

    async def draw(self, request: Request) -> str:
        """Queue a drawing; what to answer the member: where it is queued, or why not."""
        try:
            job, notices = await self.submit(request)
        except UserError as error:
            return str(error)
        queued = tr(
            request.language, "Queued as job {job}; its card is in this channel.", job=job.id
        )
        return " ".join([queued, *notices])

    async def submit(self, request: Request) -> tuple[JobRow, list[str]]:
        """Queue a job and post its card; returns the job and notices about clamped values."""
        settings, language = self.settings(request.guild_id), request.language
        if settings.allowed_channels and request.channel_id not in settings.allowed_channels:
            places = ", ".join(f"<#{c}>" for c in settings.allowed_channels)
            raise UserError(
                tr(language, "Drawing is not enabled in this channel. Try {places}.", places=places)
            )
        use = None
        if request.picture is not None:
            self.check_picture(request.guild_id, request.picture.upload, language)
            use = request.picture.use
        elif request.given is not None:
            self.check_picture(request.guild_id, None, language)
            use = request.given.use
        prompt, encoder = self._prompt(request.prompt, request.negative, language, use)
        notices: list[str] = []
        quality = self._quality(request, settings, encoder, notices)
        chosen = preset(quality)
        default = settings.default_iterations if request.quality is None else chosen.iterations
        iterations = request.iterations or default
        if iterations > settings.max_iterations:
            notices.append(
                tr(
                    language,
                    "Iterations lowered from {asked} to this server's maximum, {most}.",
                    asked=iterations,
                    most=settings.max_iterations,
                )
            )
            iterations = settings.max_iterations
        size = request.size or min(chosen.size, settings.max_size)
        if size > settings.max_size:
            notices.append(
                tr(
                    language,
                    "Size lowered from {asked} to this server's maximum, {most}.",
                    asked=size,
                    most=settings.max_size,
                )
            )
            size = settings.max_size
        size -= size % SIDE_MULTIPLE
        self._check_room(request, settings, language)
        given = request.given
        if request.picture is not None:
            try:
                given = await self.intake.take(request.picture)
            except ImageInputError as error:
                self.picture_refused(error)
                raise _refused(language, error) from None
            self._check_room(request, settings, language)  # others may have asked meanwhile
        seed = request.seed if request.seed is not None else secrets.randbelow(MAX_SEED + 1)
        job = self.scheduler.enqueue(
            guild_id=request.guild_id,
            channel_id=request.channel_id,
            user_id=request.user_id,
            prompt=prompt,
            seed=seed,
            iterations=iterations,
            size=size,
            parent=request.parent,
            text_encoder=encoder,
            picture=given,
            timelapse=settings.timelapse if request.timelapse is None else request.timelapse,
            quality=quality,
        )
        return job, notices

    def _quality(
        self, request: Request, settings: GuildSettings, encoder: str, notices: list[str]
    ) -> str:
        """The quality to draw at: the one asked for, lowered to the most this server and the
        operator allow (with a notice); UserError when no worker holds its models or its
        prompt needs the multilingual encoder, which works with one model only."""
        language = request.language
        asked = request.quality or DEFAULT_QUALITY
        most = cheaper(settings.max_quality, self.limits.max_quality)
        quality = cheaper(asked, most)
        if quality != asked:
            notices.append(
                tr(
                    language,
                    "Quality lowered from {asked} to this server's maximum, {most}.",
                    asked=tr(language, QUALITY_NAMES[asked]),
                    most=tr(language, QUALITY_NAMES[quality]),
                )
            )
        if encoder != "clip" and len(preset(quality).clip_models) > 1:
            raise UserError(
                tr(
                    language,
                    "Prompts in languages other than English can be drawn at {qualities} quality.",
                    qualities=", ".join(
                        tr(language, QUALITY_NAMES[q])
                        for q in QUALITIES
                        if len(preset(q).clip_models) == 1
                    ),
                )
            )
        missing = self.scheduler.missing_models(quality)
        if missing:
            raise UserError(tr(language, NO_WORKER_HOLDS, model=clip_label(missing[0])))
        return quality

    def check_picture(self, guild_id: int, upload: Upload | None, language: str) -> None:
        """UserError when pictures are off here, or when what `upload` declares is refused."""
        if not self.intake.enabled:
            raise UserError(tr(language, "The bot's operator has switched pictures off."))
        if not self.settings(guild_id).image_inputs:
            raise UserError(tr(language, "Pictures are switched off on this server."))
        if upload is not None:
            try:
                upload.check()
            except ImageInputError as error:
                self.picture_refused(error)
                raise _refused(language, error) from None

    def _check_room(self, request: Request, settings: GuildSettings, language: str) -> None:
        mine = self.store.active_count(user_id=request.user_id, guild_id=request.guild_id)
        if mine >= settings.max_queued_per_user:
            raise UserError(
                tr(
                    language,
                    "You already have {mine} drawing(s) waiting or running; this "
                    "server allows {most}. Wait for one to finish or use /cancel.",
                    mine=mine,
                    most=settings.max_queued_per_user,
                )
            )
        if self.store.active_count() >= self.limits.max_queued_total:
            raise UserError(tr(language, "The queue is full right now. Please try again later."))

    def _prompt(
        self, text: str, negative: str | None, language: str, use: str | None
    ) -> tuple[str, str]:
        """The prompt as the worker gets it, and the text encoder that reads it, each part checked
        against that encoder's token limit (the worker checks again). With a picture to steer
        towards (`use`), the prompt may be empty."""
        prompt = clean_text(text)
        if not prompt and not (negative and clean_text(negative)) and use is not None:
            if steers_towards(use):
                return "", "clip"
            raise UserError(
                tr(
                    language,
                    "A picture to start from needs a prompt too: say what to draw, or let "
                    "the picture steer (steer or both).",
                )
            )
        if negative and clean_text(negative):
            prompt = f"{prompt} | {clean_text(negative)}:{NEGATIVE_WEIGHT}"
        try:
            prompts = parse_prompts(prompt)
            encoder = choose_encoder(self.text_encoder, prompts)
            if encoder == "clip":
                check_lengths(prompts)
            elif self.multilingual_limit is not None:
                self.multilingual_limit.check(prompts)
        except PromptError as error:
            raise _refused(language, error) from None
        return prompt, encoder

    async def cancel(self, interaction: discord.Interaction, job_id: int | None) -> str:
        """Cancel a job (the member's latest active one if no id is given)."""
        language = language_of(str(interaction.locale))
        if job_id is None:
            own = [
                j
                for j in self.store.jobs_with_status(*ACTIVE)
                if j.user_id == interaction.user.id and j.guild_id == interaction.guild_id
            ]
            if not own:
                return tr(language, "You have no drawing waiting or running.")
            job_id = own[-1].id
        job = self.store.job(job_id)
        if job is None or job.guild_id != interaction.guild_id:
            return tr(language, "There is no job {job} on this server.", job=job_id)
        if not may_manage_job(interaction, job.user_id):
            return tr(
                language,
                "Only the member who asked for this drawing or a server admin can cancel it.",
            )
        if job.status not in ACTIVE:
            return tr(
                language,
                "Job {job} has already ended ({status}).",
                job=job.id,
                status=tr(language, STATUS_NAMES[job.status]),
            )
        if await self.scheduler.cancel(job, interaction.user.id) == Cancelled.AFTER_STEP:
            return tr(language, "Stopping job {job} after the current step.", job=job.id)
        return tr(language, "Cancelled job {job}.", job=job.id)

    async def on_button(
        self, interaction: discord.Interaction, action: Action, job_id: int
    ) -> None:
        job = self.store.job(job_id)
        language = language_of(str(interaction.locale))
        if job is None:
            await interaction.response.send_message(
                tr(language, "This drawing no longer exists."), ephemeral=True
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
            return tr(
                language_of(str(interaction.locale)),
                "Only the member who asked for this drawing or a server admin can delete it.",
            )
        if interaction.message is not None:
            # The button is on the card itself; a card already gone is fine.
            with contextlib.suppress(discord.NotFound):
                await interaction.message.delete()
        return tr(language_of(str(interaction.locale)), "Deleted job {job}'s picture.", job=job.id)

    async def _again(self, interaction: discord.Interaction, job: JobRow, action: Action) -> str:
        """Reroll (same prompt and picture, new seed) or Continue (more iterations from where it
        ended, still steered by its picture but no longer starting from it)."""
        again, language = action == Action.CONTINUE, language_of(str(interaction.locale))
        if again and not (job.continue_state or job.latent):
            return tr(
                language,
                "This drawing can no longer be continued: what it needs is kept "
                "{days:g} days. Reroll it instead.",
                days=self.keep_days,
            )
        given = self.store.picture(job) if job.image_use is not None else None
        if job.image_use is not None and given is None:
            return tr(
                language,
                "The picture this drawing was given is kept {days:g} days and is "
                "gone: give it again with /draw.",
                days=self.keep_days,
            )
        if again and given is not None:
            given = replace(given, use="steer") if steers_towards(given.use) else None
        request = Request(
            guild_id=job.guild_id,
            channel_id=job.channel_id,
            user_id=interaction.user.id,
            prompt=job.prompt,
            size=job.size,
            iterations=None if again else job.iterations,
            seed=job.seed if again else None,
            parent=job if again else None,
            language=language,
            given=given,
            timelapse=job.timelapse,
            quality=None if job.quality == DEFAULT_QUALITY else job.quality,
        )
        try:
            new, notices = await self.submit(request)
        except UserError as error:
            return str(error)
        said = "Continuing as job {job}." if again else "Rerolling as job {job}."
        return " ".join([tr(language, said, job=new.id), *notices])

    def describe_limits(self, guild_id: int, language: str) -> list[str]:
        settings = self.settings(guild_id)
        channels = ", ".join(f"<#{c}>" for c in settings.allowed_channels)
        return [
            tr(
                language,
                "Iterations: {default} by default, at most {most}",
                default=settings.default_iterations,
                most=settings.max_iterations,
            ),
            tr(language, "Largest size: {side}x{side}", side=settings.max_size),
            tr(
                language,
                "Highest quality: {quality}",
                quality=tr(
                    language, QUALITY_NAMES[cheaper(settings.max_quality, self.limits.max_quality)]
                ),
            ),
            tr(
                language,
                "Early stop: after {count} windows of {steps} iterations without improvement",
                count=settings.auto_stop,
                steps=AUTO_STOP_WINDOW,
            )
            if settings.auto_stop
            else tr(language, "Early stop: off"),
            tr(
                language,
                "Drawings waiting or running per member: {count}",
                count=settings.max_queued_per_user,
            ),
            tr(
                language,
                "Progress updates: every {seconds:g} s",
                seconds=settings.progress_interval_s,
            ),
            tr(language, "Where: {channels}", channels=channels or tr(language, "any channel")),
            self._pictures_line(settings, language),
            tr(language, "Time-lapse on the final card: on unless a member says otherwise")
            if settings.timelapse
            else tr(language, "Time-lapse on the final card: when a member asks for it"),
        ]

    def _pictures_line(self, settings: GuildSettings, language: str) -> str:
        if not self.intake.enabled:
            return tr(language, "Pictures: switched off by the bot's operator")
        if not settings.image_inputs:
            return tr(language, "Pictures: switched off on this server")
        return tr(
            language,
            "Pictures: on · PNG, JPEG, WebP or GIF, at most {mib} MiB and {pixels:g} "
            "million pixels",
            mib=MAX_INPUT_BYTES // 2**20,
            pixels=MAX_INPUT_PIXELS / 1e6,
        )


def _refused(language: str, error: MemberError) -> UserError:
    """What the member gave, refused: the reason as a sentence in their language."""
    message = tr(language, error.template, **error.values)
    sentence = f"{message[:1].upper()}{message[1:]}"
    return UserError(tr(language, "{reason}.", reason=sentence))
