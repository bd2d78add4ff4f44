"""How jobs look in Discord: the job card in its states, and small text helpers.

Everything a member typed goes into embeds, and every message is sent with mentions disabled,
so a prompt such as "@everyone look" pings nobody.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import discord

from bot.events import (
    JobEnded,
    JobEvent,
    JobHandedOver,
    JobPaused,
    JobPreparing,
    JobProgress,
    JobStarting,
    QueueChanged,
)
from bot.store import JobRow, JobStatus

NO_MENTIONS = discord.AllowedMentions.none()
BAR_WIDTH = 20
REFRESHED_POSITIONS = 10  # waiting cards kept current; later ones update as they move up
COLOURS = {
    "queued": discord.Colour.light_grey(),
    "running": discord.Colour.blurple(),
    "done": discord.Colour.green(),
    "failed": discord.Colour.red(),
    "cancelled": discord.Colour.dark_grey(),
}
TITLES = {
    "queued": "Waiting in the queue",
    "running": "Drawing",
    "done": "Finished",
    "failed": "Could not draw this",
    "cancelled": "Cancelled",
}


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def quote(text: str, limit: int = 1000) -> str:
    """Member text made inert for Discord markdown."""
    return discord.utils.escape_markdown(shorten(text, limit))


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def progress_bar(step: int, total: int) -> str:
    filled = round(BAR_WIDTH * step / total) if total else 0
    return "▰" * filled + "▱" * (BAR_WIDTH - filled) + f" {100 * step / max(total, 1):.0f}%"


def picture_file(job: JobRow, png: bytes) -> discord.File:
    return discord.File(io.BytesIO(png), filename=f"pseudo-dalle-{job.id}.png")


def card(job: JobRow, lines: list[str], *, image: bool = False) -> discord.Embed:
    """The job card: prompt, requester and settings, plus the state's own lines."""
    embed = discord.Embed(
        title=f"{TITLES[job.status]} · job {job.id}",
        description=quote(job.prompt),
        colour=COLOURS[job.status],
    )
    embed.add_field(name="Requested by", value=f"<@{job.user_id}>")
    embed.add_field(name="Seed", value=str(job.seed))
    embed.add_field(name="Size", value=f"{job.size}x{job.size}")
    if lines:
        embed.add_field(name="Status", value="\n".join(lines), inline=False)
    if job.notice:
        embed.add_field(name="Note", value=job.notice, inline=False)
    if image:
        embed.set_image(url=f"attachment://pseudo-dalle-{job.id}.png")
    return embed


def queued_lines(position: int, waiting: int, eta_s: float | None) -> list[str]:
    eta = f"starts in about {duration(eta_s)}" if eta_s is not None else "start time not known yet"
    return [f"Position {position} of {waiting} · {eta}"]


def running_lines(step: int, total: int, rate: float) -> list[str]:
    remaining = (total - step) / rate if rate > 0 else None
    eta = f" · about {duration(remaining)} left" if remaining is not None else ""
    return [progress_bar(step, total), f"Iteration {step}/{total} · {rate:.1f} it/s{eta}"]


def finished_lines(job: JobRow) -> list[str]:
    took = duration(job.seconds or 0)
    return [f"{job.steps} iterations in {took}"]


def sharing_lines(sharing: tuple[int, ...]) -> list[str]:
    others = ", ".join(f"job {other}" for other in sharing)
    return [f"Sharing the worker with {others}"] if sharing else []


@dataclass(frozen=True)
class CardWish:
    """What a job's card should show now: the job as it was, text lines, maybe a picture;
    `final` cards get the Reroll, Continue and Delete buttons."""

    job: JobRow
    lines: tuple[str, ...]
    png: bytes | None = None
    final: bool = False


def wishes(event: JobEvent) -> list[CardWish]:
    """The cards a job event changes, and what they should show."""
    if isinstance(event, QueueChanged):
        total = len(event.waiting)
        return [
            CardWish(w.job, tuple(queued_lines(w.position, total, w.starts_in_s)))
            for w in event.waiting
            if w.position <= REFRESHED_POSITIONS or w.job.id == event.added
        ]
    return [_wish(event)]


def _wish(
    event: JobStarting | JobPreparing | JobProgress | JobEnded | JobHandedOver | JobPaused,
) -> CardWish:
    png, final = None, False
    if isinstance(event, JobStarting):
        lines = ["Starting…", *sharing_lines(event.sharing)]
    elif isinstance(event, JobPreparing):
        lines = [f"Preparing: {event.reason}; the first picture of each size waits for it"]
        lines += sharing_lines(event.sharing)
    elif isinstance(event, JobProgress):
        lines = running_lines(event.step, event.total, event.iterations_per_second)
        lines += sharing_lines(event.sharing)
        png = event.png
    elif isinstance(event, JobEnded):
        lines, png, final = _ended_lines(event.job), event.png, event.job.status == JobStatus.DONE
    elif isinstance(event, JobHandedOver):
        lines = [f"Worker {event.worker} stopped; the next free worker starts this again"]
    elif event.continues:
        lines = ["Still drawing; this card catches up when the bot is back"]
    else:
        lines = ["Waiting for the bot to come back"]
    return CardWish(event.job, tuple(lines), png, final)


def _ended_lines(job: JobRow) -> list[str]:
    if job.status == JobStatus.FAILED:
        return [quote(job.error, 300)] if job.error else []
    if job.started_at is None:  # cancelled while it waited
        return []
    return finished_lines(job)
