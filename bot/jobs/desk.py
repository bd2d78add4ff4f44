"""The front desk: what members ask of their drawings (draw, cancel, reroll, continue, delete),
in plain values, without Discord.

It checks each request against the server's settings and the operator's limits and makes the
job's spec once (`bot.jobs.spec`); what it accepts it stores and tells the scheduler (`added`,
`cancel`), which owns the jobs from then on. A picture given with a request is fetched and
re-encoded (`bot.jobs.pictures`) only after every other check has passed. Each answer is a
sentence in the member's language; the cogs and buttons (`bot.front`) show it. The edits
(`bot.jobs.edits`) queue through `submit` too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from bot.i18n import N_, tr
from bot.jobs.events import JobReported, PromptRefused
from bot.jobs.pictures import (
    CarriesTokens,
    GivenPicture,
    PictureAsk,
    PictureIntake,
    Upload,
    carried_tokens,
)
from bot.jobs.scheduler import NO_WORKER_HOLDS, Cancelled, Scheduler
from bot.jobs.spec import Ask, Edit, Refused, Rules, build, refused, with_picture
from bot.jobs.store import ACTIVE, JobRow, Store
from bot.limits import MAX_TERM_CHARS, QUALITY_NAMES, GuildSettings, effective
from bot.moderation.rules import PromptRules, Source
from generator.contract.errors import ImageInputError
from generator.contract.images import MAX_INPUT_BYTES, MAX_INPUT_PIXELS, steers_towards
from generator.contract.jobs import JobSpec, ParentJob
from generator.contract.quality import DEFAULT_QUALITY
from generator.contract.settings import AUTO_STOP_WINDOW
from generator.contract.tokens import shorten
from generator.contract.weights import clip_label

log = logging.getLogger("pseudo_dalle.desk")
STATUS_NAMES = {
    "queued": N_("waiting"),
    "running": N_("drawing"),
    "done": N_("done"),
    "failed": N_("failed"),
    "cancelled": N_("cancelled"),
}


@dataclass(frozen=True)
class Member:
    """Who asks, where, in which language, and whether they manage the server's drawings."""

    user_id: int
    guild_id: int
    channel_id: int
    language: str
    admin: bool = False
    roles: tuple[int, ...] = ()  # what AutoMod rules may exempt

    def may_manage(self, job: JobRow) -> bool:
        """The requester and server admins may cancel or delete a job."""
        return self.user_id == job.user_id or self.admin


class FrontDesk:
    def __init__(
        self,
        store: Store,
        scheduler: Scheduler,
        rules: Rules,
        intake: PictureIntake,
        prompt_rules: PromptRules,
        *,
        keep_days: float,
    ) -> None:
        self.store = store
        self.scheduler = scheduler
        self.rules = rules
        self.intake = intake
        self.prompt_rules = prompt_rules
        self.keep_days = keep_days
        # Told of each picture refused (the metrics count them, when they are on).
        self.picture_refused: Callable[[ImageInputError], None] = lambda error: None

    def settings(self, guild_id: int) -> GuildSettings:
        return self.store.guild_settings(guild_id)

    # -- drawing -----------------------------------------------------------------------------
    async def draw(self, member: Member, ask: Ask, picture: PictureAsk | None = None) -> str:
        """Queue a drawing; what to answer the member: where it is queued, or why not."""
        try:
            job, notices = await self.submit(member, ask, picture=picture)
        except Refused as error:
            return str(error)
        queued = tr(
            member.language, "Queued as job {job}; its card is in this channel.", job=job.id
        )
        return " ".join([queued, *notices])

    async def submit(
        self,
        member: Member,
        ask: Ask,
        *,
        picture: PictureAsk | None = None,
        given: GivenPicture | None = None,
        parent: JobRow | None = None,
        continues: bool = False,
        edit: Edit | None = None,
    ) -> tuple[JobRow, list[str]]:
        """Queue a job; returns it and notices about values a limit lowered. `picture` is one to
        fetch, `given` one already kept; `parent` the job it continues, rerolls or edits (as
        `edit` says; an edit of a picture given has none). CarriesTokens for a `picture` that
        offers edits and carries pseudo-dalle's tokens."""
        settings, language = self.settings(member.guild_id), member.language
        if self.store.barred(member.guild_id, member.user_id):
            raise Refused(
                tr(language, "This server's moderators have barred you from drawing here.")
            )
        if settings.allowed_channels and member.channel_id not in settings.allowed_channels:
            places = ", ".join(f"<#{c}>" for c in settings.allowed_channels)
            raise Refused(
                tr(language, "Drawing is not enabled in this channel. Try {places}.", places=places)
            )
        if picture is not None or given is not None:
            self.check_picture(member.guild_id, picture.upload if picture else None, language)
        how = "edit" if edit is not None else "continue" if continues else "reroll"
        origin = ParentJob(id=parent.id, how=how) if parent is not None else None
        # A picture to fetch is fetched last, so that a request refused for another reason
        # fetches nothing: the spec is made knowing only how it will be used.
        spec, lowered = build(
            ask,
            settings,
            self.rules,
            language,
            use=picture.use if picture is not None else None,
            picture=given,
            parent=origin,
            edit=edit,
        )
        self._check_prompt(member, settings, spec.prompt)
        missing = self.scheduler.missing_models(spec.clip_models)
        if missing:
            raise Refused(tr(language, NO_WORKER_HOLDS, model=clip_label(missing[0])))
        self._check_room(member, settings)
        if spec.screening.meaning:
            await self._check_meaning(member, spec)
        if picture is not None:
            try:
                data = await self.intake.fetch(picture.upload)
                if picture.offer_edits and (source := await carried_tokens(data)) is not None:
                    raise CarriesTokens(source)
                given = await self.intake.keep(picture, data)
            except ImageInputError as error:
                self.picture_refused(error)
                raise refused(language, error) from None
            spec = with_picture(spec, given)
            self._check_room(member, settings)  # others may have asked meanwhile
        job = self.store.add_job(
            guild_id=member.guild_id,
            channel_id=member.channel_id,
            user_id=member.user_id,
            spec=spec,
            picture=given,
            init_state=_start_state(parent, continues, edit),
            language=language,
        )
        self.scheduler.added(job)
        return job, [notice.say(language) for notice in lowered]

    def check_picture(self, guild_id: int, upload: Upload | None, language: str) -> None:
        """Refused when pictures are off here, or when what `upload` declares is refused."""
        if not self.intake.enabled:
            raise Refused(tr(language, "The bot's operator has switched pictures off."))
        if not self.settings(guild_id).image_inputs:
            raise Refused(tr(language, "Pictures are switched off on this server."))
        if upload is not None:
            try:
                upload.check()
            except ImageInputError as error:
                self.picture_refused(error)
                raise refused(language, error) from None

    def _check_prompt(self, member: Member, settings: GuildSettings, prompt: str) -> None:
        """Refused when what `prompt` steers towards says a term this server does not allow."""
        refusal = self.prompt_rules.check(
            prompt,
            guild_id=member.guild_id,
            channel_id=member.channel_id,
            roles=member.roles,
            server_terms=settings.blocked_terms,
            use_automod=settings.automod,
        )
        if refusal is not None:
            self.scheduler.events.publish(
                PromptRefused(
                    member.guild_id,
                    member.channel_id,
                    member.user_id,
                    prompt,
                    refusal.found,
                    refusal.source,
                )
            )
            raise Refused(
                tr(
                    member.language,
                    "Your prompt says “{term}”, which is not allowed on this server. Nothing "
                    "was queued.",
                    term=shorten(refusal.found, MAX_TERM_CHARS),
                )
            )

    async def _check_meaning(self, member: Member, spec: JobSpec) -> None:
        """Refused when a worker finds that what `spec`'s prompt steers towards comes too close
        in meaning to an unsafe concept, and when no worker could tell: the check fails
        closed."""
        answer = await self.scheduler.meaning_of(spec)
        if answer is None or not answer.checked:
            raise Refused(
                tr(
                    member.language,
                    "This server checks what prompts mean, and no drawing worker could check "
                    "yours just now. Try again in a moment.",
                )
            )
        if answer.concept is not None:
            self.scheduler.events.publish(
                PromptRefused(
                    member.guild_id,
                    member.channel_id,
                    member.user_id,
                    spec.prompt,
                    answer.concept,
                    Source.MEANING,
                )
            )
            raise Refused(
                tr(
                    member.language,
                    "Your prompt comes too close in meaning to “{concept}”, which is not "
                    "allowed on this server. Nothing was queued.",
                    concept=shorten(answer.concept, MAX_TERM_CHARS),
                )
            )

    def _check_room(self, member: Member, settings: GuildSettings) -> None:
        most = effective(settings, self.rules.limits).max_queued_per_user
        mine = self.store.active_count(user_id=member.user_id, guild_id=member.guild_id)
        if mine >= most:
            raise Refused(
                tr(
                    member.language,
                    "You already have {mine} drawing(s) waiting or running; this "
                    "server allows {most}. Wait for one to finish or use /cancel.",
                    mine=mine,
                    most=most,
                )
            )
        if self.store.active_count() >= self.rules.limits.max_queued_total:
            raise Refused(
                tr(member.language, "The queue is full right now. Please try again later.")
            )

    # -- a job's buttons and /cancel ---------------------------------------------------------
    async def cancel(self, member: Member, job_id: int | None) -> str:
        """Cancel a job (the member's latest active one if no id is given)."""
        language = member.language
        if job_id is None:
            own = [
                j
                for j in self.store.jobs_with_status(*ACTIVE)
                if j.user_id == member.user_id and j.guild_id == member.guild_id
            ]
            if not own:
                return tr(language, "You have no drawing waiting or running.")
            job_id = own[-1].id
        job = self.store.job(job_id)
        if job is None or job.guild_id != member.guild_id:
            return tr(language, "There is no job {job} on this server.", job=job_id)
        if not member.may_manage(job):
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
        if await self.scheduler.cancel(job, member.user_id) == Cancelled.AFTER_STEP:
            return tr(language, "Stopping job {job} after the current step.", job=job.id)
        return tr(language, "Cancelled job {job}.", job=job.id)

    def report(self, member: Member, job: JobRow) -> str:
        """Any member may report a job's picture to the server's moderators, once."""
        language = member.language
        if job.guild_id != member.guild_id:
            return tr(language, "There is no job {job} on this server.", job=job.id)
        if not self.store.report(job.id, member.user_id):
            return tr(language, "You have reported job {job} already. Thank you.", job=job.id)
        self.scheduler.events.publish(JobReported(job, member.user_id))
        if not self.settings(job.guild_id).log_channel:
            return tr(
                language,
                "Thank you: job {job} is reported. This server has no moderation log channel "
                "yet, so please tell a moderator too.",
                job=job.id,
            )
        return tr(
            language, "Thank you: job {job} is reported to this server's moderators.", job=job.id
        )

    def delete(self, member: Member, job: JobRow) -> tuple[bool, str]:
        """Whether `member` may delete `job`'s card, and what to tell them."""
        if not member.may_manage(job):
            return False, tr(
                member.language,
                "Only the member who asked for this drawing or a server admin can delete it.",
            )
        return True, tr(member.language, "Deleted job {job}'s picture.", job=job.id)

    async def again(
        self, member: Member, job: JobRow, *, continues: bool, prompt: str | None = None
    ) -> str:
        """Reroll (same prompt and picture, new seed; the member's new words as `prompt`, with
        Remix) or Continue (more iterations from where it ended, still steered by its picture
        but no longer starting from it)."""
        language, spec = member.language, job.spec
        if continues and not job.continue_state:
            return tr(
                language,
                "This drawing can no longer be continued: what it needs is kept "
                "{days:g} days. Reroll it instead.",
                days=self.keep_days,
            )
        given = self.store.picture(job)
        if spec.image_use is not None and given is None:
            return tr(
                language,
                "The picture this drawing was given is kept {days:g} days and is "
                "gone: give it again with /draw.",
                days=self.keep_days,
            )
        if continues and given is not None:
            given = replace(given, use="steer") if steers_towards(given.use) else None
        ask = Ask(
            prompt=spec.prompt if prompt is None else prompt,
            size=spec.width,
            iterations=None if continues else spec.iterations,
            seed=spec.seed if continues else None,
            timelapse=spec.timelapse,
            quality=None if spec.quality == DEFAULT_QUALITY else spec.quality,
            tile=bool(spec.tile),
        )
        asker = replace(member, guild_id=job.guild_id, channel_id=job.channel_id)
        try:
            new, notices = await self.submit(
                asker, ask, given=given, parent=job, continues=continues
            )
        except Refused as error:
            return str(error)
        said = "Continuing as job {job}." if continues else "Rerolling as job {job}."
        return " ".join([tr(language, said, job=new.id), *notices])

    # -- what /help and /drawconfig show -------------------------------------------------------
    def describe_limits(self, guild_id: int, language: str) -> list[str]:
        settings = self.settings(guild_id)
        limits = effective(settings, self.rules.limits)
        channels = ", ".join(f"<#{c}>" for c in settings.allowed_channels)
        return [
            tr(
                language,
                "Iterations: {default} by default, at most {most}",
                default=limits.default_iterations,
                most=limits.max_iterations,
            ),
            tr(language, "Largest size: {side}x{side}", side=limits.max_size),
            tr(
                language,
                "Highest quality: {quality}",
                quality=tr(language, QUALITY_NAMES[limits.max_quality]),
            ),
            tr(
                language,
                "Early stop: after {count} windows of {steps} iterations without improvement",
                count=limits.auto_stop,
                steps=AUTO_STOP_WINDOW,
            )
            if limits.auto_stop
            else tr(language, "Early stop: off"),
            tr(
                language,
                "Drawings waiting or running per member: {count}",
                count=limits.max_queued_per_user,
            ),
            tr(
                language,
                "Progress updates: every {seconds:g} s",
                seconds=limits.progress_interval_s,
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


def _start_state(parent: JobRow | None, continues: bool, edit: Edit | None) -> str | None:
    """What a job starts from: the tokens it edits, or the state of the job it continues."""
    if edit is not None:
        return edit.state
    return parent.continue_state if parent is not None and continues else None
