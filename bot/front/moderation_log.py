"""Where moderators read what happened: each server's moderation log channel
(`/moderation log_channel`).

The log receives reports (the job, its prompt, who asked for it and who reported it), refused
prompts (what a rule found in them, and whose rule it was) and withheld pictures (what the
screening found, once per job). A picture goes with an entry only when the log channel itself
is age-restricted. Entries are posted by one owned task, so that Discord never holds up a
member's answer or a drawing; one Discord refuses or cannot take is logged and dropped.
"""

from __future__ import annotations

import asyncio
import io
import logging
from dataclasses import dataclass, field

import discord

from bot.front.cards import NO_MENTIONS, quote
from bot.front.channels import age_restricted
from bot.front.presenter import UNREACHABLE
from bot.i18n import N_, language_of, tr
from bot.jobs.events import JobEvent, JobReported, PictureWithheld, PromptRefused
from bot.jobs.store import JobRow, Store
from bot.moderation.rules import Source
from bot.tasks import OwnedTask

log = logging.getLogger("pseudo_dalle.moderation_log")
COLOUR = discord.Colour.orange()
NOT_POSTED: tuple[type[BaseException], ...] = (discord.HTTPException, *UNREACHABLE)
SOURCES = {
    Source.OPERATOR: N_("the bot's operator's terms"),
    Source.SERVER: N_("this server's terms"),
    Source.AUTOMOD: N_("this server's AutoMod rules"),
    Source.MEANING: N_("its meaning"),
}
PICTURES = {
    "preview": N_("a progress picture"),
    "final": N_("the final picture"),
    "timelapse": N_("the time-lapse"),
}


@dataclass(frozen=True)
class _Entry:
    guild_id: int
    title: str
    fields: tuple[tuple[str, str], ...]
    picture: bytes | None = field(default=None, repr=False)
    card: tuple[int, int] | None = None  # (channel, message) of the card whose picture it is


class ModerationLog:
    """Posts to each server's moderation log channel what its moderators should see."""

    def __init__(self, client: discord.Client, store: Store) -> None:
        self.client = client
        self.store = store
        self._waiting: asyncio.Queue[_Entry] = asyncio.Queue()
        self._task = OwnedTask("moderation-log", self._run)
        self._idle = asyncio.Event()
        self._idle.set()

    def start(self) -> None:
        self._task.start()

    async def stop(self, timeout_s: float) -> None:
        if not self._task.running:
            return
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            log.warning("stopping with %d moderation log entries unposted", self._waiting.qsize())
        await self._task.stop()

    def on_event(self, event: JobEvent) -> None:
        if isinstance(event, JobReported):
            self._reported(event)
        elif isinstance(event, PromptRefused):
            self._refused(event)
        elif isinstance(event, PictureWithheld) and event.first:
            self._withheld(event)

    def _language(self, guild_id: int) -> str:
        guild = self.client.get_guild(guild_id)
        return language_of(str(guild.preferred_locale) if guild is not None else None)

    def _put(self, entry: _Entry) -> None:
        if not self.store.guild_settings(entry.guild_id).log_channel:
            return
        self._idle.clear()
        self._waiting.put_nowait(entry)

    def _reported(self, event: JobReported) -> None:
        job, language = event.job, self._language(event.job.guild_id)
        self._put(
            _Entry(
                job.guild_id,
                tr(language, "Report · job {job}", job=job.id),
                (
                    (tr(language, "Prompt"), quote(job.spec.prompt) or "-"),
                    (tr(language, "Requested by"), f"<@{job.user_id}>"),
                    (tr(language, "Reported by"), f"<@{event.reporter}>"),
                    (tr(language, "Channel"), f"<#{job.channel_id}>"),
                    (tr(language, "Card"), _card_link(job)),
                ),
                card=None if job.card_message_id is None else (job.channel_id, job.card_message_id),
            )
        )

    def _refused(self, event: PromptRefused) -> None:
        language = self._language(event.guild_id)
        self._put(
            _Entry(
                event.guild_id,
                tr(language, "Prompt refused"),
                (
                    (tr(language, "Prompt"), quote(event.prompt) or "-"),
                    (tr(language, "Found"), quote(event.found, 200)),
                    (tr(language, "Refused by"), tr(language, SOURCES[event.source])),
                    (tr(language, "Requested by"), f"<@{event.user_id}>"),
                    (tr(language, "Channel"), f"<#{event.channel_id}>"),
                ),
            )
        )

    def _withheld(self, event: PictureWithheld) -> None:
        job, language = event.job, self._language(event.job.guild_id)
        self._put(
            _Entry(
                job.guild_id,
                tr(language, "Picture withheld · job {job}", job=job.id),
                (
                    (tr(language, "Prompt"), quote(job.spec.prompt) or "-"),
                    (tr(language, "Withheld"), tr(language, PICTURES[event.what])),
                    (tr(language, "Found"), quote(", ".join(event.crossed), 500)),
                    (tr(language, "Requested by"), f"<@{job.user_id}>"),
                    (tr(language, "Channel"), f"<#{job.channel_id}>"),
                ),
                picture=event.data if event.what != "timelapse" else None,
            )
        )

    async def _run(self) -> None:
        while True:
            if self._waiting.empty():
                self._idle.set()
            entry = await self._waiting.get()
            try:
                async with asyncio.timeout(15):
                    await self._post(entry)
            except NOT_POSTED as error:
                log.warning(
                    "could not post to guild %s's moderation log: %s", entry.guild_id, error
                )
            except Exception:
                log.exception("could not post to guild %s's moderation log", entry.guild_id)

    async def _post(self, entry: _Entry) -> None:
        channel_id = self.store.guild_settings(entry.guild_id).log_channel
        if not channel_id:
            return
        embed = discord.Embed(title=entry.title, colour=COLOUR)
        for name, value in entry.fields:
            embed.add_field(name=name, value=value, inline=False)
        files = []
        if age_restricted(self.client)(entry.guild_id, channel_id):
            if entry.picture is not None:
                files.append(discord.File(io.BytesIO(entry.picture), filename="picture.png"))
                embed.set_image(url="attachment://picture.png")
            elif entry.card is not None and (url := await self._card_picture(entry)):
                embed.set_image(url=url)
        channel = self.client.get_partial_messageable(channel_id, guild_id=entry.guild_id)
        await channel.send(embed=embed, files=files, allowed_mentions=NO_MENTIONS)

    async def _card_picture(self, entry: _Entry) -> str | None:
        """Where the reported card's picture is on Discord, if it still has one."""
        assert entry.card is not None
        card_channel, card_message = entry.card
        channel = self.client.get_partial_messageable(card_channel, guild_id=entry.guild_id)
        try:
            message = await channel.fetch_message(card_message)
        except discord.HTTPException:
            return None
        pictures = [
            a
            for a in message.attachments
            if a.filename.endswith(".png") and "-given" not in a.filename
        ]
        return pictures[0].url if pictures else None


def _card_link(job: JobRow) -> str:
    if job.card_message_id is None:
        return "-"
    return f"https://discord.com/channels/{job.guild_id}/{job.channel_id}/{job.card_message_id}"
