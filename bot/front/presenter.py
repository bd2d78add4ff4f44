"""Job cards on Discord, kept up to date by one owned task so that Discord never holds up drawing.

It listens to the scheduler's job events (`on_event`) and turns each into what the job's card
should show (`bot.front.cards.wishes`); `show` never waits and never raises. The presenter's task
posts or edits the cards, newest wish per card first come, first served. When Discord cannot be
reached (connection refused or reset, DNS failure, a timeout, Discord's own 5xx errors) the card
waits and is tried again with a growing delay; a newer wish for the same card replaces the one
waiting. Discord refusing a card for good (a 403 or 404) is logged and that card catches up at
its next change.

A final card carries the job's time-lapse, when it asked for one, as a second file: made small
enough for the server's upload limit first (`generator.media.animation.fit_animation`, in a
thread), and smaller again when Discord still answers that it is too large (HTTP 413); one that
cannot be made small enough is left out and the card says so.

Cards are posted and edited through the bot's channel-message routes (never the interaction
token, which expires after 15 minutes), and a card older than 50 minutes is replaced by a fresh
message because Discord refuses edits to messages older than an hour (error 30046).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace

import aiohttp
import discord

from bot.front import cards
from bot.front.cards import CardWish
from bot.front.channels import age_restricted
from bot.front.views import ON_ACTIVE_CARDS, JobButton, card_view, finished_rows
from bot.i18n import N_, language_of, tr
from bot.jobs.events import JobEvent
from bot.jobs.store import ACTIVE, JobRow, Store
from bot.tasks import OwnedTask
from generator.media.animation import AnimationError, fit_animation

log = logging.getLogger("pseudo_dalle.cards")

# Discord (or the way to it) failing for a while: worth trying the same call again later.
UNREACHABLE: tuple[type[BaseException], ...] = (
    aiohttp.ClientError,
    OSError,
    TimeoutError,
    discord.DiscordServerError,
)
CALL_TIMEOUT_S = 15.0  # one post or edit; discord.py itself waits up to 5 minutes
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 10.0
CARD_MAX_AGE_S = 50 * 60
TOO_LARGE = 40005  # Discord's error code for a file over the upload limit (HTTP 413)
TIMELAPSE_TOO_BIG = N_("The time-lapse is too big for this server's upload limit.")


class CardPresenter:
    def __init__(self, client: discord.Client, store: Store, buttons: type[JobButton]) -> None:
        self.client = client
        self.store = store
        self.buttons = buttons
        self._wanted: dict[int, CardWish] = {}  # by job id, oldest wish first
        self._showing: int | None = None  # the job whose card is being posted now
        self._changed = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task = OwnedTask("card-presenter", self._run)

    def start(self) -> None:
        self._task.start()

    def on_event(self, event: JobEvent) -> None:
        for wish in cards.wishes(event, self._language):
            self.show(wish)

    def _language(self, job: JobRow) -> str:
        """Cards are public: they speak the server's language."""
        guild = self.client.get_guild(job.guild_id)
        return language_of(str(guild.preferred_locale) if guild is not None else None)

    def show(self, wish: CardWish) -> None:
        """Ask for a card to show this; it replaces anything not yet shown for that card."""
        self._wanted.pop(wish.job.id, None)
        self._wanted[wish.job.id] = wish
        self._idle.clear()
        self._changed.set()

    @property
    def behind(self) -> list[int]:
        """Jobs whose cards wait to be shown, or are being shown now."""
        showing = [] if self._showing is None or self._showing in self._wanted else [self._showing]
        return showing + list(self._wanted)

    async def stop(self, timeout_s: float) -> None:
        """Show what waits, for at most `timeout_s`, then stop; log the cards left behind."""
        if not self._task.running:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        if behind := self.behind:
            log.warning(
                "stopping with the cards of job(s) %s out of date: Discord did not answer",
                ", ".join(map(str, behind)),
            )
        await self._task.stop()

    async def _run(self) -> None:
        delay = RETRY_FIRST_S
        while True:
            if not self._wanted:
                self._idle.set()
                self._changed.clear()
                await self._changed.wait()
                continue
            job_id = next(iter(self._wanted))
            state = self._wanted.pop(job_id)
            self._showing = job_id
            try:
                state = await self._fitted(state)
                async with asyncio.timeout(CALL_TIMEOUT_S):
                    await self._post(state)
            except UNREACHABLE as error:
                delay = await self._retry_later(state, error, delay)
            except discord.HTTPException as error:
                if _too_large(error) and state.timelapse is not None:
                    log.info(
                        "Discord found job %s's time-lapse too large; making it smaller", job_id
                    )
                    smaller = replace(state, timelapse_limit=len(state.timelapse) // 2)
                    self._wanted.setdefault(job_id, smaller)
                    continue
                log.warning("Discord refused job %s's card: %s", job_id, error)
            except Exception:
                log.exception("could not show job %s's card", job_id)
            else:
                delay = RETRY_FIRST_S
            finally:
                self._showing = None

    async def _retry_later(self, state: CardWish, error: BaseException, delay: float) -> float:
        """Keep `state` (unless a newer wish came meanwhile), wait, and return the next delay."""
        if state.job.id not in self._wanted:
            self._wanted[state.job.id] = state
        reason = str(error) or type(error).__name__
        log.warning(
            "cannot reach Discord to update job %s's card (%s); trying again in %.0f s",
            state.job.id,
            reason,
            delay,
        )
        await asyncio.sleep(delay)
        return min(delay * 2, RETRY_MAX_S)

    def _upload_limit(self, job: JobRow) -> int:
        """The largest file the job's server takes, by its boost level."""
        guild = self.client.get_guild(job.guild_id)
        if guild is None:
            return discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES
        return guild.filesize_limit

    async def _fitted(self, state: CardWish) -> CardWish:
        """The wish with its time-lapse small enough to go with the card's other files, or
        without it (saying so on the card) when it cannot be made so."""
        if state.timelapse is None:
            return state
        job = state.job
        given = self._given(job)
        limit = self._upload_limit(job) if state.timelapse_limit is None else state.timelapse_limit
        budget = limit - len(state.png or b"") - len(given or b"")
        try:
            fitted = await asyncio.to_thread(fit_animation, state.timelapse, budget)
        except AnimationError as error:
            log.warning("leaving job %s's time-lapse out: %s", job.id, error)
            return replace(state, timelapse=None)
        if fitted is None:
            note = tr(self._language(job), TIMELAPSE_TOO_BIG)
            return replace(state, timelapse=None, lines=(*state.lines, note))
        return replace(state, timelapse=fitted)

    def _given(self, job: JobRow) -> bytes | None:
        """The thumbnail of the picture the job was given, for its card. A member's picture is
        not screened, so where pictures are screened it shows only in an age-restricted
        channel."""
        if job.spec.image_use is None:
            return None
        if job.spec.screening.pictures and not age_restricted(self.client)(
            job.guild_id, job.channel_id
        ):
            return None
        return self.store.thumbnail(job.id)

    def _channel(self, job: JobRow) -> discord.PartialMessageable:
        return self.client.get_partial_messageable(job.channel_id, guild_id=job.guild_id)

    async def _post(self, state: CardWish) -> None:
        # The card's message may have changed since the wish was made: read it afresh.
        current = self.store.job(state.job.id)
        if current is None:
            return
        job = replace(
            state.job,
            card_message_id=current.card_message_id,
            card_posted_at=current.card_posted_at,
        )
        png = state.png
        # Sent with every post and edit: an edit keeps only the files it carries.
        given = self._given(job)
        language = self._language(job)
        embed = cards.card(
            job,
            list(state.lines),
            language,
            image=png is not None and not state.spoiler,
            thumbnail=given is not None,
        )
        files = [cards.picture_file(job, png, spoiler=state.spoiler)] if png is not None else []
        if given is not None:
            files.append(cards.thumbnail_file(job, given))
        if state.timelapse is not None:
            files.append(cards.timelapse_file(job, state.timelapse, spoiler=state.spoiler))
        if state.final and png is not None and job.spec.tile:
            wall = await asyncio.to_thread(cards.tiled, png)
            files.append(cards.tiled_file(job, wall, spoiler=state.spoiler))
        if job.status in ACTIVE:
            view: discord.ui.View | None = card_view(
                self.buttons, job.id, ON_ACTIVE_CARDS, language
            )
        elif state.final:
            rows = finished_rows(job.spec.width, job.spec.height)
            view = card_view(self.buttons, job.id, rows, language)
        else:
            view = None
        channel = self._channel(job)
        stale = job.card_posted_at is None or time.time() - job.card_posted_at > CARD_MAX_AGE_S
        if job.card_message_id is not None and not stale:
            try:
                await channel.get_partial_message(job.card_message_id).edit(
                    embed=embed, attachments=files, view=view, allowed_mentions=cards.NO_MENTIONS
                )
                return
            except discord.HTTPException as error:
                if isinstance(error, discord.DiscordServerError) or _too_large(error):
                    raise
                log.warning("could not edit job %s's card (%s); posting a new one", job.id, error)
        if view is None:
            message = await channel.send(
                embed=embed, files=files, allowed_mentions=cards.NO_MENTIONS
            )
        else:
            message = await channel.send(
                embed=embed, files=files, view=view, allowed_mentions=cards.NO_MENTIONS
            )
        self.store.card_posted(job.id, message.id, time.time())
        if job.card_message_id is not None:
            with contextlib.suppress(discord.HTTPException, *UNREACHABLE):
                await channel.get_partial_message(job.card_message_id).edit(
                    content=tr(
                        language, "Job {job} continues in a newer message below.", job=job.id
                    ),
                    embed=None,
                    attachments=[],
                    view=None,
                )


def _too_large(error: discord.HTTPException) -> bool:
    return error.status == 413 or error.code == TOO_LARGE
